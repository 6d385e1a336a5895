package health

import (
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/bench/lab/nstest"
)

// The root tests build, in namespaces they create (never touching the
// host's):
//
//	router: up1 100.64.1.2/24 ─── isp1: r1 100.64.1.1/24, inet1 198.18.1.1/24 ─── inet: isp1 198.18.1.2/24
//	        up2 100.64.2.2/24 ─── isp2: r2 100.64.2.1/24, inet2 198.18.2.1/24 ─── inet: isp2 198.18.2.2/24
//	        rule 7800 from 100.64.1.2 lookup 7701 (default via 100.64.1.1 dev up1)
//	        rule 7810 from 100.64.2.2 lookup 7702 (default via 100.64.2.1 dev up2)
//	        no default route in main
//	inet:   192.0.2.1/32 on lo answers ping, DNS (udp 53), HTTP (80), HTTPS (443, a
//	        certificate for example.com); it reaches each uplink's subnet through its
//	        own ISP (metric 10) and through the other ISP (metric 20), and each ISP
//	        routes the other uplink's subnet to the router: a probe that left
//	        through the wrong uplink, or a reply that comes back through one, is
//	        delivered, so only the probes' own binding keeps them apart.
//
// rp_filter is off everywhere for the same reason.

var (
	target  = netip.MustParseAddr("192.0.2.1")
	up1Addr = netip.MustParseAddr("100.64.1.2")
	up2Addr = netip.MustParseAddr("100.64.2.2")
)

type lab struct {
	router, isp1, isp2, inet     netns.NsHandle
	hRouter, hISP1, hISP2, hInet *netlink.Handle
	up1, up2                     Binding
	roots                        *x509.CertPool // trusts the HTTPS server
	mu                           sync.Mutex
	httpSources, dnsSources      map[string]bool // source addresses the servers saw
}

func (l *lab) sawSource(m map[string]bool, addr string) {
	host, _, _ := net.SplitHostPort(addr)
	l.mu.Lock()
	m[host] = true
	l.mu.Unlock()
}

func (l *lab) sources(m map[string]bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for s := range m {
		out = append(out, s)
	}
	return out
}

// inNS runs fn on a locked OS thread inside ns; a thread that cannot get
// back to its namespace dies with its goroutine instead of being reused.
func inNS(ns netns.NsHandle, fn func() error) error {
	s := &osSystem{ns: &ns}
	return s.inNS(fn)
}

// newNS creates an anonymous network namespace that lives until the test
// ends, with lo up, rp_filter off, and returns it with a netlink handle.
func newNS(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	n := nstest.New(t)
	sysctl(t, n.NsHandle(), "conf/all/rp_filter", "0")
	sysctl(t, n.NsHandle(), "conf/default/rp_filter", "0")
	return n.NsHandle(), n.Handle()
}

// sysctl sets net.ipv4.<key> inside ns.
func sysctl(t *testing.T, ns netns.NsHandle, key, val string) {
	t.Helper()
	err := inNS(ns, func() error { return os.WriteFile("/proc/sys/net/ipv4/"+key, []byte(val), 0) })
	if err != nil {
		t.Fatalf("sysctl %s=%s: %v", key, val, err)
	}
}

func route(t *testing.T, h *netlink.Handle, dst, gw string, metric, table int) *netlink.Route {
	t.Helper()
	r := &netlink.Route{Gw: net.ParseIP(gw), Priority: metric, Table: table}
	if dst != "default" {
		_, n, err := net.ParseCIDR(dst)
		if err != nil {
			t.Fatal(err)
		}
		r.Dst = n
	}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("route %s via %s metric %d table %d: %v", dst, gw, metric, table, err)
	}
	return r
}

