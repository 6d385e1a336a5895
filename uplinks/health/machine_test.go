package health

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// rs is one round of a Machine test: ok of total targets answered, with
// the given median RTT.
type rs struct {
	ok, total int
	rtt       time.Duration
}

var (
	okRound   = rs{2, 2, 10 * time.Millisecond}
	failRound = rs{0, 2, 0}
	halfRound = rs{1, 2, 10 * time.Millisecond}
	slowRound = rs{2, 2, 150 * time.Millisecond}
)

func repeat(r rs, n int) []rs {
	out := make([]rs, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func cat(parts ...[]rs) []rs {
	var out []rs
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// wantTr is a transition expected after round At (1-based).
type wantTr struct {
	At       int
	From, To State
	Cause    string        // substring of the cause
	Since    time.Duration // 0: not checked
}

// Round k (1-based) starts at t0 + k*interval and ends 100ms later.
const (
	testInterval = 500 * time.Millisecond
	testRoundLen = 100 * time.Millisecond
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func result(k int, r rs) Result {
	start := t0.Add(time.Duration(k) * testInterval)
	per := make([]TargetResult, r.total)
	for i := range per {
		tg := Target{Kind: KindICMP, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i)}), 0)}
		if i < r.ok {
			per[i] = TargetResult{Target: tg, OK: true, RTT: r.rtt}
		} else {
			per[i] = TargetResult{Target: tg, Err: "timeout"}
		}
	}
	return Result{Time: start, Done: start.Add(testRoundLen), OK: r.ok, Total: r.total, RTT: r.rtt, PerTarget: per}
}

