// Package dhcp is wanflow's DHCPv4 server for the LAN: it leases addresses
// from a pool and from static reservations, hands out the router, DNS and
// domain options, persists its leases, and answers the DNS forwarder's
// questions about client names.
//
// # Protocol
//
// The server follows RFC 2131 section 4.3 for a single, directly attached
// segment (relayed messages, with giaddr set, are dropped):
//
//   - DISCOVER: offer the client's reservation; else its current or previous
//     address; else the requested address (option 50) if free; else a free
//     pool address. An offered address is held for the client for 30 s,
//     unless the pool runs out: then the oldest unanswered offer goes to the
//     new client (Stats.OffersGivenAway), so a DISCOVER flood from made-up
//     MACs cannot hold the pool. Every address leased or declined: no
//     offer, a rate-limited warning, and Stats.PoolExhausted.
//   - REQUEST, SELECTING (server identifier present): another server's
//     identifier makes the server forget its offer silently; ours is
//     answered with ACK, or NAK if the address is not available.
//   - REQUEST, INIT-REBOOT (requested address, no ciaddr): NAK if the
//     address is outside the subnet or is not the client's lease or
//     reservation; ACK if it is; silence if the server has no record of the
//     client.
//   - REQUEST, RENEWING/REBINDING (ciaddr): ACK with a fresh lease if the
//     address is the client's or free for it; NAK otherwise.
//   - RELEASE ends the lease but keeps the record, so the client gets the
//     same address back. DECLINE takes the address out of the pool for 10
//     minutes (accepted only from the client it was offered or leased to).
//     INFORM is answered with the options and no lease.
//
// Clients are identified by their client identifier (option 61) if they send
// one, else by chaddr; reservations match chaddr. The host name comes from
// the reservation, else from option 12 if it is a valid DNS label.
//
// Replies go, per RFC 2131 section 4.1: NAK by broadcast; to ciaddr if set;
// by broadcast if the client set the broadcast flag; otherwise to chaddr and
// yiaddr as link-layer unicast through an AF_PACKET socket (no ARP, no
// kernel neighbour entry written), falling back to broadcast on interfaces
// without an Ethernet address.
//
// # Lease file
//
// Config.LeaseFile holds one line per active lease, in dnsmasq's format
// (so tools that read dnsmasq.leases read it too):
//
//	<expiry> <mac> <address> <hostname> <client-id>
//
// expiry is the end of the lease in Unix seconds; mac is chaddr as
// colon-separated lower-case hex; address is dotted-quad IPv4; hostname is a
// DNS label or "*"; client-id is option 61 as colon-separated hex or "*".
// Fields are separated by one space, lines end with "\n". Example:
//
//	1767225600 02:77:00:00:00:0a 10.77.0.100 laptop 01:02:77:00:00:00:0a
//
// On load, blank lines, lines starting with "#" and dnsmasq's "duid" line
// are ignored; any other line that does not parse is logged and skipped,
// never fatal; leases that no longer fit the configuration are dropped;
// expired leases are kept in memory only, to give clients their previous
// address. The file is rewritten after changes, at most once per second and
// once more when Serve returns: the new contents go to a temporary file in
// the same directory, which is fsynced and renamed over the old file, and
// the directory is fsynced, so a crash leaves either the old or the new
// file. A power cut can lose at most the last second of changes; a client
// whose lease was lost that way is silently ignored in INIT-REBOOT and gets
// its address again through DISCOVER (the address is still free).
//
// # Invariants
//
// Memory is bounded: the lease table holds at most one entry per pool or
// reserved address (the pool is at most MaxPoolSize addresses), offers and
// declined addresses included; every client has at most one entry.
//
// Concurrency: a Server is safe for concurrent use. Serve runs the read
// loop on the caller's goroutine and starts two goroutines,
// routineFlush (lease file writes) and routineWatch (closes the sockets when
// ctx ends or the interface changes); both have ended when Serve returns.
// Messages are handled one at a time, in the read loop; Leases, Lookup,
// Stats and Reconfigure may be called from any goroutine.
//
// Serving is Linux-only (SO_BINDTODEVICE, AF_PACKET); on other systems Serve
// returns a "not supported" error, and everything else works.
package dhcp