// newLab builds the namespaces and starts the internet's servers.
func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	l := &lab{httpSources: map[string]bool{}, dnsSources: map[string]bool{}}
	l.router, l.hRouter = newNS(t)
	l.isp1, l.hISP1 = newNS(t)
	l.isp2, l.hISP2 = newNS(t)
	l.inet, l.hInet = newNS(t)
	sysctl(t, l.isp1, "ip_forward", "1")
	sysctl(t, l.isp2, "ip_forward", "1")

	nstest.Veth(t, l.hRouter, "up1", "100.64.1.2/24", l.hISP1, l.isp1, "r1", "100.64.1.1/24")
	nstest.Veth(t, l.hRouter, "up2", "100.64.2.2/24", l.hISP2, l.isp2, "r2", "100.64.2.1/24")
	nstest.Veth(t, l.hISP1, "inet1", "198.18.1.1/24", l.hInet, l.inet, "isp1", "198.18.1.2/24")
	nstest.Veth(t, l.hISP2, "inet2", "198.18.2.1/24", l.hInet, l.inet, "isp2", "198.18.2.2/24")
	a, _ := netlink.ParseAddr(target.String() + "/32")
	if err := l.hInet.AddrAdd(nstest.Link(t, l.hInet, "lo"), a); err != nil {
		t.Fatal(err)
	}

	route(t, l.hISP1, "default", "198.18.1.2", 0, 0)
	route(t, l.hISP1, "100.64.2.0/24", "100.64.1.2", 0, 0)
	route(t, l.hISP2, "default", "198.18.2.2", 0, 0)
	route(t, l.hISP2, "100.64.1.0/24", "100.64.2.2", 0, 0)
	l.inetRoutesVia1(t)
	route(t, l.hInet, "100.64.1.0/24", "198.18.2.1", 20, 0)
	route(t, l.hInet, "100.64.2.0/24", "198.18.2.1", 10, 0)

	// The router: wanflow's per-uplink tables and rules, no main default.
	route(t, l.hRouter, "default", "100.64.1.1", 0, 7701)
	route(t, l.hRouter, "default", "100.64.2.1", 0, 7702)
	for i, src := range []netip.Addr{up1Addr, up2Addr} {
		r := netlink.NewRule()
		r.Priority = 7800 + 10*i
		r.Table = 7701 + i
		r.Src = &net.IPNet{IP: src.AsSlice(), Mask: net.CIDRMask(32, 32)}
		if err := l.hRouter.RuleAdd(r); err != nil {
			t.Fatalf("rule from %v: %v", src, err)
		}
	}
	l.up1 = Binding{Ifindex: nstest.Link(t, l.hRouter, "up1").Attrs().Index, Interface: "up1", Addr: up1Addr}
	l.up2 = Binding{Ifindex: nstest.Link(t, l.hRouter, "up2").Attrs().Index, Interface: "up2", Addr: up2Addr}
	l.startServers(t)
	return l
}

// inetRoutesVia1 adds the internet's routes through ISP1 (removed by the
// kernel when the internet's link to ISP1 goes down).
func (l *lab) inetRoutesVia1(t *testing.T) {
	t.Helper()
	route(t, l.hInet, "100.64.1.0/24", "198.18.1.1", 10, 0)
	route(t, l.hInet, "100.64.2.0/24", "198.18.1.1", 20, 0)
}

// cutISP1 takes the internet's side of ISP1 down: ISP1 keeps its routes
// and silently drops what it forwards there; the router's up1 keeps its
// carrier. The internet now reaches 100.64.1.0/24 only through ISP2.
func (l *lab) cutISP1(t *testing.T) {
	t.Helper()
	if err := l.hInet.LinkSetDown(nstest.Link(t, l.hInet, "isp1")); err != nil {
		t.Fatal(err)
	}
}

func (l *lab) repairISP1(t *testing.T) {
	t.Helper()
	if err := l.hInet.LinkSetUp(nstest.Link(t, l.hInet, "isp1")); err != nil {
		t.Fatal(err)
	}
	l.inetRoutesVia1(t)
}

// startServers starts DNS, HTTP and HTTPS on 192.0.2.1 in the internet.
func (l *lab) startServers(t *testing.T) {
	t.Helper()
	listen := func(network, addr string) (pc net.PacketConn, ln net.Listener) {
		err := inNS(l.inet, func() error {
			var err error
			if network == "udp4" {
				pc, err = net.ListenPacket(network, addr)
			} else {
				ln, err = net.Listen(network, addr)
			}
			return err
		})
		if err != nil {
			t.Fatalf("listen %s %s in the internet: %v", network, addr, err)
		}
		return pc, ln
	}

	pc, _ := listen("udp4", "192.0.2.1:53")
	started := make(chan struct{})
	ds := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			l.sawSource(l.dnsSources, w.RemoteAddr().String())
			m := new(dns.Msg)
			m.SetReply(r)
			if len(r.Question) > 0 && r.Question[0].Name == "example.com." {
				m.Rcode = dns.RcodeRefused // still an answer
			}
			w.WriteMsg(m)
		})}
	served := make(chan error, 1)
	go func() { served <- ds.ActivateAndServe() }()
	<-started
	t.Cleanup(func() {
		ds.Shutdown()
		<-served
	})

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		l.sawSource(l.httpSources, r.RemoteAddr)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/portal", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://portal.example/login", http.StatusFound)
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusServiceUnavailable)
	})
	for _, port := range []string{"80", "443"} {
		_, ln := listen("tcp4", "192.0.2.1:"+port)
		srv := httptest.NewUnstartedServer(mux)
		srv.Listener.Close()
		srv.Listener = ln
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the "wrong name" probe's handshake errors
		if port == "443" {
			srv.StartTLS() // certificate for example.com
			l.roots = x509.NewCertPool()
			l.roots.AddCert(srv.Certificate())
		} else {
			srv.Start()
		}
		t.Cleanup(srv.Close)
	}
}

