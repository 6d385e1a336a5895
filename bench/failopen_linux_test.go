package bench

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// failOpenBudget is how long LAN hosts may be cut off after the daemon is
// killed before new flows reach the internet through kernel forwarding.
const failOpenBudget = time.Second

// probeTCP opens a TCP connection from ns to dst and returns the source
// address:port the server saw.
func probeTCP(ns *lab.NS, dst netip.AddrPort) (local, seen netip.AddrPort, err error) {
	err = ns.Do(func() error {
		c, err := net.DialTimeout("tcp4", dst.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		local = c.LocalAddr().(*net.TCPAddr).AddrPort()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("x\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil && line == "" {
			return err
		}
		seen, err = netip.ParseAddrPort(strings.Fields(line)[0])
		return err
	})
	return local, seen, err
}

// TestFailOpen kills the daemon with SIGKILL while a LAN host keeps opening
// new UDP flows: within failOpenBudget they reach the server again by
// kernel forwarding over a live uplink, masqueraded to the uplink's address
// (the fallback rules of lan/steer and the fail-open chain of
// uplinks/nftguard). The next start takes over — new flows go through the
// dataplane again, with no duplicate kernel state — and a clean stop
// leaves nothing behind.
//
// A UDP flow that wanflow carried before the crash continues over the
// kernel too: while wanflow runs, LAN<->TUN traffic is kept out of conntrack,
// so no untranslated conntrack entry outlives the daemon.
//
// Which path carried a flow shows in the port the server saw: the dataplane
// maps the LAN host's ephemeral port (32768-60999) into the NAT range
// (20000-32767), the kernel's masquerade keeps it.
func TestFailOpen(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	host := l.Hosts[0]
	udpDst := netip.AddrPortFrom(l.Servers[0], lab.EchoPort)
	tcpDst := netip.AddrPortFrom(l.Servers[1], lab.EchoPort)
	uplinkAddr := map[netip.Addr]bool{}
	for _, u := range l.Uplinks {
		uplinkAddr[u.Addr] = true
	}
	if v, err := l.Router.ReadSysctl("net/ipv4/ip_forward"); err != nil || strings.TrimSpace(v) != "1" {
		// The lab sets it (baseSysctls) and lan/steer ensures it; say so
		// if that ever changes.
		t.Fatalf("router ip_forward = %q, %v; fail-open needs 1", v, err)
	}
	viaWanflow := func(local, seen netip.AddrPort) bool {
		return uplinkAddr[seen.Addr()] && seen.Port() >= 20000 && seen.Port() <= 32767 && seen.Port() != local.Port()
	}
	viaKernel := func(local, seen netip.AddrPort) bool {
		return uplinkAddr[seen.Addr()] && seen.Port() == local.Port()
	}
	expectPath := func(what string, via func(local, seen netip.AddrPort) bool) {
		t.Helper()
		local, seen, err := newUDPFlow(host, udpDst, time.Second)
		if err != nil || !via(local, seen) {
			t.Errorf("%s: UDP from %v: server saw %v (%v)", what, local, seen, err)
		}
		local, seen, err = probeTCP(host, tcpDst)
		if err != nil || !via(local, seen) {
			t.Errorf("%s: TCP from %v: server saw %v (%v)", what, local, seen, err)
		}
	}

	yaml := labrouter.ConfigYAML(l, labrouter.Options{})
	r, err := labrouter.Start(l, wanflowBin, t.TempDir(), yaml, nil, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	running := kernelState(t, l)
	expectPath("while running", viaWanflow)
	// A UDP flow that lives through the crash: same socket, same 5-tuple.
	var long *net.UDPConn
	if err := host.Do(func() error {
		var err error
		long, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(udpDst))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	longLocal := long.LocalAddr().(*net.UDPAddr).AddrPort()
	exchange := func() netip.AddrPort {
		buf := make([]byte, 256)
		for range 10 {
			long.Write([]byte("x"))
			long.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, err := long.Read(buf); err == nil {
				ap, _ := netip.ParseAddrPort(strings.TrimSuffix(string(buf[:n]), " x"))
				return ap
			}
		}
		return netip.AddrPort{}
	}
	if seen := exchange(); !viaWanflow(longLocal, seen) {
		t.Errorf("long UDP flow before the crash: server saw %v for %v, want the dataplane's NAT", seen, longLocal)
	}

	// Crash. New flows are probed back to back, each waiting 20 ms for its
	// answer (the lab's round trip is well below 1 ms).
	start := time.Now()
	r.Kill()
	killed := time.Since(start)
	var outage time.Duration
	var local, seen netip.AddrPort
	probes := 0
	for {
		probes++
		local, seen, err = newUDPFlow(host, udpDst, 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if seen.IsValid() {
			outage = time.Since(start)
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no new flow answered within 5 s of kill -9 (%d probes)\n%s", probes, r.Log())
		}
	}
	t.Logf("fail-open: kill -9 took %v; first new flow answered %v after the kill began (%d probes); server saw %v for %v",
		killed.Round(time.Microsecond), outage.Round(time.Microsecond), probes, seen, local)
	if outage > failOpenBudget {
		t.Errorf("fail-open took %v, want ≤ %v", outage, failOpenBudget)
	}
	if !viaKernel(local, seen) {
		t.Errorf("after kill -9 the server saw %v for %v, want an uplink address with the port kept (kernel masquerade)", seen, local)
	}
	expectPath("after kill -9", viaKernel)
	// A LAN flow whose source port lies in the NAT range: the guard drops
	// the kernel's copy of NAT replies only while wf0 exists, so the
	// masquerade's replies reach it too.
	if err := host.Do(func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{Port: 25001}, net.UDPAddrFromAddrPort(udpDst))
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 256)
		for range 5 {
			c.Write([]byte("x"))
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if n, err := c.Read(buf); err == nil {
				seen, _ := netip.ParseAddrPort(strings.TrimSuffix(string(buf[:n]), " x"))
				if !uplinkAddr[seen.Addr()] || seen.Port() != 25001 {
					t.Errorf("after kill -9, from port 25001 (NAT range): server saw %v, want an uplink address and port 25001", seen)
				}
				return nil
			}
		}
		t.Error("after kill -9, a LAN flow from port 25001 (inside the NAT range) got no answer")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The dataplane's LAN<->TUN traffic was never in conntrack (nftguard's
	// notrack chain), so the long flow gets a fresh, masqueraded entry too.
	if seen := exchange(); !viaKernel(longLocal, seen) {
		t.Errorf("long UDP flow after kill -9: server saw %v for %v, want the kernel's masquerade", seen, longLocal)
	}
	crashed := kernelState(t, l)
	t.Logf("running: %v; after kill -9: %v", running, crashed)
	if crashed.tun != 0 || crashed.nftTables != 1 {
		t.Errorf("after kill -9: %v, want no TUN and wanflow's nftables table", crashed)
	}

	// Restart: wanflow takes over, converging on the state of a clean start.
	r = startRouter(t, l, yaml)
	if again := kernelState(t, l); again != running || again.dupRules != 0 || again.dupRoutes != 0 {
		t.Errorf("after restart: %v, want %v and no duplicates", again, running)
	}
	expectPath("after restart", viaWanflow)
	if err := r.Stop(); err != nil {
		t.Fatalf("%v\n%s", err, r.Log())
	}
	if after := kernelState(t, l); after.total() != 0 {
		t.Errorf("after a clean stop: %v left behind", after)
	}
	// Without wanflow (and without a default route in the router's main
	// table) nothing carries LAN traffic any more: fail-open is wanflow's
	// state, not a change to the host's routing.
	if local, seen, _ := newUDPFlow(host, udpDst, 200*time.Millisecond); seen.IsValid() {
		t.Errorf("after a clean stop UDP from %v still reached the server as %v", local, seen)
	}
}
