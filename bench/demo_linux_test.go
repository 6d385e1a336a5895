package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/wanflow/wanflow/bench/lab/labtest"
)

// TestDemo runs `sudo make demo`'s scenario and checks its story: new flows
// never fail, the streams on the failed uplink reconnect elsewhere, tier 2
// carries everything while tier 1 is down, and new flows fail back.
func TestDemo(t *testing.T) {
	labtest.RequireRoot(t)
	var out bytes.Buffer
	if err := Demo(context.Background(), wanflowBin, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	t.Log(s)
	if !strings.Contains(s, " 0 failed;") || strings.Contains(s, "failed=") {
		t.Error("new flows failed during the demo")
	}
	phases := strings.Split(s, "\n-- ")
	if len(phases) != 5 {
		t.Fatalf("want 4 phases, got %d", len(phases)-1)
	}
	// last returns the last per-second line of a phase.
	last := func(ph string) string {
		lines := strings.Split(strings.TrimSpace(ph), "\n")
		for i := len(lines) - 1; i > 0; i-- {
			if strings.HasSuffix(strings.Fields(lines[i])[0], "s") {
				return lines[i]
			}
		}
		return ""
	}
	if l := last(phases[1]); !strings.Contains(l, "up3=0") || !strings.Contains(l, "up1/0 up1/0 up2/0") {
		t.Errorf("phase 1: %q: want tier 2 idle and streams on up1, up1, up2", l)
	}
	if l := last(phases[2]); !strings.Contains(l, "up1=0") || !strings.Contains(l, "up2/1 up2/1 up2/0") {
		t.Errorf("phase 2: %q: want no new flow on up1 and its streams reconnected to up2", l)
	}
	if l := last(phases[3]); !strings.Contains(l, "up1=0 up2=0") || !strings.Contains(l, "up3/") {
		t.Errorf("phase 3: %q: want everything on up3", l)
	}
	if l := last(phases[4]); !strings.Contains(l, "up3=0") || strings.Contains(l, "up1=0 ") || !strings.Contains(l, "up3/2 up3/2 up3/1") {
		t.Errorf("phase 4: %q: want new flows back on tier 1 and the streams left on up3", l)
	}
}
