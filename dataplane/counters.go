package dataplane

import "sync/atomic"

// Counter identifies one dataplane counter. Names follow
// <package>_<direction>_<what>.
type Counter int

// The dataplane's counters. "out" is LAN → internet, "in" internet → LAN.
//
// Hardening counters (all "out", counted by the worker before any flow
// lookup, so no ICMP error or flow is ever made for such a packet):
//   - OutDropBadSource: a source that is never a host's (0.0.0.0/8,
//     127.0.0.0/8, 224.0.0.0/4 multicast, 240.0.0.0/4 including
//     255.255.255.255; RFC 1812 §5.3.7, RFC 6890).
//   - OutDropBadDestination: a destination of those ranges (multicast,
//     broadcast, 0.0.0.0/8, loopback, class E), which no uplink forwards.
//   - OutDropSpoofed: a source outside Config.LANPrefixes (when set), or
//     the router's own LAN address (Config.RouterAddr) (RFC 2827 ingress
//     filtering).
//   - OutDropHostLimit: a new flow of a LAN host at its flow limit
//     (flowtable.ErrHostLimit); the host gets ICMP administratively
//     prohibited.
//   - OutPortsExhaustedFallback: a new flow whose chosen uplink had no free
//     NAT port in this worker's partition, placed on the policy's next
//     choice instead (OutDropPortsExhausted when no uplink had one).
const (
	OutPackets Counter = iota
	OutBytes
	OutFlowsCreated
	OutDropInvalid
	OutDropUnsupported
	OutDropNoUplink
	OutDropPortsExhausted
	OutDropTableFull
	OutDropBadSource
	OutDropBadDestination
	OutDropSpoofed
	OutDropHostLimit
	OutPortsExhaustedFallback
	OutDropQueueFull
	OutDropNoBuffer
	OutDropSendError
	OutDropNoFlowICMPError
	OutICMPFragNeeded
	OutICMPTimeExceeded
	OutICMPUnreachable
	OutFragmented
	OutReassembled
	OutDropFragOverlap // the four fragment drops stay together, in this order
	OutDropFragTimeout
	OutDropFragMalformed
	OutDropFragOther
	OutMSSClamped
	OutResetStale
	OutResetNoFlow
	OutResetFailed
	OutRepinned
	OutReadError
	OutGSOFrames
	OutGSOSplit
	InGSOFrames
	InPackets
	InBytes
	InDropInvalid
	InDropNoFlow
	InDropQueueFull
	InDropNoBuffer
	InDropWriteError
	InDropGSO
	InGSOSplit
	InReassembled
	InDropFragOverlap // the four fragment drops stay together, in this order
	InDropFragTimeout
	InDropFragMalformed
	InDropFragOther
	InICMPErrorTranslated
	InMSSClamped
	numCounters
)

// NumCounters is the number of Counter values.
const NumCounters = int(numCounters)

