package dhcp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/wanflow/wanflow/bench/lab/nstest"
)

// countingTransport counts replies sent as link-layer unicast.
type countingTransport struct {
	transport
	hw *atomic.Int64
}

func (c countingTransport) sendHW(p []byte, hw net.HardwareAddr, src, dst netip.Addr) error {
	c.hw.Add(1)
	return c.transport.sendHW(p, hw, src, dst)
}

const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface" ;;
bound|renew) ip addr replace "$ip/${mask:-$subnet}" dev "$interface" ;;
esac
echo "event=$1;ip=$ip;subnet=$subnet;router=$router;dns=$dns;domain=$domain;lease=$lease;serverid=$serverid;broadcast=$broadcast" >> "$OUT"
`

// udhcpcEvent is one line the script wrote.
type udhcpcEvent map[string]string

func readEvents(path string) []udhcpcEvent {
	b, _ := os.ReadFile(path)
	var out []udhcpcEvent
	for line := range strings.Lines(string(b)) {
		ev := udhcpcEvent{}
		for kv := range strings.SplitSeq(strings.TrimSpace(line), ";") {
			k, v, _ := strings.Cut(kv, "=")
			ev[k] = v
		}
		out = append(out, ev)
	}
	return out
}

// waitEvent waits until the n-th (1-based) event named name appears in
// path and returns it.
func waitEvent(t *testing.T, path, name string, n int, cmd *exec.Cmd, exited <-chan struct{}) udhcpcEvent {
	t.Helper()
	deadline := time.After(8 * time.Second)
	for {
		seen := 0
		for _, ev := range readEvents(path) {
			if ev["event"] == name {
				if seen++; seen == n {
					return ev
				}
			}
		}
		select {
		case <-deadline:
			b, _ := os.ReadFile(path)
			t.Fatalf("no %q event #%d from %v; events:\n%s", name, n, cmd.Args, b)
		case <-exited:
			b, _ := os.ReadFile(path)
			t.Fatalf("udhcpc exited before %q event #%d; events:\n%s", name, n, b)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestUdhcpc runs busybox udhcpc clients in their own namespaces against
// the server on a bridge in the server namespace: options, distinct
// addresses, a reservation, and renewal to the same addresses after a
// server restart.
func TestUdhcpc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (apt-get install busybox): its udhcpc is the test client")
	}
	if out, err := exec.Command(busybox, "udhcpc", "--help").CombinedOutput(); !strings.Contains(string(out), "udhcpc") {
		t.Skipf("busybox has no udhcpc applet: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 `ip` not installed: needed for `ip netns exec`")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}

	// Server namespace: bridge lan0 (10.77.0.1/24) with one veth port per
	// client; each client namespace holds the other end as eth0.
	prefix := fmt.Sprintf("wfdhcp%d", os.Getpid())
	srvN := nstest.NewNamed(t, prefix+"s")
	srvNS, srv := srvN.NsHandle(), srvN.Handle()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}}
	if err := srv.LinkAdd(br); err != nil {
		t.Fatalf("add bridge: %v", err)
	}
	addr, _ := netlink.ParseAddr("10.77.0.1/24")
	if err := srv.AddrAdd(br, addr); err != nil {
		t.Fatal(err)
	}
	if err := srv.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	type cli struct {
		name  string
		ns    string
		mac   net.HardwareAddr
		args  []string
		out   string
		cmd   *exec.Cmd
		exit  chan struct{}
		bound udhcpcEvent
	}
	clients := []*cli{
		{name: "alpha", mac: net.HardwareAddr{0x02, 0x77, 0, 0, 1, 1}, args: []string{"-x", "hostname:alpha"}},
		{name: "beta", mac: net.HardwareAddr{0x02, 0x77, 0, 0, 1, 2}, args: []string{"-B", "-x", "hostname:beta"}}, // broadcast flag
		{name: "printer", mac: reservedHW},
	}
	for i, c := range clients {
		c.ns = fmt.Sprintf("%sc%d", prefix, i)
		c.out = filepath.Join(dir, c.name+".events")
		n := nstest.NewNamed(t, c.ns)
		ns, ch := n.NsHandle(), n.Handle()
		port := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: fmt.Sprintf("p%d", i), MasterIndex: br.Attrs().Index},
			PeerName:         "eth0",
			PeerHardwareAddr: c.mac,
			PeerNamespace:    netlink.NsFd(int(ns)),
		}
		if err := srv.LinkAdd(port); err != nil {
			t.Fatalf("add veth: %v", err)
		}
		if err := srv.LinkSetUp(port); err != nil {
			t.Fatal(err)
		}
		eth0, err := ch.LinkByName("eth0")
		if err == nil {
			err = ch.LinkSetUp(eth0)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	cfg := Config{
		Interface:    "lan0",
		ServerAddr:   serverIP,
		Subnet:       netip.MustParsePrefix("10.77.0.0/24"),
		RangeStart:   netip.MustParseAddr("10.77.0.100"),
		RangeEnd:     netip.MustParseAddr("10.77.0.199"),
		LeaseTime:    time.Hour,
		Domain:       "lan",
		Reservations: []Reservation{{MAC: reservedHW, Addr: reservedIP, Hostname: "printer"}},
		LeaseFile:    filepath.Join(dir, "dhcp.leases"),
		Logger:       testLogger(t),
	}
	var hwSends atomic.Int64
	start := func() (*Server, func()) {
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{}, 1)
		s.open = func(ifname string, log *slog.Logger) (transport, error) {
			var tr transport
			err := nstest.Do(srvNS, func() error {
				var err error
				tr, err = openTransport(ifname, log)
				return err
			})
			if err != nil {
				return nil, err
			}
			ready <- struct{}{}
			return countingTransport{tr, &hwSends}, nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx) }()
		select { // clients must not talk before the socket exists
		case <-ready:
		case err := <-done:
			t.Fatalf("Serve: %v", err)
		}
		var once atomic.Bool
		stop := func() {
			if once.Swap(true) {
				return
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
		t.Cleanup(stop)
		return s, stop
	}
	s, stop := start()

	for _, c := range clients {
		args := append([]string{"netns", "exec", c.ns, busybox, "udhcpc", "-f", "-i", "eth0", "-s", script, "-t", "5", "-T", "1", "-n"}, c.args...)
		c.cmd = exec.Command("ip", args...)
		c.cmd.Env = []string{"OUT=" + c.out, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		c.cmd.Stdout, c.cmd.Stderr = testWriter{t}, testWriter{t}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c.exit = make(chan struct{})
		go func(c *cli) { c.cmd.Wait(); close(c.exit) }(c)
		t.Cleanup(func() {
			c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.exit:
			case <-time.After(3 * time.Second):
				c.cmd.Process.Kill()
				<-c.exit
			}
		})
	}
	for _, c := range clients {
		c.bound = waitEvent(t, c.out, "bound", 1, c.cmd, c.exit)
		want := map[string]string{"subnet": "255.255.255.0", "router": "10.77.0.1", "dns": "10.77.0.1",
			"domain": "lan", "lease": "3600", "serverid": "10.77.0.1", "broadcast": "10.77.0.255"}
		for k, v := range want {
			if got := strings.TrimSpace(c.bound[k]); got != v {
				t.Errorf("%s: %s=%q, want %q", c.name, k, got, v)
			}
		}
	}
	ip := func(c *cli) netip.Addr { return netip.MustParseAddr(c.bound["ip"]) }
	a, b, p := ip(clients[0]), ip(clients[1]), ip(clients[2])
	pool := func(x netip.Addr) bool {
		return !x.Less(cfg.RangeStart) && !cfg.RangeEnd.Less(x)
	}
	if !pool(a) || !pool(b) || a == b {
		t.Errorf("clients got %v and %v, want two distinct pool addresses", a, b)
	}
	if p != reservedIP {
		t.Errorf("reserved client got %v, want %v", p, reservedIP)
	}
	if got, ok := s.Lookup("alpha.lan"); !ok || got != a {
		t.Errorf("Lookup(alpha.lan) = %v, %v; want %v", got, ok, a)
	}
	if hwSends.Load() == 0 {
		t.Error("no reply went out as link-layer unicast (the client without -B should have needed one)")
	}

	// Restart the server: the leases survive, and a renewal (SIGUSR1:
	// unicast DHCPREQUEST from ciaddr) gets the same addresses.
	stop()
	s, _ = start()
	if got := len(s.Leases()); got != 3 {
		t.Fatalf("after restart %d leases, want 3: %+v", got, s.Leases())
	}
	for _, c := range clients {
		if err := c.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		ev := waitEvent(t, c.out, "renew", 1, c.cmd, c.exit)
		if ev["ip"] != c.bound["ip"] {
			t.Errorf("%s renewed to %s, had %s", c.name, ev["ip"], c.bound["ip"])
		}
	}
	// A client may retry, so count at least one ACK each: busybox udhcpc
	// sends its unicast renew from a short-lived socket bound to ciaddr:68
	// and connected to the server, and an ACK that arrives before that
	// socket is closed is delivered to it and lost (seen on fast veths);
	// udhcpc then rebinds by broadcast after 1 s, which is answered too.
	if st := s.Stats(); st.Acks < 3 || st.Naks != 0 || st.LeasesActive != 3 {
		t.Errorf("after renewals Stats = %+v", st)
	}
}
