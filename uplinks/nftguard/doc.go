// Package nftguard maintains wanflow's own nftables table, which drops the
// kernel's copy of the replies the dataplane translates.
//
// The dataplane receives replies to its NAT ports with AF_PACKET sockets,
// which see a packet before netfilter does. The kernel also receives them,
// finds no socket and answers with a TCP RST or an ICMP port unreachable,
// which would kill the very flows wanflow carries. The table drops that copy:
//
//	table ip wanflow {
//		set uplink_addrs { type ipv4_addr; elements = { <uplink addresses> } }
//		chain prerouting {
//			type filter hook prerouting priority raw; policy accept;
//			ip daddr @uplink_addrs tcp dport <lo>-<hi> counter drop
//			ip daddr @uplink_addrs udp dport <lo>-<hi> counter drop
//		}
//	}
//
// where <lo>-<hi> is the NAT port range, which must not overlap the kernel's
// ip_local_port_range (the router's own sockets use those).
//
// Apply converges from any prior state in one atomic transaction; when only
// the addresses changed it swaps the set's elements and keeps the rules and
// their counters. Remove deletes the table. Nothing outside the table is
// touched. Each rule carries a comment naming its protocol and port range;
// Apply uses it to recognise a table it built itself.
//
// Namespaces: every operation goes through the *nftables.Conn it is given;
// tests open it with nftables.WithNetNSFd. Concurrency: the package has no
// state and starts no goroutines; callers serialise Apply and Remove on one
// table.
package nftguard