var counterNames = [numCounters]string{
	OutPackets:                "dataplane_out_packets",
	OutBytes:                  "dataplane_out_bytes",
	OutFlowsCreated:           "dataplane_out_flows_created",
	OutDropInvalid:            "dataplane_out_drop_invalid",
	OutDropUnsupported:        "dataplane_out_drop_unsupported_protocol",
	OutDropNoUplink:           "dataplane_out_drop_no_uplink",
	OutDropPortsExhausted:     "dataplane_out_drop_ports_exhausted",
	OutDropTableFull:          "dataplane_out_drop_table_full",
	OutDropBadSource:          "dataplane_out_drop_bad_source",
	OutDropBadDestination:     "dataplane_out_drop_bad_destination",
	OutDropSpoofed:            "dataplane_out_drop_spoofed_source",
	OutDropHostLimit:          "dataplane_out_drop_host_limit",
	OutPortsExhaustedFallback: "dataplane_out_ports_exhausted_fallback",
	OutDropQueueFull:          "dataplane_out_drop_queue_full",
	OutDropNoBuffer:           "dataplane_out_drop_no_buffer",
	OutDropSendError:          "dataplane_out_drop_send_error",
	OutDropNoFlowICMPError:    "dataplane_out_drop_icmp_error_no_flow",
	OutICMPFragNeeded:         "dataplane_out_icmp_frag_needed",
	OutICMPTimeExceeded:       "dataplane_out_icmp_time_exceeded",
	OutICMPUnreachable:        "dataplane_out_icmp_unreachable",
	OutFragmented:             "dataplane_out_fragmented",
	OutReassembled:            "dataplane_out_reassembled",
	OutDropFragOverlap:        "dataplane_out_drop_fragments_overlap",
	OutDropFragTimeout:        "dataplane_out_drop_fragments_timeout",
	OutDropFragMalformed:      "dataplane_out_drop_fragments_malformed",
	OutDropFragOther:          "dataplane_out_drop_fragments_other",
	OutMSSClamped:             "dataplane_out_mss_clamped",
	OutResetStale:             "dataplane_out_reset_stale_flow",
	OutResetNoFlow:            "dataplane_out_reset_no_flow",
	OutResetFailed:            "dataplane_out_reset_uplink_failed",
	OutRepinned:               "dataplane_out_repinned",
	OutReadError:              "dataplane_out_read_errors",
	OutGSOFrames:              "dataplane_out_gso_frames",
	OutGSOSplit:               "dataplane_out_gso_split",
	InGSOFrames:               "dataplane_in_gso_frames",
	InPackets:                 "dataplane_in_packets",
	InBytes:                   "dataplane_in_bytes",
	InDropInvalid:             "dataplane_in_drop_invalid",
	InDropNoFlow:              "dataplane_in_drop_no_flow",
	InDropQueueFull:           "dataplane_in_drop_queue_full",
	InDropNoBuffer:            "dataplane_in_drop_no_buffer",
	InDropWriteError:          "dataplane_in_drop_write_error",
	InDropGSO:                 "dataplane_in_drop_bad_gso",
	InGSOSplit:                "dataplane_in_gso_split",
	InReassembled:             "dataplane_in_reassembled",
	InDropFragOverlap:         "dataplane_in_drop_fragments_overlap",
	InDropFragTimeout:         "dataplane_in_drop_fragments_timeout",
	InDropFragMalformed:       "dataplane_in_drop_fragments_malformed",
	InDropFragOther:           "dataplane_in_drop_fragments_other",
	InICMPErrorTranslated:     "dataplane_in_icmp_error_translated",
	InMSSClamped:              "dataplane_in_mss_clamped",
}

// String returns the counter's metric-style name.
func (c Counter) String() string {
	if c < 0 || c >= numCounters {
		return "dataplane_unknown"
	}
	return counterNames[c]
}

// counters is one goroutine's set of counters. Only its owner writes; anyone
// may read. The padding keeps two goroutines' sets off one cache line.
type counters struct {
	_ [64]byte
	v [numCounters]atomic.Uint64
	_ [64]byte
}

func (c *counters) inc(k Counter)           { c.v[k].Add(1) }
func (c *counters) add(k Counter, n uint64) { c.v[k].Add(n) }
func (c *counters) get(k Counter) uint64    { return c.v[k].Load() }

// Stats is a point-in-time copy of the dataplane's counters.
type Stats struct {
	Counters  [numCounters]uint64
	Flows     int // flows in all shards
	FlowStats []FlowShardStats
	// Buffers is the number of packet buffers allocated (in use or free
	// in the pool), each about 64 KiB.
	Buffers int64
}

// Get returns one counter's value.
func (s Stats) Get(c Counter) uint64 { return s.Counters[c] }

// Map returns every counter by name, for metrics and logs.
func (s *Stats) Map() map[string]uint64 {
	m := make(map[string]uint64, numCounters)
	for i := range s.Counters {
		m[Counter(i).String()] = s.Counters[i]
	}
	return m
}

// uplinkCounters is one worker's traffic through one uplink. Only the
// worker writes; anyone may read.
type uplinkCounters struct {
	v [4]atomic.Uint64 // packets out, bytes out, packets in, bytes in
}

const (
	trafficOut = 0
	trafficIn  = 2
)

func (c *uplinkCounters) add(bytes int, dir int) {
	c.v[dir].Add(1)
	c.v[dir+1].Add(uint64(bytes))
}

// Traffic counts the packets and bytes (IP packets, a super-packet as
// one) that went through one uplink: out is LAN → internet, sent by the
// uplink's socket; in is internet → LAN, handed to the TUN device.
type Traffic struct {
	PacketsOut, BytesOut, PacketsIn, BytesIn uint64
}
