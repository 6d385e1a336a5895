package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/wanflow/wanflow/dataplane/packet"
	pt "github.com/wanflow/wanflow/dataplane/packet/packettest"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/policy"
)

// TestFailUplink: when a flow's uplink fails, its TCP connection is reset
// at the LAN host with the exact sequence number the host expects, and its
// UDP flow moves to the other uplink, keeping its LAN endpoint.
func TestFailUplink(t *testing.T) {
	te := newTestEngine(t, 2)
	te.setUplinks(t, []uint32{1, 1}, []bool{true, true}, 0)
	te.Start()

	// A TCP connection with 100 bytes received.
	te.tun.Inject(pt.TCP(pt.IP{Src: lanHost, Dst: server}, 40100, 80, 1000, 0, packet.TCPFlagSYN, 1460, nil))
	tcpUp, syn := te.sent(t)
	natPort, _ := pt.Ports(syn)
	te.up[tcpUp].Inject(pt.TCP(pt.IP{Src: server, Dst: upAddr[tcpUp]}, 80, natPort, 5000, 1001, packet.TCPFlagSYN|packet.TCPFlagACK, 1460, nil))
	te.toLAN(t)
	te.up[tcpUp].Inject(pt.TCP(pt.IP{Src: server, Dst: upAddr[tcpUp]}, 80, natPort, 5001, 1001, packet.TCPFlagACK|packet.TCPFlagPSH, 0, make([]byte, 100)))
	te.toLAN(t)

	// UDP flows until one sits on the same uplink as the TCP connection.
	var udpPort uint16
	for p := uint16(41000); udpPort == 0; p++ {
		te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, p, 53, []byte("q")))
		if idx, _ := te.sent(t); idx == tcpUp {
			udpPort = p
		}
	}

	avail := []bool{true, true}
	avail[tcpUp] = false
	te.setUplinks(t, []uint32{1, 1}, avail, 0)
	res := te.FailUplink(tcpUp, false, ActionReset, ActionMigrate)
	if res.Reset != 1 || res.Migrated < 1 {
		t.Fatalf("sweep: %+v, want 1 reset and the UDP flows migrated", res)
	}
	rst := te.toLAN(t)
	mustVerify(t, "RST", rst)
	src, dst := pt.Addr4(rst)
	sp, dp := pt.Ports(rst)
	if src != server || dst != lanHost || sp != 80 || dp != 40100 || rst[20+13]&packet.TCPFlagRST == 0 {
		t.Fatalf("want RST server:80 → host:40100, got %v:%d → %v:%d flags %#x", src, sp, dst, dp, rst[33])
	}
	if seq := binary.BigEndian.Uint32(rst[24:]); seq != 5101 {
		t.Fatalf("RST seq %d, want 5101 (the host's next expected byte)", seq)
	}

	// The UDP flow now leaves by the other uplink.
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, udpPort, 53, []byte("q")))
	if idx, out := te.sent(t); idx == tcpUp {
		t.Fatalf("UDP flow still on failed uplink %d", idx)
	} else if src, _ := pt.Addr4(out); src != upAddr[idx] {
		t.Fatalf("UDP flow NATed to %v on uplink %d", src, idx)
	}

	// The reset connection's next segment gets another RST, not a new flow.
	te.tun.Inject(pt.TCP(pt.IP{Src: lanHost, Dst: server}, 40100, 80, 1001, 5101, packet.TCPFlagACK, 0, []byte("late")))
	rst2 := te.toLAN(t)
	if rst2[20+13]&packet.TCPFlagRST == 0 {
		t.Fatalf("want RST for a segment without flow, got flags %#x", rst2[33])
	}
	if got := te.Stats().Get(OutResetNoFlow); got != 1 {
		t.Errorf("%v = %d, want 1", OutResetNoFlow, got)
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range []Action{ActionReset, ActionMigrate, ActionKeep} {
		got, err := ParseAction(a.String())
		if err != nil || got != a {
			t.Errorf("ParseAction(%q) = %v, %v", a.String(), got, err)
		}
	}
	if _, err := ParseAction("drop"); err == nil {
		t.Error("ParseAction(drop) accepted")
	}
}

