// Package uplinks keeps the kernel state of each uplink — its routing table
// and its source rule — reconciled with the configuration, and reports each
// uplink's kernel-observed availability as netlink events arrive.
//
// Kernel state for the uplink with Spec.Index i (defaults in parentheses):
//
//   - table TableBase+1+i (7701+i): "default via <gw> dev <if> onlink", or
//     "default dev <if> scope link" for an uplink without gateway (PPP,
//     tunnels), and the connected subnet "<subnet> dev <if> scope link src
//     <addr>"; every route with protocol Protocol (167).
//   - rule Priority+110+10*i (7800+10*i): "from <addr> lookup <table>",
//     protocol Protocol.
//
// An uplink that is not Available has neither. The gateway is Spec.Gateway
// or, when that is unset, the gateway of the main table's default route
// through the device (learnt by a DHCP client); without either the uplink
// gets "default dev <if>".
//
// Ownership: the Manager owns the rules with protocol Protocol whose
// priority lies in [Priority+RuleOffset, Priority+RuleOffset+10*MaxUplinks)
// and the routes with protocol Protocol in tables
// TableBase+1 … TableBase+MaxUplinks. Reconcile prunes whatever it owns and
// no longer wants (an old address after a DHCP renewal, a leftover of a
// process killed with SIGKILL, an uplink removed from the configuration);
// Remove deletes all of it. Nothing else is ever touched: not other
// protocols in these tables or priorities, not other tables, not the rules
// of package lan/steer, which owns [Priority, Priority+RuleOffset).
//
// Namespaces: every netlink request goes through the *netlink.Handle given
// to NewManager; the subscriptions of Run are opened in Config.NetNS (nil:
// the calling process's namespace, as the daemon uses), which must be the
// namespace of that handle.
//
// Concurrency: a Manager is safe for concurrent use; Reconcile and Remove
// are serialised. Run owns the goroutines it starts — one per netlink
// subscription, plus the two the netlink library starts for each — and
// waits for all of them before it returns. onChange is called from Run's
// goroutine, one call at a time.
package uplinks
