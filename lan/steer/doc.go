// Package steer installs the kernel state that steers LAN traffic into
// wanflow's TUN device: two policy rules, one route and a few sysctls.
//
// Kernel state (defaults in parentheses, all configurable):
//
//   - rule Priority (7690): "from all lookup main suppress_prefixlength 0".
//     Every destination that the main table reaches by something more
//     specific than a default route (the LAN, connected uplink subnets,
//     router-local replies to LAN hosts) stays in the main table.
//   - rule Priority+LookupOffset (7695), only with Config.LookupMark:
//     "fwmark <LookupMark> lookup <Table>". No packet carries the mark: it
//     lets package uplinks/nftguard ask the FIB, from the prerouting hook
//     where an "iif" rule cannot match, whether a LAN packet is about to
//     enter the TUN device.
//   - rule Priority+10 (7700): "iif <LANInterface> lookup <Table>".
//   - rules Priority+FallbackOffset+j (7710, 7711, ...): "iif
//     <LANInterface> lookup <Fallback[j]>", one per fallback table (the
//     uplinks' tables, preferred first). A lookup that finds no route in a
//     table goes on to the next rule, so while the TUN's route exists these
//     match nothing; when the TUN device vanishes with a crashed daemon,
//     the kernel deletes its route and LAN traffic falls through to the
//     first uplink table that still has one (fail-open, masqueraded by
//     package uplinks/nftguard). Those tables exist only for uplinks that
//     were available, and the kernel drops their routes with their device.
//   - route "default dev <TUN> scope link proto <Protocol>" in Table (7700).
//   - sysctls: net.ipv4.ip_forward=1 and rp_filter=0 for the TUN device.
//     Replies that the dataplane injects on the TUN carry internet source
//     addresses, which reverse-path filtering would drop. The kernel uses
//     max(conf.all, conf.<dev>) as a device's rp_filter, so a non-zero
//     conf.all.rp_filter is first copied onto conf.default and every other
//     device (dev = max(dev, all): no change in their effective value) and
//     only then set to 0.
//
// Ownership: steer owns the rules whose priority lies in
// [Priority, Priority+PrioritySpan) and carry protocol Protocol, and the
// routes of protocol Protocol in Table. Apply prunes whatever it owns and no
// longer wants (a leftover of a process killed with SIGKILL, a renamed LAN
// interface); Remove deletes all of it. Everything else — other rules,
// other protocols, other tables — is never touched. Package uplinks uses the
// priorities above Priority+PrioritySpan with the same protocol.
//
// Namespaces: every netlink operation goes through the *netlink.Handle given
// to New, so it acts in the namespace the handle was opened in. Sysctls are
// per network namespace and have no netlink interface: they are written
// through /proc/sys/net/..., whose contents depend on the network namespace of
// the thread that opens the file. With Config.NetNS nil (the daemon) they are
// written from the calling thread; with Config.NetNS set (tests, a lab
// router) they are written from a locked OS thread that has entered that
// namespace through InNetNS, which is also the helper tests use to read them.
//
// Concurrency: a Steering is safe for concurrent use; Apply and Remove are
// serialised. The package starts no goroutines except the short-lived one in
// InNetNS, which it waits for.
package steer
