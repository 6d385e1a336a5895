package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// RestartResult is what one way of restarting the daemon did to the LAN's
// flows.
type RestartResult struct {
	// Mode is "handover" (SIGTERM, then a start: a planned restart),
	// "sigint" (stopped for good, then started) or "crash" (kill -9, then
	// started).
	Mode string `json:"mode"`
	// DownMs is from the signal to the old process gone; UpMs from then
	// to the new daemon running.
	DownMs float64 `json:"down_ms"`
	UpMs   float64 `json:"up_ms"`
	// NewFlowGapMs is the longest time, from the signal until the new
	// daemon has run for half a second, in which no new LAN flow (one is
	// tried every 10 ms) was answered; ViaKernel counts the new flows the
	// kernel answered meanwhile (the fail-open masquerade: the server saw
	// the LAN host's own port), ViaWanflow those a dataplane answered.
	NewFlowGapMs float64 `json:"new_flow_gap_ms"`
	ViaKernel    int     `json:"via_kernel"`
	ViaWanflow   int     `json:"via_wanflow"`
	// TCP and UDP long-lived flows open before the restart: how many were
	// answered afterwards (TCPAlive, UDPAlive) and how many of those kept
	// the NAT address and port the server saw before (…Same).
	TCP      int `json:"tcp"`
	TCPAlive int `json:"tcp_alive"`
	TCPSame  int `json:"tcp_same_mapping"`
	UDP      int `json:"udp"`
	UDPAlive int `json:"udp_alive"`
	UDPSame  int `json:"udp_same_mapping"`
	// Restored is the new daemon's count of handed-over flows.
	Restored int `json:"restored"`
}

// RestartOptions tune Restart. Zero fields take the defaults.
type RestartOptions struct {
	// Flows is the number of long-lived TCP connections and of UDP flows
	// (each), default 20.
	Flows int
}

