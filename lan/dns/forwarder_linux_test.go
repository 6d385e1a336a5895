package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/wanflow/wanflow/bench/lab/nstest"
)

// newNS creates an anonymous network namespace, with lo up, that lives
// until the test ends. The host namespace is never entered or changed.
func newNS(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	n := nstest.New(t)
	return n.NsHandle(), n.Handle()
}

// nsDo runs fn on a locked OS thread inside ns (sockets fn opens stay
// there); a thread that cannot come back dies locked.
func nsDo(ns netns.NsHandle, fn func() error) error {
	f := &Forwarder{cfg: Config{NetNS: &ns}}
	return f.inNS(fn)
}

func ipnet(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// ispServer is an ISP's DNS server: it answers A queries with 192.0.2.<i>
// and records the source addresses it sees.
type ispServer struct {
	mu   sync.Mutex
	seen []netip.Addr
}

func (s *ispServer) sources() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.Addr(nil), s.seen...)
}

func startISPServer(t *testing.T, ns netns.NsHandle, addr string, i byte) *ispServer {
	t.Helper()
	s := &ispServer{}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		var src netip.AddrPort
		switch a := w.RemoteAddr().(type) {
		case *net.UDPAddr:
			src = a.AddrPort()
		case *net.TCPAddr:
			src = a.AddrPort()
		}
		s.mu.Lock()
		s.seen = append(s.seen, src.Addr().Unmap())
		s.mu.Unlock()
		answerA(60, net.IPv4(192, 0, 2, i).String())(w, r)
	})
	var pc net.PacketConn
	var l net.Listener
	if err := nsDo(ns, func() error {
		var err error
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return err
		}
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("ISP %d DNS server: %v", i, err)
	}
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() { defer close(done); srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { srv.Shutdown(); <-done })
	}
	return s
}

