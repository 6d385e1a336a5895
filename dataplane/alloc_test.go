package dataplane

import (
	"net/netip"
	"os"
	"testing"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/wanflow/wanflow/dataplane/packet"
	pt "github.com/wanflow/wanflow/dataplane/packet/packettest"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/policy"
)

// sinkTUN and sinkUplink swallow what the dataplane writes without
// allocating, so the worker's own allocations can be measured.
type sinkTUN struct{ n int }

func (s *sinkTUN) File() *os.File                         { return nil }
func (s *sinkTUN) Read([][]byte, []int, int) (int, error) { select {} }
func (s *sinkTUN) Write(b [][]byte, _ int) (int, error)   { s.n += len(b); return len(b), nil }
func (s *sinkTUN) MTU() (int, error)                      { return 1500, nil }
func (s *sinkTUN) Name() (string, error)                  { return "sink", nil }
func (s *sinkTUN) Events() <-chan tun.Event               { return nil }
func (s *sinkTUN) Close() error                           { return nil }
func (s *sinkTUN) BatchSize() int                         { return batchSize }

type sinkUplink struct{ n int }

func (s *sinkUplink) ReadBatch([][]byte, []int, int) (int, error) { select {} }
func (s *sinkUplink) WriteBatch(b [][]byte, _ int) (int, error)   { s.n += len(b); return len(b), nil }
func (s *sinkUplink) WriteFrames(b [][]byte) (int, error)         { s.n += len(b); return len(b), nil }
func (s *sinkUplink) Close() error                                { return nil }

// hotPath is one worker of an engine that is not started: tests drive
// worker.process directly, as routineWorker would.
type hotPath struct {
	e  *Engine
	w  *worker
	up *sinkUplink
}

func newHotPath(tb testing.TB) *hotPath {
	tb.Helper()
	h := &hotPath{up: &sinkUplink{}}
	e, err := New(Config{
		TUN:        &sinkTUN{},
		OpenUplink: func(Uplink, flowtable.PortRange) (UplinkIO, error) { return h.up, nil },
		Workers:    1,
		Flows:      flowtable.Config{Capacity: 1 << 16, Ports: natPorts, Timeouts: flowtable.DefaultTimeouts()},
		RouterAddr: netip.AddrFrom4(routerIP),
	})
	if err != nil {
		tb.Fatal(err)
	}
	pol, err := policy.New([]policy.Uplink{{Name: "a", Tier: 1, Weight: 1, Available: true}}, policy.AffinityFlow, nil)
	if err != nil {
		tb.Fatal(err)
	}
	eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0}
	if err := e.Update([]Uplink{{Index: 0, Name: "a", Ifindex: 1, Addr: netip.AddrFrom4(upAddr[0]), MTU: 1500, Available: true, LinkHeader: eth}}, pol); err != nil {
		tb.Fatal(err)
	}
	h.e, h.w = e, e.workers[0]
	return h
}

// run pushes one packet through the worker as a batch of one.
func (h *hotPath) run(pkt []byte, uplink int) { h.runHdr(pkt, uplink, nil) }

// runHdr is run with a virtio-net header in front of the packet (nil: a
// plain packet).
func (h *hotPath) runHdr(pkt []byte, uplink int, vh *packet.VirtioNetHdr) {
	b := h.e.batches.Get()
	buf := h.e.bufs.Get()
	clear(buf[headroom-packetVirtioLen : headroom])
	if vh != nil {
		vh.Encode(buf[headroom-packetVirtioLen:])
	}
	n := copy(buf[headroom:], pkt)
	b.uplink = uplink
	b.bufs[0], b.sizes[0], b.n = buf, n, 1
	h.w.process(b)
}

