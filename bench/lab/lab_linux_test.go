package lab_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
)

// netnsWithPrefix lists /run/netns entries starting with prefix.
func netnsWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	ents, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func ping(t *testing.T, ns *lab.NS, dst netip.Addr, count int) labclient.PingResult {
	t.Helper()
	res, err := labclient.Ping(context.Background(), ns, dst, labclient.PingConfig{Count: count, Interval: 20 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("ping %v from %s: %v", dst, ns.Name, err)
	}
	return res
}

// dnsTXT asks server (from namespace ns) for a TXT record.
func dnsTXT(t *testing.T, ns *lab.NS, server netip.Addr, proto string) string {
	t.Helper()
	var txt string
	err := ns.Do(func() error {
		c := &dns.Client{Net: proto, Timeout: time.Second}
		m := new(dns.Msg)
		m.SetQuestion("whoami.wanflow.lab.", dns.TypeTXT)
		r, _, err := c.Exchange(m, netip.AddrPortFrom(server, 53).String())
		if err != nil {
			return err
		}
		if len(r.Answer) != 1 {
			return fmt.Errorf("answers %v", r.Answer)
		}
		txt = strings.Join(r.Answer[0].(*dns.TXT).Txt, " ")
		return nil
	})
	if err != nil {
		t.Fatalf("DNS TXT query to %v over %s from %s: %v", server, proto, ns.Name, err)
	}
	return txt
}

// TestBaselineAllKinds builds a lab with every uplink kind, routes it with
// the kernel baseline and checks that ICMP, TCP, UDP and DNS pass end to end
// and that the servers see uplink addresses.
func TestBaselineAllKinds(t *testing.T) {
	start := time.Now()
	l := labtest.UpWithServers(t, lab.Config{
		Uplinks: []lab.UplinkSpec{
			{Kind: lab.KindVeth, GRO: true},
			{Kind: lab.KindVeth, MTU: 1400},
			{Kind: lab.KindLANSegment},
			{Kind: lab.KindL3, GRO: true},
		},
		Hosts:          2,
		ExtraHostAddrs: 8,
	})
	t.Logf("lab up with servers in %v; L3 uplink uses %s", time.Since(start), l.Uplinks[3].Tunnel)

	t.Run("GRO", func(t *testing.T) {
		for _, tt := range []struct {
			ns     *lab.NS
			ifname string
			want   bool
		}{
			{l.Router, "up1", true},
			{l.ISPs[0], "down", true},
			{l.Router, "up4", true},
			{l.Router, "up2", false},
		} {
			got, err := tt.ns.GRO(tt.ifname)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("GRO of %s in %s = %v, want %v", tt.ifname, tt.ns.Name, got, tt.want)
			}
		}
	})

	t.Run("NoDefaultRoute", func(t *testing.T) {
		h, err := l.Router.Handle()
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		routes, err := h.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
				t.Errorf("router has a default route before wanflow: %v", r)
			}
		}
	})

	t.Run("ISPDNS", func(t *testing.T) {
		for i, u := range l.Uplinks {
			for _, proto := range []string{"udp", "tcp"} {
				got := dnsTXT(t, l.Router, u.ISPDNS, proto)
				if want := fmt.Sprintf("isp%d %v:", i+1, u.Addr); !strings.HasPrefix(got, want) {
					t.Errorf("uplink %d DNS over %s: TXT %q, want prefix %q", i, proto, got, want)
				}
			}
		}
	})

	t.Run("L4", func(t *testing.T) {
		labtest.Baseline(t, l, lab.BaselineMultipathL4, nil)
		for _, dst := range []netip.Addr{l.Servers[0], l.ProbeTargets[0]} {
			if res := ping(t, l.Hosts[0], dst, 2); res.Received == 0 {
				t.Errorf("ping %v from host 1: %+v", dst, res)
			}
		}
		if res := ping(t, l.Hosts[1], l.Servers[5], 1); res.Received != 1 {
			t.Errorf("ping from host 2: %+v", res)
		}
		sources := append([]netip.Addr{l.HostAddrs[0]}, l.HostExtraAddrs...)
		t0 := time.Now()
		flows, err := labclient.Run(context.Background(), l.Hosts[0], labclient.Config{
			TCPFlows: 300, UDPFlows: 300, Messages: 3, Sources: sources,
		})
		if err != nil {
			t.Fatal(err)
		}
		s := labclient.Summarize(flows)
		t.Logf("600 flows x 3 messages in %v: %v", time.Since(t0), s)
		if s.Failed != 0 || s.Moved != 0 {
			t.Errorf("summary: %v", s)
		}
		var upAddrs []netip.Addr
		for _, u := range l.Uplinks {
			upAddrs = append(upAddrs, u.Addr)
			if s.PerAddr[u.Addr] == 0 {
				t.Errorf("no flow left through uplink %s (%v)", u.Name, u.Addr)
			}
		}
		for _, f := range flows {
			for _, a := range f.Addrs() {
				if !slices.Contains(upAddrs, a) {
					t.Errorf("%s flow %d: server saw %v, not an uplink address", f.Proto, f.Index, a)
				}
			}
			if !slices.Contains(sources, f.Local.Addr()) {
				t.Errorf("%s flow %d: local address %v not among the sources", f.Proto, f.Index, f.Local)
			}
		}
	})

	t.Run("L4SameTupleSameUplink", func(t *testing.T) {
		// New sockets reusing one 5-tuple must take one uplink (the router
		// hashes the headers, not the LAN host's socket hash): otherwise the
		// masquerade entry's interface changes and the kernel drops the packet.
		labtest.Baseline(t, l, lab.BaselineMultipathL4, nil)
		for port := uint16(40000); port < 40004; port++ {
			var seen []netip.Addr
			for range 6 {
				got := udpOnce(t, l.Hosts[0], netip.AddrPortFrom(l.HostAddrs[0], port), netip.AddrPortFrom(l.Servers[1], lab.EchoPort))
				if !slices.Contains(seen, got.Addr()) {
					seen = append(seen, got.Addr())
				}
			}
			if len(seen) != 1 {
				t.Errorf("local port %d: one 5-tuple left through %v", port, seen)
			}
		}
	})

	t.Run("L3Hash", func(t *testing.T) {
		labtest.Baseline(t, l, lab.BaselineMultipathL3, []int{1, 2, 1, 1})
		if got, _ := l.Router.ReadSysctl("net.ipv4.fib_multipath_hash_policy"); got != "0" {
			t.Errorf("fib_multipath_hash_policy = %s, want 0", got)
		}
		// One source, one destination: the L3 hash puts every flow on one uplink.
		flows, err := labclient.Run(context.Background(), l.Hosts[0], labclient.Config{
			TCPFlows: 20, UDPFlows: 20, Targets: []netip.AddrPort{netip.AddrPortFrom(l.Servers[3], lab.AltEchoPort)},
		})
		if err != nil {
			t.Fatal(err)
		}
		s := labclient.Summarize(flows)
		if s.Failed != 0 || len(s.PerAddr) != 1 {
			t.Errorf("summary: %v, want all flows ok through one uplink", s)
		}
	})

	t.Run("Undone", func(t *testing.T) {
		h, err := l.Router.Handle()
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		routes, err := h.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
				t.Errorf("default route left after undo: %v", r)
			}
		}
		if res := ping(t, l.Hosts[0], l.Servers[0], 1); res.Received != 0 {
			t.Errorf("ping without baseline got a reply: %+v", res)
		}
	})
}

