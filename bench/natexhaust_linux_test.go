package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
	"github.com/wanflow/wanflow/cmd/wanflow/control"
)

// The NAT port exhaustion lab: the smallest NAT range the config accepts
// (dataplane.nat_ports: at least 1,024 ports) and one worker, so each
// uplink has exactly natPool ports per protocol (a worker owns the ports p
// with p % workers == its index; with one worker that is all of them).
const (
	natLo, natHi = 20000, 21023
	natPool      = natHi - natLo + 1
	// natUDPTimeout is dataplane.flows.timeouts.udp: short, so that the
	// test can watch the ports come back (below RFC 4787's 2 minutes:
	// allowed with a warning). Phases that need their flows alive keep
	// well under it.
	natUDPTimeout = 8 * time.Second
	// LAN source ports of the test's flows, bound explicitly, one per flow
	// (nothing else opens sockets in the host namespace): outside the NAT
	// range, so no port preservation; the allocator's cursor hands out the
	// NAT ports.
	natUDPPortBase = 40000
	natTCPPortBase = 50000
)

// Lines of the daemon's text log the test reads: the dataplane's
// rate-limited report (dataplane/hardening.go, reportExhausted) and the
// config warning about the short UDP timeout.
var (
	natExhaustLog     = regexp.MustCompile(`time=(\S+) level=WARN msg="NAT ports exhausted on uplink [^"]*" uplink=(\S+) index=\d+ packets_without_port=(\d+)`)
	natTimeoutWarning = regexp.MustCompile(`level=WARN msg=config warning=".*dataplane\.flows\.timeouts\.udp: .* below`)
	natLogKeep        = regexp.MustCompile(natExhaustLog.String() + "|" + natTimeoutWarning.String())
)