// TestHotPathZeroAllocs asserts that forwarding a packet of an existing flow
// — decode, flow lookup, NAT rewrite, counters, send — allocates nothing,
// in both directions.
func TestHotPathZeroAllocs(t *testing.T) {
	h := newHotPath(t)
	out := pt.TCP(pt.IP{Src: lanHost, Dst: server}, 40000, 443, 1, 1, 0x10, 0, make([]byte, 1200))
	h.run(pt.TCP(pt.IP{Src: lanHost, Dst: server}, 40000, 443, 0, 0, packet.TCPFlagSYN, 0, nil), -1) // creates the flow
	if h.up.n != 1 {
		t.Fatalf("first packet not sent (sent %d)", h.up.n)
	}
	ent := h.w.ft.Lookup(flowtable.Key{Src: lanHost, Dst: server, SrcPort: 40000, DstPort: 443, Proto: 6})
	if ent == nil {
		t.Fatal("flow not created")
	}
	in := pt.TCP(pt.IP{Src: server, Dst: upAddr[0]}, 443, ent.NATPort, 1, 1, 0x10, 0, make([]byte, 1200))
	if a := testing.AllocsPerRun(1000, func() { h.run(out, -1) }); a != 0 {
		t.Errorf("outbound: %v allocs per packet, want 0", a)
	}
	if a := testing.AllocsPerRun(1000, func() { h.run(in, 0) }); a != 0 {
		t.Errorf("inbound: %v allocs per packet, want 0", a)
	}
	if h.up.n < 1000 || h.e.tunDev.(*sinkTUN).n < 1000 {
		t.Fatalf("packets not forwarded: %d out, %d in", h.up.n, h.e.tunDev.(*sinkTUN).n)
	}
}

// TestSuperPacketZeroAllocs: a 64 KiB TCP super-packet of an existing flow
// is NATed and queued whole, without allocating, out and in.
func TestSuperPacketZeroAllocs(t *testing.T) {
	h := newHotPath(t)
	h.e.gsoLAN = true
	out := pt.TCP(pt.IP{Src: lanHost, Dst: server}, 40000, 443, 1, 1, 0x10, 0, make([]byte, 60000))
	vh := &packet.VirtioNetHdr{Flags: packet.VirtioNetHdrFNeedsCsum, GSOType: packet.VirtioNetHdrGSOTCPv4, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	h.run(pt.TCP(pt.IP{Src: lanHost, Dst: server}, 40000, 443, 0, 0, packet.TCPFlagSYN, 0, nil), -1)
	h.runHdr(out, -1, vh)
	if h.up.n != 2 || h.w.count.get(OutGSOFrames) != 1 {
		t.Fatalf("super-packet not sent as one frame: sent %d, frames %d", h.up.n, h.w.count.get(OutGSOFrames))
	}
	ent := h.w.ft.Lookup(flowtable.Key{Src: lanHost, Dst: server, SrcPort: 40000, DstPort: 443, Proto: 6})
	in := pt.TCP(pt.IP{Src: server, Dst: upAddr[0]}, 443, ent.NATPort, 1, 1, 0x10, 0, make([]byte, 60000))
	if a := testing.AllocsPerRun(200, func() { h.runHdr(out, -1, vh) }); a != 0 {
		t.Errorf("outbound super-packet: %v allocs", a)
	}
	if a := testing.AllocsPerRun(200, func() { h.runHdr(in, 0, vh) }); a != 0 {
		t.Errorf("inbound super-packet: %v allocs", a)
	}
	if got := h.w.count.get(InGSOFrames); got < 200 {
		t.Errorf("%d super-packets written whole to the LAN, want ≥ 200", got)
	}
}

// BenchmarkWorkerOutbound is the per-packet cost LAN → uplink of an
// established flow (batch of one: the worst case).
func BenchmarkWorkerOutbound(b *testing.B) {
	h := newHotPath(b)
	out := pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40000, 443, make([]byte, 1200))
	h.run(out, -1)
	b.ReportAllocs()
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		h.run(out, -1)
	}
}

// BenchmarkWorkerInbound is the per-packet cost uplink → LAN.
func BenchmarkWorkerInbound(b *testing.B) {
	h := newHotPath(b)
	h.run(pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40000, 443, nil), -1)
	ent := h.w.ft.Lookup(flowtable.Key{Src: lanHost, Dst: server, SrcPort: 40000, DstPort: 443, Proto: 17})
	in := pt.UDP(pt.IP{Src: server, Dst: upAddr[0]}, 443, ent.NATPort, make([]byte, 1200))
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		h.run(in, 0)
	}
}

// BenchmarkWorkerNewFlow is the cost of a flow's first packet: policy
// choice, NAT port allocation, flow creation (and, amortised, expiry).
func BenchmarkWorkerNewFlow(b *testing.B) {
	h := newHotPath(b)
	pkt := pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40000, 443, nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// A new destination port each time: a new flow sharing one NAT
		// mapping; the table is emptied before it fills.
		pkt[22], pkt[23] = byte(i>>8), byte(i)
		pkt[26], pkt[27] = 0, 0 // UDP checksum 0: not computed
		h.run(pkt, -1)
		i++
		if i == 60000 {
			b.StopTimer()
			h.w.ft.Expire(1 << 62)
			i = 0
			b.StartTimer()
		}
	}
}
