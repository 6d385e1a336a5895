package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab/labtest"
)

func TestProcStatus(t *testing.T) {
	rss, anon, hwm, err := scenProcStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss == 0 || anon == 0 || anon > rss || hwm < rss {
		t.Errorf("procStatus(self) = rss %d, anon %d, hwm %d", rss, anon, hwm)
	}
	if _, _, _, err := scenProcStatus(1 << 30); err == nil {
		t.Error("procStatus of a process that does not exist: no error")
	}
}

// scenLeftovers lists this process's lab namespaces and running wanflow
// daemons.
func scenLeftovers(t *testing.T) []string {
	t.Helper()
	var out []string
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("wf%d-", os.Getpid())) || strings.HasPrefix(e.Name(), fmt.Sprintf("wf%dn", os.Getpid())) {
			out = append(out, "namespace "+e.Name())
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range procs {
		if exe, err := os.Readlink(p); err == nil && exe == wanflowBin {
			out = append(out, "daemon "+p)
		}
	}
	return out
}

// scenCancelOn is a progress writer that cancels a context some time after a
// line containing trigger is written, and logs the lines with their time.
type scenCancelOn struct {
	t       *testing.T
	t0      time.Time
	trigger string
	after   time.Duration
	cancel  context.CancelFunc
	at      time.Time // when the cancel was armed
	mu      sync.Mutex
}

func (c *scenCancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.Logf("%6.3fs %s", time.Since(c.t0).Seconds(), strings.TrimRight(string(p), "\n"))
	if c.at.IsZero() && strings.Contains(string(p), c.trigger) {
		c.at = time.Now().Add(c.after)
		time.AfterFunc(c.after, c.cancel)
	}
	return len(p), nil
}

// TestScenariosCancel cancels each scenario in the middle of wanflow's
// measurement: it must return an error soon and leave no namespace and no
// daemon behind.
func TestScenariosCancel(t *testing.T) {
	labtest.RequireRoot(t)
	for _, tc := range []struct {
		name    string
		trigger string
		run     func(ctx context.Context, w io.Writer) error
	}{
		{"latency", "wanflow: udp round trips", func(ctx context.Context, w io.Writer) error {
			_, err := Latency(ctx, wanflowBin, LatencyOptions{Samples: 1 << 30, MaxDuration: 300 * time.Millisecond}, w)
			return err
		}},
		{"flowrate", "wanflow: new tcp flows", func(ctx context.Context, w io.Writer) error {
			_, err := FlowRate(ctx, wanflowBin, FlowRateOptions{Duration: 300 * time.Millisecond, MaxFlows: 1 << 20}, w)
			return err
		}},
		{"memory", "creating flows up to", func(ctx context.Context, w io.Writer) error {
			_, err := FlowMemory(ctx, wanflowBin, MemoryOptions{Counts: []int{4_000_000}}, w)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &scenCancelOn{t: t, t0: time.Now(), trigger: tc.trigger, after: 200 * time.Millisecond, cancel: cancel}
			err := tc.run(ctx, w)
			w.mu.Lock()
			at := w.at
			w.mu.Unlock()
			if at.IsZero() {
				t.Fatalf("ended (%v) before %q", err, tc.trigger)
			}
			if err == nil {
				t.Fatal("no error after cancel")
			}
			if d := time.Since(at); d > 10*time.Second {
				t.Errorf("returned %v after the cancel", d)
			}
			t.Logf("%v after the cancel: %v", time.Since(at), err)
			if l := scenLeftovers(t); len(l) > 0 {
				t.Errorf("left behind: %v", l)
			}
		})
	}
}
