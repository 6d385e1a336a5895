package policy

import (
	"fmt"
	"strings"
)

// Verdict says what happened to one candidate uplink in an Explanation.
type Verdict uint8

const (
	// VerdictChosen: the uplink carries the flow.
	VerdictChosen Verdict = iota
	// VerdictLowerScore: eligible in the chosen tier, but its score was
	// lower than the winner's.
	VerdictLowerScore
	// VerdictHigherTier: eligible, but a lower tier had an eligible uplink.
	VerdictHigherTier
	// VerdictNotAllowed: the matching rule does not allow the uplink.
	VerdictNotAllowed
	// VerdictUnavailable: the uplink is not available.
	VerdictUnavailable
	// VerdictZeroWeight: the uplink has weight 0.
	VerdictZeroWeight
)

var verdictNames = [...]string{
	VerdictChosen:      "chosen",
	VerdictLowerScore:  "lower score",
	VerdictHigherTier:  "higher tier",
	VerdictNotAllowed:  "not allowed by rule",
	VerdictUnavailable: "unavailable",
	VerdictZeroWeight:  "weight 0",
}

// String returns a short phrase for v, e.g. "lower score".
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Candidate is one uplink's part in an Explanation.
type Candidate struct {
	// Uplink is the uplink's index (id) and Name its name.
	Uplink int
	Name   string
	// Tier, Weight and Available are the uplink's, as the policy saw them.
	Tier      int
	Weight    uint32
	Available bool
	// Allowed reports whether the matching rule allows the uplink (true
	// when no rule matched).
	Allowed bool
	// Hash is Hash64(key, NameHash(Name)), the uplink's hash for this flow.
	Hash uint64
	// Score is Score(Hash, Weight); it is computed for every uplink, so an
	// explanation also shows who would win if the winner went away.
	Score float64
	// Verdict says why the uplink won or lost.
	Verdict Verdict
}

// Explanation is the full reasoning behind one Decision, for `wanflow
// explain`. Candidates lists every uplink in index order.
type Explanation struct {
	// Flow is the flow explained and Affinity the policy's affinity.
	Flow     Flow
	Affinity Affinity
	// Key is KeyHash(Affinity, Flow).
	Key uint64
	// RuleName is the name of the matching rule, "" when Decision.Rule is -1.
	RuleName string
	// Decision is what Choose returns for Flow.
	Decision Decision
	// Candidates has one entry per uplink, in index order.
	Candidates []Candidate
}

// Explain returns the Decision Choose makes for f together with every
// candidate's tier, weight, availability, hash, score and verdict. It
// allocates and is meant for diagnostics, not the packet path.
func (p *Policy) Explain(f Flow) Explanation {
	d := p.Choose(f)
	_, allowed := p.match(&f)
	key := KeyHash(p.affinity, &f)
	e := Explanation{Flow: f, Affinity: p.affinity, Key: key, Decision: d}
	if d.Rule >= 0 {
		e.RuleName = p.rules[d.Rule].Name
	}
	e.Candidates = make([]Candidate, len(p.uplinks))
	for i, u := range p.uplinks {
		h := Hash64(key, p.nameHash[i])
		c := Candidate{
			Uplink: i, Name: u.Name, Tier: u.Tier, Weight: u.Weight, Available: u.Available,
			Allowed: allowed&(1<<i) != 0, Hash: h, Score: Score(h, u.Weight),
		}
		switch {
		case i == d.Uplink:
			c.Verdict = VerdictChosen
		case !c.Allowed:
			c.Verdict = VerdictNotAllowed
		case !u.Available:
			c.Verdict = VerdictUnavailable
		case u.Weight == 0:
			c.Verdict = VerdictZeroWeight
		case u.Tier != d.Tier:
			c.Verdict = VerdictHigherTier
		default:
			c.Verdict = VerdictLowerScore
		}
		e.Candidates[i] = c
	}
	return e
}

// Why is one sentence saying why the winner won, or why there is none.
func (e *Explanation) Why() string {
	var b strings.Builder
	if e.Decision.Rule >= 0 {
		fmt.Fprintf(&b, "rule %d (%s) matched; ", e.Decision.Rule, e.RuleName)
	} else {
		b.WriteString("no rule matched; ")
	}
	if e.Decision.Uplink < 0 {
		b.WriteString("no allowed uplink is available with a positive weight")
		return b.String()
	}
	w := e.Candidates[e.Decision.Uplink]
	lowerDown := false
	for _, c := range e.Candidates {
		if c.Allowed && c.Tier < w.Tier {
			lowerDown = true
		}
	}
	if lowerDown {
		fmt.Fprintf(&b, "every lower tier is unavailable; ")
	}
	var rivals []string
	for _, c := range e.Candidates {
		if c.Verdict == VerdictLowerScore {
			rivals = append(rivals, fmt.Sprintf("%s %.4g", c.Name, c.Score))
		}
	}
	if len(rivals) == 0 {
		fmt.Fprintf(&b, "%s is the only eligible uplink in tier %d", w.Name, w.Tier)
	} else {
		fmt.Fprintf(&b, "%s has the highest %s score in tier %d: %.4g beats %s",
			w.Name, e.Affinity, w.Tier, w.Score, strings.Join(rivals, ", "))
	}
	return b.String()
}

// String renders e as a small table, one candidate per line, followed by
// Why.
func (e *Explanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flow %s (affinity %s, key %016x)\n", e.Flow, e.Affinity, e.Key)
	fmt.Fprintf(&b, "%-3s %-15s %4s %6s %-5s %-7s %16s %10s  %s\n",
		"id", "uplink", "tier", "weight", "up", "allowed", "hash", "score", "verdict")
	for _, c := range e.Candidates {
		fmt.Fprintf(&b, "%-3d %-15s %4d %6d %-5t %-7t %016x %10.4g  %s\n",
			c.Uplink, c.Name, c.Tier, c.Weight, c.Available, c.Allowed, c.Hash, c.Score, c.Verdict)
	}
	fmt.Fprintf(&b, "decision: %s\n", e.Why())
	return b.String()
}
