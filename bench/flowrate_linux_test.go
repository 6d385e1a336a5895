package bench

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab/labtest"
)

// TestFlowRateShort runs the flow-rate scenario for at most a second and
// 1000 flows per router and protocol. It checks only that the figures are
// sane: the machine is shared, so no speed is asserted.
func TestFlowRateShort(t *testing.T) {
	labtest.RequireRoot(t)
	res, err := FlowRate(context.Background(), wanflowBin, FlowRateOptions{Duration: time.Second, MaxFlows: 1000, Concurrency: 8}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range res {
		t.Logf("%+v", r)
		seen[r.Router+"/"+r.Proto] = true
		if r.Flows < 50 || r.Seconds <= 0 || r.PerSecond <= 0 || r.Flows > 1000 {
			t.Errorf("%s %s: insane figures %+v", r.Router, r.Proto, r)
		}
		if r.Failed > r.Flows/10 {
			t.Errorf("%s %s: %d flows failed, %d completed (first error: %s)", r.Router, r.Proto, r.Failed, r.Flows, r.FirstError)
		}
		if (r.Router == scenWanflow) != (r.Ratio > 0) {
			t.Errorf("%s %s: ratio %v", r.Router, r.Proto, r.Ratio)
		}
	}
	for _, k := range []string{"kernel/tcp", "kernel/udp", "wanflow/tcp", "wanflow/udp"} {
		if !seen[k] {
			t.Errorf("no %s result", k)
		}
	}
}
