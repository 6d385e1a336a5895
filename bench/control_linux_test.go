package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
	"github.com/wanflow/wanflow/cmd/wanflow/control"
)

// controlExtra is the YAML that puts the control socket in dir.
func controlExtra(dir string) string {
	return fmt.Sprintf("control:\n  socket: %s\n", filepath.Join(dir, "wanflow.sock"))
}

// cli runs `wanflow args... -s socket --json` and decodes its output into v.
func cli(t *testing.T, socket string, v any, args ...string) {
	t.Helper()
	out, err := exec.Command(wanflowBin, append(append([]string{}, args...), "-s", socket, "--json")...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("wanflow %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("wanflow %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// udpFrom sends one datagram from each of srcs to dst through the router,
// all at once, and returns the source address:port the server saw for each.
func udpFrom(t *testing.T, ns *lab.NS, srcs []netip.AddrPort, dst netip.AddrPort) []netip.AddrPort {
	t.Helper()
	conns := make([]*net.UDPConn, len(srcs))
	if err := ns.Do(func() error {
		for i, s := range srcs {
			c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(s), net.UDPAddrFromAddrPort(dst))
			if err != nil {
				return err
			}
			conns[i] = c
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	seen := make([]netip.AddrPort, len(srcs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i, c := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { c.Close(); <-sem; wg.Done() }()
			buf := make([]byte, 256)
			for try := 0; try < 3; try++ {
				c.SetDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte("x")); err != nil {
					continue
				}
				n, err := c.Read(buf)
				if err != nil {
					continue
				}
				if ap, err := netip.ParseAddrPort(strings.TrimSuffix(string(buf[:n]), " x")); err == nil {
					seen[i] = ap
					return
				}
			}
		}()
	}
	wg.Wait()
	return seen
}

// TestControlFlowsAndExplain: `wanflow flows --json` lists every flow with
// the uplink and NAT mapping the internet server saw; `wanflow explain`
// predicts the uplink of 1,000 new flows, every one.
func TestControlFlowsAndExplain(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}, {}}})
	dir := t.TempDir()
	sock := filepath.Join(dir, "wanflow.sock")
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Weights: []int{3, 2, 1}, Extra: controlExtra(dir)}))
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("control socket: %v, mode %v; want a socket with mode 0600", err, fi.Mode())
	}
	upByAddr := map[netip.Addr]string{}
	for _, u := range l.Uplinks {
		upByAddr[u.Addr] = u.Name
	}

	flows := run(t, l.Hosts[0], labclient.Config{TCPFlows: 150, UDPFlows: 150, Messages: 3})
	checkSticky(t, flows)
	var fr control.FlowsReply
	cli(t, sock, &fr, "flows", "--limit", "100000")
	listed := map[string]control.Flow{}
	for _, f := range fr.Flows {
		listed[f.Proto+" "+f.Src+" "+f.Dst] = f
	}
	missing, wrong := 0, 0
	for _, f := range flows {
		key := string(f.Proto) + " " + f.Local.String() + " " + f.Target.String()
		got, ok := listed[key]
		if !ok {
			missing++
			continue
		}
		want := upByAddr[f.Seen[0].Addr()]
		if got.Uplink != want || got.NAT != f.Seen[0].String() {
			if wrong < 5 {
				t.Errorf("%s: listed on %s as %s, the server saw %v (%s)", key, got.Uplink, got.NAT, f.Seen[0], want)
			}
			wrong++
		}
		if got.PacketsOut < 3 || got.PacketsIn < 3 || got.Reason != "weighted" {
			t.Errorf("%s: %+v: want ≥ 3 packets each way, reason weighted", key, got)
		}
	}
	t.Logf("flows: %d listed (matched %d), %d client flows: %d missing, %d on another uplink", len(fr.Flows), fr.Matched, len(flows), missing, wrong)
	if missing > 0 || wrong > 0 {
		t.Errorf("%d flows missing from `wanflow flows`, %d listed with another uplink than the server saw", missing, wrong)
	}
	// Filters.
	var byUplink control.FlowsReply
	cli(t, sock, &byUplink, "flows", "--uplink", l.Uplinks[0].Name, "--proto", "udp", "--sort", "bytes", "--limit", "5")
	if len(byUplink.Flows) == 0 || len(byUplink.Flows) > 5 {
		t.Errorf("flows --uplink --proto --limit 5: %d flows", len(byUplink.Flows))
	}
	for _, f := range byUplink.Flows {
		if f.Uplink != l.Uplinks[0].Name || f.Proto != "udp" {
			t.Errorf("filtered flow %+v", f)
		}
	}

	// explain for 1,000 new tuples, then the flows themselves.
	const n = 1000
	srv := netip.AddrPortFrom(l.Servers[2], lab.EchoPort)
	srcs := make([]netip.AddrPort, n)
	predicted := make([]string, n)
	c := control.NewClient(sock)
	ctx := context.Background()
	for i := range srcs {
		srcs[i] = netip.AddrPortFrom(l.HostAddrs[0], uint16(2000+i)) // below the ephemeral ports the other flows used
		x, err := c.Explain(ctx, control.ExplainQuery{Proto: "udp", Src: srcs[i].String(), Dst: srv.String()})
		if err != nil {
			t.Fatal(err)
		}
		if x.Existing != nil {
			t.Fatalf("explain %v: an existing flow before any packet", srcs[i])
		}
		predicted[i] = x.Uplink
	}
	// One through the CLI too.
	var x control.ExplainReply
	cli(t, sock, &x, "explain", "udp", srcs[0].String(), srv.String())
	if x.Uplink != predicted[0] || len(x.Policy.Candidates) != 3 || x.Why == "" {
		t.Errorf("wanflow explain: %+v, want uplink %s and 3 candidates", x, predicted[0])
	}
	seen := udpFrom(t, l.Hosts[0], srcs, srv)
	right, per := 0, map[string]int{}
	for i := range seen {
		got := upByAddr[seen[i].Addr()]
		per[got]++
		if got == predicted[i] {
			right++
		} else if i-right < 5 {
			t.Errorf("%v: explain predicted %s, the flow took %q", srcs[i], predicted[i], got)
		}
	}
	t.Logf("explain: %d of %d predictions right; split %v", right, n, per)
	if right != n {
		t.Errorf("explain predicted %d of %d new flows", right, n)
	}
	// Now they exist: explain says where they are pinned.
	x, err := c.Explain(ctx, control.ExplainQuery{Proto: "udp", Src: srcs[7].String(), Dst: srv.String()})
	if err != nil || x.Existing == nil || x.Uplink != predicted[7] || x.Existing.NAT != seen[7].String() {
		t.Errorf("explain of an existing flow: %+v, %v; want pinned to %s as %v", x, err, predicted[7], seen[7])
	}
}

