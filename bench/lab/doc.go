// Package lab builds wanflow's network-namespace lab: a LAN with hosts, the
// router namespace where the wanflow daemon runs, one ISP namespace per uplink
// and an internet namespace with echo servers, all connected by veth pairs, a
// Linux bridge and (for PPP-like uplinks) point-to-point tunnels.
//
// Address plan (binding, see the team contracts):
//   - LAN 10.77.0.0/24 on a bridge in the switch namespace: router lan0
//     10.77.0.1, hosts 10.77.0.10, .11, ..., extra addresses of host 1
//     10.77.0.100, .101, ...; a LAN-segment modem at 10.77.0.254.
//   - uplink i (1-based): router up<i> 100.64.<i>.2/24, ISP gateway and DNS
//     100.64.<i>.1; L3 uplinks use 100.64.<i>.2/32 peer 100.64.<i>.1, over an
//     underlay 172.30.<i>.0/30 (ipip) or an in-process TUN pipe.
//   - ISP i to internet: 198.18.<i>.1/24 (ISP) and 198.18.<i>.2/24 (internet).
//   - servers 203.0.113.10 ... 203.0.113.29 on the internet's loopback, plus the
//     probe targets 1.1.1.1 and 8.8.8.8.
//
// The router namespace gets forwarding, its LAN and uplink addresses and their
// connected routes, but no default route and no NAT: wanflow (or
// KernelBaseline) provides those. Nothing is ever created in, or changed in,
// the namespace of the calling process: every link is created by a netlink
// socket that lives in one of the lab's namespaces, and sysctls are written
// from threads inside the lab's namespaces.
//
// Some parts of a lab live in this process and end with it: TUN-based L3
// uplinks (used when the kernel has no ipip), per-uplink delays (a TUN
// detour inside the ISP namespace, no netem needed) and the servers. A lab
// built without them (veth and LAN-segment uplinks, ipip, no delay) keeps
// forwarding after the process exits, until Cleanup.
//
// Concurrency: a Lab's methods are safe for concurrent use. Up starts the
// goroutines that pump packets through TUN-based L3 uplinks; StartServers
// starts the echo and DNS servers; Close stops and waits for all of them, then
// kills every process still inside a lab namespace and deletes the
// namespaces. NS.Do is the only way this package enters a namespace: it runs
// the function on a locked OS thread in a fresh goroutine and never hands a
// thread still in a foreign namespace back to the scheduler.
package lab
