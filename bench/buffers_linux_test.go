package bench

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// TestBuffersReleasedAfterBurst: a bulk TCP transfer takes thousands of
// 64 KiB packet buffers (GRO super-packets); once traffic stops, the
// dataplane releases those that stay unused for a 10 s window and gives
// the memory back, so the daemon's RSS falls back instead of staying at
// its peak.
func TestBuffersReleasedAfterBurst(t *testing.T) {
	labtest.RequireRoot(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed (make deps)")
	}
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}}})
	r := startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := l.Servers[0]
	iperfSrv := l.Internet.Command(ctx, "iperf3", "-s", "-B", srv.String(), "-p", "5201")
	if err := iperfSrv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { iperfSrv.Process.Kill(); iperfSrv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	idle := processRSS(t, r.Pid())
	if out, err := l.Hosts[0].Command(ctx, "iperf3", "-c", srv.String(), "-p", "5201", "-t", "5", "-P", "8").CombinedOutput(); err != nil {
		t.Fatalf("iperf3: %v\n%s", err, out)
	}
	peakBufs := value(scrape(t, l)["wanflow_dataplane_buffers"])
	// Two readers (TUN, one uplink) hold a batch of 128 each and the pool
	// keeps 128 free: what is left once the window has passed.
	const kept = 3 * 128
	start := time.Now()
	var bufs float64
	rssBefore := processRSS(t, r.Pid())
	var rss int64
	for {
		time.Sleep(250 * time.Millisecond)
		bufs, rss = value(scrape(t, l)["wanflow_dataplane_buffers"]), processRSS(t, r.Pid())
		if bufs <= kept {
			break
		}
		rssBefore = rss
		if time.Since(start) > 30*time.Second {
			t.Fatalf("30 s after the burst: %v buffers, want ≤ %d (peak %v)", bufs, kept, peakBufs)
		}
	}
	released := peakBufs - bufs
	t.Logf("RSS idle %.1f MiB; after 5 s of iperf3 (8 streams) %v packet buffers; %v later %v released (%v left): RSS %.1f → %.1f MiB",
		float64(idle)/(1<<20), peakBufs, time.Since(start).Round(250*time.Millisecond), released, bufs,
		float64(rssBefore)/(1<<20), float64(rss)/(1<<20))
	// A release of 64 buffers or more gives their memory back at once.
	if released >= 64 {
		if drop := rssBefore - rss; drop < int64(released)*(64<<10)/2 {
			t.Errorf("RSS fell by %d KiB when %v buffers (%v KiB) were released", drop>>10, released, released*64)
		}
	}
}
