// Package nftguard maintains wanflow's own nftables table, which drops the
// kernel's copy of the replies the dataplane translates and, after a crash,
// masquerades the LAN traffic the kernel forwards in wanflow's place.
//
// The dataplane receives replies to its NAT ports with AF_PACKET sockets,
// which see a packet before netfilter does. The kernel also receives them,
// finds no socket and answers with a TCP RST or an ICMP port unreachable,
// which would kill the very flows wanflow carries. The prerouting chain
// drops that copy:
//
//	table ip wanflow {
//		set uplink_addrs { type ipv4_addr; elements = { <uplink addresses> } }
//		set uplink_ifaces { type ifname; elements = { <uplink interfaces> } }
//		chain prerouting {
//			type filter hook prerouting priority raw; policy accept;
//			# with a TUN (fail-open): only while the TUN routes
//			ip daddr @uplink_addrs tcp dport <lo>-<hi> [fib saddr . mark(<LookupMark>) oifname <TUN>] counter drop
//			ip daddr @uplink_addrs udp dport <lo>-<hi> [fib saddr . mark(<LookupMark>) oifname <TUN>] counter drop
//		}
//		chain postrouting {
//			type nat hook postrouting priority srcnat; policy accept;
//			# one rule per LAN prefix P; Q ranges over every LAN prefix
//			oifname @uplink_ifaces ip saddr P ip daddr != Q ... counter masquerade
//		}
//		chain notrack {
//			type filter hook prerouting priority -450; policy accept;
//			iifname <TUN> notrack
//			# one rule per LAN prefix P
//			ip saddr P fib daddr . mark(<LookupMark>) oifname <TUN> notrack
//		}
//	}
//
// where <lo>-<hi> is the NAT port range, which must not overlap the kernel's
// ip_local_port_range (the router's own sockets use those).
//
// Fail-open (Config.LANPrefixes; no postrouting chain and no interface set
// without them): the table outlives a daemon killed with SIGKILL, unlike
// the TUN device. Once the TUN is gone, lan/steer's fallback rules route
// LAN traffic through the uplinks' own tables and the kernel forwards it;
// the postrouting chain masquerades it to the uplink's current address
// (masquerade, not SNAT: a PPP redial or DHCP renewal after the crash
// changes it). The dataplane's own packets leave on AF_PACKET sockets and
// never pass netfilter. What the kernel forwards to an uplink's connected
// subnet while wanflow runs (the modem's web page) is masqueraded too.
//
// A nat chain turns conntrack on in the namespace, and conntrack would
// track (and first reassemble: its defragmentation runs at priority -400)
// every packet between the LAN and the TUN device, which is the
// dataplane's job: memory, CPU, nf_conntrack_max, and after a crash every
// flow wanflow had carried would keep an untranslated conntrack entry and
// stay dead. The notrack chain (Config.TUN and Config.LookupMark; priority
// -450, before defragmentation) exempts exactly that traffic: packets that
// enter from the TUN, and LAN packets the FIB would route into the TUN. A
// prerouting hook cannot ask the FIB with the LAN interface as input (an
// nftables fib lookup uses the loopback device), so the rule asks with
// LookupMark, whose policy rule (lan/steer) looks up the TUN's table right
// after the main table's specific routes — the same answer the "iif
// <LAN>" rule gives — and puts the packet's own mark back. Once the TUN is
// gone the answer is no longer the TUN, and LAN traffic is tracked and
// masqueraded again: the chain needs no process to notice the crash.
// Router-local destinations and uplink subnets stay tracked, so a host
// firewall relying on conntrack sees them as before.
//
// The masquerade keeps source ports, so a LAN flow whose port lies in the
// NAT range gets replies on that range. With a TUN, the prerouting chain
// therefore drops the kernel's copy only while the TUN exists (the FIB,
// asked about the reply's remote with LookupMark, answers the TUN): after
// a crash those replies reach the kernel, which de-NATs the masqueraded
// flows and answers replies to the dead dataplane's mappings with a reset,
// telling their remotes at once that the connection is gone. Between a
// planned restart's two processes the hold table (Hold) keeps them from
// the kernel instead.
//
// Apply converges from any prior state in one atomic transaction; when only
// the addresses or interfaces changed it swaps the sets' elements and keeps
// the rules and their counters. Remove deletes the table. Nothing outside
// the table is touched. Each rule carries a comment naming what it depends
// on (protocol and port range; LAN prefixes); Apply uses it to recognise a
// table it built itself.
//
// Namespaces: every operation goes through the *nftables.Conn it is given;
// tests open it with nftables.WithNetNSFd. Concurrency: the package has no
// state and starts no goroutines; callers serialise Apply and Remove on one
// table.
package nftguard
