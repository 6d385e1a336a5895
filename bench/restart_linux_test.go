package bench

import (
	"context"
	"io"
	"testing"

	"github.com/wanflow/wanflow/bench/lab/labtest"
)

// TestRestartScenario: `wanflow bench restart` in short. A planned restart
// keeps every flow on its NAT mapping; a stop for good and a crash keep no
// TCP connection; after a crash the fail-open fallback answers new flows
// before the new daemon runs, while a planned restart holds them.
func TestRestartScenario(t *testing.T) {
	labtest.RequireRoot(t)
	res, err := Restart(context.Background(), wanflowBin, RestartOptions{Flows: 6}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]RestartResult{}
	for _, r := range res {
		t.Logf("%+v", r)
		by[r.Mode] = r
	}
	h := by["handover"]
	if h.TCPSame != 6 || h.UDPSame != 6 || h.Restored < 12 {
		t.Errorf("handover: %+v, want every flow alive on its mapping and ≥ 12 restored", h)
	}
	for _, m := range []string{"sigint", "crash"} {
		if r := by[m]; r.TCPAlive != 0 || r.Restored != 0 {
			t.Errorf("%s: %+v, want no TCP connection alive and nothing restored", m, r)
		}
	}
	if c := by["crash"]; c.ViaKernel == 0 {
		t.Errorf("crash: %+v, want new flows answered by the kernel (fail-open) before the new daemon runs", c)
	}
	if h.ViaKernel != 0 {
		t.Errorf("handover: %+v, want no new flow through the kernel (the hold)", h)
	}
}
