package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/wanflow/wanflow/dataplane/packet"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/policy"
)

// This file holds the packet path's defences: the address checks on LAN
// packets, the per-host flow limit's answer, and the fallback to another
// uplink when one runs out of NAT ports.

// prefix4 is an IPv4 prefix as two host-order words, tested with one AND.
type prefix4 struct{ addr, mask uint32 }

func compilePrefixes(ps []netip.Prefix) ([]prefix4, error) {
	out := make([]prefix4, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() || !p.Addr().Is4() {
			return nil, fmt.Errorf("dataplane: LAN prefix %v is not IPv4", p)
		}
		p = p.Masked()
		var mask uint32
		if p.Bits() > 0 {
			mask = ^uint32(0) << (32 - p.Bits())
		}
		out = append(out, prefix4{addr: be32(p.Addr().As4()), mask: mask})
	}
	return out, nil
}

func be32(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

// neverHost reports whether a is never a host's address, as a source or a
// destination: 0.0.0.0/8 ("this network", RFC 1122 §3.2.1.3),
// 127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast) and 240.0.0.0/4
// (reserved, with 255.255.255.255, limited broadcast). RFC 1812 §5.3.7:
// a router must not forward packets with such a source, nor (§4.2.3.1,
// §5.3.5) send them on.
func neverHost(a uint32) bool {
	return a>>24 == 0 || a>>24 == 127 || a >= 0xe0000000
}

// checkOut vets the addresses of a packet from the LAN. It returns the
// drop counter and false when the packet must be dropped. It does not
// allocate.
func (e *Engine) checkOut(p *packet.Parsed) (Counter, bool) {
	src := be32(p.Src)
	if neverHost(src) {
		return OutDropBadSource, false
	}
	if neverHost(be32(p.Dst)) {
		return OutDropBadDestination, false
	}
	if src == e.router {
		return OutDropSpoofed, false
	}
	if len(e.lan) == 0 {
		return 0, true
	}
	for _, pf := range e.lan {
		if src&pf.mask == pf.addr {
			return 0, true
		}
	}
	return OutDropSpoofed, false
}

// icmpAdminProhibited is ICMP destination unreachable code 13,
// "communication administratively prohibited" (RFC 1812 §5.2.7.1).
const icmpAdminProhibited = 13

// decisionPortsFallback flags, in flowtable.Entry.Decision's reason byte,
// a flow placed by the fallback: its first choice had no free NAT port.
const decisionPortsFallback = 0x80

// DecisionPortsFallback reports whether the flow whose
// flowtable.Entry.Decision is v did not get the uplink the policy chose
// for it because that uplink had no free NAT port (in the worker's port
// partition, for the flow's protocol): it went to the policy's next choice
// among the other uplinks, which DecodeDecision then describes (its tier
// may be a higher one). Explain describes the first choice, so for such a
// flow it names another uplink than the one the flow uses.
func DecisionPortsFallback(v uint32) bool { return v&decisionPortsFallback != 0 }

// fallbackPolicy is a worker's cached copy of a policy with some uplinks
// made unavailable.
type fallbackPolicy struct {
	base *policy.Policy
	excl uint64
	pol  *policy.Policy
}

// policyWithout returns s.policy with the uplinks in excl unavailable. A
// worker keeps the last few it built, so sustained port exhaustion does
// not allocate per packet; building one allocates (a rare path).
func (w *worker) policyWithout(s *snapshot, excl uint64) *policy.Policy {
	for i := range w.fallback {
		if f := &w.fallback[i]; f.base == s.policy && f.excl == excl {
			return f.pol
		}
	}
	ups := s.policy.Uplinks()
	avail := make([]bool, len(ups))
	for i, u := range ups {
		avail[i] = u.Available && (i >= 64 || excl&(1<<i) == 0)
	}
	pol, err := s.policy.WithAvailability(avail)
	if err != nil {
		return nil // cannot happen: avail has one entry per uplink
	}
	w.fallback[w.fallbackNext] = fallbackPolicy{base: s.policy, excl: excl, pol: pol}
	w.fallbackNext = (w.fallbackNext + 1) % len(w.fallback)
	return pol
}

// createFallback is called when creating the flow for key on uplink
// first.Uplink failed with ErrPortsExhausted: it asks the policy again
// with that uplink (and each further one that fails) unavailable, so the
// flow goes to the next uplink the policy would have chosen — same rules,
// next tier if the tier has no other uplink. It returns the flow and the
// decision that placed it, or ErrPortsExhausted when no uplink had a port.
func (w *worker) createFallback(s *snapshot, f *policy.Flow, key flowtable.Key, first policy.Decision, now int64) (*flowtable.Entry, policy.Decision, error) {
	w.e.exhausted[first.Uplink].Add(1)
	excl := uint64(1) << first.Uplink
	for range 64 {
		d, ok := w.nextChoice(s, f, excl)
		if !ok || !claimChoice(s, d, &excl) {
			break
		}
		if s.uplinks[d.Uplink].port == nil {
			continue
		}
		ent, err := w.ft.Create(key, uint8(d.Uplink), s.uplinks[d.Uplink].addr4, now)
		if err == flowtable.ErrPortsExhausted {
			w.e.exhausted[d.Uplink].Add(1)
			continue
		}
		return ent, d, err
	}
	return nil, first, flowtable.ErrPortsExhausted
}

// nextChoice is the policy's choice for f with the uplinks in excl made
// unavailable; ok is false when no policy can be built.
func (w *worker) nextChoice(s *snapshot, f *policy.Flow, excl uint64) (d policy.Decision, ok bool) {
	pol := w.policyWithout(s, excl)
	if pol == nil {
		return d, false
	}
	return pol.Choose(*f), true
}

// claimChoice reports whether d names an uplink of s not tried yet (not in
// *excl), and marks it tried.
func claimChoice(s *snapshot, d policy.Decision, excl *uint64) bool {
	if d.Uplink < 0 || d.Uplink >= len(s.uplinks) || d.Uplink >= 64 || *excl&(1<<d.Uplink) != 0 {
		return false
	}
	*excl |= 1 << d.Uplink
	return true
}

// routineReport logs, at most once a second per uplink, the uplinks on
// which new flows found no free NAT port — so the workers never log.
func (e *Engine) routineReport(ctx context.Context) {
	defer e.wg.Done()
	// Every second: NAT port exhaustion. Every TrimEvery/20: the buffer
	// pool's trimmer (see trimmer).
	const trimSamples = 20
	tr := newTrimmer(e.bufs, trimFloor, trimSamples)
	sample := time.NewTicker(e.cfg.TrimEvery / trimSamples)
	defer sample.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			e.reportExhausted()
			return
		case <-tick.C:
			e.reportExhausted()
		case <-sample.C:
			if n := tr.sample(); n > 0 {
				e.log.Debug("dataplane: packet buffers released after a burst", "released", n, "allocated", e.bufs.allocated())
				if n >= trimReturn {
					// An idle daemon allocates too little to start a
					// collection soon: free them and give the memory
					// back to the OS now.
					debug.FreeOSMemory()
				}
			}
		}
	}
}

// trimFloor is how many free packet buffers the trimmer always keeps (each
// reader also holds a batch of its own): light traffic allocates nothing.
const trimFloor = batchSize

// trimReturn is the fewest released buffers (4 MiB) worth a forced
// collection that returns their memory to the OS at once.
const trimReturn = 64

func (e *Engine) reportExhausted() {
	s := e.snap.Load()
	for i := range e.exhausted {
		n := e.exhausted[i].Swap(0)
		if n == 0 {
			continue
		}
		name := fmt.Sprintf("#%d", i)
		if s != nil && i < len(s.uplinks) && s.uplinks[i].ok {
			name = s.uplinks[i].Name
		}
		e.log.Warn("NAT ports exhausted on uplink "+name, "uplink", name, "index", i, "packets_without_port", n)
	}
}