// udpOnce sends one datagram from a new socket bound to src and returns the
// source address:port the server saw.
func udpOnce(t *testing.T, ns *lab.NS, src, dst netip.AddrPort) netip.AddrPort {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(src), net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp %v -> %v: %v", src, dst, err)
	}
	got, err := netip.ParseAddrPort(strings.TrimSuffix(string(buf[:n]), " x"))
	if err != nil {
		t.Fatalf("reply %q: %v", buf[:n], err)
	}
	return got
}

// waitFor polls cond for up to two seconds.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s after 2s", what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func linkState(t *testing.T, l *lab.Lab, name string) (exists, lowerUp bool, oper netlink.LinkOperState) {
	t.Helper()
	h, err := l.Router.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lk, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, false, 0
		}
		t.Fatal(err)
	}
	return true, lk.Attrs().RawFlags&unix.IFF_LOWER_UP != 0, lk.Attrs().OperState
}

func TestUplinkCarrier(t *testing.T) {
	l := labtest.Up(t, lab.Config{Uplinks: []lab.UplinkSpec{
		{Kind: lab.KindVeth}, {Kind: lab.KindL3}, {Kind: lab.KindLANSegment},
	}})

	t.Run("Veth", func(t *testing.T) {
		for _, up := range []bool{false, false, true, true} { // twice: idempotent
			if err := l.SetUplinkCarrier(0, up); err != nil {
				t.Fatal(err)
			}
			waitFor(t, fmt.Sprintf("up1 carrier %v", up), func() (bool, string) {
				exists, lower, oper := linkState(t, l, "up1")
				return exists && lower == up && (oper == netlink.OperUp) == up, fmt.Sprintf("lower_up=%v oper=%v", lower, oper)
			})
		}
		if res := ping(t, l.Router, l.Uplinks[0].Gateway, 1); res.Received != 1 {
			t.Errorf("gateway unreachable after carrier came back: %+v", res)
		}
	})

	t.Run("L3", func(t *testing.T) {
		u := l.Uplinks[1]
		if res := ping(t, l.Router, u.Peer, 1); res.Received != 1 {
			t.Fatalf("L3 peer unreachable: %+v", res)
		}
		for _, up := range []bool{false, false, true, true} {
			if err := l.SetUplinkCarrier(1, up); err != nil {
				t.Fatal(err)
			}
			waitFor(t, fmt.Sprintf("up2 present %v", up), func() (bool, string) {
				exists, lower, _ := linkState(t, l, "up2")
				return exists == up && lower == up, fmt.Sprintf("exists=%v lower_up=%v", exists, lower)
			})
		}
		if res := ping(t, l.Router, u.Peer, 1); res.Received != 1 {
			t.Errorf("L3 peer unreachable after redial: %+v", res)
		}
	})

	t.Run("LANSegment", func(t *testing.T) {
		gw := l.Uplinks[2].Gateway
		if err := l.SetUplinkCarrier(2, false); err != nil {
			t.Fatal(err)
		}
		if res := ping(t, l.Router, gw, 1); res.Received != 0 {
			t.Errorf("modem answered while unplugged: %+v", res)
		}
		if _, lower, _ := linkState(t, l, "lan0"); !lower {
			t.Errorf("lan0 lost carrier; the LAN must stay up")
		}
		if err := l.SetUplinkCarrier(2, true); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "modem reachable", func() (bool, string) {
			res := ping(t, l.Router, gw, 1)
			return res.Received == 1, "unreachable"
		})
	})

	if err := l.SetUplinkCarrier(3, true); err == nil {
		t.Errorf("SetUplinkCarrier(3) on 3 uplinks: no error")
	}
}

