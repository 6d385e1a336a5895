// Package health decides whether an uplink works by sending probes (ICMP
// echo, DNS queries, HTTP(S) GETs) through that uplink, and turns the
// rounds of probes into a state — up, degraded or down — with hysteresis.
//
// A Prober probes one uplink. Every probe socket is bound to the uplink's
// device (SO_BINDTODEVICE) and to its address as source, so the router's
// rule "from <uplink addr> lookup <uplink table>" sends it out of that
// uplink and nowhere else, and only answers arriving on that device, to that
// address, are counted: a reply that comes back through another uplink, or
// from the router itself, never makes an uplink look healthy. Targets that
// are one of the router's own addresses are refused. ICMP echo identifiers
// are below 1024 (MaxEchoID); the dataplane's NAT uses identifiers from 1024
// up, so the two never take each other's replies.
//
// Machine is the state machine alone, fed with Results; it has no sockets,
// no clock and no goroutines, and is what the Prober runs.
//
// Concurrency: a Machine is not safe for concurrent use. A Prober is: State,
// Stats and Reset may be called from any goroutine while Run runs. Run owns
// every goroutine the Prober starts — one per probe in flight and one reader
// per ICMP socket — and waits for all of them before it returns; at most one
// Run may run at a time. Run calls its bind and out functions from its own
// goroutine, one call at a time; they must not block for long (bind is
// called once per round) and out must not call Run.
package health
