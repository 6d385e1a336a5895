package bench

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/plot"
)

// dnsTestLog collects DNSFailover's progress for the test's log.
type dnsTestLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *dnsTestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestDNSFailover runs a short DNS failover scenario and checks what must
// hold: through wanflow, lookups keep being answered while ISP 1's DNS
// server is silent (the forwarder hedges to ISP 2 after 200 ms), and once
// its probes took up1 down they are answered by ISP 2 at once; the
// reference setup's stub resolver waits its whole timeout on the silent
// server.
func TestDNSFailover(t *testing.T) {
	labtest.RequireRoot(t)
	const stubTimeout = 2 * time.Second
	o := DNSOptions{
		Lead:        time.Second,
		DNSDead:     2500 * time.Millisecond,
		ISPDead:     3 * time.Second,
		Recovery:    2500 * time.Millisecond,
		StubTimeout: stubTimeout,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var log dnsTestLog
	start := time.Now()
	rs, err := DNSFailover(ctx, wanflowBin, o, &log)
	t.Logf("DNSFailover took %v:\n%s", time.Since(start).Round(100*time.Millisecond), log.b.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Router != "kernel" || rs[1].Router != "wanflow" {
		t.Fatalf("results for %d routers, want kernel then wanflow", len(rs))
	}
	kernel, wf := rs[0], rs[1]
	phase := func(r DNSResult, name string) DNSPhase {
		t.Helper()
		for _, p := range r.Phases {
			if p.Name == name {
				return p
			}
		}
		t.Fatalf("%s: no phase %q in %+v", r.Router, name, r.Phases)
		return DNSPhase{}
	}

	// (a) through wanflow: every lookup answered, each within 1.5 s.
	if p := phase(wf, dnsPhaseDNSDead); p.Queries == 0 {
		t.Errorf("wanflow: no lookups during (a)")
	}
	for _, s := range wf.Samples {
		if s.Ms >= 0 && s.Ms < wf.ISPDeadAtMs && (!s.OK || s.LatencyMs > 1500) {
			t.Errorf("wanflow, ISP 1's DNS silent: lookup sent at %.0f ms: ok=%v after %.0f ms, want an answer within 1.5 s", s.Ms, s.OK, s.LatencyMs)
		}
	}

	// (b) through wanflow, once up1 is down: ISP 2 answers, fast.
	if wf.DownAtMs < 0 {
		t.Fatalf("wanflow never reported up1 down after (b) at %.0f ms", wf.ISPDeadAtMs)
	}
	t.Logf("wanflow took up1 down %.0f ms after (b)", wf.DownAtMs-wf.ISPDeadAtMs)
	p := phase(wf, dnsPhaseISPDown)
	switch {
	case p.Queries == 0:
		t.Errorf("wanflow: no lookups between up1 down (%.0f ms) and the repair (%.0f ms)", wf.DownAtMs, wf.RepairAtMs)
	case p.ISP2 != p.Queries:
		t.Errorf("wanflow, up1 down: %d of %d lookups answered by ISP 2 (%d failed), want all", p.ISP2, p.Queries, p.Failed)
	case p.MeanMs >= 100:
		t.Errorf("wanflow, up1 down: mean latency %.1f ms, want under 100 ms", p.MeanMs)
	}

	// (a) for the reference setup: the stub waits out its timeout on the
	// silent first server before it asks the second.
	k := phase(kernel, dnsPhaseDNSDead)
	if want := float64(stubTimeout.Milliseconds()); k.MaxMs < want {
		t.Errorf("kernel, ISP 1's DNS silent: worst latency %.0f ms, want at least the stub's timeout %.0f ms", k.MaxMs, want)
	}
	if k.ISP2 == 0 {
		t.Errorf("kernel, ISP 1's DNS silent: no answer from ISP 2 (%+v)", k)
	}

	// The samples make a valid chart.
	if err := plot.Timeline(io.Discard, DNSTimeline(rs)); err != nil {
		t.Errorf("plot the timeline: %v", err)
	}
}

// TestStubResolverWait checks the per-server waits against glibc's
// res_send.c: timeout<<i, divided by the number of servers for i > 0,
// whole seconds, at least one.
func TestStubResolverWait(t *testing.T) {
	tests := []struct {
		timeout time.Duration
		servers int
		want    []time.Duration
	}{
		{5 * time.Second, 2, []time.Duration{5 * time.Second, 5 * time.Second}},
		{5 * time.Second, 3, []time.Duration{5 * time.Second, 3 * time.Second, 6 * time.Second}},
		{1 * time.Second, 3, []time.Duration{time.Second, time.Second, time.Second}},
		{2 * time.Second, 1, []time.Duration{2 * time.Second}},
	}
	for _, tt := range tests {
		o := DNSOptions{StubTimeout: tt.timeout}
		o.defaults()
		r := stubResolver{servers: make([]netip.AddrPort, tt.servers), timeout: o.StubTimeout, attempts: o.StubAttempts}
		for i, want := range tt.want {
			if got := r.wait(i); got != want {
				t.Errorf("timeout %v, %d servers: wait(%d) = %v, want %v", tt.timeout, tt.servers, i, got, want)
			}
		}
	}
	o := DNSOptions{StubTimeout: 2500 * time.Millisecond, StubAttempts: 9}
	o.defaults()
	if o.StubTimeout != 2*time.Second || o.StubAttempts != 5 {
		t.Errorf("options rounded to %v and %d attempts, want 2s and 5 (glibc's limits)", o.StubTimeout, o.StubAttempts)
	}
}

func TestDNSPhase(t *testing.T) {
	samples := []DNSSample{
		{Ms: -5, LatencyMs: 1, OK: true, ISP: "isp1"},
		{Ms: 0, LatencyMs: 5003, OK: true, ISP: "isp2"},
		{Ms: 20, LatencyMs: 5001, OK: true, ISP: "isp2"},
		{Ms: 40, LatencyMs: 20000},
		{Ms: 60, LatencyMs: 5002, OK: true, ISP: "isp2"},
		{Ms: 100, LatencyMs: 1, OK: true, ISP: "isp1"},
	}
	got := dnsPhase("a", 0, 100, samples)
	want := DNSPhase{Name: "a", FromMs: 0, ToMs: 100, Queries: 4, Failed: 1, ISP2: 3, MeanMs: 5002, P50Ms: 5002, P99Ms: 5003, MaxMs: 5003}
	if got != want {
		t.Errorf("dnsPhase:\n got %+v\nwant %+v", got, want)
	}
	if got := dnsPhase("empty", 200, 300, samples); got.Queries != 0 || got.MaxMs != 0 {
		t.Errorf("empty phase: %+v", got)
	}
}
