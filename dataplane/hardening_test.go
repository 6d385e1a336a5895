package dataplane

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/wanflow/wanflow/dataplane/packet"
	pt "github.com/wanflow/wanflow/dataplane/packet/packettest"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/policy"
)

// waitCounter waits until counter c reaches want (2 s at most) and fails
// if it does not, or goes past it.
func (te *testEngine) waitCounter(t *testing.T, c Counter, want uint64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := te.Stats().Get(c)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("%v = %d, want %d", c, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// noneSent fails if any uplink sent a packet.
func (te *testEngine) noneSent(t *testing.T) {
	t.Helper()
	for i, u := range te.up {
		select {
		case p := <-u.Out:
			t.Fatalf("unexpected packet on uplink %d: % x", i, p)
		default:
		}
	}
}

func TestEngineAddressChecks(t *testing.T) {
	te := newTestEngineWith(t, 2, func(c *Config) {
		c.LANPrefixes = []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24"), netip.MustParsePrefix("192.168.7.0/25")}
	})
	te.setUplinks(t, []uint32{1}, []bool{true}, 0)
	te.Start()

	tests := []struct {
		name     string
		src, dst [4]byte
		ttl0     bool    // TTL 0: would be answered with time exceeded
		want     Counter // OutFlowsCreated: forwarded
	}{
		{"LAN host", lanHost, server, false, OutFlowsCreated},
		{"second prefix", [4]byte{192, 168, 7, 100}, server, false, OutFlowsCreated},
		{"outside second prefix", [4]byte{192, 168, 7, 200}, server, false, OutDropSpoofed},
		{"foreign source", [4]byte{198, 51, 100, 7}, server, false, OutDropSpoofed},
		{"other LAN", [4]byte{10, 77, 1, 10}, server, false, OutDropSpoofed},
		{"router's address", routerIP, server, false, OutDropSpoofed},
		{"spoofed TTL 0: no ICMP to it", [4]byte{198, 51, 100, 8}, server, true, OutDropSpoofed},
		{"source 0.0.0.0", [4]byte{0, 0, 0, 0}, server, false, OutDropBadSource},
		{"source 0/8", [4]byte{0, 1, 2, 3}, server, false, OutDropBadSource},
		{"source loopback", [4]byte{127, 0, 0, 1}, server, false, OutDropBadSource},
		{"source multicast", [4]byte{224, 0, 0, 5}, server, false, OutDropBadSource},
		{"source broadcast", [4]byte{255, 255, 255, 255}, server, false, OutDropBadSource},
		{"destination multicast", lanHost, [4]byte{239, 255, 255, 250}, false, OutDropBadDestination},
		{"destination broadcast", lanHost, [4]byte{255, 255, 255, 255}, false, OutDropBadDestination},
		{"destination 0/8", lanHost, [4]byte{0, 0, 0, 0}, false, OutDropBadDestination},
		{"destination loopback", lanHost, [4]byte{127, 0, 0, 53}, false, OutDropBadDestination},
		{"destination class E", lanHost, [4]byte{240, 0, 0, 1}, false, OutDropBadDestination},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := te.Stats().Get(tt.want)
			pkt := pt.UDP(pt.IP{Src: tt.src, Dst: tt.dst}, uint16(41000+i), 53, []byte("q"))
			if tt.ttl0 {
				ip := header.IPv4(pkt)
				ip.SetTTL(0)
				ip.SetChecksum(0)
				ip.SetChecksum(^ip.CalculateChecksum())
			}
			te.tun.Inject(pkt)
			te.waitCounter(t, tt.want, before+1)
			if tt.want == OutFlowsCreated {
				if _, out := te.sent(t); out == nil {
					t.Fatal("not sent")
				}
				return
			}
			te.noneSent(t)
			te.noneToLAN(t)
		})
	}

	// An ICMP error from a spoofed source is dropped as well.
	te.tun.Inject(pt.ICMPError(pt.IP{Src: [4]byte{198, 51, 100, 9}, Dst: server}, 3, 3, 0,
		pt.UDP(pt.IP{Src: server, Dst: lanHost}, 53, 41000, nil)))
	te.waitCounter(t, OutDropSpoofed, 6)
	te.noneSent(t)
}

// TestEngineAddressChecksWithoutPrefixes: without LANPrefixes any unicast
// source passes (as before they existed); never-valid addresses and the
// router's own do not.
func TestEngineAddressChecksWithoutPrefixes(t *testing.T) {
	te := newTestEngine(t, 1)
	te.setUplinks(t, []uint32{1}, []bool{true}, 0)
	te.Start()
	te.tun.Inject(pt.UDP(pt.IP{Src: [4]byte{198, 51, 100, 7}, Dst: server}, 41000, 53, nil))
	te.sent(t)
	te.tun.Inject(pt.UDP(pt.IP{Src: routerIP, Dst: server}, 41001, 53, nil))
	te.tun.Inject(pt.UDP(pt.IP{Src: [4]byte{127, 0, 0, 1}, Dst: server}, 41002, 53, nil))
	te.waitCounter(t, OutDropSpoofed, 1)
	te.waitCounter(t, OutDropBadSource, 1)
	te.noneSent(t)
}