func TestMachine(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		rounds []rs
		resets map[int]State // Reset(state) before round k
		want   []wantTr
		final  State
	}{
		{
			name:   "initial down, up after 5",
			rounds: repeat(okRound, 7),
			want: []wantTr{{At: 5, From: StateDown, To: StateUp, Cause: "5 of 5 rounds ok (2 of 2 answered, rtt 10ms)",
				Since: 4*testInterval + testRoundLen}},
			final: StateUp,
		},
		{
			name:   "up after counts consecutive rounds only",
			rounds: cat(repeat(okRound, 4), repeat(failRound, 1), repeat(okRound, 5)),
			want:   []wantTr{{At: 10, From: StateDown, To: StateUp, Since: 4*testInterval + testRoundLen}},
			final:  StateUp,
		},
		{
			name:   "down after 3, a good round in between restarts the count",
			cfg:    Config{Initial: StateUp},
			rounds: cat(repeat(failRound, 2), repeat(okRound, 1), repeat(failRound, 3)),
			want: []wantTr{{At: 6, From: StateUp, To: StateDown,
				Cause: "3 of 3 rounds failed (0 of 2 answered, need 1): icmp:192.0.2.1 timeout, icmp:192.0.2.2 timeout",
				Since: 2*testInterval + testRoundLen}},
			final: StateDown,
		},
		{
			name:   "down then up with custom counts",
			cfg:    Config{Initial: StateUp, DownAfter: 2, UpAfter: 2},
			rounds: cat(repeat(failRound, 2), repeat(okRound, 2)),
			want: []wantTr{
				{At: 2, From: StateUp, To: StateDown, Cause: "2 of 2 rounds failed", Since: testInterval + testRoundLen},
				{At: 4, From: StateDown, To: StateUp, Cause: "2 of 2 rounds ok", Since: testInterval + testRoundLen},
			},
			final: StateUp,
		},
		{
			name:   "N of M: 1 of 2 is a failure with min_ok 2",
			cfg:    Config{Initial: StateUp, MinOK: 2},
			rounds: repeat(halfRound, 3),
			want:   []wantTr{{At: 3, From: StateUp, To: StateDown, Cause: "(1 of 2 answered, need 2): icmp:192.0.2.2 timeout"}},
			final:  StateDown,
		},
		{
			name:   "N of M: 1 of 2 is a success with min_ok 1",
			cfg:    Config{Initial: StateUp, MinOK: 1},
			rounds: repeat(halfRound, 10),
			final:  StateUp,
		},
		{
			name:   "latency: degraded after 3 slow rounds, recovers after 5 fast ones",
			cfg:    Config{Initial: StateUp, LatencyMax: 100 * time.Millisecond},
			rounds: cat(repeat(slowRound, 2), repeat(okRound, 1), repeat(slowRound, 3), repeat(okRound, 4), repeat(slowRound, 1), repeat(okRound, 5)),
			want: []wantTr{
				{At: 6, From: StateUp, To: StateDegraded, Cause: "3 of 3 rounds degraded: rtt 150ms > 100ms", Since: 2*testInterval + testRoundLen},
				{At: 16, From: StateDegraded, To: StateUp, Cause: "5 of 5 rounds healthy: rtt 10ms ≤ 100ms", Since: 4*testInterval + testRoundLen},
			},
			final: StateUp,
		},
		{
			name:   "latency: a slow line comes up degraded",
			cfg:    Config{LatencyMax: 100 * time.Millisecond},
			rounds: repeat(slowRound, 5),
			want:   []wantTr{{At: 5, From: StateDown, To: StateDegraded, Cause: "5 of 5 rounds ok (2 of 2 answered, rtt 150ms), but rtt 150ms > 100ms"}},
			final:  StateDegraded,
		},
		{
			name: "loss: degraded over the window, healthy once the loss leaves it",
			cfg:  Config{Initial: StateUp, LossMax: 0.2, LossWindow: 10},
			// Rounds 1-3 lose 1 of 2 (50%). Good rounds then: loss 3/(6+2k),
			// above 20% up to k=4, so rounds 8-12 are the 5 healthy ones;
			// by round 12 the window (rounds 3-12) has lost 1 of 20.
			rounds: cat(repeat(halfRound, 3), repeat(okRound, 9)),
			want: []wantTr{
				{At: 3, From: StateUp, To: StateDegraded, Cause: "3 of 3 rounds degraded: loss 50% > 20% over 3 rounds"},
				{At: 12, From: StateDegraded, To: StateUp, Cause: "5 of 5 rounds healthy: loss 5% ≤ 20%", Since: 4*testInterval + testRoundLen},
			},
			final: StateUp,
		},
		{
			name: "loss: an outage is not counted once the uplink is back",
			cfg:  Config{Initial: StateUp, LossMax: 0.2, DegradedAfter: 3, DownAfter: 3},
			// Down wins over degraded on round 3; the window is emptied, so
			// the uplink comes back up, not degraded.
			rounds: cat(repeat(failRound, 5), repeat(okRound, 5)),
			want: []wantTr{
				{At: 3, From: StateUp, To: StateDown},
				{At: 10, From: StateDown, To: StateUp},
			},
			final: StateUp,
		},
		{
			name:   "degraded before down when degraded_after < down_after",
			cfg:    Config{Initial: StateUp, LossMax: 0.5, DegradedAfter: 2, DownAfter: 3},
			rounds: repeat(failRound, 3),
			want: []wantTr{
				{At: 2, From: StateUp, To: StateDegraded, Cause: "2 of 2 rounds degraded: round failed (0 of 2 answered)"},
				{At: 3, From: StateDegraded, To: StateDown, Cause: "3 of 3 rounds failed"},
			},
			final: StateDown,
		},
		{
			name:   "degraded off: failures never degrade",
			cfg:    Config{Initial: StateUp, DownAfter: 5},
			rounds: repeat(failRound, 4),
			final:  StateUp,
		},
		{
			name:   "degraded → down → up",
			cfg:    Config{Initial: StateDegraded, LatencyMax: time.Second},
			rounds: cat(repeat(failRound, 3), repeat(okRound, 5)),
			want: []wantTr{
				{At: 3, From: StateDegraded, To: StateDown},
				{At: 8, From: StateDown, To: StateUp},
			},
			final: StateUp,
		},
		{
			name:   "reset clears the counts",
			cfg:    Config{Initial: StateUp},
			rounds: repeat(failRound, 5),
			resets: map[int]State{3: StateUp},
			want:   []wantTr{{At: 5, From: StateUp, To: StateDown, Since: 2*testInterval + testRoundLen}},
			final:  StateDown,
		},
		{
			name:   "reset to down: up only after up_after good rounds",
			cfg:    Config{Initial: StateUp},
			rounds: repeat(okRound, 7),
			resets: map[int]State{3: StateDown},
			want:   []wantTr{{At: 7, From: StateDown, To: StateUp}},
			final:  StateUp,
		},
		{
			name:   "no targets probed counts as failed",
			cfg:    Config{Initial: StateUp, DownAfter: 1},
			rounds: []rs{{0, 0, 0}},
			want:   []wantTr{{At: 1, From: StateUp, To: StateDown, Cause: "no target answered"}},
			final:  StateDown,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMachine(tt.cfg)
			if got, want := m.State(), tt.cfg.Initial; got != want {
				t.Fatalf("initial State() = %v, want %v", got, want)
			}
			var got []wantTr
			var trs []Transition
			for k, r := range tt.rounds {
				if s, ok := tt.resets[k+1]; ok {
					m.Reset(s)
					if m.State() != s || m.Loss() != 0 {
						t.Fatalf("after Reset(%v): State %v, Loss %v", s, m.State(), m.Loss())
					}
				}
				tr, ok := m.Observe(result(k+1, r))
				if !ok {
					continue
				}
				if tr.To != m.State() {
					t.Errorf("round %d: transition to %v but State() = %v", k+1, tr.To, m.State())
				}
				got = append(got, wantTr{At: k + 1, From: tr.From, To: tr.To})
				trs = append(trs, tr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("transitions = %v, want %v\n%s", got, tt.want, render(trs))
			}
			for i, w := range tt.want {
				g, tr := got[i], trs[i]
				if g.At != w.At || g.From != w.From || g.To != w.To {
					t.Errorf("transition %d = round %d %v→%v, want round %d %v→%v", i, g.At, g.From, g.To, w.At, w.From, w.To)
				}
				if !strings.Contains(tr.Cause, w.Cause) {
					t.Errorf("transition %d cause = %q, want it to contain %q", i, tr.Cause, w.Cause)
				}
				if w.Since != 0 && tr.Since != w.Since {
					t.Errorf("transition %d Since = %v, want %v", i, tr.Since, w.Since)
				}
				if want := result(w.At, tt.rounds[w.At-1]).Done; !tr.At.Equal(want) {
					t.Errorf("transition %d At = %v, want %v", i, tr.At, want)
				}
			}
			if m.State() != tt.final {
				t.Errorf("final State() = %v, want %v", m.State(), tt.final)
			}
		})
	}
}

func render(trs []Transition) string {
	var sb strings.Builder
	for _, tr := range trs {
		fmt.Fprintf(&sb, "  %v\n", tr)
	}
	return sb.String()
}

func TestMachineLoss(t *testing.T) {
	m := NewMachine(Config{Initial: StateUp, LossWindow: 4})
	for k, r := range []rs{okRound, halfRound, failRound, okRound, okRound, okRound} {
		m.Observe(result(k+1, r))
	}
	// The window holds the last 4 rounds: fail, ok, ok, ok → 2 of 8 lost.
	if got, want := m.Loss(), 0.25; got != want {
		t.Errorf("Loss() = %v, want %v", got, want)
	}
	m.Reset(StateUp)
	if m.Loss() != 0 {
		t.Errorf("Loss() after Reset = %v, want 0", m.Loss())
	}
}

func TestMedian(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5 * ms}, 5 * ms},
		{[]time.Duration{9 * ms, 1 * ms, 5 * ms}, 5 * ms},
		{[]time.Duration{9 * ms, 1 * ms, 5 * ms, 3 * ms}, 4 * ms},
	} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
