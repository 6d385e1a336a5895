package health

import (
	"fmt"
	"strings"
	"time"
)

// Machine turns round Results into a State with hysteresis:
//
//   - down → up after UpAfter consecutive successful rounds (at least MinOK
//     targets answered); → degraded instead when the last
//     min(DegradedAfter, UpAfter) of them were all degraded.
//   - up or degraded → down after DownAfter consecutive failed rounds.
//   - up → degraded after DegradedAfter consecutive degraded rounds, and
//     degraded → up after RecoverAfter consecutive healthy ones. A round is
//     degraded when it failed, when its RTT exceeds LatencyMax, or when the
//     loss over the last LossWindow rounds exceeds LossMax; with both
//     thresholds off (0) an uplink is never degraded.
//
// The loss window is emptied when the uplink goes down and, while it is
// down, by every failed round, so an outage does not count as loss once the
// uplink is back.
//
// A Machine is not safe for concurrent use.
type Machine struct {
	cfg   Config
	state State

	failRun, okRun, badRun, goodRun         int
	failStart, okStart, badStart, goodStart time.Time

	// Loss window: a ring of (answered, probed) per round.
	win           []lossRound
	winNext, winN int
	winOK, winAll int
}

type lossRound struct{ ok, all int }

// NewMachine returns a Machine in cfg.Initial. Zero fields of cfg take
// their defaults; cfg.Targets is not used (Results carry their own counts).
func NewMachine(cfg Config) *Machine {
	cfg = cfg.machineDefaults()
	m := &Machine{cfg: cfg, state: cfg.Initial, win: make([]lossRound, cfg.LossWindow)}
	if m.state > StateUp {
		m.state = StateDown
	}
	return m
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Loss returns the share of probes lost over the loss window, 0 when it is
// empty.
func (m *Machine) Loss() float64 {
	if m.winAll == 0 {
		return 0
	}
	return 1 - float64(m.winOK)/float64(m.winAll)
}

// Reset puts the Machine in state s and forgets every count and the loss
// window, as after NewMachine. It reports no Transition: the caller that
// forces a state records why.
func (m *Machine) Reset(s State) {
	*m = Machine{cfg: m.cfg, state: s, win: m.win}
	clear(m.win)
}

func (m *Machine) degradedOn() bool { return m.cfg.LatencyMax > 0 || m.cfg.LossMax > 0 }

// succeeded reports whether r counts as a successful round.
func (m *Machine) succeeded(r Result) bool {
	need := min(m.cfg.MinOK, r.Total)
	return r.Total > 0 && r.OK >= need
}

func (m *Machine) pushLoss(r Result) {
	if m.winN == len(m.win) {
		old := m.win[m.winNext]
		m.winOK -= old.ok
		m.winAll -= old.all
	} else {
		m.winN++
	}
	m.win[m.winNext] = lossRound{ok: r.OK, all: r.Total}
	m.winNext = (m.winNext + 1) % len(m.win)
	m.winOK += r.OK
	m.winAll += r.Total
}

func (m *Machine) clearLoss() {
	clear(m.win)
	m.winNext, m.winN, m.winOK, m.winAll = 0, 0, 0, 0
}

// Observe feeds the next round's result, in the order the rounds started,
// and returns the Transition it caused, if any.
func (m *Machine) Observe(r Result) (Transition, bool) {
	ok := m.succeeded(r)
	if ok || m.state != StateDown {
		m.pushLoss(r)
	} else {
		m.clearLoss()
	}
	if ok {
		m.failRun = 0
		if m.okRun++; m.okRun == 1 {
			m.okStart = r.Time
		}
	} else {
		m.okRun = 0
		if m.failRun++; m.failRun == 1 {
			m.failStart = r.Time
		}
	}
	why := m.degradedWhy(r, ok)
	if why != "" {
		m.goodRun = 0
		if m.badRun++; m.badRun == 1 {
			m.badStart = r.Time
		}
	} else {
		m.badRun = 0
		if m.goodRun++; m.goodRun == 1 {
			m.goodStart = r.Time
		}
	}

	from := m.state
	var to State
	var start time.Time
	var cause string
	c := &m.cfg
	switch {
	case from != StateDown && m.failRun >= c.DownAfter:
		to, start = StateDown, m.failStart
		cause = fmt.Sprintf("%d of %d rounds failed (%d of %d answered, need %d): %s",
			m.failRun, m.failRun, r.OK, r.Total, min(c.MinOK, r.Total), failures(r))
	case from == StateDown && m.okRun >= c.UpAfter:
		to, start = StateUp, m.okStart
		if m.degradedOn() && m.badRun >= min(c.DegradedAfter, c.UpAfter) {
			to = StateDegraded
		}
		cause = fmt.Sprintf("%d of %d rounds ok (%d of %d answered, rtt %v)",
			m.okRun, m.okRun, r.OK, r.Total, r.RTT)
		if to == StateDegraded {
			cause += ", but " + why
		}
	case from == StateUp && m.badRun >= c.DegradedAfter:
		to, start = StateDegraded, m.badStart
		cause = fmt.Sprintf("%d of %d rounds degraded: %s", m.badRun, m.badRun, why)
	case from == StateDegraded && m.goodRun >= c.RecoverAfter:
		to, start = StateUp, m.goodStart
		cause = fmt.Sprintf("%d of %d rounds healthy: %s", m.goodRun, m.goodRun, m.healthyWhy(r))
	default:
		return Transition{}, false
	}
	// The streaks go on: each counts the consecutive rounds of its kind
	// that end with this one, whatever the state.
	m.state = to
	if to == StateDown {
		m.clearLoss()
	}
	at := r.done()
	return Transition{From: from, To: to, Cause: cause, At: at, Since: at.Sub(start)}, true
}

// degradedWhy returns why round r is degraded, or "" when it is healthy (or
// degradation is off).
func (m *Machine) degradedWhy(r Result, ok bool) string {
	if !m.degradedOn() {
		return ""
	}
	c := &m.cfg
	var why []string
	if !ok {
		why = append(why, fmt.Sprintf("round failed (%d of %d answered)", r.OK, r.Total))
	} else if c.LatencyMax > 0 && r.RTT > c.LatencyMax {
		why = append(why, fmt.Sprintf("rtt %v > %v", r.RTT, c.LatencyMax))
	}
	if l := m.Loss(); c.LossMax > 0 && l > c.LossMax {
		why = append(why, fmt.Sprintf("loss %s > %s over %d rounds", pct(l), pct(c.LossMax), m.winN))
	}
	return strings.Join(why, ", ")
}

// healthyWhy describes a healthy round for a recovery cause.
func (m *Machine) healthyWhy(r Result) string {
	var s []string
	if m.cfg.LatencyMax > 0 {
		s = append(s, fmt.Sprintf("rtt %v ≤ %v", r.RTT, m.cfg.LatencyMax))
	}
	if m.cfg.LossMax > 0 {
		s = append(s, fmt.Sprintf("loss %s ≤ %s", pct(m.Loss()), pct(m.cfg.LossMax)))
	}
	return strings.Join(s, ", ")
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

// failures lists the targets of r that did not answer.
func failures(r Result) string {
	var s []string
	for _, t := range r.PerTarget {
		if !t.OK {
			s = append(s, t.String())
		}
	}
	if len(s) == 0 {
		return "no target answered"
	}
	return strings.Join(s, ", ")
}