// prober returns a Prober in the router namespace.
func (l *lab) prober(t *testing.T, name string, cfg Config) *Prober {
	t.Helper()
	cfg.NetNS = &l.router
	p, err := NewProber(name, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	p.tlsRoots = l.roots
	return p
}

// start runs p bound to b until the test ends; the returned channel gets
// its transitions.
func start(t *testing.T, p *Prober, b Binding) <-chan Transition {
	t.Helper()
	return run(t, p, func() (Binding, bool) { return b, true })
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// pingFrom sends an ICMP echo request from src (bound to no device) in ns
// and returns the device its reply arrived on, or an error if none came
// within timeout.
func pingFrom(ns netns.NsHandle, h *netlink.Handle, src, dst netip.Addr, timeout time.Duration) (string, error) {
	var fd int
	if err := inNS(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	}); err != nil {
		return "", err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
		return "", err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
		return "", err
	}
	tv := unix.NsecToTimeval(int64(timeout))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return "", err
	}
	const id = 4000 // a NAT-range identifier: no Prober's
	if err := unix.Sendto(fd, marshalEcho(id, 1, [8]byte{}), 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	buf := make([]byte, 1500)
	oob := make([]byte, 64)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			return "", err
		}
		m, ok := parseICMP(buf[:n], id)
		if !ok || m.Type != icmpEchoReply || m.Src != dst {
			continue
		}
		return arrivalDev(h, oob[:oobn]), nil
	}
	return "", errors.New("no reply")
}

// arrivalDev returns the device named by an IP_PKTINFO control message.
func arrivalDev(h *netlink.Handle, oob []byte) string {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return "?"
	}
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= 4 {
			idx := int(int32(binary.NativeEndian.Uint32(m.Data)))
			if l, err := h.LinkByIndex(idx); err == nil {
				return l.Attrs().Name
			}
			return fmt.Sprint(idx)
		}
	}
	return "?"
}

