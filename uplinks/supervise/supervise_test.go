package supervise

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanflow/wanflow/uplinks"
	"github.com/wanflow/wanflow/uplinks/events"
	"github.com/wanflow/wanflow/uplinks/health"
	"github.com/wanflow/wanflow/uplinks/hooks"
)

type recorder struct {
	mu      sync.Mutex
	views   []View
	changes []Change
}

func (r *recorder) on(v []View, c []Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.views = v
	r.changes = append(r.changes, c...)
}

func (r *recorder) take() ([]View, []Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.changes
	r.changes = nil
	return r.views, c
}

func status(i int, name string, ok, carrier bool, addr string) uplinks.Status {
	s := uplinks.Status{Index: i, Name: name, Interface: "eth" + name, Ifindex: 10 + i, Carrier: carrier, Available: ok}
	if addr != "" {
		s.Addr = netip.MustParseAddr(addr)
	}
	return s
}

// TestKernelTransitions: without probes, the kernel's view decides; every
// change reaches the change function with its cause, is an event, and runs
// the uplink's hooks.
func TestKernelTransitions(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "hooks")
	ring := events.NewRing(64)
	rec := &recorder{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sup, err := New([]Uplink{
		{Name: "a", Hooks: hooks.Spec{OnDown: "touch " + mark + "-down", OnUp: "touch " + mark + "-up"}},
		{Name: "b"},
	}, log, ring, rec.on)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sup.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	sup.Kernel([]uplinks.Status{status(0, "a", true, true, "192.0.2.1"), status(1, "b", true, true, "198.51.100.1")})
	sup.Flush()
	v, c := rec.take()
	if len(v) != 2 || !v[0].Available || !v[1].Available {
		t.Fatalf("views %+v: want both available", v)
	}
	if len(c) != 2 || !c[0].Gained || !c[1].Gained {
		t.Fatalf("changes %+v: want both gained", c)
	}

	sup.Kernel([]uplinks.Status{status(0, "a", false, false, "192.0.2.1"), status(1, "b", true, true, "198.51.100.1")})
	sup.Flush()
	v, c = rec.take()
	if v[0].Available || !v[1].Available {
		t.Fatalf("after carrier loss: %+v", v)
	}
	if len(c) != 1 || !c[0].Lost || c[0].Index != 0 || !strings.Contains(c[0].Cause, "carrier lost") {
		t.Fatalf("after carrier loss: changes %+v", c)
	}

	sup.Kernel([]uplinks.Status{status(0, "a", true, true, "192.0.2.1"), status(1, "b", true, true, "198.51.100.7")})
	sup.Flush()
	_, c = rec.take()
	var gained, readdr bool
	for _, ch := range c {
		gained = gained || (ch.Index == 0 && ch.Gained)
		readdr = readdr || (ch.Index == 1 && ch.Readdressed && strings.Contains(ch.Cause, "198.51.100.7"))
	}
	if !gained || !readdr {
		t.Fatalf("changes %+v: want a gained and b readdressed", c)
	}

	// The hooks ran, in order, and the events were recorded.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(mark + "-up"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, f := range []string{mark + "-down", mark + "-up"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("hook did not run: %v", err)
		}
	}
	var kinds []string
	for _, e := range ring.Since(0) {
		if e.Kind == events.KindState {
			kinds = append(kinds, e.Uplink+":"+e.To)
		}
	}
	if got := strings.Join(kinds, " "); !strings.Contains(got, "a:up b:up a:down a:up") {
		t.Errorf("state events %q", got)
	}
}