func TestISPInternet(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{})
	// A route for this test only, in the lab's router namespace: servers via ISP 1.
	h, err := l.Router.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lk, err := h.LinkByName("up1")
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParsePrefix("203.0.113.0/24")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: lk.Attrs().Index, Dst: netipNet(dst), Gw: l.Uplinks[0].Gateway.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	server := l.Servers[0]
	if res := ping(t, l.Router, server, 1); res.Received != 1 {
		t.Fatalf("server unreachable through ISP 1: %+v", res)
	}
	for _, up := range []bool{false, false} {
		if err := l.SetISPInternet(0, up); err != nil {
			t.Fatal(err)
		}
	}
	if res := ping(t, l.Router, server, 2); res.Received != 0 {
		t.Errorf("server reachable while ISP 1's internet is down: %+v", res)
	}
	if res := ping(t, l.Router, l.Uplinks[0].Gateway, 1); res.Received != 1 {
		t.Errorf("ISP 1 gateway unreachable while only its internet is down: %+v", res)
	}
	if _, lower, _ := linkState(t, l, "up1"); !lower {
		t.Errorf("up1 lost carrier")
	}
	if got := dnsTXT(t, l.Router, l.Uplinks[0].ISPDNS, "udp"); !strings.HasPrefix(got, "isp1 ") {
		t.Errorf("ISP DNS: %q", got)
	}
	for _, up := range []bool{true, true} {
		if err := l.SetISPInternet(0, up); err != nil {
			t.Fatal(err)
		}
	}
	if res := ping(t, l.Router, server, 1); res.Received != 1 {
		t.Errorf("server unreachable after ISP 1's internet came back: %+v", res)
	}
}

func netipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// TestTUNDelay checks the delay of a TUN-based L3 uplink.
func TestTUNDelay(t *testing.T) {
	const delay = 20 * time.Millisecond
	l := labtest.Up(t, lab.Config{Uplinks: []lab.UplinkSpec{{Kind: lab.KindL3, ForceTUN: true, Delay: delay}}})
	res := ping(t, l.Router, l.Uplinks[0].Peer, 2)
	if res.Received != 2 {
		t.Fatalf("ping over delayed TUN link: %+v", res)
	}
	for _, rtt := range res.RTTs {
		if rtt < 2*delay || rtt > 2*delay+200*time.Millisecond {
			t.Errorf("rtt %v, want about %v", rtt, 2*delay)
		}
	}
}

