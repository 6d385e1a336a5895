package health

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSystem answers probes without sockets: behave decides each probe's
// fate, and the fake records what the Prober asked for.
type fakeSystem struct {
	mu      sync.Mutex
	behave  func(t Target, b Binding) (rtt time.Duration, ok bool) // !ok: no answer
	locals  map[netip.Addr]bool
	opened  []Binding
	closed  int
	sysDone bool

	inflight, maxInflight atomic.Int32
}

func (f *fakeSystem) open(b Binding) (session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = append(f.opened, b)
	return &fakeSession{f: f, b: b}, nil
}

func (f *fakeSystem) localAddrs() (map[netip.Addr]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.locals, nil
}

func (f *fakeSystem) close() {
	f.mu.Lock()
	f.sysDone = true
	f.mu.Unlock()
}

func (f *fakeSystem) setBehave(fn func(Target, Binding) (time.Duration, bool)) {
	f.mu.Lock()
	f.behave = fn
	f.mu.Unlock()
}

type fakeSession struct {
	f *fakeSystem
	b Binding
}

func (s *fakeSession) probe(ctx context.Context, t Target) TargetResult {
	n := s.f.inflight.Add(1)
	defer s.f.inflight.Add(-1)
	for {
		m := s.f.maxInflight.Load()
		if n <= m || s.f.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	s.f.mu.Lock()
	behave := s.f.behave
	s.f.mu.Unlock()
	rtt, ok := behave(t, s.b)
	if !ok {
		<-ctx.Done()
		return TargetResult{Err: "timeout"}
	}
	select {
	case <-time.After(rtt):
		return TargetResult{OK: true, RTT: rtt}
	case <-ctx.Done():
		return TargetResult{Err: "timeout"}
	}
}

func (s *fakeSession) close() {
	s.f.mu.Lock()
	s.f.closed++
	s.f.mu.Unlock()
}

var (
	tgt1 = Target{Kind: KindICMP, Addr: netip.MustParseAddrPort("192.0.2.1:0")}
	tgt2 = Target{Kind: KindDNS, Addr: netip.MustParseAddrPort("192.0.2.2:53")}
	bnd1 = Binding{Ifindex: 3, Interface: "up1", Addr: netip.MustParseAddr("100.64.1.2")}
)

func allOK(Target, Binding) (time.Duration, bool) { return time.Millisecond, true }

// fakeProber returns a Prober on a fakeSystem, and a channel of its
// transitions once started with run.
func fakeProber(t *testing.T, cfg Config) (*Prober, *fakeSystem) {
	t.Helper()
	p, err := NewProber("up1", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSystem{behave: allOK}
	p.newSystem = func(*Prober) (system, error) { return f, nil }
	return p, f
}

// run runs p with bind until the test ends and returns its transitions.
func run(t *testing.T, p *Prober, bind func() (Binding, bool)) <-chan Transition {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	trs := make(chan Transition, 100)
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx, bind, func(tr Transition) { trs <- tr }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return trs
}

func waitTr(t *testing.T, trs <-chan Transition, to State, within time.Duration) Transition {
	t.Helper()
	select {
	case tr := <-trs:
		if tr.To != to {
			t.Fatalf("transition %v, want to %v", tr, to)
		}
		return tr
	case <-time.After(within):
		t.Fatalf("no transition to %v within %v", to, within)
	}
	return Transition{}
}

func noTr(t *testing.T, trs <-chan Transition, during time.Duration) {
	t.Helper()
	select {
	case tr := <-trs:
		t.Fatalf("unexpected transition %v", tr)
	case <-time.After(during):
	}
}

func TestProberUpDown(t *testing.T) {
	p, f := fakeProber(t, Config{Targets: []Target{tgt1, tgt2}, Interval: 10 * time.Millisecond, Timeout: 30 * time.Millisecond})
	trs := run(t, p, func() (Binding, bool) { return bnd1, true })
	tr := waitTr(t, trs, StateUp, time.Second)
	if tr.Uplink != "up1" || tr.From != StateDown || !strings.HasPrefix(tr.Cause, "5 of 5 rounds ok (2 of 2 answered") {
		t.Errorf("up transition = %+v", tr)
	}
	f.setBehave(func(Target, Binding) (time.Duration, bool) { return 0, false })
	tr = waitTr(t, trs, StateDown, time.Second)
	if !strings.Contains(tr.Cause, "icmp:192.0.2.1 timeout, dns:192.0.2.2:53 timeout") {
		t.Errorf("down cause = %q", tr.Cause)
	}
	// Timeout 30ms, interval 10ms: the third failed round ends ≈ 50ms after
	// the first one started.
	if tr.Since < 40*time.Millisecond || tr.Since > 200*time.Millisecond {
		t.Errorf("down Since = %v, want ≈ 50ms", tr.Since)
	}
	st := p.Stats()
	if st.State != StateDown || st.RoundsOK < 5 || st.RoundsFailed < 3 || st.Transitions != 2 || st.Loss != 0 {
		t.Errorf("Stats = %+v", st)
	}
	if len(st.History) == 0 || len(st.History) > HistoryLen || st.Targets[0].Err != "timeout" {
		t.Errorf("Stats history %d rounds, targets %v", len(st.History), st.Targets)
	}
	for i := 1; i < len(st.History); i++ {
		if st.History[i].Time.Before(st.History[i-1].Time) {
			t.Errorf("history out of order at %d", i)
		}
	}
	if max := f.maxInflight.Load(); max > 2*4 { // 2 targets, ceil(30/10)+1 rounds
		t.Errorf("at most %d probes in flight, want ≤ 8", max)
	}
}

func TestProberSkipsWithoutBinding(t *testing.T) {
	p, f := fakeProber(t, Config{Targets: []Target{tgt1}, Interval: 10 * time.Millisecond, Timeout: 20 * time.Millisecond, UpAfter: 2})
	var bound atomic.Bool
	trs := run(t, p, func() (Binding, bool) { return bnd1, bound.Load() })
	noTr(t, trs, 100*time.Millisecond)
	st := p.Stats()
	if st.RoundsOK+st.RoundsFailed != 0 || st.RoundsSkipped < 5 {
		t.Errorf("unbound: Stats = %+v, want only skipped rounds", st)
	}
	bound.Store(true)
	waitTr(t, trs, StateUp, time.Second)
	f.mu.Lock()
	opened := append([]Binding(nil), f.opened...)
	f.mu.Unlock()
	if len(opened) != 1 || opened[0] != bnd1 {
		t.Errorf("sessions opened for %v, want one for %v", opened, bnd1)
	}
}

func TestProberBindingChange(t *testing.T) {
	p, f := fakeProber(t, Config{Targets: []Target{tgt1}, Interval: 10 * time.Millisecond, Timeout: 20 * time.Millisecond, UpAfter: 2})
	var mu sync.Mutex
	b := bnd1
	trs := run(t, p, func() (Binding, bool) { mu.Lock(); defer mu.Unlock(); return b, true })
	waitTr(t, trs, StateUp, time.Second)
	mu.Lock()
	b.Addr = netip.MustParseAddr("100.64.1.3") // DHCP gave a new address
	mu.Unlock()
	deadline := time.Now().Add(time.Second)
	for {
		f.mu.Lock()
		n, closed := len(f.opened), f.closed
		f.mu.Unlock()
		if n == 2 && closed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the address change: %d sessions opened, %d closed; want 2, 1", n, closed)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProberReset(t *testing.T) {
	p, f := fakeProber(t, Config{Targets: []Target{tgt1}, Interval: 10 * time.Millisecond, Timeout: 20 * time.Millisecond, UpAfter: 3})
	trs := run(t, p, func() (Binding, bool) { return bnd1, true })
	waitTr(t, trs, StateUp, time.Second)
	// Carrier lost: the daemon forces down. Probes keep succeeding, so the
	// uplink is up again, but only after UpAfter new rounds.
	f.setBehave(func(Target, Binding) (time.Duration, bool) { return 5 * time.Millisecond, true })
	p.Reset(StateDown)
	reset := time.Now()
	if p.State() != StateDown {
		t.Fatalf("State() after Reset = %v", p.State())
	}
	tr := waitTr(t, trs, StateUp, time.Second)
	if tr.From != StateDown || time.Since(reset) < 2*10*time.Millisecond {
		t.Errorf("back up %v after Reset (%v), want ≥ 2 intervals", time.Since(reset), tr)
	}
}

func TestProberOverlapBounded(t *testing.T) {
	// Timeout 10 × Interval, targets that never answer: rounds overlap, at
	// most MaxRounds at a time, so at most MaxRounds probes per target.
	p, f := fakeProber(t, Config{Targets: []Target{tgt1}, Interval: 10 * time.Millisecond, Timeout: 100 * time.Millisecond, Initial: StateUp})
	f.setBehave(func(Target, Binding) (time.Duration, bool) { return 0, false })
	trs := run(t, p, func() (Binding, bool) { return bnd1, true })
	tr := waitTr(t, trs, StateDown, 2*time.Second)
	time.Sleep(200 * time.Millisecond)
	if max := f.maxInflight.Load(); max > MaxRounds || max < 5 {
		t.Errorf("max probes in flight = %d, want 5..%d", max, MaxRounds)
	}
	if st := p.Stats(); st.RoundsSkipped == 0 {
		t.Errorf("no round skipped with timeout 10 × interval: %+v", st)
	}
	t.Logf("down after %v; max in flight %d", tr.Since, f.maxInflight.Load())
}

func TestProberRefusesRouterAddresses(t *testing.T) {
	own := Target{Kind: KindICMP, Addr: netip.MustParseAddrPort("100.64.2.2:0")} // another uplink's address
	self := Target{Kind: KindDNS, Addr: netip.AddrPortFrom(bnd1.Addr, 53)}
	lo := Target{Kind: KindICMP, Addr: netip.MustParseAddrPort("127.0.0.1:0")}
	p, f := fakeProber(t, Config{Targets: []Target{tgt1, own, self, lo}, Interval: 10 * time.Millisecond, Timeout: 20 * time.Millisecond, UpAfter: 2})
	f.locals = map[netip.Addr]bool{netip.MustParseAddr("100.64.2.2"): true, bnd1.Addr: true}
	trs := run(t, p, func() (Binding, bool) { return bnd1, true })
	tr := waitTr(t, trs, StateUp, time.Second)
	if !strings.Contains(tr.Cause, "1 of 4 answered") {
		t.Errorf("cause %q: want 1 of 4 answered", tr.Cause)
	}
	for i, r := range p.Stats().Targets[1:] {
		if r.OK || !strings.HasPrefix(r.Err, "refused: ") || !strings.Contains(r.Err, "router's own address") {
			t.Errorf("target %d: %+v, want refused", i+1, r)
		}
	}
}

func TestProberRunTwice(t *testing.T) {
	p, _ := fakeProber(t, Config{Targets: []Target{tgt1}, Interval: 10 * time.Millisecond})
	run(t, p, func() (Binding, bool) { return bnd1, true })
	deadline := time.Now().Add(time.Second)
	for !p.running.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := p.Run(context.Background(), nil, nil); err == nil {
		t.Error("second concurrent Run: no error")
	}
}
