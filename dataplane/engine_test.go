package dataplane

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/wanflow/wanflow/dataplane/dptest"
	"github.com/wanflow/wanflow/dataplane/packet"
	pt "github.com/wanflow/wanflow/dataplane/packet/packettest"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/policy"
)

var (
	lanHost  = [4]byte{10, 77, 0, 10}
	routerIP = [4]byte{10, 77, 0, 1}
	server   = [4]byte{203, 0, 113, 10}
	other    = [4]byte{203, 0, 113, 11}
	upAddr   = [][4]byte{{100, 64, 1, 2}, {100, 64, 2, 2}, {100, 64, 3, 2}}
	ispGW    = [4]byte{100, 64, 1, 1}
	natPorts = flowtable.PortRange{Lo: 20000, Hi: 32767}
)

// testEngine is an Engine on fakes: one dptest.TUN and one dptest.Uplink per
// uplink index.
type testEngine struct {
	*Engine
	tun *dptest.TUN
	up  map[int]*dptest.Uplink
}

func newTestEngine(t *testing.T, workers int) *testEngine {
	t.Helper()
	return newTestEngineWith(t, workers, nil)
}

// newTestEngineWith is newTestEngine with its Config changed by mod (when
// not nil) before New.
func newTestEngineWith(t *testing.T, workers int, mod func(*Config)) *testEngine {
	t.Helper()
	te := &testEngine{tun: dptest.NewTUN(), up: make(map[int]*dptest.Uplink)}
	cfg := Config{
		TUN: te.tun,
		OpenUplink: func(u Uplink, ports flowtable.PortRange) (UplinkIO, error) {
			f := dptest.NewUplink()
			te.up[u.Index] = f
			return f, nil
		},
		Workers:    workers,
		Flows:      flowtable.Config{Capacity: 1 << 14, Ports: natPorts, Timeouts: flowtable.DefaultTimeouts()},
		RouterAddr: netip.AddrFrom4(routerIP),
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	te.Engine = e
	t.Cleanup(func() { e.Close() })
	return te
}

// setUplinks publishes uplinks with the given weights (one tier) and
// availability; mtu 0 means 1500.
func (te *testEngine) setUplinks(t *testing.T, weights []uint32, avail []bool, mtu int) {
	t.Helper()
	var ups []Uplink
	var pus []policy.Uplink
	for i, w := range weights {
		ups = append(ups, Uplink{Index: i, Name: string(rune('a' + i)), Ifindex: 10 + i, Addr: netip.AddrFrom4(upAddr[i]), MTU: mtu, Available: avail[i]})
		pus = append(pus, policy.Uplink{Name: string(rune('a' + i)), Tier: 1, Weight: w, Available: avail[i]})
	}
	pol, err := policy.New(pus, policy.AffinityFlow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := te.Update(ups, pol); err != nil {
		t.Fatal(err)
	}
}

// sent waits for the next packet sent on any uplink.
func (te *testEngine) sent(t *testing.T) (int, []byte) {
	t.Helper()
	cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(time.After(2 * time.Second))}}
	var idx []int
	for i, u := range te.up {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(u.Out)})
		idx = append(idx, i)
	}
	chosen, v, _ := reflect.Select(cases)
	if chosen == 0 {
		t.Fatal("no packet sent on any uplink")
	}
	return idx[chosen-1], v.Bytes()
}

func (te *testEngine) toLAN(t *testing.T) []byte {
	t.Helper()
	p, ok := dptest.Recv(te.tun.Out, 2*time.Second)
	if !ok {
		t.Fatal("no packet written to the TUN device")
	}
	return p
}

func (te *testEngine) noneToLAN(t *testing.T) {
	t.Helper()
	if p, ok := dptest.Recv(te.tun.Out, 100*time.Millisecond); ok {
		t.Fatalf("unexpected packet to LAN: % x", p)
	}
}

func mustVerify(t *testing.T, what string, b []byte) {
	t.Helper()
	if err := pt.Verify(b); err != nil {
		t.Fatalf("%s: %v (% x)", what, err, b)
	}
}