// TestDelay checks the netem-free delay of veth and LAN-segment uplinks
// (the TUN detour inside the ISP) end to end under the kernel baseline.
func TestDelay(t *testing.T) {
	const d1, d2 = 20 * time.Millisecond, 10 * time.Millisecond
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{
		{Delay: d1}, {Kind: lab.KindLANSegment, Delay: d2},
	}})
	for i, tt := range []struct {
		weights []int
		delay   time.Duration
	}{{[]int{1, 0}, d1}, {[]int{0, 1}, d2}} {
		undo, err := l.KernelBaseline(lab.BaselineMultipathL4, tt.weights)
		if err != nil {
			t.Fatal(err)
		}
		res, err := labclient.Ping(context.Background(), l.Hosts[0], l.Servers[0], labclient.PingConfig{Count: 3, Interval: time.Millisecond, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if res.Received != 3 {
			t.Errorf("uplink %d: ping through the delayed ISP: %+v", i, res)
		}
		for _, rtt := range res.RTTs {
			if rtt < 2*tt.delay || rtt > 2*tt.delay+100*time.Millisecond {
				t.Errorf("uplink %d: rtt %v, want about %v", i, rtt, 2*tt.delay)
			}
		}
		// host -> router -> ISP -> internet: TTL 3 arrives (the detour costs
		// no TTL), TTL 2 dies at the ISP.
		for ttl, want := range map[int]int{3: 1, 2: 0} {
			res, err := labclient.Ping(context.Background(), l.Hosts[0], l.Servers[0], labclient.PingConfig{Count: 1, TTL: ttl, Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if res.Received != want {
				t.Errorf("uplink %d: ping with TTL %d: %d replies, want %d", i, ttl, res.Received, want)
			}
		}
		flows, err := labclient.Run(context.Background(), l.Hosts[0], labclient.Config{TCPFlows: 50, UDPFlows: 50, Messages: 2})
		if err != nil {
			t.Fatal(err)
		}
		if s := labclient.Summarize(flows); s.Failed != 0 || s.PerAddr[l.Uplinks[i].Addr] != 100 {
			t.Errorf("uplink %d: flows through the delayed ISP: %v", i, s)
		}
		if err := undo(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCloseIdempotent(t *testing.T) {
	labtest.RequireRoot(t)
	prefix := fmt.Sprintf("wftest%d-close-", os.Getpid())
	l, err := lab.Up(context.Background(), lab.Config{Prefix: prefix, Uplinks: []lab.UplinkSpec{{}, {Kind: lab.KindL3}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Cleanup(prefix) })
	if err := l.StartServers(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(netnsWithPrefix(t, prefix)); got != len(l.Namespaces()) {
		t.Errorf("%d namespaces under /run/netns, want %d", got, len(l.Namespaces()))
	}
	for range 2 {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if left := netnsWithPrefix(t, prefix); len(left) > 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
	if err := l.SetUplinkCarrier(0, false); err == nil {
		t.Errorf("SetUplinkCarrier after Close: no error")
	}
}

func TestUpFailureRemovesEverything(t *testing.T) {
	labtest.RequireRoot(t)
	prefix := fmt.Sprintf("wftest%d-fail-", os.Getpid())
	t.Cleanup(func() { lab.Cleanup(prefix) })
	restore := lab.SetTestHookBuilt(func(*lab.Lab) error { return errors.New("injected") })
	_, err := lab.Up(context.Background(), lab.Config{Prefix: prefix, Uplinks: []lab.UplinkSpec{{}, {Kind: lab.KindL3}}})
	restore()
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Up error = %v, want the injected one", err)
	}
	if left := netnsWithPrefix(t, prefix); len(left) > 0 {
		t.Errorf("namespaces left after failed Up: %v", left)
	}

	// A namespace that exists already is not ours: Up fails and leaves it.
	l, err := lab.Up(context.Background(), lab.Config{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := lab.Up(context.Background(), lab.Config{Prefix: prefix}); err == nil {
		t.Fatalf("second Up with the same prefix succeeded")
	}
	if got := len(netnsWithPrefix(t, prefix)); got != len(l.Namespaces()) {
		t.Errorf("failed Up removed the first lab's namespaces: %d left, want %d", got, len(l.Namespaces()))
	}
}

// The helper modes below run in a child test binary (see runChild).
const childEnv = "WANFLOW_LAB_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		goleak.VerifyTestMain(m)
	case "fail":
		// A test that fails half-way: labtest's cleanup must still remove the lab.
		os.Exit(m.Run())
	case "crash":
		childCrash()
	}
}

// childCrash builds two labs, starts a long-running process inside one and
// exits without closing anything.
func childCrash() {
	l1, err := lab.Up(context.Background(), lab.Config{})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	l2, err := lab.Up(context.Background(), lab.Config{Prefix: os.Getenv("WANFLOW_LAB_PREFIX"), Uplinks: []lab.UplinkSpec{{Kind: lab.KindL3}}})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	cmd := l2.Router.Command(context.Background(), "sleep", "600")
	if err := cmd.Start(); err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	fmt.Println("PREFIX", l1.Cfg.Prefix)
	fmt.Println("SLEEP", cmd.Process.Pid)
	os.Exit(3) // crash: nothing is closed
}

func TestHelperFailMidway(t *testing.T) {
	if os.Getenv(childEnv) != "fail" {
		t.Skip("helper for TestFailingTestCleansUp")
	}
	l := labtest.Up(t, lab.Config{Prefix: os.Getenv("WANFLOW_LAB_PREFIX")})
	fmt.Println("NAMESPACES", len(l.Namespaces()))
	t.Fatal("deliberate failure half-way through a lab test")
}

func runChild(t *testing.T, mode, prefix string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "WANFLOW_LAB_PREFIX="+prefix)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

func TestFailingTestCleansUp(t *testing.T) {
	labtest.RequireRoot(t)
	prefix := fmt.Sprintf("wftest%d-midway-", os.Getpid())
	t.Cleanup(func() { lab.Cleanup(prefix) })
	out := runChild(t, "fail", prefix, "-test.run=^TestHelperFailMidway$", "-test.v")
	if !strings.Contains(out, "deliberate failure") || !strings.Contains(out, "NAMESPACES") {
		t.Fatalf("child did not build a lab and fail:\n%s", out)
	}
	if left := netnsWithPrefix(t, prefix); len(left) > 0 {
		t.Errorf("namespaces left by a failed test: %v", left)
	}
}

func TestCleanupAfterCrash(t *testing.T) {
	labtest.RequireRoot(t)
	prefix := fmt.Sprintf("wftest%d-crash-", os.Getpid())
	t.Cleanup(func() { lab.Cleanup(prefix) })
	out := runChild(t, "crash", prefix)
	var defPrefix string
	var sleepPID int
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "PREFIX "); ok {
			defPrefix = v
		}
		if v, ok := strings.CutPrefix(line, "SLEEP "); ok {
			sleepPID, _ = strconv.Atoi(v)
		}
	}
	if defPrefix == "" || sleepPID == 0 {
		t.Fatalf("child output:\n%s", out)
	}
	t.Cleanup(func() { lab.Cleanup(defPrefix) })
	if len(netnsWithPrefix(t, prefix)) == 0 {
		t.Fatalf("the crashed child left nothing to clean up")
	}
	if err := unix.Kill(sleepPID, 0); err != nil {
		t.Fatalf("process in the crashed lab not running: %v", err)
	}

	// Another test binary's CleanupStale may beat this one to the default-
	// prefix lab; either way it must be gone afterwards.
	if _, err := lab.CleanupStale(); err != nil {
		t.Fatal(err)
	}
	if left := netnsWithPrefix(t, defPrefix); len(left) > 0 {
		t.Errorf("CleanupStale left %v", left)
	}
	if len(netnsWithPrefix(t, prefix)) == 0 {
		t.Fatalf("CleanupStale removed a lab with a custom prefix")
	}

	for range 2 {
		if err := lab.Cleanup(prefix); err != nil {
			t.Fatal(err)
		}
	}
	if left := netnsWithPrefix(t, prefix); len(left) > 0 {
		t.Errorf("Cleanup left %v", left)
	}
	// The orphaned sleep was killed (it may linger as a zombie of init briefly).
	waitFor(t, "sleep killed", func() (bool, string) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", sleepPID))
		return err != nil || strings.Contains(string(b), ") Z "), "running"
	})
	if err := lab.Cleanup(""); err == nil {
		t.Errorf("Cleanup(\"\") did not refuse")
	}
}