// TestFailover is the scenario: interval 200ms, down_after 3, an
// ISP whose internet side dies while the router's link stays up.
func TestFailover(t *testing.T) {
	l := newLab(t)
	cfg := Config{
		Targets: []Target{
			{Kind: KindICMP, Addr: netip.AddrPortFrom(target, 0)},
			{Kind: KindDNS, Addr: netip.AddrPortFrom(target, 53)},
		},
		Interval:  200 * time.Millisecond,
		Timeout:   300 * time.Millisecond,
		DownAfter: 3,
		UpAfter:   5,
	}
	p1, p2 := l.prober(t, "up1", cfg), l.prober(t, "up2", cfg)
	tr1, tr2 := start(t, p1, l.up1), start(t, p2, l.up2)

	// (1) Probes through each uplink succeed and report an RTT.
	for _, x := range []struct {
		p   *Prober
		trs <-chan Transition
	}{{p1, tr1}, {p2, tr2}} {
		tr := waitTr(t, x.trs, StateUp, 3*time.Second)
		st := x.p.Stats()
		t.Logf("%s up after %v; rtt %v", tr.Uplink, tr.Since.Round(time.Millisecond), st.LastRTT)
		if st.LastRTT <= 0 || st.LastRTT > 100*time.Millisecond {
			t.Errorf("%s: LastRTT %v", tr.Uplink, st.LastRTT)
		}
		for _, r := range st.Targets {
			if !r.OK || r.RTT <= 0 {
				t.Errorf("%s: target %v", tr.Uplink, r)
			}
		}
	}
	if got := l.sources(l.dnsSources); len(got) != 2 {
		t.Errorf("DNS server saw sources %v, want both uplink addresses", got)
	}

	// (2) ISP1's internet side dies; up1 keeps its carrier.
	l.cutISP1(t)
	fault := time.Now()
	tr := waitTr(t, tr1, StateDown, 3*time.Second)
	detect := time.Since(fault)
	t.Logf("up1 down %v after the fault (transition Since %v): %s", detect.Round(time.Millisecond), tr.Since.Round(time.Millisecond), tr.Cause)
	if detect > 1200*time.Millisecond {
		t.Errorf("detection took %v, want ≤ ~1s (2 intervals + timeout + phase ≤ 900ms)", detect)
	}
	if !strings.Contains(tr.Cause, "3 of 3 rounds failed") || !strings.Contains(tr.Cause, "icmp:192.0.2.1 timeout") {
		t.Errorf("cause %q", tr.Cause)
	}

	// (3) Asymmetric return: the internet now reaches up1's address through
	// ISP2. Even when up1's own table is bent to leave through up2 (a
	// leak), up1's probes, bound to up1, never get an answer through up2.
	r, err := l.hInet.RouteGet(up1Addr.AsSlice())
	if err != nil || len(r) == 0 || !r[0].Gw.Equal(net.ParseIP("198.18.2.1")) {
		t.Fatalf("internet's route to %v = %v, %v; want via ISP2", up1Addr, r, err)
	}
	leak := &netlink.Route{Table: 7701, Gw: net.ParseIP("100.64.2.1"), LinkIndex: l.up2.Ifindex}
	if err := l.hRouter.RouteReplace(leak); err != nil {
		t.Fatal(err)
	}
	dev, err := pingFrom(l.router, l.hRouter, up1Addr, target, time.Second)
	if err != nil || dev != "up2" {
		t.Fatalf("control: a ping from %v not bound to up1: reply via %q, %v; want via up2 (the leak path works)", up1Addr, dev, err)
	}
	t.Logf("control: an unbound ping from %v is answered via %s", up1Addr, dev)
	noTr(t, tr1, 6*cfg.Interval) // more than UpAfter rounds
	if st := p1.Stats(); st.State != StateDown || st.History[len(st.History)-1].OK != 0 {
		t.Errorf("up1 while its probes could leak: %v, last round %+v", st.State, st.History[len(st.History)-1])
	}
	if err := l.hRouter.RouteReplace(&netlink.Route{Table: 7701, Gw: net.ParseIP("100.64.1.1"), LinkIndex: l.up1.Ifindex}); err != nil {
		t.Fatal(err)
	}

	// (4) ISP1 repaired: up1 is up again after UpAfter rounds.
	l.repairISP1(t)
	repair := time.Now()
	tr = waitTr(t, tr1, StateUp, 3*time.Second)
	back := time.Since(repair)
	t.Logf("up1 up %v after the repair (transition Since %v): %s", back.Round(time.Millisecond), tr.Since.Round(time.Millisecond), tr.Cause)
	if limit := time.Duration(cfg.UpAfter)*cfg.Interval + cfg.Timeout + time.Second; back > limit {
		t.Errorf("recovery took %v, want ≤ %v", back, limit)
	}
	// up2 never moved.
	noTr(t, tr2, 0)
	if p2.State() != StateUp {
		t.Errorf("up2 %v, want up throughout", p2.State())
	}
}

