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
//   - routineWorker, W of them: each owns one flowtable.Table (its shard) and
//     the NAT ports p with p % W == worker, so a reply always reaches the
//     worker that created its flow and no lock is shared between workers. A
//     worker writes its packets itself: to the uplink sockets (sendmmsg) and
//     to the TUN device (batched, GRO-coalesced by the tun package).
//
// Per packet there is no allocation, no fmt, no logging and no lock; per
// batch, a worker takes each uplink socket's send lock and the TUN device's
// write lock once. Packet buffers come from a bounded pool; what does not fit
// (pool empty, queue full) is dropped and counted. The uplink view (addresses,
// MTUs, availability, policy) is an immutable Snapshot loaded once per batch
// from an atomic pointer.
//
// The TTL of a forwarded packet is decremented exactly once per router hop,
// by the kernel's forwarding into wf0 (outbound) and out of wf0 (inbound); the
// dataplane therefore never sees TTL 0 from the kernel, and answers one that
// reaches it anyway with ICMP time exceeded (RFC 1812 §5.3.1) rather than
// forwarding it.
package dataplane