// TestUplinkBinding builds a router with two uplinks the way wanflow sets
// them up (rule "from <uplink addr> lookup <table>", a default route per
// table, no default route in main), two ISPs whose DNS servers share one
// address, and a LAN client, and shows that each upstream is reached
// through its own uplink only, that a dead ISP DNS is hedged around in well
// under a second, and that once the uplink is dropped from the list the
// answers are immediate.
func TestUplinkBinding(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	routerNS, hR := newNS(t)
	isp1NS, h1 := newNS(t)
	isp2NS, h2 := newNS(t)
	clientNS, hC := newNS(t)

	nstest.Veth(t, hR, "up1", "100.64.1.2/24", h1, isp1NS, "isp1", "100.64.1.1/24")
	nstest.Veth(t, hR, "up2", "100.64.2.2/24", h2, isp2NS, "isp2", "100.64.2.1/24")
	nstest.Veth(t, hR, "lan0", "10.77.0.1/24", hC, clientNS, "eth0", "10.77.0.10/24")
	// Both ISPs' DNS servers on one address: only the uplink decides which
	// one a query reaches.
	const dnsAddr = "198.51.100.53"
	for _, h := range []*netlink.Handle{h1, h2} {
		lo, _ := h.LinkByName("lo")
		a, _ := netlink.ParseAddr(dnsAddr + "/32")
		if err := h.AddrAdd(lo, a); err != nil {
			t.Fatal(err)
		}
	}
	lan0, _ := hC.LinkByName("eth0")
	if err := hC.RouteAdd(&netlink.Route{LinkIndex: lan0.Attrs().Index, Gw: net.ParseIP("10.77.0.1")}); err != nil {
		t.Fatalf("client default route: %v", err)
	}
	for i, up := range []string{"up1", "up2"} {
		l, _ := hR.LinkByName(up)
		table := 7701 + i
		gw := net.IPv4(100, 64, byte(i+1), 1)
		if err := hR.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw, Table: table, Protocol: 167}); err != nil {
			t.Fatalf("route in table %d: %v", table, err)
		}
		r := netlink.NewRule()
		r.Priority = 7800 + 10*i
		r.Src = &net.IPNet{IP: net.IPv4(100, 64, byte(i+1), 2), Mask: net.CIDRMask(32, 32)}
		r.Table = table
		if err := hR.RuleAdd(r); err != nil {
			t.Fatalf("rule: %v", err)
		}
	}
	isp1 := startISPServer(t, isp1NS, dnsAddr+":53", 1)
	isp2 := startISPServer(t, isp2NS, dnsAddr+":53", 2)

	up1 := Upstream{Uplink: "isp1", Addr: netip.MustParseAddrPort(dnsAddr + ":53"), Interface: "up1", Source: netip.MustParseAddr("100.64.1.2")}
	up2 := Upstream{Uplink: "isp2", Addr: netip.MustParseAddrPort(dnsAddr + ":53"), Interface: "up2", Source: netip.MustParseAddr("100.64.2.2")}
	f, err := New(Config{
		Listen:      []netip.AddrPort{netip.MustParseAddrPort("10.77.0.1:53")},
		AllowedNets: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")},
		HedgeAfter:  200 * time.Millisecond,
		Timeout:     1500 * time.Millisecond,
		NetNS:       &routerNS,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.SetUpstreams([]Upstream{up1, up2})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	// query asks the forwarder from ns (the client by default) over UDP.
	query := func(t *testing.T, ns netns.NsHandle, server, name string) (*mdns.Msg, time.Duration, error) {
		t.Helper()
		var c net.Conn
		if err := nsDo(ns, func() error {
			var err error
			c, err = net.Dial("udp", server)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		q := new(mdns.Msg)
		q.SetQuestion(name, mdns.TypeA)
		cl := &mdns.Client{Timeout: 3 * time.Second}
		start := time.Now()
		m, _, err := cl.ExchangeWithConn(q, &mdns.Conn{Conn: c})
		return m, time.Since(start), err
	}
	var m *mdns.Msg
	for range 100 { // until Serve listens
		if m, _, err = query(t, clientNS, "10.77.0.1:53", "first.test."); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("first query: %v", err)
	}
	if a := firstA(t, m); a.A.String() != "192.0.2.1" {
		t.Errorf("first query: got %v, want ISP 1's answer", a)
	}
	if got := isp1.sources(); len(got) != 1 || got[0] != up1.Source {
		t.Errorf("ISP 1 saw sources %v, want [%v]", got, up1.Source)
	}

	t.Run("each upstream through its own uplink", func(t *testing.T) {
		f.SetUpstreams([]Upstream{up2})
		m, _, err := query(t, clientNS, "10.77.0.1:53", "second.test.")
		if err != nil {
			t.Fatal(err)
		}
		if a := firstA(t, m); a.A.String() != "192.0.2.2" {
			t.Errorf("got %v, want ISP 2's answer", a)
		}
		if got := isp2.sources(); len(got) != 1 || got[0] != up2.Source {
			t.Errorf("ISP 2 saw sources %v, want [%v]", got, up2.Source)
		}
		if n := len(isp1.sources()); n != 1 {
			t.Errorf("ISP 1 got %d queries, want still 1", n)
		}
	})

	t.Run("not reachable from an uplink", func(t *testing.T) {
		// The ISP side reaches the router's LAN address through up1: the
		// forwarder refuses it. The uplink address has no listener.
		isp1if, _ := h1.LinkByName("isp1")
		if err := h1.RouteAdd(&netlink.Route{LinkIndex: isp1if.Attrs().Index, Dst: ipnet("10.77.0.0/24"), Gw: net.ParseIP("100.64.1.2")}); err != nil {
			t.Fatal(err)
		}
		m, _, err := query(t, isp1NS, "10.77.0.1:53", "outside.test.")
		if err != nil || m.Rcode != mdns.RcodeRefused {
			t.Errorf("query from ISP 1 to the LAN address: got %v, %v; want REFUSED", m, err)
		}
		if _, _, err := query(t, isp1NS, "100.64.1.2:53", "outside.test."); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("query from ISP 1 to the uplink address: got %v, want connection refused", err)
		}
	})

	t.Run("ISP 1 DNS silent: hedged to ISP 2", func(t *testing.T) {
		// ISP 1's replies are blackholed: its server gets the query and
		// its answer is lost, as when the ISP's DNS is dead but the uplink
		// still looks up.
		if err := h1.RouteAdd(&netlink.Route{Dst: ipnet("100.64.1.2/32"), Type: syscall.RTN_BLACKHOLE}); err != nil {
			t.Fatal(err)
		}
		f.SetUpstreams([]Upstream{up1, up2})
		before := len(isp1.sources())
		m, took, err := query(t, clientNS, "10.77.0.1:53", "hedged.test.")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("answer with ISP 1's DNS silent after %v", took)
		if a := firstA(t, m); a.A.String() != "192.0.2.2" {
			t.Errorf("got %v, want ISP 2's answer", a)
		}
		if took >= 1500*time.Millisecond || took < 200*time.Millisecond {
			t.Errorf("answer after %v, want HedgeAfter (200ms) to 1.5s", took)
		}
		if len(isp1.sources()) != before+1 {
			t.Error("ISP 1 did not get the query")
		}
	})

	t.Run("uplink 1 route blackholed: still through up1 only", func(t *testing.T) {
		// With a device bound and no usable route (a blackhole in uplink
		// 1's table), the kernel assumes the destination is on-link on
		// up1: the query still leaves through uplink 1 and no other (here
		// ISP 1 answers ARP for its DNS address), and ISP 1's answers are
		// still blackholed: hedged to ISP 2.
		if err := hR.RouteReplace(&netlink.Route{Dst: ipnet("0.0.0.0/0"), Table: 7701, Type: syscall.RTN_BLACKHOLE, Protocol: 167}); err != nil {
			t.Fatal(err)
		}
		before1, before2 := len(isp1.sources()), len(isp2.sources())
		m, took, err := query(t, clientNS, "10.77.0.1:53", "blackholed.test.")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("answer with uplink 1's route blackholed after %v", took)
		if a := firstA(t, m); a.A.String() != "192.0.2.2" || took >= 1500*time.Millisecond {
			t.Errorf("got %v after %v, want ISP 2's answer under 1.5s", a, took)
		}
		s1, s2 := isp1.sources()[before1:], isp2.sources()[before2:]
		if len(s1) != 1 || s1[0] != up1.Source || len(s2) != 1 || s2[0] != up2.Source {
			t.Errorf("new sources seen: ISP 1 %v, ISP 2 %v; want [%v] and [%v]", s1, s2, up1.Source, up2.Source)
		}
	})

	t.Run("uplink 1 down: under 100ms", func(t *testing.T) {
		f.SetUpstreams([]Upstream{up2})
		m, took, err := query(t, clientNS, "10.77.0.1:53", "down.test.")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("answer with uplink 1 left out after %v", took)
		if a := firstA(t, m); a.A.String() != "192.0.2.2" || took >= 100*time.Millisecond {
			t.Errorf("got %v after %v, want ISP 2's answer under 100ms", a, took)
		}
	})

	t.Run("dig", func(t *testing.T) {
		dig, err := exec.LookPath("dig")
		if err != nil {
			t.Skip("dig (dnsutils) not installed")
		}
		nsenter, err := exec.LookPath("nsenter")
		if err != nil {
			t.Skip("nsenter not installed")
		}
		// The client namespace is fd 3 of nsenter, which enters it and
		// runs dig there.
		fd, err := syscall.Dup(int(clientNS))
		if err != nil {
			t.Fatal(err)
		}
		nsf := os.NewFile(uintptr(fd), "client-netns")
		defer nsf.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, nsenter, "--net=/proc/self/fd/3", dig,
			"@10.77.0.1", "+time=2", "+tries=1", "+tcp", "dig.test.", "A")
		cmd.ExtraFiles = []*os.File{nsf}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dig: %v\n%s", err, out)
		}
		t.Logf("dig +tcp through the forwarder:\n%s", out)
		if !strings.Contains(string(out), "192.0.2.2") || !strings.Contains(string(out), "status: NOERROR") {
			t.Errorf("dig output lacks ISP 2's answer:\n%s", out)
		}
	})

	st := f.Stats()
	t.Logf("stats: %+v", st)
	if st.Hedged < 1 || st.Refused < 1 {
		t.Errorf("stats: got %+v, want hedged and refused queries counted", st)
	}
}
