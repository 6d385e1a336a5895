package bench

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// TestHandoverRestart: a planned restart (SIGTERM, then a new start) hands
// the flow table over. Established TCP connections and UDP flows carry on
// through it with the same uplink address and NAT port, a bulk TCP
// transfer (iperf3) runs across it to the end, the LAN is held (neither
// wanflow nor the kernel forwards) between the two processes, and the new
// start ends the hold and leaves exactly the kernel state of a clean
// start. Then a SIGTERM with no new start: the hold times out by itself and
// the fail-open fallback carries new flows; a start after that does not
// take the stale flows.
func TestHandoverRestart(t *testing.T) {
	labtest.RequireRoot(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed (make deps)")
	}
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	host := l.Hosts[0]
	const hold = 2 * time.Second
	yaml := labrouter.ConfigYAML(l, labrouter.Options{Extra: "dataplane:\n  restart_hold: " + hold.String() + "\n"})
	dir := t.TempDir()
	r, err := labrouter.Start(l, wanflowBin, dir, yaml, nil, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if !r.Exited() {
			r.Stop()
		}
	}()
	running := kernelState(t, l)

	// Long-lived flows: TCP connections and UDP flows to several servers.
	var conns []*echoConn
	for i := range 24 {
		proto := "tcp"
		if i%2 == 1 {
			proto = "udp"
		}
		c, err := dialEcho(host, proto, netip.AddrPortFrom(l.Servers[i%4], lab.EchoPort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.c.Close()
		if c.seen, err = c.exchange(2 * time.Second); err != nil {
			t.Fatalf("%s flow %d before the restart: %v", proto, i, err)
		}
		conns = append(conns, c)
	}
	// A bulk TCP transfer across the restart.
	srv := l.Servers[5]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	iperfSrv := l.Internet.Command(ctx, "iperf3", "-s", "-B", srv.String(), "-p", "5201")
	if err := iperfSrv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { iperfSrv.Process.Kill(); iperfSrv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	type iperfOut struct {
		out []byte
		err error
	}
	bulk := make(chan iperfOut, 1)
	go func() {
		out, err := host.Command(ctx, "iperf3", "-c", srv.String(), "-p", "5201", "-t", "6", "-i", "0.1", "-J").Output()
		bulk <- iperfOut{out, err}
	}()
	time.Sleep(2 * time.Second)

	// The planned restart.
	t0 := time.Now()
	if err := r.Handover(); err != nil {
		t.Fatalf("%v\n%s", err, r.Log())
	}
	stopped := time.Since(t0)
	between := kernelState(t, l)
	if between.tun != 0 || between.nftTables != 1 || between.holds != 1 || between.rules != running.rules {
		t.Errorf("between the processes: %v; want no TUN, the guard and hold tables, the rules", between)
	}
	if _, err := os.Stat(filepath.Join(dir, "handover.state")); err != nil {
		t.Errorf("handover file: %v", err)
	}
	// Held: a new flow is answered neither by wanflow nor by the kernel.
	if _, seen, err := newUDPFlow(host, netip.AddrPortFrom(l.Servers[6], lab.EchoPort), 100*time.Millisecond); err != nil || seen.IsValid() {
		t.Errorf("during the hold a new flow was answered (server saw %v, %v)", seen, err)
	}
	t1 := time.Now()
	r, err = labrouter.Start(l, wanflowBin, dir, yaml, nil, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gap := time.Since(t0)
	t.Logf("SIGTERM → exited %v; start took %v; SIGTERM → new dataplane running %v",
		stopped.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond), gap.Round(time.Millisecond))
	if !strings.Contains(r.Log(), "flows restored from a handover") {
		t.Errorf("the new start restored no flows:\n%s", r.Log())
	}
	for _, line := range strings.Split(r.Log(), "\n") {
		if strings.Contains(line, "handover:") {
			t.Log(strings.TrimSpace(line))
		}
	}

	// Every flow carries on with the same NAT address and port.
	var maxWait time.Duration
	for i, c := range conns {
		start := time.Now()
		seen, err := c.exchange(5 * time.Second)
		if w := time.Since(start); w > maxWait {
			maxWait = w
		}
		switch {
		case err != nil:
			t.Errorf("flow %d (%s) after the restart: %v", i, c.c.LocalAddr().Network(), err)
		case seen != c.seen:
			t.Errorf("flow %d (%s) after the restart: server saw %v, before %v", i, c.c.LocalAddr().Network(), seen, c.seen)
		}
	}
	t.Logf("%d long-lived flows (12 TCP, 12 UDP): all answered after the restart with the same NAT address and port; slowest answer %v",
		len(conns), maxWait.Round(time.Millisecond))

	res := <-bulk
	var rep struct {
		Intervals []struct {
			Sum struct {
				Bytes uint64  `json:"bytes"`
				Secs  float64 `json:"seconds"`
			} `json:"sum"`
		} `json:"intervals"`
		End struct {
			SumReceived struct {
				Bytes         uint64  `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(res.out, &rep); err != nil || res.err != nil || rep.Error != "" {
		t.Fatalf("iperf3 across the restart: %v, %v, %q", res.err, err, rep.Error)
	}
	var zero int
	for _, iv := range rep.Intervals {
		if iv.Sum.Bytes == 0 {
			zero++
		}
	}
	t.Logf("iperf3 TCP across the restart: %d MB received in 6 s (%.2f Gbit/s average), %d of %d 100 ms intervals with no data",
		rep.End.SumReceived.Bytes>>20, rep.End.SumReceived.BitsPerSecond/1e9, zero, len(rep.Intervals))
	if rep.End.SumReceived.Bytes == 0 {
		t.Error("iperf3 received nothing")
	}

	after := kernelState(t, l)
	if after != running {
		t.Errorf("after the restart: %v, want %v", after, running)
	}
	if _, err := os.Stat(filepath.Join(dir, "handover.state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("handover file left after the start took it: %v", err)
	}

	// A SIGTERM and no new start: the hold ends by itself and the kernel
	// carries the LAN (fail-open).
	t0 = time.Now()
	if err := r.Handover(); err != nil {
		t.Fatalf("%v\n%s", err, r.Log())
	}
	var failOpen time.Duration
	for {
		local, seen, err := newUDPFlow(host, netip.AddrPortFrom(l.Servers[7], lab.EchoPort), 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if seen.IsValid() {
			failOpen = time.Since(t0)
			if seen.Port() != local.Port() {
				t.Errorf("after the hold the server saw %v for %v: want the kernel's masquerade (port kept)", seen, local)
			}
			break
		}
		if time.Since(t0) > hold+3*time.Second {
			t.Fatalf("no fail-open %v after SIGTERM with a %v hold", time.Since(t0), hold)
		}
	}
	t.Logf("SIGTERM, no new start: new flows answered by the fail-open fallback %v later (hold %v)", failOpen.Round(time.Millisecond), hold)
	if failOpen < hold-200*time.Millisecond {
		t.Errorf("fail-open after %v, before the %v hold ended", failOpen, hold)
	}
	// A start after the hold does not take the stale flows.
	r, err = labrouter.Start(l, wanflowBin, dir, yaml, nil, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Log(), "the hold had ended") || strings.Contains(r.Log(), "flows restored") {
		t.Errorf("a start after the hold took the flows:\n%s", r.Log())
	}
	if got := kernelState(t, l); got != running {
		t.Errorf("after a start past the hold: %v, want %v", got, running)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := kernelState(t, l); got.total() != 0 {
		t.Errorf("after SIGINT: %v left", got)
	}
}
