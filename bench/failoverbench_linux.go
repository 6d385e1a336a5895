package bench

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// FailoverResult is one router's behaviour around one fault.
type FailoverResult struct {
	Router string `json:"router"` // "kernel" (seed-style multipath) or "wanflow"
	Fault  string `json:"fault"`  // "isp-death" or "carrier-loss"
	// SettledMs is the time from the fault to the last new flow that failed
	// or used the faulty uplink, within the observation window: when new
	// flows were all fine again. -1: they never were.
	SettledMs float64 `json:"settled_ms"`
	// FailedPct is the share of new flows opened in the window after the
	// fault that got no answer.
	FailedPct float64 `json:"failed_pct"`
	// FailbackMs is the time from the repair to the first new flow through
	// the repaired uplink again; -1 if none in the window.
	FailbackMs float64 `json:"failback_ms"`
	// Samples is the number of new flows opened in the window.
	Samples int `json:"samples"`
}

// FailoverWindow is how long each fault and each repair is observed.
const FailoverWindow = 3 * time.Second

// Failover measures, for wanflow (tier 1 up1, tier 2 up2, probes every
// 200ms, down after 3) and for the reference setup's kernel approach (one
// multipath default route, weights 8 and 6, masquerade, no health checks),
// what happens to new flows — one every 10 ms — when up1's ISP dies behind a
// live link, and when up1 loses carrier, and when each is repaired.
func Failover(ctx context.Context, bin string, w io.Writer) ([]FailoverResult, error) {
	l, err := lab.Up(ctx, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if err := l.StartServers(ctx); err != nil {
		return nil, err
	}
	var out []FailoverResult
	run := func(router string) error {
		for _, fault := range []string{"isp-death", "carrier-loss"} {
			fmt.Fprintf(w, "  %s: %s...\n", router, fault)
			r, err := failoverOnce(ctx, l, router, fault)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	}
	undo, err := l.KernelBaseline(lab.BaselineMultipathL4, []int{8, 6})
	if err != nil {
		return nil, err
	}
	err = run("kernel")
	if uerr := undo(); err == nil {
		err = uerr
	}
	if err != nil {
		return nil, err
	}
	yaml := labrouter.ConfigYAML(l, labrouter.Options{Tiers: []int{1, 2}, Extra: "probes:\n  targets: [1.1.1.1, 8.8.8.8]\n  interval: 200ms\n  timeout: 100ms\n  down_after: 3\n  up_after: 3\n"})
	r, err := labrouter.Start(l, bin, "", yaml, nil, 15*time.Second)
	if err != nil {
		return nil, err
	}
	err = run("wanflow")
	if serr := r.Stop(); err == nil {
		err = serr
	}
	return out, err
}

func failoverOnce(ctx context.Context, l *lab.Lab, router, fault string) (FailoverResult, error) {
	res := FailoverResult{Router: router, Fault: fault, SettledMs: -1, FailbackMs: -1}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	smp := RunSampler(sctx, l.Hosts[0], netip.AddrPortFrom(l.Servers[0], lab.EchoPort), 10*time.Millisecond, 300*time.Millisecond)
	time.Sleep(time.Second)
	set := func(up bool) error {
		if fault == "isp-death" {
			return l.SetISPInternet(0, up)
		}
		return l.SetUplinkCarrier(0, up)
	}
	t0 := time.Now()
	if err := set(false); err != nil {
		return res, err
	}
	time.Sleep(FailoverWindow)
	t1 := time.Now()
	if err := set(true); err != nil {
		return res, err
	}
	time.Sleep(FailoverWindow)
	cancel()
	time.Sleep(400 * time.Millisecond) // let the last samples finish
	bad, lastBad, failed := 0, time.Time{}, 0
	up1 := l.Uplinks[0].Addr
	for _, s := range smp.Samples() {
		switch {
		case s.At.Before(t0):
		case s.At.Before(t1):
			res.Samples++
			if !s.Seen.IsValid() {
				failed++
			}
			if !s.Seen.IsValid() || s.Seen == up1 {
				bad++
				lastBad = s.At
			}
		default:
			if res.FailbackMs < 0 && s.Seen == up1 {
				res.FailbackMs = ms(s.At.Sub(t1))
			}
		}
	}
	if res.Samples > 0 {
		res.FailedPct = 100 * float64(failed) / float64(res.Samples)
	}
	switch {
	case bad == 0:
		res.SettledMs = 0
	case t1.Sub(lastBad) > 500*time.Millisecond:
		res.SettledMs = ms(lastBad.Sub(t0))
	}
	// Give the router time to settle back before the next fault.
	time.Sleep(time.Second)
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
