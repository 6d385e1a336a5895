package dataplane

import (
	"fmt"

	"github.com/wanflow/wanflow/dataplane/packet"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/policy"
)

// Action is what becomes of the flows pinned to an uplink that failed.
type Action uint8

const (
	// ActionReset ends the flow now. A TCP connection gets an RST towards
	// the LAN host (from the remote's address, with the sequence number the
	// host expects), so the application reconnects in milliseconds — through
	// a live uplink — instead of retransmitting into the void for minutes.
	ActionReset Action = iota
	// ActionMigrate re-pins the flow to the uplink the policy now chooses,
	// with a new NAT mapping. UDP and QUIC applications mostly survive
	// that; a TCP connection does not (the server sees a new address).
	ActionMigrate
	// ActionKeep leaves the flow where it is: it resumes if the uplink
	// comes back before the flow times out.
	ActionKeep
)

var actionNames = [...]string{"reset", "migrate", "keep"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", a)
}

// ParseAction parses "reset", "migrate" or "keep".
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if s == n {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("unknown failure action %q: want reset, migrate or keep", s)
}

// SweepResult counts what FailUplink did.
type SweepResult struct {
	Reset, Migrated, Kept, Ended int
}

// FailUplink applies failure actions to the flows pinned to uplink idx:
// tcp to TCP flows, other to UDP and ICMP flows. With staleOnly it touches
// only flows NATed to an address the uplink no longer has (its address
// changed: those mappings are dead whatever the uplink's health). Call it
// after Update has published the uplink's new state, so migrated flows are
// placed by the new policy. Each worker sweeps its own shard between
// batches; established flows on other uplinks are not touched.
func (e *Engine) FailUplink(idx int, staleOnly bool, tcp, other Action) SweepResult {
	var total SweepResult
	for _, w := range e.workers {
		w.do(func() {
			r := w.sweep(idx, staleOnly, tcp, other)
			total.Reset += r.Reset
			total.Migrated += r.Migrated
			total.Kept += r.Kept
			total.Ended += r.Ended
		})
	}
	return total
}

func (w *worker) sweep(idx int, staleOnly bool, tcp, other Action) SweepResult {
	var r SweepResult
	s := w.e.snap.Load()
	if idx < 0 || idx >= len(s.uplinks) {
		return r
	}
	up := &s.uplinks[idx]
	w.ft.Range(func(ent *flowtable.Entry) bool {
		if int(ent.Uplink) != idx {
			return true
		}
		if staleOnly && up.ok && up.port != nil && ent.NATAddr == up.addr4 {
			return true
		}
		act := other
		if ent.Key.Proto == flowtable.ProtoTCP {
			act = tcp
		}
		switch act {
		case ActionKeep:
			r.Kept++
		case ActionMigrate:
			if w.migrate(s, ent) {
				r.Migrated++
			} else {
				r.Kept++
			}
		default:
			if ent.Key.Proto == flowtable.ProtoTCP && w.resetFlow(ent) {
				r.Reset++
			}
			w.ft.Remove(ent)
			r.Ended++
		}
		return true
	})
	w.flush(s)
	return r
}

// migrate re-pins ent to the uplink the policy chooses now; when that
// uplink has no free NAT port, to the policy's next choice, as a new flow
// would be (the flow is then marked DecisionPortsFallback). It reports
// false when no other uplink can take it.
func (w *worker) migrate(s *snapshot, ent *flowtable.Entry) bool {
	if s.policy == nil {
		return false
	}
	k := ent.Key
	f := policy.Flow{Proto: k.Proto, Src: k.Src, Dst: k.Dst, SrcPort: k.SrcPort, DstPort: k.DstPort}
	d := s.policy.Choose(f)
	excl := uint64(1) << (ent.Uplink & 63) // never "migrate" in place
	fallback := false
	for range 64 {
		if !claimChoice(s, d, &excl) {
			return false
		}
		if s.uplinks[d.Uplink].port != nil {
			switch err := w.ft.Repin(ent, uint8(d.Uplink), s.uplinks[d.Uplink].addr4); err {
			case nil:
				ent.Decision = encodeDecision(d)
				if fallback {
					ent.Decision |= decisionPortsFallback
					w.count.inc(OutPortsExhaustedFallback)
				}
				w.count.inc(OutRepinned)
				return true
			case flowtable.ErrPortsExhausted:
				w.e.exhausted[d.Uplink].Add(1)
				fallback = true
			default:
				return false
			}
		}
		var ok bool
		if d, ok = w.nextChoice(s, &f, excl); !ok {
			return false
		}
	}
	return false
}

// resetFlow sends the LAN host of TCP flow ent an RST from the remote end
// with the sequence number the host expects next. It reports false when
// no segment ever came in (the host is still in SYN-SENT: its SYN
// retransmission finds a live uplink by itself).
func (w *worker) resetFlow(ent *flowtable.Entry) bool {
	if ent.RemoteSeq == 0 && ent.PacketsIn == 0 {
		return false
	}
	out := w.e.bufs.Get()
	if out == nil {
		w.count.inc(OutDropNoBuffer)
		return false
	}
	clear(out[headroom-packetVirtioLen : headroom])
	k := ent.Key
	n := packet.BuildTCPResetSeq(out[headroom:], k.Dst, k.Src, k.DstPort, k.SrcPort, ent.RemoteSeq, 0, false)
	if n == 0 {
		w.e.bufs.Put(out)
		return false
	}
	w.txTUN = append(w.txTUN, out[:headroom+n])
	w.count.inc(OutResetFailed)
	return true
}

// Rebalance applies actions to every flow the policy would now place on
// another uplink than its own — the preempt of a failback: a preferred
// uplink came back, and flows that had moved away from it are moved back
// (tcp to TCP flows, other to the rest). Flows whose choice is unchanged
// are not touched, nor are flows the NAT-port fallback placed
// (DecisionPortsFallback): they left their first choice for lack of ports,
// not because it failed, and moving them back would only find it short of
// ports again (or, with ActionReset, break their connections for nothing).
func (e *Engine) Rebalance(tcp, other Action) SweepResult {
	var total SweepResult
	for _, w := range e.workers {
		w.do(func() {
			r := w.rebalance(tcp, other)
			total.Reset += r.Reset
			total.Migrated += r.Migrated
			total.Kept += r.Kept
			total.Ended += r.Ended
		})
	}
	return total
}

func (w *worker) rebalance(tcp, other Action) SweepResult {
	var r SweepResult
	s := w.e.snap.Load()
	if s.policy == nil {
		return r
	}
	w.ft.Range(func(ent *flowtable.Entry) bool {
		if DecisionPortsFallback(ent.Decision) {
			return true
		}
		k := ent.Key
		d := s.policy.Choose(policy.Flow{Proto: k.Proto, Src: k.Src, Dst: k.Dst, SrcPort: k.SrcPort, DstPort: k.DstPort})
		if d.Uplink < 0 || d.Uplink == int(ent.Uplink) {
			return true
		}
		act := other
		if k.Proto == flowtable.ProtoTCP {
			act = tcp
		}
		switch act {
		case ActionKeep:
			r.Kept++
		case ActionMigrate:
			if w.migrate(s, ent) {
				r.Migrated++
			}
		default:
			if k.Proto == flowtable.ProtoTCP && w.resetFlow(ent) {
				r.Reset++
			}
			w.ft.Remove(ent)
			r.Ended++
		}
		return true
	})
	w.flush(s)
	return r
}