// TestNATExhaust runs wanflow with three uplinks and 1,024 NAT ports each
// (per protocol) and one LAN host that opens more flows than that, each
// from its own source port (the NAT is endpoint-independent: one NAT port
// per LAN endpoint, RFC 4787 REQ-1). It checks every flow's uplink against
// a model of the dataplane (dataplane/hardening.go, createFallback): a new
// flow takes the first uplink, in the policy's order of preference (lowest
// tier, then highest rendezvous score, as `wanflow explain` reports them),
// that has a free port or already maps the flow's LAN endpoint; a flow that
// did not get its first choice counts in out_ports_exhausted_fallback; when
// no uplink has a port it is dropped (out_drop_ports_exhausted), every
// uplink tried counts in the once-a-second log line.
//
//   - balance (tier 1, weights 2:1:1): up1's flows are answered until its
//     ports run out; then flows that prefer up1 go to their second choice,
//     which is not "the next index" but the policy's next by score;
//   - all three exhausted: new flows are dropped and counted, the log
//     reports it at most once a second per uplink, existing flows keep
//     their mapping, an existing endpoint still reaches new destinations
//     (its mapping is shared), the daemon keeps running;
//   - the flows expire (short UDP timeout): every port is free again;
//   - tiers (reload to 1:2:2): new flows all go to up1 (its ports reused)
//     until it is full, only then to tier 2;
//   - TCP (another pool): up1's 1,024 TCP ports fill, the next connections
//     go to tier 2, a second connection from a mapped endpoint shares its
//     port; a rule that allows only up1 for TCP port 9000 is obeyed: new
//     endpoints' SYNs there are dropped, though tier 2 has ports.
//
// Every figure is logged; the whole run takes about 17 s, 8 of them
// waiting for the UDP timeout.
func TestNATExhaust(t *testing.T) {
	labtest.RequireRoot(t)
	began := time.Now()
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}, {}}})
	if v, err := l.Router.ReadSysctl("net.ipv4.ip_local_port_range"); err != nil {
		t.Fatal(err)
	} else if f := strings.Fields(v); len(f) != 2 || atoiOr(f[0]) <= natHi && natLo <= atoiOr(f[1]) {
		t.Fatalf("router's ip_local_port_range %q overlaps the NAT ports %d-%d: wanflow would refuse to start", v, natLo, natHi)
	} else {
		t.Logf("NAT ports %d-%d: %d per uplink and protocol (1 worker); the router's ephemeral ports are %s", natLo, natHi, natPool, strings.Join(f, "-"))
	}
	extra := fmt.Sprintf("dataplane:\n  workers: 1\n  nat_ports: %d-%d\n  flows:\n    timeouts:\n      udp: %v\n", natLo, natHi, natUDPTimeout) +
		fmt.Sprintf("rules:\n  - name: pinned\n    proto: tcp\n    dst_ports: [\"%d\"]\n    uplinks: [%s]\n", lab.AltEchoPort, l.Uplinks[0].Name)
	balance := labrouter.Options{Weights: []int{2, 1, 1}, Tiers: []int{1, 1, 1}, Extra: extra}
	logs := &logLines{re: natLogKeep}
	r := startRouterWith(t, l, wanflowBin, labrouter.ConfigYAML(l, balance), logs)
	x := newNATExhaust(t, l, r, logs)
	x.waitAvailable()
	if w := logs.matching(natTimeoutWarning); len(w) != 1 {
		t.Errorf("%d warnings about dataplane.flows.timeouts.udp %v in the log, want 1", len(w), natUDPTimeout)
	}
	dpStart := scrape(t, l)

	// A: balance. Fill every uplink's UDP pool, one new flow at a time.
	m := newNATModel(len(l.Uplinks))
	var flowsA []*natFlow
	tA := time.Now()
	up1Full := 0
	for m.freeTotal() > 0 {
		f := x.newUDP(m, l.Servers[len(flowsA)%len(l.Servers)], lab.EchoPort)
		flowsA = append(flowsA, f)
		x.checkPlaced(f, "balance")
		if up1Full == 0 && m.free[0] == 0 {
			up1Full = len(flowsA)
		}
	}
	durA := time.Since(tA)
	dpA := scrape(t, l)
	// The discriminating case: a flow whose first choice is up1 and whose
	// second is up3 (by score) must not go to up2 (the next index).
	notNext := 0
	for _, f := range flowsA {
		if f.placed != f.pref[0] && f.placed != (f.pref[0]+1)%len(l.Uplinks) {
			notNext++
		}
	}
	t.Logf("balance: %d new UDP flows in %v; first choices %v; up1 full after flow %d; placed %v; "+
		"%d fallbacks (from their first choice %v, to %v; %d of them not to the next uplink index)",
		len(flowsA), durA.Round(time.Millisecond), countFirst(flowsA), up1Full, countPlaced(flowsA),
		m.fallbacks, x.names(m.fallbackFrom), x.names(m.fallbackTo), notNext)
	x.checkCounters("balance", dpStart, dpA, m.fallbacks, 0)
	if v := value(dpA["wanflow_nat_ports_in_use"]); v != float64(len(l.Uplinks)*natPool) {
		t.Errorf("wanflow_nat_ports_in_use %v, want %d (every port of every uplink)", v, len(l.Uplinks)*natPool)
	}
	if m.fallbackFrom[0] == 0 || notNext == 0 {
		t.Errorf("the run did not exercise the fallback from up1 (%d) or a fallback past the next index (%d)", m.fallbackFrom[0], notNext)
	}
	if durA > natUDPTimeout*2/3 {
		// The first flows were idle all along: they may have expired.
		t.Fatalf("filling took %v, too close to the UDP timeout %v: raise natUDPTimeout", durA, natUDPTimeout)
	}

	// B: every uplink exhausted.
	x.refresh(flowsA, "after filling")
	storm := x.openUDP(32)
	dst := netip.AddrPortFrom(l.Servers[0], lab.EchoPort)
	sent := 0
	tB := time.Now()
	for time.Since(tB) < 2500*time.Millisecond {
		for _, c := range storm {
			if _, err := c.conn.WriteToUDPAddrPort([]byte("storm"), dst); err == nil {
				sent++
				m.place(c.local, []int{0, 1, 2}) // no uplink has a port: the order does not matter
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	durB := time.Since(tB)
	answered := 0
	buf := make([]byte, 256)
	for _, c := range storm {
		c.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := c.conn.ReadFromUDPAddrPort(buf); err == nil {
			answered++
		}
	}
	if answered > 0 {
		t.Errorf("%d of %d new endpoints got an answer while every uplink was out of ports", answered, len(storm))
	}
	// An endpoint that holds a mapping reaches a new destination through
	// it, though no uplink has a free port.
	var shared []*natFlow
	for i := range 24 {
		old := flowsA[i*len(flowsA)/24]
		f := x.reuseUDP(m, old, l.Servers[(i+7)%len(l.Servers)], lab.AltEchoPort)
		shared = append(shared, f)
		x.checkPlaced(f, "exhausted, shared mapping")
		if f.seen != old.seen {
			t.Errorf("%v → %v: the server saw %v, want the endpoint's mapping %v (endpoint-independent)", f.local, f.dst, f.seen, old.seen)
		}
	}
	x.refresh(flowsA, "after the storm")
	tLast := time.Now()
	dpB := scrape(t, l)
	t.Logf("exhausted: %d datagrams from %d new endpoints in %v: %v dropped (out_drop_ports_exhausted), %d answered; "+
		"%d new flows from mapped endpoints all answered through their mapping (%d of them fallbacks); %d existing flows answered twice more",
		sent, len(storm), durB.Round(time.Millisecond), dpDelta(dpA, dpB, "out_drop_ports_exhausted"), answered,
		len(shared), int(dpDelta(dpA, dpB, "out_ports_exhausted_fallback")), len(flowsA))
	x.checkCounters("exhausted", dpStart, dpB, m.fallbacks, m.drops)
	x.checkLog("balance and exhausted", m.exhausted, tA)
	if r.Exited() {
		t.Fatalf("wanflow exited:\n%s", r.Log())
	}
	for _, c := range storm {
		c.conn.Close()
	}
	for _, f := range flowsA {
		f.conn.Close()
	}

	// C: the flows expire and give their ports back.
	for {
		fams := scrape(t, l)
		if value(fams["wanflow_flows_active"]) == 0 && value(fams["wanflow_nat_ports_in_use"]) == 0 {
			break
		}
		if time.Since(tLast) > natUDPTimeout+4*time.Second {
			t.Fatalf("%v after the last packet, %v flows and %v NAT ports still in use (UDP timeout %v)", time.Since(tLast).Round(time.Millisecond),
				value(fams["wanflow_flows_active"]), value(fams["wanflow_nat_ports_in_use"]), natUDPTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	dpC := scrape(t, l)
	t.Logf("expiry: every flow and NAT port gone %v after the last packet (UDP timeout %v): %v flows expired", time.Since(tLast).Round(time.Millisecond), natUDPTimeout,
		value(dpC["wanflow_flows_expired_total"])-value(dpB["wanflow_flows_expired_total"]))

	// D: tiers. up1 alone in tier 1, up2 and up3 in tier 2.
	tiers := balance
	tiers.Tiers = []int{1, 2, 2}
	x.reload(labrouter.ConfigYAML(l, tiers), tiers.Tiers)
	tD := time.Now()
	m = newNATModel(len(l.Uplinks))
	clear(x.owner) // phase A's endpoints are gone; their ports are free
	var flowsD []*natFlow
	for m.free[0] > 0 || m.fallbacks < 96 {
		f := x.newUDP(m, l.Servers[len(flowsD)%len(l.Servers)], lab.EchoPort)
		flowsD = append(flowsD, f)
		x.checkPlaced(f, "tiers")
		if f.placed != 0 && m.free[0] > 0 {
			t.Errorf("%v: tier 2 (%s) while up1 still had ports", f.local, l.Uplinks[f.placed].Name)
		}
		if f.placed == 0 && !x.usedA[0][f.seen.Port()] {
			t.Errorf("%v: NAT port %d of up1 was never used before: want every port reused", f.local, f.seen.Port())
		}
	}
	dpD := scrape(t, l)
	t.Logf("tiers: %d new UDP flows in %v: placed %v; the first %d all on up1, reusing its ports; then %d fallbacks to tier 2 %v",
		len(flowsD), time.Since(tD).Round(time.Millisecond), countPlaced(flowsD), natPool, m.fallbacks, x.names(m.fallbackTo))
	x.checkCounters("tiers", dpC, dpD, m.fallbacks, 0)
	x.checkFlowsAPI(flowsD)
	for _, f := range flowsD {
		f.conn.Close()
	}

	// E: TCP under the same tiers: another pool of 1,024 ports per uplink.
	tE := time.Now()
	mt := newNATModel(len(l.Uplinks))
	var conns []*natFlow
	for mt.free[0] > 0 || mt.fallbacks < 32 {
		f := x.newTCP(mt, l.Servers[len(conns)%len(l.Servers)], lab.EchoPort, 0)
		conns = append(conns, f)
		x.checkPlaced(f, "tcp")
	}
	var sharedTCP []*natFlow
	for i := 0; i < 8; i++ {
		old := conns[i*natPool/8]
		f := x.newTCP(mt, l.Servers[(i+3)%len(l.Servers)], lab.AltEchoPort, old.local.Port())
		sharedTCP = append(sharedTCP, f)
		x.checkPlaced(f, "tcp, shared mapping")
		if f.seen != old.seen {
			t.Errorf("tcp %v → %v: the server saw %v, want the endpoint's mapping %v", f.local, f.dst, f.seen, old.seen)
		}
	}
	// The rule keeps TCP to port 9000 on up1: with up1 full, a new
	// endpoint's connection there has no uplink left, though tier 2 has
	// ports. (The shared ones above matched it too: their mapping is on
	// up1.)
	var ruled []*natFlow
	for range 8 {
		ruled = append(ruled, x.prepTCP(mt, l.Servers[1], lab.AltEchoPort, 0))
	}
	var wg sync.WaitGroup
	for _, f := range ruled {
		wg.Go(func() { x.dialTCP(f) })
	}
	wg.Wait()
	for _, f := range ruled {
		x.checkPlaced(f, "tcp, rule")
		if f.conn != nil {
			f.conn.Close()
		}
	}
	x.refresh(append(conns, sharedTCP...), "tcp")
	dpE := scrape(t, l)
	t.Logf("tcp: %d connections in %v: placed %v, %d fallbacks to tier 2 %v; %d more from mapped endpoints share their port; "+
		"8 from new endpoints to port %d (rule: up1 only): %v SYNs dropped",
		len(conns), time.Since(tE).Round(time.Millisecond), countPlaced(conns), mt.fallbacks, x.names(mt.fallbackTo), len(sharedTCP),
		lab.AltEchoPort, dpDelta(dpD, dpE, "out_drop_ports_exhausted"))
	x.checkCounters("tcp", dpD, dpE, mt.fallbacks, mt.drops)
	x.checkLog("tiers and tcp", sumInts(m.exhausted, mt.exhausted), tD)
	for _, f := range append(conns, sharedTCP...) {
		f.conn.Close()
	}
	if r.Exited() {
		t.Fatalf("wanflow exited:\n%s", r.Log())
	}
	t.Logf("done in %v", time.Since(began).Round(time.Millisecond))
}

// natExhaust is the test's view of the lab and the daemon.
type natExhaust struct {
	t                *testing.T
	l                *lab.Lab
	r                *labrouter.Router
	c                *control.Client
	host             *lab.NS
	addr             netip.Addr
	logs             *logLines
	byAddr           map[netip.Addr]int // uplink address → index
	nextUDP, nextTCP uint16
	// usedA is, per uplink, the NAT ports the servers saw (UDP).
	usedA []map[uint16]bool
	// owner is, per uplink and protocol, which LAN endpoint each NAT port
	// was seen for: two endpoints on one port would be a broken NAT.
	owner map[string]netip.AddrPort

	mu    sync.Mutex
	conns []net.Conn // every socket opened, closed at the end
}

func newNATExhaust(t *testing.T, l *lab.Lab, r *labrouter.Router, logs *logLines) *natExhaust {
	x := &natExhaust{t: t, l: l, r: r, c: control.NewClient(r.Socket), host: l.Hosts[0], addr: l.HostAddrs[0], logs: logs,
		byAddr: map[netip.Addr]int{}, nextUDP: natUDPPortBase, nextTCP: natTCPPortBase, owner: map[string]netip.AddrPort{}}
	for i, u := range l.Uplinks {
		x.byAddr[u.Addr] = i
		x.usedA = append(x.usedA, map[uint16]bool{})
	}
	t.Cleanup(func() {
		for _, c := range x.conns {
			c.Close()
		}
	})
	return x
}

// track registers c to be closed when the test ends.
func (x *natExhaust) track(c net.Conn) {
	x.mu.Lock()
	x.conns = append(x.conns, c)
	x.mu.Unlock()
}

// waitAvailable waits until the daemon lets every uplink take new flows.
func (x *natExhaust) waitAvailable() {
	x.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := x.c.Status(context.Background())
		n := 0
		for _, u := range st.Uplinks {
			if u.Available {
				n++
			}
		}
		if err == nil && n == len(x.l.Uplinks) {
			return
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("uplinks not all available after 10s: %+v, %v", st.Uplinks, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// natFlow is one flow of the LAN host.
type natFlow struct {
	proto string
	local netip.AddrPort // LAN endpoint
	dst   netip.AddrPort
	pref  []int // the policy's order of preference (explain)
	want  int   // the model's uplink, -1: dropped
	seen  netip.AddrPort
	// placed is the uplink the server saw the flow come from (-1: none).
	placed int
	conn   net.Conn
	rd     *bufio.Reader // TCP
}

// preference asks the daemon how the policy ranks the uplinks for a new
// flow: the candidates that may take it, lowest tier first, then highest
// score — the order createFallback walks (it makes each uplink that ran
// out of ports unavailable and asks the policy again).
func (x *natExhaust) preference(proto string, src, dst netip.AddrPort) []int {
	x.t.Helper()
	e, err := x.c.Explain(context.Background(), control.ExplainQuery{Proto: proto, Src: src.String(), Dst: dst.String()})
	if err != nil {
		x.t.Fatalf("explain %s %v %v: %v", proto, src, dst, err)
	}
	var cs []control.Candidate
	for _, c := range e.Policy.Candidates {
		if c.Available && c.Allowed && c.Weight > 0 {
			cs = append(cs, c)
		}
	}
	slices.SortStableFunc(cs, func(a, b control.Candidate) int {
		switch {
		case a.Tier != b.Tier:
			return a.Tier - b.Tier
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return a.Index - b.Index
	})
	pref := make([]int, len(cs))
	for i, c := range cs {
		pref[i] = c.Index
	}
	if len(pref) == 0 || x.l.Uplinks[pref[0]].Name != e.Policy.Uplink {
		x.t.Fatalf("explain %s %v %v: chose %q, candidates %+v", proto, src, dst, e.Policy.Uplink, e.Policy.Candidates)
	}
	return pref
}

// newUDP opens a UDP socket on a fresh LAN port, asks explain for the
// policy's preference, runs the model and sends one datagram to
// server:port, waiting for the echo.
func (x *natExhaust) newUDP(m *natModel, server netip.Addr, port uint16) *natFlow {
	x.t.Helper()
	c := x.openUDP(1)[0]
	f := &natFlow{proto: "udp", local: c.local, dst: netip.AddrPortFrom(server, port), conn: c.conn}
	x.sendUDP(m, f)
	return f
}

// reuseUDP sends from old's socket (its LAN endpoint, which has a
// mapping) to a new destination: a new flow on the same endpoint.
func (x *natExhaust) reuseUDP(m *natModel, old *natFlow, server netip.Addr, port uint16) *natFlow {
	x.t.Helper()
	f := &natFlow{proto: "udp", local: old.local, dst: netip.AddrPortFrom(server, port), conn: old.conn}
	x.sendUDP(m, f)
	return f
}

func (x *natExhaust) sendUDP(m *natModel, f *natFlow) {
	x.t.Helper()
	f.pref = x.preference("udp", f.local, f.dst)
	f.want = m.place(f.local, f.pref)
	wait := 500 * time.Millisecond
	if f.want < 0 {
		wait = 200 * time.Millisecond
	}
	f.seen = udpEchoFrom(f.conn.(*net.UDPConn), f.dst, "n"+f.local.String(), 3, wait)
	f.placed = x.uplinkOf(f.seen)
}

type udpSock struct {
	conn  *net.UDPConn
	local netip.AddrPort
}

// openUDP opens n unconnected UDP sockets on the LAN host, on fresh ports.
func (x *natExhaust) openUDP(n int) []udpSock {
	x.t.Helper()
	out := make([]udpSock, 0, n)
	if err := x.host.Do(func() error {
		for range n {
			ap := netip.AddrPortFrom(x.addr, x.nextUDP)
			x.nextUDP++
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
			if err != nil {
				return err
			}
			x.track(c)
			out = append(out, udpSock{c, ap})
		}
		return nil
	}); err != nil {
		x.t.Fatal(err)
	}
	return out
}

// udpEchoFrom sends msg from c to dst up to tries times and returns the
// source address:port the echo server saw (invalid when no echo came).
func udpEchoFrom(c *net.UDPConn, dst netip.AddrPort, msg string, tries int, wait time.Duration) netip.AddrPort {
	buf := make([]byte, 512)
	for range tries {
		if _, err := c.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
			continue
		}
		deadline := time.Now().Add(wait)
		for {
			c.SetReadDeadline(deadline)
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			seen, rest, ok := strings.Cut(string(buf[:n]), " ")
			if from != dst || !ok || rest != msg {
				continue // a late echo of an earlier send
			}
			if ap, err := netip.ParseAddrPort(seen); err == nil {
				return ap
			}
		}
	}
	return netip.AddrPort{}
}

// newTCP connects from a fresh LAN port (or from localPort, shared with
// an existing connection, when not 0) to server:port and sends one line.
func (x *natExhaust) newTCP(m *natModel, server netip.Addr, port, localPort uint16) *natFlow {
	x.t.Helper()
	f := x.prepTCP(m, server, port, localPort)
	x.dialTCP(f)
	return f
}

// prepTCP picks a new connection's LAN endpoint, asks explain for the
// policy's preference and runs the model.
func (x *natExhaust) prepTCP(m *natModel, server netip.Addr, port, localPort uint16) *natFlow {
	x.t.Helper()
	if localPort == 0 {
		localPort = x.nextTCP
		x.nextTCP++
	}
	f := &natFlow{proto: "tcp", local: netip.AddrPortFrom(x.addr, localPort), dst: netip.AddrPortFrom(server, port), placed: -1}
	f.pref = x.preference("tcp", f.local, f.dst)
	f.want = m.place(f.local, f.pref)
	return f
}

// dialTCP connects f and sends one line, recording the source
// address:port the echo server saw. It may run concurrently for
// different flows.
func (x *natExhaust) dialTCP(f *natFlow) {
	timeout := 2 * time.Second
	if f.want < 0 {
		// Before the SYN is sent again (initial RTO 1 s): one SYN.
		timeout = 300 * time.Millisecond
	}
	d := net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(f.local),
		Timeout:   timeout,
		// Two connections from one LAN port (to different servers).
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) }); err != nil {
				return err
			}
			return serr
		},
	}
	var c net.Conn
	var err error
	if e := x.host.Do(func() error {
		c, err = d.Dial("tcp4", f.dst.String())
		return nil
	}); e != nil {
		x.t.Error(e)
		return
	}
	if err != nil {
		if f.want >= 0 {
			x.t.Errorf("tcp %v → %v: %v; want it on %s", f.local, f.dst, err, x.l.Uplinks[f.want].Name)
		}
		return
	}
	x.track(c)
	f.conn, f.rd = c, bufio.NewReader(c)
	f.seen = x.tcpEcho(f, "n")
	f.placed = x.uplinkOf(f.seen)
}

// tcpEcho sends one line on f's connection and returns the address:port
// the server saw.
func (x *natExhaust) tcpEcho(f *natFlow, msg string) netip.AddrPort {
	f.conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := f.conn.Write([]byte(msg + "\n")); err != nil {
		return netip.AddrPort{}
	}
	line, err := f.rd.ReadString('\n')
	if err != nil {
		return netip.AddrPort{}
	}
	seen, rest, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
	if !ok || rest != msg {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(seen)
	return ap
}

// uplinkOf returns the index of the uplink whose address is seen's, or -1.
func (x *natExhaust) uplinkOf(seen netip.AddrPort) int {
	if !seen.IsValid() {
		return -1
	}
	if i, ok := x.byAddr[seen.Addr()]; ok {
		return i
	}
	return -1
}

// checkPlaced compares a flow with the model and checks its NAT port.
func (x *natExhaust) checkPlaced(f *natFlow, phase string) {
	x.t.Helper()
	name := func(i int) string {
		if i < 0 {
			return "dropped"
		}
		return x.l.Uplinks[i].Name
	}
	if f.placed != f.want {
		x.t.Errorf("%s: %s %v → %v (preference %v): went %s (server saw %v), want %s", phase, f.proto, f.local, f.dst,
			f.pref, name(f.placed), f.seen, name(f.want))
		return
	}
	if f.placed < 0 {
		return
	}
	p := f.seen.Port()
	if p < natLo || p > natHi {
		x.t.Errorf("%s: %s %v: NAT port %d outside %d-%d", phase, f.proto, f.local, p, natLo, natHi)
	}
	key := fmt.Sprintf("%s/%d/%d", f.proto, f.placed, p)
	if o, ok := x.owner[key]; ok && o != f.local {
		x.t.Errorf("%s: %s NAT port %v serves both %v and %v", phase, f.proto, f.seen, o, f.local)
	}
	x.owner[key] = f.local
	if f.proto == "udp" && phase == "balance" {
		x.usedA[f.placed][p] = true
	}
}

// refresh sends one more message on each flow, a few at a time: each must
// come back through the same mapping.
func (x *natExhaust) refresh(flows []*natFlow, when string) {
	x.t.Helper()
	var mu sync.Mutex
	bad := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, f := range flows {
		if f.placed < 0 {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var seen netip.AddrPort
			if f.proto == "udp" {
				seen = udpEchoFrom(f.conn.(*net.UDPConn), f.dst, "r"+f.local.String(), 3, 500*time.Millisecond)
			} else {
				seen = x.tcpEcho(f, "r")
			}
			if seen != f.seen {
				mu.Lock()
				if bad < 5 {
					x.t.Errorf("%s: existing %s flow %v → %v: the server saw %v, want %v", when, f.proto, f.local, f.dst, seen, f.seen)
				}
				bad++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if bad > 0 {
		x.t.Errorf("%s: %d existing flows broken", when, bad)
	}
}

// checkCounters checks how the fallback and drop counters moved.
func (x *natExhaust) checkCounters(phase string, before, after map[string]*dto.MetricFamily, fallbacks, drops int) {
	x.t.Helper()
	for _, c := range []struct {
		name string
		want int
	}{{"out_ports_exhausted_fallback", fallbacks}, {"out_drop_ports_exhausted", drops}} {
		if _, ok := dpCounter(after, c.name); !ok {
			x.t.Errorf("wanflow_dataplane_%s_total is not exported", c.name)
		} else if d := dpDelta(before, after, c.name); d != float64(c.want) {
			x.t.Errorf("%s: wanflow_dataplane_%s_total moved by %v, want %d", phase, c.name, d, c.want)
		}
	}
}

// checkLog checks the daemon's exhaustion reports logged since from:
// per uplink, their packets_without_port add up to exhausted (the model's failed
// attempts), and they come at most once a second. It waits for the
// report of the last second.
func (x *natExhaust) checkLog(what string, exhausted []int, from time.Time) {
	x.t.Helper()
	type report struct {
		at time.Time
		n  int
	}
	var per map[string][]report
	sums := make([]int, len(exhausted))
	deadline := time.Now().Add(3 * time.Second)
	for {
		per = map[string][]report{}
		for _, line := range x.logs.matching(natExhaustLog) {
			mm := natExhaustLog.FindStringSubmatch(line)
			at, err := time.Parse(time.RFC3339Nano, mm[1])
			if err != nil {
				x.t.Fatalf("log line %q: %v", line, err)
			}
			if !at.Before(from) {
				per[mm[2]] = append(per[mm[2]], report{at, atoiOr(mm[3])})
			}
		}
		done := true
		for i, u := range x.l.Uplinks {
			sums[i] = 0
			for _, r := range per[u.Name] {
				sums[i] += r.n
			}
			done = done && sums[i] >= exhausted[i]
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, u := range x.l.Uplinks {
		rs := per[u.Name]
		minGap := time.Duration(0)
		for j := 1; j < len(rs); j++ {
			if g := rs[j].at.Sub(rs[j-1].at); j == 1 || g < minGap {
				minGap = g
			}
		}
		gap := "-"
		if len(rs) > 1 {
			gap = minGap.Round(time.Millisecond).String()
		}
		x.t.Logf("log (%s): %d reports \"NAT ports exhausted on uplink %s\", packets_without_port adding up to %d (model: %d failed attempts), closest two %s apart",
			what, len(rs), u.Name, sums[i], exhausted[i], gap)
		if sums[i] != exhausted[i] {
			x.t.Errorf("log (%s): packets_without_port for %s add up to %d, want %d", what, u.Name, sums[i], exhausted[i])
		}
		if len(rs) > 1 && minGap < 800*time.Millisecond {
			x.t.Errorf("log (%s): two reports for %s %v apart; want at most one a second", what, u.Name, minGap)
		}
	}
}

// reload writes yaml as the daemon's config, reloads it and waits until
// the uplinks have the given tiers.
func (x *natExhaust) reload(yaml string, tiers []int) {
	x.t.Helper()
	if err := x.r.WriteConfig(yaml); err != nil {
		x.t.Fatal(err)
	}
	rr, err := x.c.Reload(context.Background())
	if err != nil {
		x.t.Fatalf("reload: %v", err)
	}
	st, err := x.c.Status(context.Background())
	if err != nil {
		x.t.Fatal(err)
	}
	for i, u := range st.Uplinks {
		if u.Tier != tiers[i] || !u.Available {
			x.t.Fatalf("after reload (%v): uplink %s tier %d available %v, want tier %d", rr.Changed, u.Name, u.Tier, u.Available, tiers[i])
		}
	}
}

// checkFlowsAPI checks that `wanflow flows` lists every flow with the NAT
// mapping the server saw and marks those the fallback placed
// (ports_fallback), and logs how `explain` tells one.
func (x *natExhaust) checkFlowsAPI(flows []*natFlow) {
	x.t.Helper()
	fr, err := x.c.Flows(context.Background(), control.FlowQuery{Proto: "udp", Limit: control.MaxFlowLimit})
	if err != nil {
		x.t.Fatal(err)
	}
	listed := map[string]control.Flow{}
	for _, f := range fr.Flows {
		listed[f.Src+" "+f.Dst] = f
	}
	missing, wrong, marked := 0, 0, 0
	var sample *control.Flow
	for _, f := range flows {
		got, ok := listed[f.local.String()+" "+f.dst.String()]
		if !ok {
			missing++
			continue
		}
		if got.NAT != f.seen.String() || got.UplinkIndex != f.placed {
			wrong++
		}
		// A flow off its first choice was placed by the fallback, and
		// says so; no other flow does.
		if fallback := f.placed != f.pref[0]; got.PortsFallback != fallback {
			marked++
		}
		if f.placed != f.pref[0] && sample == nil {
			sample = &got
		}
	}
	if missing > 0 || wrong > 0 {
		x.t.Errorf("wanflow flows: %d flows missing, %d with another uplink or NAT mapping than the server saw", missing, wrong)
	}
	if marked > 0 {
		x.t.Errorf("wanflow flows: %d flows with ports_fallback wrong (set iff the flow is off its first choice)", marked)
	}
	if sample != nil {
		e, err := x.c.Explain(context.Background(), control.ExplainQuery{Proto: "udp", Src: sample.Src, Dst: sample.Dst})
		if err != nil {
			x.t.Fatal(err)
		}
		x.t.Logf("a fallback flow in `wanflow flows`: uplink %s, reason %q, tier %d, ports_fallback %v; `wanflow explain`: uplink %s, %q",
			sample.Uplink, sample.Reason, sample.Tier, sample.PortsFallback, e.Uplink, e.Why)
		if !strings.Contains(e.Why, "no free NAT port") {
			x.t.Errorf("explain of a fallback flow does not say its first choice had no free NAT port: %q", e.Why)
		}
	}
}

// natModel is the dataplane's NAT port accounting for one protocol, as
// the test predicts it.
type natModel struct {
	free   []int
	mapped []map[netip.AddrPort]bool
	// exhausted counts, per uplink, the new flows that found no port on it
	// (what the log's packets_without_port add up).
	exhausted                []int
	fallbacks, drops         int
	fallbackFrom, fallbackTo []int
}

func newNATModel(uplinks int) *natModel {
	m := &natModel{free: make([]int, uplinks), exhausted: make([]int, uplinks), fallbackFrom: make([]int, uplinks), fallbackTo: make([]int, uplinks)}
	for i := range m.free {
		m.free[i] = natPool
		m.mapped = append(m.mapped, map[netip.AddrPort]bool{})
	}
	return m
}

func (m *natModel) freeTotal() int {
	n := 0
	for _, f := range m.free {
		n += f
	}
	return n
}

// place returns the uplink of a new flow from LAN endpoint ep whose
// policy preference is pref, or -1 when it is dropped.
func (m *natModel) place(ep netip.AddrPort, pref []int) int {
	for k, u := range pref {
		if !m.mapped[u][ep] && m.free[u] == 0 {
			m.exhausted[u]++
			continue
		}
		if !m.mapped[u][ep] {
			m.free[u]--
			m.mapped[u][ep] = true
		}
		if k > 0 {
			m.fallbacks++
			m.fallbackFrom[pref[0]]++
			m.fallbackTo[u]++
		}
		return u
	}
	m.drops++
	return -1
}

func countPlaced(flows []*natFlow) map[string]int {
	out := map[string]int{}
	for _, f := range flows {
		out[placedName(f.placed)]++
	}
	return out
}

func countFirst(flows []*natFlow) map[string]int {
	out := map[string]int{}
	for _, f := range flows {
		out[placedName(f.pref[0])]++
	}
	return out
}

func placedName(i int) string {
	if i < 0 {
		return "dropped"
	}
	return "up" + strconv.Itoa(i+1)
}

// atoiOr returns the integer s spells, or -1.
func atoiOr(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// names returns per-uplink counts keyed by uplink name.
func (x *natExhaust) names(counts []int) map[string]int {
	out := map[string]int{}
	for i, n := range counts {
		out[x.l.Uplinks[i].Name] = n
	}
	return out
}

// sumInts adds slices element by element.
func sumInts(a, b []int) []int {
	out := slices.Clone(a)
	for i := range out {
		out[i] += b[i]
	}
	return out
}

// logLines keeps the lines of the daemon's output that match re, however
// long the rest of the log grows (labrouter keeps its last MiB only, and
// the debug log has a line per control request).
type logLines struct {
	re      *regexp.Regexp
	mu      sync.Mutex
	partial []byte
	lines   []string
}

// Write implements io.Writer; it is called with arbitrary chunks.
func (w *logLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := slices.Index(w.partial, '\n')
		if i < 0 {
			break
		}
		if line := string(w.partial[:i]); w.re.MatchString(line) {
			w.lines = append(w.lines, line)
		}
		w.partial = w.partial[i+1:]
	}
	w.partial = slices.Clip(w.partial)
	return len(p), nil
}

// matching returns the kept lines that match re.
func (w *logLines) matching(re *regexp.Regexp) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range w.lines {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}
