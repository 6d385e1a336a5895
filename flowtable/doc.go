// Package flowtable is the dataplane's per-worker IPv4 5-tuple flow table,
// with endpoint-independent userspace-NAT port pools, TCP state tracking and
// idle timeouts.
//
// # Ownership and concurrency
//
// A [Table] is owned by exactly one dataplane worker goroutine and is never
// shared: it is NOT safe for concurrent use, and it takes no locks. Each
// worker has its own Table, configured with its worker number, and allocates
// NAT ports only from its own partition (ports p with p % Workers == Worker),
// so replies (dispatched by NATPort % Workers) reach the same worker.
//
// Time is passed in as int64 monotonic nanoseconds (now) and never read
// inside. The table keeps the largest now it has seen; a smaller now is
// clamped to it, so LastSeen never goes backwards and the timeout lists stay
// sorted.
//
// # Memory and pointer stability
//
// Entries live in a chunked arena (1024 entries per chunk) allocated lazily,
// so a large Capacity costs memory only as flows arrive. A *Entry stays valid
// (points to the same flow) until that flow is removed by [Table.Remove],
// [Table.Expire] or eviction; afterwards the slot is reused by a later flow.
// Memory is never returned to the Go heap while the Table lives. A flow
// costs 104 bytes of entry, 16 bytes of NAT mapping (when it does not share
// one) and three 8-byte index slots at a load of 3/8 to 3/4: about 150 to
// 185 bytes (183 measured at 100 000 flows by BenchmarkMemoryPerFlow).
//
// The two lookups (LAN key → entry, reply key → entry) are open-addressing
// hash indexes of 8-byte slots (32-bit seeded hash tag + arena index) with
// linear probing and backward-shift deletion. Compared with Go maps they
// keep each key once (in the entry), use under half the memory, and never
// leave tombstones, so steady-state create/remove cycles allocate nothing.
// The hash is seeded per Table with random keys, so remote peers cannot
// choose colliding tuples.
//
// Lookup, LookupReply, Touch, Remove and Expire never allocate; Create does
// not allocate once the arena chunks, indexes and port pools it needs exist.
// With a per-host limit, New also allocates the per-host counts (8 bytes
// times 4/3 to 8/3 of Capacity).
//
// # NAT
//
// Mapping is endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1): every
// flow from one LAN (Src, SrcPort, Proto) over one uplink shares one NAT port.
// The mapping is reference-counted and released, with its port, when its
// last flow ends. Filtering is address-and-port-dependent: a reply finds its
// flow only through a [ReplyKey] that names the exact remote address and
// port. The source port is preserved (RFC 4787 REQ-3) when it lies in
// Config.Ports, in this worker's partition, and is free for that (uplink,
// proto); otherwise a port is taken from the per-(uplink, proto) bitmap pool
// of this worker's partition from a random position (RFC 6056), so
// external ports do not tell an off-path attacker the next one. ICMP echo identifiers
// are NATed like ports, from their own pool per uplink. A full pool makes
// Create fail with [ErrPortsExhausted].
//
// # Timeouts
//
// Every flow is in exactly one timeout class, and each class is an LRU list
// ordered by LastSeen (Touch moves a flow to the head of its class's list).
// [Table.Expire] pops list tails while LastSeen+timeout <= now, so expiry is
// exact and costs O(expired), never O(table). Classes and default idle
// timeouts ([DefaultTimeouts]):
//
//   - TCP closed (after a RST): 4 min (RFC 7857 §2.2; Linux uses 10 s)
//   - TCP transitory (new, SYN sent/received, FIN seen): 4 min (RFC 5382 REQ-5)
//   - ICMP echo: 60 s (RFC 5508 REQ-1)
//   - UDP: 5 min (RFC 4787 REQ-5: at least 2 min, 5 min recommended)
//   - TCP established: 2 h 4 min (RFC 5382 REQ-5)
//
// # Per-host limit
//
// With Config.MaxFlowsPerHost > 0 the table counts the flows of each LAN
// host (Key.Src), and Create fails with [ErrHostLimit] (counted in
// Stats.HostLimited) for a host that has that many already — before it
// takes a NAT port or evicts anything, so one host cannot push other hosts'
// flows out of a full table. Every way a flow ends (Remove, Expire,
// eviction) gives its host room again; Repin does not change the count
// (the host is the same). The counts are an open-addressing table of
// 8-byte slots (address, count) allocated once by New, sized from Capacity
// (at most 3/4 full even with one host per flow) and never grown, with
// backward-shift deletion; counting never allocates. [Table.HostLen] reads a
// host's count. The limit is per Table: a dataplane with W workers gives
// each table its share.
//
// # Eviction
//
// The table never holds more than Config.Capacity flows. When it is full,
// Create evicts exactly one flow, the least recently seen one of the first
// non-empty class in this order: TCP closed, TCP transitory, ICMP, UDP, TCP
// established. Flows that are closing or half-open go first, then the cheap
// to re-create ones, and established TCP connections last, because losing
// one breaks a user's connection. Evictions are counted in Stats.Evicted.
package flowtable
