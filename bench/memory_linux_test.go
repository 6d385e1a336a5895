package bench

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab/labtest"
)

// TestMemoryFlowNumbering: the first n flows are n distinct (socket,
// destination) pairs, spread evenly over the sockets, and the largest
// count still has a destination port.
func TestMemoryFlowNumbering(t *testing.T) {
	seen := map[[2]int]bool{}
	perSock := make([]int, memSockets)
	const n = 3*memSockets*memBatch + 17
	for i := range n {
		s, d := memFlow(i)
		if s < 0 || s >= memSockets || seen[[2]int{s, d}] {
			t.Fatalf("flow %d: socket %d destination %d (again?)", i, s, d)
		}
		seen[[2]int{s, d}] = true
		perSock[s]++
	}
	for s, c := range perSock {
		if c < n/memSockets-memBatch || c > n/memSockets+memBatch {
			t.Errorf("socket %d has %d of %d flows", s, c, n)
		}
	}
	if _, d := memFlow(memMaxFlows - 1); memDstPort+d/20 > 65535 {
		t.Errorf("flow %d: destination port %d", memMaxFlows-1, memDstPort+d/20)
	}
}

func TestGCTrace(t *testing.T) {
	log := "time=x level=DEBUG msg=hello\n" +
		"gc 1 @0.006s 5%: 0.46+1.2+0.006 ms clock, 0.93+0.45/0/0+0.013 ms cpu, 3->4->2 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		"gc 2 @2.500s 0%: 0.70+6.8+0.089 ms clock, 1.4+0/3.8/0.29+0.17 ms cpu, 70->72->70 MB, 83 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)\n"
	start := time.Now()
	g := &memGen{flows: 1000, progress: []memProgressSample{{start.Add(time.Second), 0}, {start.Add(3 * time.Second), 1000}}}
	got := g.gcs(log, start)
	if len(got) != 2 {
		t.Fatalf("%d collections, want 2: %+v", len(got), got)
	}
	if got[0].Seconds != 0.006 || got[0].HeapLiveBytes != 2<<20 || got[0].Flows != 0 {
		t.Errorf("first: %+v", got[0].MemoryGC)
	}
	if got[1].Seconds != 2.5 || got[1].HeapLiveBytes != 70<<20 || got[1].Flows < 740 || got[1].Flows > 760 {
		t.Errorf("second: %+v, want 70 MiB at about 750 flows", got[1].MemoryGC)
	}
}

// TestFlowMemoryShort fills wanflow's table with 20 000 and then 100 000
// flows and checks that each count is reached and that the resident memory
// grows with the flows.
func TestFlowMemoryShort(t *testing.T) {
	labtest.RequireRoot(t)
	res, err := FlowMemory(context.Background(), wanflowBin, MemoryOptions{Counts: []int{20_000, 100_000}, Timeout: 20 * time.Second}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if len(res.Points) != 3 {
		t.Fatalf("%d points, want idle, 20000 and 100000", len(res.Points))
	}
	for i, want := range []int{0, 20_000, 100_000} {
		p := res.Points[i]
		if p.Flows < want {
			t.Errorf("point %d: %d flows, want %d", i, p.Flows, want)
		}
		if p.RSSBytes == 0 || p.AnonBytes > p.RSSBytes || p.PeakRSSBytes < p.RSSBytes {
			t.Errorf("point %d: insane memory figures %+v", i, p)
		}
		if i > 0 && (p.RSSBytes <= res.Points[i-1].RSSBytes || p.FillPerSecond <= 0) {
			t.Errorf("point %d: RSS %d after %d, fill %.0f flows/s: want growth", i, p.RSSBytes, res.Points[i-1].RSSBytes, p.FillPerSecond)
		}
	}
	if res.BytesPerFlow <= 0 || res.Workers <= 0 {
		t.Errorf("bytes per flow %.0f, workers %d", res.BytesPerFlow, res.Workers)
	}
	if res.Target != "not measured" {
		t.Errorf("target %q with 100000 flows, want not measured", res.Target)
	}
}