// Restart measures what three ways of restarting wanflow do to the LAN:
// a planned restart (SIGTERM hands the flow table over), a stop for good
// and a start (SIGINT), and a crash and a start (kill -9). Before each,
// o.Flows TCP connections and o.Flows UDP flows to the lab's echo servers
// exchange a message; after the new daemon runs, each exchanges again and
// reports the NAT address and port the server saw. Meanwhile a new UDP flow
// is tried every 10 ms to time when the LAN has internet again.
func Restart(ctx context.Context, bin string, o RestartOptions, w io.Writer) ([]RestartResult, error) {
	if o.Flows <= 0 {
		o.Flows = 20
	}
	l, err := lab.Up(ctx, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if err := l.StartServers(ctx); err != nil {
		return nil, err
	}
	var out []RestartResult
	for _, mode := range []string{"handover", "sigint", "crash"} {
		fmt.Fprintf(w, "  %s: %d TCP and %d UDP flows through a restart...\n", mode, o.Flows, o.Flows)
		r, err := restartOnce(ctx, l, bin, mode, o)
		if err != nil {
			return nil, fmt.Errorf("bench: restart %s: %w", mode, err)
		}
		fmt.Fprintf(w, "  %s: down %.0f ms, up %.0f ms; no new flow answered for %.0f ms (%d via the kernel); TCP %d/%d alive (%d same mapping), UDP %d/%d (%d same)\n",
			mode, r.DownMs, r.UpMs, r.NewFlowGapMs, r.ViaKernel, r.TCPAlive, r.TCP, r.TCPSame, r.UDPAlive, r.UDP, r.UDPSame)
		out = append(out, r)
	}
	return out, nil
}

func restartOnce(ctx context.Context, l *lab.Lab, bin, mode string, o RestartOptions) (RestartResult, error) {
	res := RestartResult{Mode: mode, TCP: o.Flows, UDP: o.Flows}
	dir, err := os.MkdirTemp("", "wanflow-bench-restart-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	yaml := labrouter.ConfigYAML(l, labrouter.Options{})
	r, err := labrouter.Start(l, bin, dir, yaml, nil, 15*time.Second)
	if err != nil {
		return res, err
	}
	defer func() {
		if !r.Exited() {
			r.Stop()
		}
	}()
	var conns []*echoConn
	defer func() {
		for _, c := range conns {
			c.c.Close()
		}
	}()
	for i := range 2 * o.Flows {
		proto := "tcp"
		if i%2 == 1 {
			proto = "udp"
		}
		c, err := dialEcho(l.Hosts[0], proto, netip.AddrPortFrom(l.Servers[i%len(l.Servers)], lab.EchoPort))
		if err != nil {
			return res, err
		}
		conns = append(conns, c)
		if c.seen, err = c.exchange(2 * time.Second); err != nil {
			return res, fmt.Errorf("%s flow %d before the restart: %w", proto, i, err)
		}
	}

	// New flows are tried from the signal on, every 10 ms, until the new
	// daemon has run for half a second.
	// The probing goroutine owns last, gap, viaKernel and viaWanflow until
	// probed is closed; every return waits for it.
	probeCtx, stopProbe := context.WithCancel(ctx)
	probed := make(chan struct{})
	defer func() { stopProbe(); <-probed }()
	start := time.Now()
	last := start // the last answer (the signal to begin with)
	var gap time.Duration
	var viaKernel, viaWanflow int
	go func() {
		defer close(probed)
		for probeCtx.Err() == nil {
			local, seen, err := newUDPFlow(l.Hosts[0], netip.AddrPortFrom(l.Servers[0], lab.EchoPort), 10*time.Millisecond)
			if err != nil || !seen.IsValid() {
				continue
			}
			now := time.Now()
			gap = max(gap, now.Sub(last))
			last = now
			if seen.Port() == local.Port() {
				viaKernel++
			} else {
				viaWanflow++
			}
		}
		gap = max(gap, time.Since(last))
	}()
	sig := syscall.SIGKILL
	switch mode {
	case "handover":
		sig = syscall.SIGTERM
	case "sigint":
		sig = syscall.SIGINT
	}
	if err := r.Signal(sig); err != nil {
		return res, err
	}
	for !r.Exited() {
		if time.Since(start) > 15*time.Second {
			return res, fmt.Errorf("daemon still running 15 s after the signal")
		}
		time.Sleep(time.Millisecond)
	}
	res.DownMs = ms(time.Since(start))
	up := time.Now()
	r, err = labrouter.Start(l, bin, dir, yaml, nil, 15*time.Second)
	if err != nil {
		return res, err
	}
	res.UpMs = ms(time.Since(up))
	time.Sleep(500 * time.Millisecond)
	stopProbe()
	<-probed
	res.NewFlowGapMs, res.ViaKernel, res.ViaWanflow = ms(gap), viaKernel, viaWanflow
	for _, c := range conns {
		seen, err := c.exchange(3 * time.Second)
		if err != nil {
			continue
		}
		if c.c.LocalAddr().Network() == "udp" {
			res.UDPAlive++
			if seen == c.seen {
				res.UDPSame++
			}
		} else {
			res.TCPAlive++
			if seen == c.seen {
				res.TCPSame++
			}
		}
	}
	res.Restored = restoredCount(r.Log())
	return res, nil
}

// restoredCount reads N from the daemon's log line "handover: N flows
// restored from a handover ...", 0 if there is none.
func restoredCount(log string) int {
	const key = `msg="handover: `
	for _, line := range strings.Split(log, "\n") {
		i := strings.Index(line, key)
		if i < 0 || !strings.Contains(line, "flows restored from a handover") {
			continue
		}
		var n int
		fmt.Sscanf(line[i+len(key):], "%d", &n)
		return n
	}
	return 0
}

// newUDPFlow sends one datagram from a new socket in ns to dst and waits
// up to wait for the echo server's answer: the address:port it saw (the
// zero AddrPort if none came).
func newUDPFlow(ns *lab.NS, dst netip.AddrPort, wait time.Duration) (local, seen netip.AddrPort, err error) {
	err = ns.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		local = c.LocalAddr().(*net.UDPAddr).AddrPort()
		if _, err := c.Write([]byte("x")); err != nil {
			return nil // no route (yet): not answered
		}
		c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			return nil
		}
		if f := strings.Fields(string(buf[:n])); len(f) > 0 {
			seen, _ = netip.ParseAddrPort(f[0])
		}
		return nil
	})
	return local, seen, err
}