// portsOfWorker returns n source ports whose endpoint (host, port, proto)
// the engine dispatches to worker w.
func portsOfWorker(te *testEngine, host [4]byte, proto uint8, w, n int) []uint16 {
	var ps []uint16
	for p := uint16(42000); len(ps) < n; p++ {
		if te.endpointWorker(host, p, proto) == w {
			ps = append(ps, p)
		}
	}
	return ps
}

// TestEngineHostLimit: 2 workers, a limit of 4 flows per host, so 2 per
// worker. A host's flows beyond its share are refused with ICMP
// administratively prohibited while another host's flows go through; once
// its flows expire the host can open new ones.
func TestEngineHostLimit(t *testing.T) {
	te := newTestEngineWith(t, 2, func(c *Config) {
		c.Flows.MaxFlowsPerHost = 4
		c.ExpireEvery = time.Hour // expiry is driven by the test
	})
	te.setUplinks(t, []uint32{1}, []bool{true}, 0)
	te.Start()
	hostB := [4]byte{10, 77, 0, 11}

	for w := range 2 {
		ps := portsOfWorker(te, lanHost, flowtable.ProtoUDP, w, 3)
		for _, p := range ps[:2] {
			te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, p, 53, []byte("q")))
			te.sent(t)
		}
		// The third on this worker is over the host's share.
		te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, ps[2], 53, []byte("q")))
		te.waitCounter(t, OutDropHostLimit, uint64(w+1))
		un := te.toLAN(t)
		mustVerify(t, "admin prohibited", un)
		if src, dst := pt.Addr4(un); src != routerIP || dst != lanHost || un[20] != 3 || un[21] != 13 {
			t.Fatalf("want ICMP 3/13 router → host, got % x", un[:28])
		}
	}
	// A TCP SYN over the limit: refused the same way (the connect fails at
	// once with EHOSTUNREACH).
	tp := portsOfWorker(te, lanHost, flowtable.ProtoTCP, 0, 1)[0]
	te.tun.Inject(pt.TCP(pt.IP{Src: lanHost, Dst: server}, tp, 443, 1, 0, packet.TCPFlagSYN, 1460, nil))
	te.waitCounter(t, OutDropHostLimit, 3)
	if un := te.toLAN(t); un[20] != 3 || un[21] != 13 {
		t.Fatalf("want ICMP 3/13 for the SYN, got type %d code %d", un[20], un[21])
	}
	te.noneSent(t)

	// Another host is not affected; existing flows of the limited host
	// still pass.
	for _, p := range []uint16{42000, 42001, 42002} {
		te.tun.Inject(pt.UDP(pt.IP{Src: hostB, Dst: server}, p, 53, []byte("q")))
		te.sent(t)
	}
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, portsOfWorker(te, lanHost, flowtable.ProtoUDP, 1, 1)[0], 53, []byte("again")))
	te.sent(t)
	s := te.Stats()
	if got := s.Get(OutFlowsCreated); got != 7 {
		t.Errorf("%v = %d, want 7", OutFlowsCreated, got)
	}
	var limited uint64
	for _, fs := range s.FlowStats {
		limited += fs.HostLimited
	}
	if limited != 3 {
		t.Errorf("flow tables' HostLimited = %d, want 3", limited)
	}

	// The flows expire: the host may open new ones.
	for _, w := range te.workers {
		w.do(func() { w.ft.Expire(nanotime() + int64(time.Hour)) })
	}
	if n := te.Stats().Flows; n != 0 {
		t.Fatalf("%d flows left after expiry", n)
	}
	te.tun.Inject(pt.TCP(pt.IP{Src: lanHost, Dst: server}, tp, 443, 1, 0, packet.TCPFlagSYN, 1460, nil))
	te.sent(t)
	te.waitCounter(t, OutDropHostLimit, 3)
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// setTieredUplinks publishes uplinks "a" (index 0, tier 1) and "b" (index
// 1, tier tierB), both available.
func (te *testEngine) setTieredUplinks(t *testing.T, tierB int) {
	t.Helper()
	ups := []Uplink{
		{Index: 0, Name: "a", Ifindex: 10, Addr: netip.AddrFrom4(upAddr[0]), Available: true},
		{Index: 1, Name: "b", Ifindex: 11, Addr: netip.AddrFrom4(upAddr[1]), Available: true},
	}
	pol, err := policy.New([]policy.Uplink{
		{Name: "a", Tier: 1, Weight: 1, Available: true},
		{Name: "b", Tier: tierB, Weight: 1, Available: true},
	}, policy.AffinityFlow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := te.Update(ups, pol); err != nil {
		t.Fatal(err)
	}
}

// TestEnginePortsExhaustedFallback: uplink a (tier 1) has 4 NAT ports; the
// fifth LAN endpoint's flow goes to uplink b (tier 2), recorded as a
// fallback; when b is out of ports too, the flow is dropped. The exhaustion
// is logged once per uplink.
func TestEnginePortsExhaustedFallback(t *testing.T) {
	logs := &syncBuffer{}
	te := newTestEngineWith(t, 1, func(c *Config) {
		c.Flows.Ports = flowtable.PortRange{Lo: 20000, Hi: 20003}
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	te.setTieredUplinks(t, 2)
	te.Start()

	send := func(i int) (int, uint16) {
		te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, uint16(40000+i), 53, []byte("q")))
		idx, out := te.sent(t)
		sport, _ := pt.Ports(out)
		return idx, sport
	}
	for i := range 4 {
		if idx, _ := send(i); idx != 0 {
			t.Fatalf("flow %d on uplink %d, want 0 (tier 1)", i, idx)
		}
	}
	for i := 4; i < 8; i++ {
		idx, sport := send(i)
		if idx != 1 || sport < 20000 || sport > 20003 {
			t.Fatalf("flow %d on uplink %d port %d, want uplink 1 (fallback)", i, idx, sport)
		}
	}
	te.waitCounter(t, OutPortsExhaustedFallback, 4)
	ent, ok := te.Lookup(KeyOf(flowtable.ProtoUDP, netip.AddrPortFrom(netip.AddrFrom4(lanHost), 40004), netip.AddrPortFrom(netip.AddrFrom4(server), 53)))
	if !ok || ent.Uplink != 1 {
		t.Fatalf("flow 4: %+v, %v; want on uplink 1", ent, ok)
	}
	if reason, tier, rule := DecodeDecision(ent.Decision); !DecisionPortsFallback(ent.Decision) || tier != 2 || rule != -1 || reason != policy.ReasonOnlyCandidate {
		t.Errorf("flow 4 decision: fallback %v, %v tier %d rule %d; want fallback, only-candidate tier 2", DecisionPortsFallback(ent.Decision), reason, tier, rule)
	}
	ent0, _ := te.Lookup(KeyOf(flowtable.ProtoUDP, netip.AddrPortFrom(netip.AddrFrom4(lanHost), 40000), netip.AddrPortFrom(netip.AddrFrom4(server), 53)))
	if DecisionPortsFallback(ent0.Decision) {
		t.Errorf("flow 0 marked as a fallback")
	}

	// Rebalance leaves fallback flows where they are.
	if r := te.Rebalance(ActionReset, ActionMigrate); r != (SweepResult{}) {
		t.Errorf("Rebalance = %+v, want nothing done", r)
	}

	// Both uplinks are out of ports: dropped and counted.
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40008, 53, []byte("q")))
	te.waitCounter(t, OutDropPortsExhausted, 1)
	te.noneSent(t)
	te.waitCounter(t, OutPortsExhaustedFallback, 4)

	// Replies reach the fallback flow through uplink b.
	te.up[1].Inject(pt.UDP(pt.IP{Src: server, Dst: upAddr[1]}, 53, ent.NATPort, []byte("a")))
	if back := te.toLAN(t); back == nil {
		t.Fatal("no reply")
	}

	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(logs.String(), "NAT ports exhausted on uplink b") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{"NAT ports exhausted on uplink a", "NAT ports exhausted on uplink b"} {
		if n := strings.Count(out, want); n < 1 {
			t.Errorf("log has %q %d times, want at least once:\n%s", want, n, out)
		}
	}
	if n := strings.Count(out, "NAT ports exhausted on uplink a"); n > 2 {
		t.Errorf("uplink a logged %d times within about a second, want at most 2 (once a second):\n%s", n, out)
	}
}

// TestEnginePortsExhaustedSameTier: with two uplinks of one tier, each
// endpoint's flow goes to the other when its choice has no port, so all
// 8 NAT ports are used before anything is dropped.
func TestEnginePortsExhaustedSameTier(t *testing.T) {
	te := newTestEngineWith(t, 1, func(c *Config) {
		c.Flows.Ports = flowtable.PortRange{Lo: 20000, Hi: 20003}
	})
	te.setTieredUplinks(t, 1)
	te.Start()
	per := make([]int, 2)
	for i := range 8 {
		te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, uint16(40000+i), 53, []byte("q")))
		idx, _ := te.sent(t)
		per[idx]++
	}
	if per[0] != 4 || per[1] != 4 {
		t.Fatalf("flows per uplink %v, want [4 4]", per)
	}
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40008, 53, []byte("q")))
	te.waitCounter(t, OutDropPortsExhausted, 1)
	if got := te.Stats().Get(OutPortsExhaustedFallback); got == 0 || got > 4 {
		t.Errorf("%v = %d, want 1..4", OutPortsExhaustedFallback, got)
	}
}
