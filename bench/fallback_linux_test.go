package bench

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// firstFallback returns the table of the first fail-open fallback rule
// (priority 7710), or 0.
func firstFallback(t *testing.T, l *lab.Lab) int {
	t.Helper()
	h, err := l.Router.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rules, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Priority == 7710 {
			return r.Table
		}
	}
	return 0
}

// TestReloadReordersFallback: a reload that changes which uplink is
// preferred (weights here) reorders the fail-open fallback rules, so after
// a crash the LAN falls back to the uplink the config now prefers.
func TestReloadReordersFallback(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	r := startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Weights: []int{1, 1}}))
	if got := firstFallback(t, l); got != 7701 {
		t.Fatalf("first fallback table %d, want 7701 (equal weights: config order)", got)
	}
	if err := r.WriteConfig(labrouter.ConfigYAML(l, labrouter.Options{Weights: []int{1, 9}})); err != nil {
		t.Fatal(err)
	}
	if err := r.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for firstFallback(t, l) != 7702 {
		if time.Now().After(deadline) {
			t.Fatalf("after a reload to weights 1/9 the first fallback table is %d, want 7702\n%s", firstFallback(t, l), r.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if k := kernelState(t, l); k.dupRules != 0 {
		t.Errorf("duplicate rules after the reload: %v", k)
	}
	r.Kill()
	var seen netip.AddrPort
	for start := time.Now(); !seen.IsValid(); {
		var err error
		if _, seen, err = newUDPFlow(l.Hosts[0], netip.AddrPortFrom(l.Servers[0], lab.EchoPort), 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("no fail-open after kill -9")
		}
	}
	if seen.Addr() != l.Uplinks[1].Addr {
		t.Errorf("after kill -9 the server saw %v, want uplink 2's address %v (the preferred one since the reload)", seen, l.Uplinks[1].Addr)
	}
}
