// Package dataplane is wanflow's packet path: it reads LAN packets from the
// TUN device, pins each flow to an uplink, NATs it and sends it through that
// uplink's socket, and translates the replies received on each uplink's
// AF_PACKET socket back to the LAN host through the TUN device.
//
// Goroutines (all started by Engine.Start, stopped and waited for by
// Engine.Close):
//
//   - routineTUNRead: the only reader of the TUN device. It decodes each
//     packet, reassembles IPv4 fragments, and hands the packet to the worker
//     that owns its flow: a hash of its LAN endpoint (source address, port or
//     ICMP echo identifier, protocol) — all flows of one endpoint share one
//     NAT mapping, which that worker owns.
//   - routineUplinkRx, one per open uplink socket: the only reader of that
//     socket. It splits GRO super-packets, reassembles fragments and hands
//     each reply to worker = NAT port % W.
//   - routineReport (one): logs, at most once a second per uplink, the
//     uplinks on which new flows found no free NAT port, so workers never
//     log.
//   - routineWorker, W of them: each owns one flowtable.Table (its shard) and
//     the NAT ports p with p % W == worker, so a reply always reaches the
//     worker that created its flow and no lock is shared between workers. A
//     worker writes its packets itself: to the uplink sockets (sendmmsg) and
//     to the TUN device (batched, GRO-coalesced by the tun package).
//
// Per packet there is no allocation, no fmt, no logging and no lock; per
// batch, a worker takes each uplink socket's send lock and the TUN device's
// write lock once. Packet buffers come from a bounded pool; what does not fit
// (pool empty, queue full) is dropped and counted. Buffers left free for a
// whole window (Config.TrimEvery) are released, so the pool shrinks back
// after a burst; steady traffic allocates nothing. The uplink view (addresses,
// MTUs, availability, policy) is an immutable Snapshot loaded once per batch
// from an atomic pointer.
//
// The TTL of a forwarded packet is decremented exactly once per router hop,
// by the kernel's forwarding into wf0 (outbound) and out of wf0 (inbound); the
// dataplane therefore never sees TTL 0 from the kernel, and answers one that
// reaches it anyway with ICMP time exceeded (RFC 1812 §5.3.1) rather than
// forwarding it.
//
// # Hardening
//
// Every packet from the LAN has its addresses vetted before any flow lookup,
// so none of the following ever creates a flow or draws an ICMP error:
// sources and destinations that are never a host's (0.0.0.0/8, 127.0.0.0/8,
// 224.0.0.0/4, 240.0.0.0/4 with 255.255.255.255) are dropped
// (OutDropBadSource, OutDropBadDestination); a source outside
// Config.LANPrefixes (when set) or equal to Config.RouterAddr is spoofed
// (OutDropSpoofed). The check is a linear scan of (addr, mask) pairs.
//
// Config.Flows.MaxFlowsPerHost bounds the flows of one LAN address. Each
// worker's table enforces ceil(limit/W) (flowtable.Config.MaxFlowsPerHost),
// so a host holds at most W·ceil(limit/W) < limit+W flows, and may be
// refused sooner when its LAN endpoints hash unevenly over the workers (all
// flows of one endpoint — address, port, protocol — are on one worker). A
// new flow over the limit is dropped (OutDropHostLimit) and answered with
// ICMP destination unreachable, administratively prohibited (3/13, RFC 1812
// §5.2.7.1): a TCP connect fails at once instead of retrying its SYN, and
// the host is told it is a policy, not a dead route.
//
// When the uplink the policy chose for a new flow has no free NAT port (in
// the worker's partition, for the protocol), the worker asks the policy
// again with that uplink unavailable (and so on while uplinks fail), so the
// flow goes to the policy's next choice: same rule, same tier if it has
// another uplink, else the next tier (OutPortsExhaustedFallback). When none
// has a port the packet is dropped (OutDropPortsExhausted). The flow's
// recorded decision is the one that placed it, flagged
// (DecisionPortsFallback); Explain, which describes the first choice,
// names another uplink for such a flow, and Rebalance leaves it alone.
// Policies with uplinks masked out are built on this rare path (one
// allocation each) and cached per worker, so sustained exhaustion does not
// allocate per packet.
package dataplane