func TestEngineUDPRoundTrip(t *testing.T) {
	te := newTestEngine(t, 2)
	te.setUplinks(t, []uint32{1, 1}, []bool{true, true}, 0)
	te.Start()

	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40001, 7, []byte("hello")))
	idx, out := te.sent(t)
	mustVerify(t, "outbound", out)
	src, dst := pt.Addr4(out)
	sport, dport := pt.Ports(out)
	if src != upAddr[idx] || dst != server || dport != 7 {
		t.Fatalf("outbound: got %v:%d → %v:%d on uplink %d", src, sport, dst, dport, idx)
	}
	if sport < natPorts.Lo || sport > natPorts.Hi || int(sport)%2 != te.endpointWorker(lanHost, 40001, 17) {
		t.Fatalf("NAT port %d: outside %v or wrong worker partition", sport, natPorts)
	}

	te.up[idx].Inject(pt.UDP(pt.IP{Src: server, Dst: upAddr[idx]}, 7, sport, []byte("world")))
	back := te.toLAN(t)
	mustVerify(t, "inbound", back)
	src, dst = pt.Addr4(back)
	bs, bd := pt.Ports(back)
	if src != server || dst != lanHost || bs != 7 || bd != 40001 {
		t.Fatalf("inbound: got %v:%d → %v:%d", src, bs, dst, bd)
	}

	// The same flow keeps its uplink and NAT port.
	for i := 0; i < 20; i++ {
		te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40001, 7, []byte("again")))
		i2, o2 := te.sent(t)
		s2, _ := pt.Ports(o2)
		if i2 != idx || s2 != sport {
			t.Fatalf("packet %d: uplink %d port %d, want %d/%d", i, i2, s2, idx, sport)
		}
	}

	// A reply from another remote, or to a wrong port, finds no flow.
	te.up[idx].Inject(pt.UDP(pt.IP{Src: other, Dst: upAddr[idx]}, 7, sport, []byte("spoof")))
	te.up[idx].Inject(pt.UDP(pt.IP{Src: server, Dst: upAddr[idx]}, 7, sport+2, []byte("spoof")))
	te.noneToLAN(t)
	if got := te.Stats().Get(InDropNoFlow); got != 2 {
		t.Errorf("%v = %d, want 2", InDropNoFlow, got)
	}
}

func TestEngineTCPMSSAndReset(t *testing.T) {
	te := newTestEngine(t, 1)
	te.setUplinks(t, []uint32{1, 1}, []bool{true, true}, 1400)
	te.Start()

	te.tun.Inject(pt.TCP(pt.IP{Src: lanHost, Dst: server, DF: true}, 40002, 80, 1000, 0, packet.TCPFlagSYN, 1460, nil))
	idx, out := te.sent(t)
	mustVerify(t, "SYN", out)
	ihl := int(out[0]&0xf) * 4
	if mss := uint16(out[ihl+22])<<8 | uint16(out[ihl+23]); mss != 1360 {
		t.Fatalf("MSS %d, want 1360 (uplink MTU 1400 - 40)", mss)
	}
	natPort, _ := pt.Ports(out)

	// SYN-ACK back, with an MSS the uplink cannot carry either.
	te.up[idx].Inject(pt.TCP(pt.IP{Src: server, Dst: upAddr[idx], DF: true}, 80, natPort, 5000, 1001, packet.TCPFlagSYN|packet.TCPFlagACK, 1460, nil))
	sa := te.toLAN(t)
	mustVerify(t, "SYN-ACK", sa)
	if mss := uint16(sa[ihl+22])<<8 | uint16(sa[ihl+23]); mss != 1360 {
		t.Fatalf("SYN-ACK MSS %d, want 1360", mss)
	}

	// The uplink goes away: the next segment from the LAN host is answered
	// with an RST from the server's address, and nothing is sent.
	te.setUplinks(t, []uint32{1, 1}, []bool{idx != 0, idx != 1}, 1400)
	te.tun.Inject(pt.TCP(pt.IP{Src: lanHost, Dst: server, DF: true}, 40002, 80, 1001, 5001, packet.TCPFlagACK, 0, []byte("data")))
	rst := te.toLAN(t)
	mustVerify(t, "RST", rst)
	src, dst := pt.Addr4(rst)
	if src != server || dst != lanHost || rst[ihl+13]&packet.TCPFlagRST == 0 {
		t.Fatalf("want RST server→LAN host, got % x", rst)
	}
}

func TestEngineUDPRepinnedWhenUplinkGoes(t *testing.T) {
	te := newTestEngine(t, 1)
	te.setUplinks(t, []uint32{1, 1}, []bool{true, true}, 0)
	te.Start()
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40003, 53, []byte("q")))
	idx, _ := te.sent(t)
	te.setUplinks(t, []uint32{1, 1}, []bool{idx != 0, idx != 1}, 0)
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40003, 53, []byte("q")))
	idx2, out := te.sent(t)
	if idx2 == idx {
		t.Fatalf("flow stayed on unavailable uplink %d", idx)
	}
	if src, _ := pt.Addr4(out); src != upAddr[idx2] {
		t.Fatalf("source %v, want uplink %d's address", src, idx2)
	}
	if got := te.Stats().Get(OutRepinned); got != 1 {
		t.Errorf("%v = %d, want 1", OutRepinned, got)
	}
}