// TestRebalance: with preempt, when a preferred uplink returns, flows the
// policy now places on it move back: UDP re-pinned, TCP reset; flows
// already where the policy wants them are not touched.
func TestRebalance(t *testing.T) {
	te := newTestEngine(t, 1)
	te.setUplinks(t, []uint32{1, 1}, []bool{false, true}, 0) // only uplink 1
	te.Start()
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 43000, 53, []byte("q")))
	if idx, _ := te.sent(t); idx != 1 {
		t.Fatalf("flow on uplink %d, want 1", idx)
	}
	// Uplink 0 returns in a higher preference: a one-uplink tier of its own.
	ups := []Uplink{
		{Index: 0, Name: "a", Ifindex: 10, Addr: netip.AddrFrom4(upAddr[0]), Available: true},
		{Index: 1, Name: "b", Ifindex: 11, Addr: netip.AddrFrom4(upAddr[1]), Available: true},
	}
	pol, err := policy.New([]policy.Uplink{{Name: "a", Tier: 1, Weight: 1, Available: true}, {Name: "b", Tier: 2, Weight: 1, Available: true}}, policy.AffinityFlow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := te.Update(ups, pol); err != nil {
		t.Fatal(err)
	}
	if r := te.Rebalance(ActionReset, ActionMigrate); r.Migrated != 1 {
		t.Fatalf("rebalance: %+v, want the UDP flow migrated back", r)
	}
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 43000, 53, []byte("q")))
	if idx, _ := te.sent(t); idx != 0 {
		t.Fatalf("after rebalance the flow leaves by uplink %d, want 0", idx)
	}
	if r := te.Rebalance(ActionReset, ActionMigrate); r.Migrated != 0 || r.Reset != 0 {
		t.Fatalf("second rebalance moved flows: %+v", r)
	}
}

// TestMigrateFallsBack: a UDP flow moved off a failed uplink whose new
// first choice has no free NAT port goes to the policy's next choice, as a
// new flow would, and is marked as placed by the fallback.
func TestMigrateFallsBack(t *testing.T) {
	te := newTestEngineWith(t, 1, func(c *Config) { c.Flows.Ports = flowtable.PortRange{Lo: 20000, Hi: 20001} })
	// Uplink 0 carries the flow; uplink 1 (weight 1000) is the first choice
	// once 0 fails; uplink 2 (weight 1) the next.
	te.setUplinks(t, []uint32{1000000, 1000, 1}, []bool{true, true, true}, 0)
	te.Start()
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40000, 53, []byte("q")))
	if idx, _ := te.sent(t); idx != 0 {
		t.Fatalf("first flow on uplink %d, want 0", idx)
	}
	// Fill uplink 1's two ports: uplink 0 is unavailable meanwhile.
	te.setUplinks(t, []uint32{1000000, 1000, 1}, []bool{false, true, true}, 0)
	for p := uint16(41000); p < 41002; p++ {
		te.tun.Inject(pt.UDP(pt.IP{Src: other, Dst: server}, p, 53, []byte("q")))
		if idx, _ := te.sent(t); idx != 1 {
			t.Fatalf("filler on uplink %d, want 1", idx)
		}
	}
	res := te.FailUplink(0, false, ActionReset, ActionMigrate)
	if res.Migrated != 1 || res.Kept != 0 {
		t.Fatalf("sweep: %+v, want the flow migrated", res)
	}
	te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40000, 53, []byte("q")))
	if idx, _ := te.sent(t); idx != 2 {
		t.Fatalf("migrated flow on uplink %d, want 2 (uplink 1 is out of ports)", idx)
	}
	fl, _ := te.Flows(FlowQuery{Match: func(e *flowtable.Entry) bool { return e.Key.SrcPort == 40000 }, Limit: 1})
	if len(fl) != 1 || !DecisionPortsFallback(fl[0].Decision) {
		t.Fatalf("migrated flow %+v: want it marked as placed by the NAT-port fallback", fl)
	}
	if st := te.Stats(); st.Get(OutPortsExhaustedFallback) != 1 || st.Get(OutRepinned) != 1 {
		t.Errorf("counters: fallback %d, repinned %d; want 1 and 1", st.Get(OutPortsExhaustedFallback), st.Get(OutRepinned))
	}
}
