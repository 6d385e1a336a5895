package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"syscall"
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

	// Established flows, opened a second before the fault and run through
	// fault and repair (a message every 20 ms each). Survivors are those
	// not on the faulty uplink; SurvivorsDisturbed counts those that broke
	// (TCP error), moved to another uplink (UDP), or stalled over 500 ms.
	Established        int `json:"established"`
	Survivors          int `json:"survivors"`
	SurvivorsDisturbed int `json:"survivors_disturbed"`
	// Of the flows on the faulty uplink: TCP connections reset within 2 s
	// of the fault (the application learns at once and reconnects through
	// a live uplink, where a kernel router leaves it to time out over
	// minutes) and UDP flows whose replies resumed through another uplink.
	FaultyTCP        int `json:"faulty_tcp"`
	FaultyTCPReset   int `json:"faulty_tcp_reset"`
	FaultyUDP        int `json:"faulty_udp"`
	FaultyUDPresumed int `json:"faulty_udp_resumed"`

	// RepairMs is when the fault was repaired, relative to the fault.
	RepairMs float64 `json:"repair_ms"`
	// Timeline is every new flow of the run: when it was opened relative
	// to the fault, and the uplink that carried it ("" when it failed).
	Timeline []TimelinePoint `json:"timeline,omitempty"`
}

// TimelinePoint is one new flow of a failover run.
type TimelinePoint struct {
	Ms     float64 `json:"ms"`
	Uplink string  `json:"uplink"`
}

// FailoverWindow is how long each fault and each repair is observed.
const FailoverWindow = 3 * time.Second

// Failover measures, for wanflow with its default probes — failover only
// (tier 1 up1, tier 2 up2) and load-balancing (weights 8 and 6 in one
// tier) — and for the reference setup's kernel approach (one multipath
// default route, weights 8 and 6, masquerade, no health checks), what
// happens to new flows — one every 10 ms — and to established ones when
// up1's ISP dies behind a live link, and when up1 loses carrier, and when
// each is repaired.
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
	// Default probes: every 200ms to 1.1.1.1 and 8.8.8.8 (both in the
	// lab's internet), timeout 400ms, down after 3, up after 5.
	for _, c := range []struct {
		name string
		o    labrouter.Options
	}{
		{"wanflow", labrouter.Options{Tiers: []int{1, 2}}},
		{"wanflow 8/6", labrouter.Options{Weights: []int{8, 6}}},
	} {
		r, err := labrouter.Start(l, bin, "", labrouter.ConfigYAML(l, c.o), nil, 15*time.Second)
		if err != nil {
			return out, err
		}
		time.Sleep(time.Second) // the probes' first rounds
		err = run(c.name)
		if serr := r.Stop(); err == nil {
			err = serr
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func failoverOnce(ctx context.Context, l *lab.Lab, router, fault string) (FailoverResult, error) {
	res := FailoverResult{Router: router, Fault: fault, SettledMs: -1, FailbackMs: -1}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	smp := RunSampler(sctx, l.Hosts[0], netip.AddrPortFrom(l.Servers[0], lab.EchoPort), 10*time.Millisecond, 300*time.Millisecond)
	type est struct {
		s   *Stream
		tcp bool
	}
	var streams []est
	for k := range 20 {
		for _, proto := range []string{"tcp", "udp"} {
			st, err := StartStream(sctx, l.Hosts[0], proto, 0, netip.AddrPortFrom(l.Servers[1+k%10], lab.EchoPort), 20*time.Millisecond)
			if err != nil {
				return res, err
			}
			streams = append(streams, est{st, proto == "tcp"})
		}
	}
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
	res.RepairMs = ms(t1.Sub(t0))
	names := map[netip.Addr]string{}
	for _, u := range l.Uplinks {
		names[u.Addr] = u.Name
	}
	for _, s := range smp.Samples() {
		res.Timeline = append(res.Timeline, TimelinePoint{Ms: ms(s.At.Sub(t0)), Uplink: names[s.Seen]})
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
	for _, e := range streams {
		st := e.s.Stats()
		res.Established++
		if len(st.Seen) == 0 {
			continue // never answered: not established
		}
		switch {
		case st.Seen[0] != up1:
			res.Survivors++
			if st.Err != nil || len(st.Seen) > 1 || st.MaxGap > 500*time.Millisecond {
				res.SurvivorsDisturbed++
			}
		case e.tcp:
			res.FaultyTCP++
			if errors.Is(st.Err, syscall.ECONNRESET) && st.ErrAt.Sub(t0) < 2*time.Second {
				res.FaultyTCPReset++
			}
		default:
			res.FaultyUDP++
			if len(st.Seen) > 1 && st.Seen[1] != up1 {
				res.FaultyUDPresumed++
			}
		}
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
