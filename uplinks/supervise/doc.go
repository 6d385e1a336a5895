// Package supervise decides, for each uplink, whether it may carry new
// flows: it combines the kernel's view (uplinks.Manager: link, carrier,
// address) with the health prober's verdict (uplinks/health: probes sent
// through the uplink), runs the uplink's hooks (uplinks/hooks) and records
// every change with its cause and timing (uplinks/events).
//
// A carrier loss or a vanished device takes an uplink down at once; a
// returning carrier or device starts it probing from down, and it is up
// again only after up_after good rounds. A dead ISP behind a live link is
// found by the probes (down_after failed rounds). An address change is
// reported as such, so the caller can end the flows NATed to the old one.
//
// A Supervisor is safe for concurrent use. It calls its change function
// from one goroutine at a time, in order.
package supervise
