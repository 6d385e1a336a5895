package dataplane

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/wanflow/wanflow/dataplane/dptest"
	pt "github.com/wanflow/wanflow/dataplane/packet/packettest"
	"github.com/wanflow/wanflow/flowtable"
)

// TestHandover: flows saved from a stopped engine and restored into a new
// one (same workers, same ports) carry on there: the LAN host's next
// packets leave by the same uplink with the same NAT port, with no new
// flow and no reset for an established TCP connection, and the remotes'
// replies find their flows.
func TestHandover(t *testing.T) {
	const W = 2
	a := newTestEngine(t, W)
	a.setUplinks(t, []uint32{1, 1}, []bool{true, true}, 0)
	a.Start()

	type seen struct {
		uplink int
		port   uint16
	}
	before := map[uint16]seen{} // LAN source port → where it went
	for i := range 16 {
		sport := uint16(40000 + i)
		if i%2 == 0 {
			a.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, sport, 7, []byte("u")))
		} else {
			// A TCP handshake, so the flow is established.
			a.tun.Inject(pt.TCP(pt.IP{Src: lanHost, Dst: server}, sport, 80, 1000, 0, tcpSYN, 1460, nil))
		}
		idx, out := a.sent(t)
		nat, _ := pt.Ports(out)
		before[sport] = seen{idx, nat}
		if i%2 == 1 {
			a.up[idx].Inject(pt.TCP(pt.IP{Src: server, Dst: upAddr[idx]}, 80, nat, 5000, 1001, tcpSYN|flowtable.TCPFlagACK, 1460, nil))
			a.toLAN(t)
			a.tun.Inject(pt.TCP(pt.IP{Src: lanHost, Dst: server}, sport, 80, 1001, 5001, flowtable.TCPFlagACK, 0, nil))
			a.sent(t)
		}
	}
	a.Close()
	var saved []flowtable.Saved
	a.SaveFlows(func(s flowtable.Saved) { saved = append(saved, s) })
	if len(saved) != 16 {
		t.Fatalf("saved %d flows, want 16", len(saved))
	}
	slices.SortFunc(saved, func(x, y flowtable.Saved) int { return int(x.LastSeen - y.LastSeen) })

	b := newTestEngine(t, W)
	for _, s := range saved {
		if err := b.RestoreFlow(s); err != nil {
			t.Fatalf("RestoreFlow(%+v): %v", s, err)
		}
	}
	b.setUplinks(t, []uint32{1, 1}, []bool{true, true}, 0)
	b.Start()
	if err := b.RestoreFlow(saved[0]); err == nil {
		t.Error("RestoreFlow into a running engine succeeded")
	}
	for i := range 16 {
		sport := uint16(40000 + i)
		if i%2 == 0 {
			b.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, sport, 7, []byte("u")))
		} else {
			b.tun.Inject(pt.TCP(pt.IP{Src: lanHost, Dst: server}, sport, 80, 1001, 5001, flowtable.TCPFlagACK|flowtable.TCPFlagPSH, 0, []byte("data")))
		}
		idx, out := b.sent(t)
		nat, _ := pt.Ports(out)
		if w := before[sport]; idx != w.uplink || nat != w.port {
			t.Fatalf("port %d after the handover: uplink %d NAT port %d, before %d/%d", sport, idx, nat, w.uplink, w.port)
		}
		if i%2 == 0 {
			b.up[idx].Inject(pt.UDP(pt.IP{Src: server, Dst: upAddr[idx]}, 7, nat, []byte("r")))
		} else {
			b.up[idx].Inject(pt.TCP(pt.IP{Src: server, Dst: upAddr[idx]}, 80, nat, 5001, 1005, flowtable.TCPFlagACK, 0, []byte("ok")))
		}
		back := b.toLAN(t)
		if _, dp := pt.Ports(back); dp != sport {
			t.Fatalf("reply to port %d reached port %d", sport, dp)
		}
	}
	st := b.Stats()
	for _, c := range []Counter{OutResetNoFlow, OutResetStale, InDropNoFlow} {
		if st.Get(c) != 0 {
			t.Errorf("%v = %d after the handover, want 0", c, st.Get(c))
		}
	}
	var created uint64
	for _, fs := range st.FlowStats {
		created += fs.Created
	}
	if created != 0 || st.Flows != 16 {
		t.Errorf("after the handover: %d flows created, %d flows; want 0 and 16", created, st.Flows)
	}
}

// TestHandoverOtherWorkers: with a different number of workers, a flow
// whose NAT port lands in another worker's partition than its LAN
// endpoint's is refused (its replies would reach the wrong worker); the
// others are restored.
func TestHandoverOtherWorkers(t *testing.T) {
	a := newTestEngine(t, 2)
	a.setUplinks(t, []uint32{1}, []bool{true}, 0)
	a.Start()
	for i := range 40 {
		a.tun.Inject(pt.UDP(pt.IP{Src: lanHost, Dst: server}, uint16(40000+i), 7, []byte("u")))
		a.sent(t)
	}
	a.Close()
	var saved []flowtable.Saved
	a.SaveFlows(func(s flowtable.Saved) { saved = append(saved, s) })

	b := newTestEngine(t, 3)
	ok, refused := 0, 0
	for _, s := range saved {
		switch err := b.RestoreFlow(s); {
		case err == nil:
			ok++
		case errors.Is(err, flowtable.ErrConflict):
			refused++
		default:
			t.Fatalf("RestoreFlow: %v", err)
		}
	}
	if ok == 0 || refused == 0 || ok+refused != 40 {
		t.Fatalf("restored %d, refused %d of 40; want some of each", ok, refused)
	}
	if st := b.Stats(); st.Flows != ok {
		t.Fatalf("%d flows in the engine, %d restored", st.Flows, ok)
	}
}

// BenchmarkHandover saves the flows of an engine holding the default
// capacity (262,144 flows over 2 workers, 8 uplinks) and restores them into a new
// one: the dataplane's part of a planned restart's pause.
func BenchmarkHandover(b *testing.B) {
	const n = 262144
	mk := func() *Engine {
		e, err := New(Config{TUN: dptest.NewTUN(), OpenUplink: func(Uplink, flowtable.PortRange) (UplinkIO, error) { return dptest.NewUplink(), nil },
			Workers: 2, Flows: flowtable.Config{Capacity: n, Ports: flowtable.PortRange{Lo: 10000, Hi: 65535}}, RouterAddr: netip.AddrFrom4(routerIP)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { e.Close() })
		return e
	}
	a := mk()
	for i := 0; a.Stats().Flows < n; i++ {
		k := flowtable.Key{Src: [4]byte{10, 77, byte(i >> 16), byte(i >> 8)}, Dst: server, SrcPort: uint16(1024 + i%64000), DstPort: 443, Proto: flowtable.ProtoUDP}
		w := a.endpointWorker(k.Src, k.SrcPort, k.Proto)
		if _, err := a.workers[w].ft.Create(k, uint8(i%8), [4]byte{100, 64, byte(i % 8), 2}, int64(i)); err != nil && err != flowtable.ErrExists {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		saved := make([]flowtable.Saved, 0, n)
		a.SaveFlows(func(s flowtable.Saved) { saved = append(saved, s) })
		slices.SortFunc(saved, func(x, y flowtable.Saved) int { return int(x.LastSeen - y.LastSeen) })
		c := mk()
		for _, s := range saved {
			if err := c.RestoreFlow(s); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		c.Close()
		b.StartTimer()
	}
}
