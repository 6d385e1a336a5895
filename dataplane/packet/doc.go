// Package packet decodes, translates (NAT), fragments, reassembles and
// segments IPv4 packets for the wanflow dataplane.
//
// Invariants:
//   - Every function is a pure function over caller-owned []byte: no I/O, no
//     privileges, no allocation, no fmt, no logging and no error values per
//     packet. Bad input becomes a verdict (Parsed.Kind == KindInvalid with a
//     DropReason, ok == false, a zero length) that the caller counts.
//   - Functions never retain the packet slices passed to them, except the
//     Reassembler, which copies fragment data into its own preallocated
//     buffers.
//   - Functions that take a *Parsed trust that it was filled by Parsed.Decode
//     from the same bytes (and kept current by the Rewrite functions); they
//     are no-ops for packets whose Kind they do not handle.
//   - Stateless functions are safe for concurrent use on distinct buffers. A
//     Reassembler is not safe for concurrent use: it is owned by one worker
//     goroutine.
//   - IPv4 only.
//
// Checksum offload (virtio-net CHECKSUM_PARTIAL): a packet whose
// VirtioNetHdr has NEEDS_CSUM or a GSO type carries only the folded
// pseudo-header sum, not a checksum, in its L4 checksum field, so the
// incremental updates of the Rewrite functions do not apply to it. Rather
// than partial-checksum variants of every rewrite, GSOSplit never trusts
// the transport checksum of such a packet: it recomputes the L4 checksum
// (and, for GSO segments, the IP header checksum) from scratch for every
// packet it writes. The simplest correct order is therefore:
//
//	Decode(super-packet) → flow lookup → RewriteSrc/RewriteDst/ClampMSS
//	→ GSOSplit → forward the segments
//
// which costs one decode and one flow lookup per super-packet (the rewrite
// garbles the partial sum, which GSOSplit discards). Splitting first and
// translating every segment is equally correct. A packet with NEEDS_CSUM or
// a GSO type must never be forwarded without going through GSOSplit.
package packet