// TestReplyThroughOtherUplink checks the receive side alone: an echo reply
// that matches an outstanding probe of up1 (identifier, sequence number,
// token, source) but arrives through up2 is not an answer; the same reply
// arriving through up1 is.
func TestReplyThroughOtherUplink(t *testing.T) {
	l := newLab(t)
	p := l.prober(t, "up1", Config{Targets: []Target{{Kind: KindICMP, Addr: netip.AddrPortFrom(target, 0)}}})
	sys, err := p.newSystem(p)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.close()
	sess, err := sys.open(l.up1)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.close()
	c := sess.(*osSession).icmp

	// spoof sends, from the internet, the reply to up1's probe seq.
	spoof := func(seq uint16) {
		t.Helper()
		var fd int
		err := inNS(l.inet, func() error {
			var err error
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: target.As4()}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Sendto(fd, echoReply(c.id, seq, c.token), 0, &unix.SockaddrInet4{Addr: up1Addr.As4()}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(seq uint16, within time.Duration) bool {
		w := &echoWaiter{dst: target, ch: make(chan echoAnswer, 1)}
		c.mu.Lock()
		c.waiters[seq] = w
		c.mu.Unlock()
		defer func() { c.mu.Lock(); delete(c.waiters, seq); c.mu.Unlock() }()
		spoof(seq)
		select {
		case <-w.ch:
			return true
		case <-time.After(within):
			return false
		}
	}

	// The first reply may wait for neighbour resolution in the lab: give
	// the positive case time, the negative one a fixed window.
	if !wait(700, 2*time.Second) {
		t.Fatal("a reply arriving through up1 did not answer its probe")
	}
	l.cutISP1(t) // the internet now reaches up1's address through ISP2 → up2
	if wait(701, 300*time.Millisecond) {
		t.Error("a reply arriving through up2 answered up1's probe")
	}
}

// TestRefusesRouterAddress: a target that is one of the router's own
// addresses (here up2's) is never probed and counts as failed.
func TestRefusesRouterAddress(t *testing.T) {
	l := newLab(t)
	p := l.prober(t, "up1", Config{
		Targets: []Target{
			{Kind: KindICMP, Addr: netip.AddrPortFrom(target, 0)},
			{Kind: KindICMP, Addr: netip.AddrPortFrom(up2Addr, 0)},
		},
		MinOK:    2,
		Interval: 100 * time.Millisecond,
		Timeout:  200 * time.Millisecond,
		UpAfter:  3,
	})
	trs := start(t, p, l.up1)
	noTr(t, trs, 600*time.Millisecond) // 6 rounds, 2 × UpAfter
	st := p.Stats()
	if st.State != StateDown || st.RoundsOK != 0 || st.RoundsFailed < 3 {
		t.Errorf("Stats %+v: want down, only failed rounds", st)
	}
	if r := st.Targets[0]; !r.OK {
		t.Errorf("target 192.0.2.1: %v, want ok", r)
	}
	if r := st.Targets[1]; r.OK || !strings.Contains(r.Err, "refused: 100.64.2.2 is one of the router's own addresses") {
		t.Errorf("target 100.64.2.2: %v, want refused", r)
	}
}

// TestKinds runs every kind of probe through up1.
func TestKinds(t *testing.T) {
	l := newLab(t)
	ap := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(target, port) }
	tests := []struct {
		name string
		tg   Target
		up   bool
		err  string // the failure, when !up
	}{
		{"icmp", Target{Kind: KindICMP, Addr: ap(0)}, true, ""},
		{"dns . NS", Target{Kind: KindDNS, Addr: ap(0)}, true, ""},
		{"dns REFUSED is an answer", Target{Kind: KindDNS, Addr: ap(53), Name: "example.com"}, true, ""},
		{"dns no server", Target{Kind: KindDNS, Addr: ap(5353)}, false, "connection refused"},
		{"http", Target{Kind: KindHTTP, URL: "http://192.0.2.1/"}, true, ""},
		{"http 302 is an answer", Target{Kind: KindHTTP, URL: "http://192.0.2.1/portal"}, true, ""},
		{"http 503 is not", Target{Kind: KindHTTP, URL: "http://192.0.2.1/fail"}, false, "http status 503"},
		{"https, Host and SNI from the URL", Target{Kind: KindHTTP, URL: "https://example.com/", Addr: ap(0)}, true, ""},
		{"https, wrong name", Target{Kind: KindHTTP, URL: "https://wrong.example/", Addr: ap(443)}, false, "certificate"},
		{"http no server", Target{Kind: KindHTTP, URL: "http://192.0.2.1:8080/"}, false, "connection refused"},
	}
	type running struct {
		p   *Prober
		trs <-chan Transition
	}
	var rs []running
	for _, tt := range tests {
		p := l.prober(t, "up1", Config{Targets: []Target{tt.tg}, Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond, UpAfter: 3})
		rs = append(rs, running{p, start(t, p, l.up1)})
	}
	// The probes that must succeed first, then those that must not: the
	// latter are watched until the deadline.
	deadline := time.Now().Add(2 * time.Second)
	for _, up := range []bool{true, false} {
		for i, tt := range tests {
			if tt.up != up {
				continue
			}
			t.Run(tt.name, func(t *testing.T) {
				r := rs[i]
				if tt.up {
					waitTr(t, r.trs, StateUp, time.Until(deadline))
					if st := r.p.Stats(); st.LastRTT <= 0 || !st.Targets[0].OK {
						t.Errorf("Stats: rtt %v, target %v", st.LastRTT, st.Targets[0])
					}
					return
				}
				noTr(t, r.trs, time.Until(deadline))
				st := r.p.Stats()
				var errs []string
				for _, h := range st.History {
					errs = append(errs, h.PerTarget[0].Err)
				}
				// ICMP errors are rate-limited by the sender (RFC 1812
				// §4.3.2.8): some rounds of "dns no server" time out instead.
				if st.RoundsOK != 0 || !strings.Contains(strings.Join(errs, "|"), tt.err) {
					t.Errorf("%d rounds ok, errors %q; want none ok, some %q", st.RoundsOK, errs, tt.err)
				}
			})
		}
	}
	if got := l.sources(l.httpSources); len(got) != 1 || got[0] != up1Addr.String() {
		t.Errorf("HTTP server saw sources %v, want only %v", got, up1Addr)
	}
}