func TestEngineICMP(t *testing.T) {
	te := newTestEngine(t, 2)
	te.setUplinks(t, []uint32{1}, []bool{true}, 1400)
	te.Start()

	// Echo request out, reply back.
	te.tun.Inject(pt.ICMPEcho(pt.IP{Src: lanHost, Dst: server}, false, 777, 1, []byte("ping")))
	_, out := te.sent(t)
	mustVerify(t, "echo request", out)
	ihl := int(out[0]&0xf) * 4
	natID := uint16(out[ihl+4])<<8 | uint16(out[ihl+5])
	te.up[0].Inject(pt.ICMPEcho(pt.IP{Src: server, Dst: upAddr[0]}, true, natID, 1, []byte("ping")))
	back := te.toLAN(t)
	mustVerify(t, "echo reply", back)
	if id := uint16(back[ihl+4])<<8 | uint16(back[ihl+5]); id != 777 {
		t.Fatalf("echo reply id %d, want 777", id)
	}

	// A traceroute probe: UDP out; the ISP gateway answers time exceeded
	// quoting the NATed packet; the LAN host gets it about its own packet.
	probe := pt.UDP(pt.IP{Src: lanHost, Dst: server, TTL: 1}, 40010, 33434, []byte("probe"))
	te.tun.Inject(probe)
	_, natted := te.sent(t)
	te.up[0].Inject(pt.ICMPError(pt.IP{Src: ispGW, Dst: upAddr[0]}, 11, 0, 0, natted))
	te2 := te.toLAN(t)
	mustVerify(t, "time exceeded", te2)
	if _, dst := pt.Addr4(te2); dst != lanHost {
		t.Fatalf("time exceeded to %v, want LAN host", dst)
	}
	inner := te2[ihl+8:]
	isrc, _ := pt.Addr4(inner)
	isport, _ := pt.Ports(inner)
	if isrc != lanHost || isport != 40010 {
		t.Fatalf("quoted packet from %v:%d, want the LAN host's own 10.77.0.10:40010", isrc, isport)
	}

	// An ICMP error quoting a packet of no flow is dropped.
	te.up[0].Inject(pt.ICMPError(pt.IP{Src: ispGW, Dst: upAddr[0]}, 11, 0, 0,
		pt.UDP(pt.IP{Src: upAddr[0], Dst: server}, 31000, 33434, nil)))
	te.noneToLAN(t)
}

func TestEnginePMTU(t *testing.T) {
	te := newTestEngine(t, 1)
	te.setUplinks(t, []uint32{1}, []bool{true}, 1400)
	te.Start()
	big := make([]byte, 1450)

	// DF set: the router answers fragmentation needed with the uplink MTU.
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server, DF: true}, 40020, 9000, big))
	fn := te.toLAN(t)
	mustVerify(t, "frag needed", fn)
	ihl := int(fn[0]&0xf) * 4
	if src, dst := pt.Addr4(fn); src != routerIP || dst != lanHost || fn[ihl] != 3 || fn[ihl+1] != 4 {
		t.Fatalf("want ICMP 3/4 router→host, got % x", fn[:ihl+8])
	}
	if mtu := uint16(fn[ihl+6])<<8 | uint16(fn[ihl+7]); mtu != 1400 {
		t.Fatalf("next-hop MTU %d, want 1400", mtu)
	}

	// DF clear: fragmented to fit.
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server, ID: 99}, 40021, 9000, big))
	_, f1 := te.sent(t)
	_, f2 := te.sent(t)
	for _, f := range [][]byte{f1, f2} {
		mustVerify(t, "fragment", f)
		if len(f) > 1400 {
			t.Fatalf("fragment of %d bytes exceeds MTU 1400", len(f))
		}
	}
	r := packet.NewReassembler(4, 65535, time.Second)
	var p packet.Parsed
	p.Decode(f1)
	r.Add(f1, &p, 1)
	p.Decode(f2)
	whole, done := r.Add(f2, &p, 2)
	if !done {
		t.Fatal("fragments do not reassemble")
	}
	mustVerify(t, "reassembled", whole)
	if len(whole) != 20+8+len(big) {
		t.Fatalf("reassembled %d bytes, want %d", len(whole), 28+len(big))
	}
}

func TestEngineNoUplink(t *testing.T) {
	te := newTestEngine(t, 1)
	te.setUplinks(t, []uint32{1}, []bool{false}, 0)
	te.Start()
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40030, 7, []byte("x")))
	un := te.toLAN(t)
	mustVerify(t, "net unreachable", un)
	if un[20] != 3 || un[21] != 0 {
		t.Fatalf("want ICMP net unreachable, got type %d code %d", un[20], un[21])
	}
	if got := te.Stats().Get(OutDropNoUplink); got != 1 {
		t.Errorf("%v = %d, want 1", OutDropNoUplink, got)
	}
}

// TestEngineWeights checks that new flows split by the policy's weights and
// that each flow leaves by exactly one uplink.
func TestEngineWeights(t *testing.T) {
	te := newTestEngine(t, 2)
	te.setUplinks(t, []uint32{8, 6, 3}, []bool{true, true, true}, 0)
	te.Start()
	const flows = 3000
	count := make([]int, 3)
	for i := 0; i < flows; i++ {
		sport := uint16(20000 + i)
		te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, sport, 7, nil))
		idx, _ := te.sent(t)
		count[idx]++
	}
	want := []float64{8.0 / 17, 6.0 / 17, 3.0 / 17}
	for i := range count {
		got := float64(count[i]) / flows
		if d := got - want[i]; d > 0.03 || d < -0.03 {
			t.Errorf("uplink %d: %.3f of flows, want %.3f ± 0.03", i, got, want[i])
		}
	}
}
