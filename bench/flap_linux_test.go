package bench

import (
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// TestFlappingLeaksNothing: an uplink losing and regaining carrier 100
// times leaves the daemon with the goroutines, file descriptors, flows,
// rules and routes it had before, and routing still works.
func TestFlappingLeaksNothing(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Extra: fastProbes}))
	sleep(time.Second)
	checkSticky(t, run(t, l.Hosts[0], labclient.Config{UDPFlows: 50}))
	settle := func() (goroutines, fds float64, k kstate) {
		t.Helper()
		// Let the last transition's hooks, sweeps and probers finish.
		sleep(1500 * time.Millisecond)
		m := scrape(t, l)
		return value(m["go_goroutines"]), value(m["process_open_fds"]), kernelState(t, l)
	}
	g0, f0, k0 := settle()
	start := time.Now()
	for i := range 100 {
		if err := l.SetUplinkCarrier(1, false); err != nil {
			t.Fatal(err)
		}
		sleep(30 * time.Millisecond)
		if err := l.SetUplinkCarrier(1, true); err != nil {
			t.Fatal(err)
		}
		sleep(30 * time.Millisecond)
		if i%25 == 24 {
			t.Logf("%d flaps", i+1)
		}
	}
	t.Logf("100 flaps in %v", time.Since(start).Round(time.Millisecond))
	g1, f1, k1 := settle()
	t.Logf("goroutines %v → %v, open fds %v → %v, kernel %v → %v", g0, g1, f0, f1, k0, k1)
	if g1 > g0+2 || f1 > f0+2 {
		t.Errorf("after 100 flaps: goroutines %v → %v, open fds %v → %v", g0, g1, f0, f1)
	}
	if k1 != k0 {
		t.Errorf("kernel state %v, was %v", k1, k0)
	}
	// Both uplinks carry new flows again.
	per := checkSticky(t, run(t, l.Hosts[0], labclient.Config{UDPFlows: 200}))
	for _, u := range l.Uplinks {
		if per[u.Addr] == 0 {
			t.Errorf("uplink %s carries no new flow after the flapping", u.Name)
		}
	}
	if v := value(scrape(t, l)["wanflow_flows_active"]); v > 250+50 {
		t.Errorf("%v flows in the table, want at most the 250 opened", v)
	}
}