// TestControlStatusFollowsProbes: `wanflow status` shows an uplink down
// within one probe interval of the probes declaring it, and the event log
// has the state change with its cause.
func TestControlStatusFollowsProbes(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	dir := t.TempDir()
	sock := filepath.Join(dir, "wanflow.sock")
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Tiers: []int{1, 2}, Extra: fastProbes + controlExtra(dir)}))
	c := control.NewClient(sock)
	ctx := context.Background()
	waitStatus := func(what string, limit time.Duration, cond func(control.Status) bool) (control.Status, time.Time) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			st, err := c.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cond(st) {
				return st, time.Now()
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v; status %+v", what, limit, st.Uplinks)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitStatus("both up", 5*time.Second, func(s control.Status) bool {
		return len(s.Uplinks) == 2 && s.Uplinks[0].State == "up" && s.Uplinks[1].State == "up" && s.Uplinks[0].RTT > 0
	})
	ev, err := c.Events(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	fault := time.Now()
	if err := l.SetISPInternet(0, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.SetISPInternet(0, true) })
	st, seenDown := waitStatus("uplink 1 down", 3*time.Second, func(s control.Status) bool { return !s.Uplinks[0].Available })
	if st.Uplinks[0].State != "down" {
		t.Errorf("state %q, want down", st.Uplinks[0].State)
	}
	after, err := c.Events(ctx, ev.Last)
	if err != nil {
		t.Fatal(err)
	}
	var declared time.Time
	for _, e := range after.Events {
		if e.Kind == "state" && e.Uplink == l.Uplinks[0].Name && e.To == "down" {
			declared = e.Time
		}
	}
	if declared.IsZero() {
		t.Fatalf("no state event for the uplink going down: %+v", after.Events)
	}
	t.Logf("fault → declared down %v; declared → status shows it %v; fault → status %v",
		declared.Sub(fault), seenDown.Sub(declared), seenDown.Sub(fault))
	if lag := seenDown.Sub(declared); lag > 200*time.Millisecond {
		t.Errorf("status showed the uplink down %v after it was declared, want within one probe interval (200ms)", lag)
	}
	var detail control.UplinksReply
	cli(t, sock, &detail, "uplinks")
	p := detail.Uplinks[0].Probes
	if p == nil || len(p.Targets) != 2 || len(p.History) == 0 || p.RoundsFailed < 3 {
		t.Errorf("uplinks: probes %+v, want 2 targets, history and ≥ 3 failed rounds", p)
	}
}

