package dataplane

import (
	"net/netip"
	"testing"

	pt "github.com/wanflow/wanflow/dataplane/packet/packettest"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/policy"
)

// TestExplainPredicts: for new flows, Explain names the uplink the
// dataplane then sends them through, and Lookup finds them pinned there
// with the decision recorded.
func TestExplainPredicts(t *testing.T) {
	te := newTestEngine(t, 2)
	te.setUplinks(t, []uint32{5, 3, 1}, []bool{true, true, true}, 0)
	te.Start()
	for i := range 300 {
		sport := uint16(30000 + i)
		src := netip.AddrPortFrom(netip.AddrFrom4(lanHost), sport)
		dst := netip.AddrPortFrom(netip.AddrFrom4(server), 7)
		x, sent, ok := te.Explain(policy.Flow{Proto: flowtable.ProtoUDP, Src: lanHost, Dst: server, SrcPort: sport, DstPort: 7})
		if !ok || !sent {
			t.Fatalf("flow %d: Explain ok=%v sent=%v", i, ok, sent)
		}
		te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, sport, 7, nil))
		idx, _ := te.sent(t)
		if idx != x.Decision.Uplink {
			t.Fatalf("flow %d: Explain said uplink %d, the dataplane used %d", i, x.Decision.Uplink, idx)
		}
		ent, found := te.Lookup(KeyOf(flowtable.ProtoUDP, src, dst))
		if !found || int(ent.Uplink) != idx {
			t.Fatalf("flow %d: Lookup found=%v uplink %d, want %d", i, found, ent.Uplink, idx)
		}
		if r, tier, rule := DecodeDecision(ent.Decision); r != x.Decision.Reason || tier != x.Decision.Tier || rule != x.Decision.Rule {
			t.Fatalf("flow %d: recorded %v/%d/%d, explained %+v", i, r, tier, rule, x.Decision)
		}
	}
	if _, found := te.Lookup(KeyOf(flowtable.ProtoUDP, netip.MustParseAddrPort("10.77.0.10:1"), netip.MustParseAddrPort("203.0.113.10:7"))); found {
		t.Error("Lookup found a flow that was never sent")
	}
}

func TestFlowsQuery(t *testing.T) {
	te := newTestEngine(t, 2)
	te.setUplinks(t, []uint32{1, 1}, []bool{true, true}, 0)
	te.Start()
	// Flow i sends i+1 packets.
	const n = 40
	for i := range n {
		for range i + 1 {
			te.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, uint16(40000+i), 7, []byte("x")))
			te.sent(t)
		}
	}
	all, matched := te.Flows(FlowQuery{Limit: 1000})
	if matched != n || len(all) != n {
		t.Fatalf("all: matched %d, got %d, want %d", matched, len(all), n)
	}
	byPackets := func(a, b *flowtable.Entry) bool { return a.PacketsOut > b.PacketsOut }
	top, matched := te.Flows(FlowQuery{Less: byPackets, Limit: 5})
	if matched != n || len(top) != 5 {
		t.Fatalf("top: matched %d, got %d", matched, len(top))
	}
	for i, e := range top {
		if want := uint64(n - i); e.PacketsOut != want {
			t.Errorf("top[%d]: %d packets, want %d", i, e.PacketsOut, want)
		}
	}
	odd, matched := te.Flows(FlowQuery{Match: func(e *flowtable.Entry) bool { return e.Key.SrcPort%2 == 1 }, Limit: 3})
	if matched != n/2 || len(odd) != 3 {
		t.Errorf("odd: matched %d, got %d", matched, len(odd))
	}
	per := te.FlowsPerUplink()
	total := 0
	for _, c := range per {
		total += c
	}
	if total != n {
		t.Errorf("FlowsPerUplink %v: total %d, want %d", per, total, n)
	}
	tr := te.Traffic()
	var pk uint64
	for i, x := range tr {
		pk += x.PacketsOut
		if x.PacketsOut > 0 && per[i] == 0 {
			t.Errorf("uplink %d: traffic without flows", i)
		}
	}
	if want := uint64(n * (n + 1) / 2); pk != want {
		t.Errorf("Traffic: %d packets out, want %d", pk, want)
	}
}
