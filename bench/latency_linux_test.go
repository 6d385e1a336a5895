package bench

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab/labtest"
)

func TestLatencyStats(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // 1..100 µs, reversed: latencyStats sorts
		d = append(d, time.Duration(i)*time.Microsecond)
	}
	mean, p50, p99, worst := latencyStats(d)
	if mean != 50.5 || p50 != 50 || p99 != 99 || worst != 100 {
		t.Errorf("latencyStats(1..100 µs) = mean %v p50 %v p99 %v max %v, want 50.5 50 99 100", mean, p50, p99, worst)
	}
	mean, p50, p99, worst = latencyStats([]time.Duration{7 * time.Microsecond})
	if mean != 7 || p50 != 7 || p99 != 7 || worst != 7 {
		t.Errorf("latencyStats(7 µs) = %v %v %v %v, want all 7", mean, p50, p99, worst)
	}
}

// TestLatencyShort runs the latency scenario with 2000 samples per router
// and protocol. It checks only that the figures are sane: the machine is
// shared, so no speed is asserted.
func TestLatencyShort(t *testing.T) {
	labtest.RequireRoot(t)
	res, err := Latency(context.Background(), wanflowBin, LatencyOptions{Samples: 2000, Warmup: 200, MaxDuration: 2 * time.Second}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range res {
		t.Logf("%+v", r)
		seen[r.Router+"/"+r.Proto] = true
		if r.Samples < 100 || r.MeanUs <= 0 || r.P50Us <= 0 || r.P50Us > r.P99Us || r.P99Us > r.MaxUs {
			t.Errorf("%s %s: insane figures %+v", r.Router, r.Proto, r)
		}
		if r.Lost > r.Samples/10 {
			t.Errorf("%s %s: %d of %d UDP requests lost", r.Router, r.Proto, r.Lost, r.Samples)
		}
		if r.Router == scenWanflow && r.AddedP50Us == 0 && r.AddedP99Us == 0 && r.AddedMeanUs == 0 {
			t.Errorf("%s %s: added latency not filled in", r.Router, r.Proto)
		}
	}
	for _, k := range []string{"kernel/tcp", "kernel/udp", "wanflow/tcp", "wanflow/udp"} {
		if !seen[k] {
			t.Errorf("no %s result", k)
		}
	}
}