// TestReconfigure: a reload replaces an uplink's hooks and probes in place.
func TestReconfigure(t *testing.T) {
	dir := t.TempDir()
	oldMark, newMark := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	rec := &recorder{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sup, err := New([]Uplink{{Name: "a", Hooks: hooks.Spec{OnDown: "touch " + oldMark}}}, log, events.NewRing(64), rec.on)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sup.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	sup.Kernel([]uplinks.Status{status(0, "a", true, true, "192.0.2.1")})
	sup.Flush()

	if err := sup.Reconfigure(1, Uplink{Name: "a"}); err == nil {
		t.Error("Reconfigure of a missing index succeeded")
	}
	if err := sup.Reconfigure(0, Uplink{Name: "b"}); err == nil {
		t.Error("Reconfigure with another name succeeded")
	}
	if err := sup.Reconfigure(0, Uplink{Name: "a", Hooks: hooks.Spec{OnDown: "relative/cmd"}}); err == nil {
		t.Error("Reconfigure accepted a bad hook")
	}
	bad := Uplink{Name: "a", Probe: true, Health: health.Config{Targets: []health.Target{{Kind: health.KindICMP, Addr: netip.MustParseAddrPort("127.0.0.1:0")}}, Interval: -time.Second}}
	if err := sup.Reconfigure(0, bad); err == nil {
		t.Error("Reconfigure accepted a bad probe config")
	}
	if sup.Prober(0) != nil {
		t.Error("a failed Reconfigure started probing")
	}

	probed := Uplink{Name: "a", Probe: true, Hooks: hooks.Spec{OnDown: "touch " + newMark},
		Health: health.Config{Targets: []health.Target{{Kind: health.KindICMP, Addr: netip.MustParseAddrPort("127.0.0.1:0")}}, Initial: health.StateUp}}
	if err := sup.Reconfigure(0, probed); err != nil {
		t.Fatal(err)
	}
	p := sup.Prober(0)
	if p == nil {
		t.Fatal("no prober after Reconfigure with probes")
	}
	// The same config again keeps the prober.
	if err := sup.Reconfigure(0, probed); err != nil || sup.Prober(0) != p {
		t.Errorf("an unchanged Reconfigure replaced the prober (err %v)", err)
	}
	sup.Kernel([]uplinks.Status{status(0, "a", false, false, "192.0.2.1")})
	sup.Flush()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(newMark); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(newMark); err != nil {
		t.Errorf("the new on_down did not run: %v", err)
	}
	if _, err := os.Stat(oldMark); err == nil {
		t.Error("the old on_down ran")
	}
	if err := sup.Reconfigure(0, Uplink{Name: "a"}); err != nil || sup.Prober(0) != nil {
		t.Errorf("probing not turned off (err %v)", err)
	}
}

// TestDownAtStartRunsHooks: an uplink that is not available when wanflow
// starts (a PPP device not dialled yet) is down from the start: on_down
// runs and while_down repeats every retry (the 3G redial) until it comes
// up. An uplink available at start runs no down hook.
func TestDownAtStartRunsHooks(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ring := events.NewRing(64)
	rec := &recorder{}
	spec := func(name string) hooks.Spec {
		p := filepath.Join(dir, name)
		return hooks.Spec{OnDown: "touch " + p + "-down", WhileDown: "/bin/sh -c 'echo x >> " + p + "-redial'", Retry: 100 * time.Millisecond, Shell: false}
	}
	sup, err := New([]Uplink{{Name: "3g", Hooks: spec("3g")}, {Name: "adsl", Hooks: spec("adsl")}}, log, ring, rec.on)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sup.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	gone := status(0, "3g", false, false, "")
	gone.Ifindex = 0
	sup.Kernel([]uplinks.Status{gone, status(1, "adsl", true, true, "192.0.2.1")})
	sup.Flush()
	redials := func(name string) int {
		b, _ := os.ReadFile(filepath.Join(dir, name+"-redial"))
		return strings.Count(string(b), "x")
	}
	deadline := time.Now().Add(5 * time.Second)
	for redials("3g") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("while_down ran %d times in 5 s for an uplink down since the start, want ≥ 3", redials("3g"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "3g-down")); err != nil {
		t.Errorf("on_down did not run for an uplink down since the start: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "adsl-down")); err == nil || redials("adsl") != 0 {
		t.Error("down hooks ran for an uplink available at start")
	}
	// It comes up: the redial stops.
	sup.Kernel([]uplinks.Status{status(0, "3g", true, true, "10.64.64.1"), status(1, "adsl", true, true, "192.0.2.1")})
	sup.Flush()
	time.Sleep(300 * time.Millisecond)
	n := redials("3g")
	time.Sleep(400 * time.Millisecond)
	if m := redials("3g"); m != n {
		t.Errorf("while_down ran %d more times after the uplink came up", m-n)
	}
}