// TestControlReload: a reload with new weights keeps every flow that was
// running alive on its uplink and moves the split of new flows to the new
// weights; a change that needs a restart is refused without effect.
func TestControlReload(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	dir := t.TempDir()
	sock := filepath.Join(dir, "wanflow.sock")
	r := startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Weights: []int{1, 1}, Extra: controlExtra(dir)}))
	c := control.NewClient(sock)
	ctx := context.Background()

	// 200 flows that run across the reload: 40 messages 100 ms apart.
	var long []labclient.Flow
	done := make(chan struct{})
	go func() {
		defer close(done)
		long, _ = labclient.Run(ctx, l.Hosts[0], labclient.Config{TCPFlows: 100, UDPFlows: 100, Messages: 40, Interval: 100 * time.Millisecond})
	}()
	time.Sleep(1500 * time.Millisecond)
	if err := os.WriteFile(r.Config, []byte(labrouter.ConfigYAML(l, labrouter.Options{Weights: []int{9, 1}, Extra: controlExtra(dir)})), 0o600); err != nil {
		t.Fatal(err)
	}
	var rr control.ReloadReply
	cli(t, sock, &rr, "reload")
	t.Logf("reload: changed %v", rr.Changed)
	if len(rr.Changed) == 0 {
		t.Errorf("reload reported no change")
	}
	<-done
	if long == nil {
		t.Fatal("long flows did not run")
	}
	checkSticky(t, long)

	// New flows follow the new weights.
	flows := run(t, l.Hosts[0], labclient.Config{UDPFlows: 2000})
	per := checkSticky(t, flows)
	checkSplit(t, l, per, []int{9, 1}, 0.03)

	// A change that needs a restart is refused, and nothing changes.
	bad := labrouter.ConfigYAML(l, labrouter.Options{Weights: []int{1, 9}, Extra: controlExtra(dir) + "dataplane:\n  workers: 1\n"})
	if err := os.WriteFile(r.Config, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := c.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "dataplane.workers") {
		t.Errorf("reload with a new worker count: %v, want a refusal naming dataplane.workers", err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Uplinks[0].Weight != 9 {
		t.Errorf("after a refused reload weight %d, want 9 still", st.Uplinks[0].Weight)
	}
	// SIGHUP reloads too.
	if err := os.WriteFile(r.Config, []byte(labrouter.ConfigYAML(l, labrouter.Options{Weights: []int{2, 1}, Extra: controlExtra(dir)})), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Uplinks[0].Weight == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP: weight still %d", st.Uplinks[0].Weight)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ev, err := c.Events(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	reloads := 0
	for _, e := range ev.Events {
		if e.Kind == "config" {
			reloads++
		}
	}
	if reloads != 3 {
		t.Errorf("%d config events, want 3 (reload, refusal, SIGHUP)", reloads)
	}
}
