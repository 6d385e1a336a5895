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

// newHotPath runs with the hardening checks on: LAN prefixes (the host's
// in the last of three) and a per-host flow limit that the benchmarks'
// single host stays under.
func newHotPath(tb testing.TB) *hotPath { return newHotPathWith(tb, nil) }

// newHotPathWith is newHotPath with its Config changed by mod (when not
// nil) before New.
func newHotPathWith(tb testing.TB, mod func(*Config)) *hotPath {
	tb.Helper()
	h := &hotPath{up: &sinkUplink{}}
	cfg := Config{
		TUN:        &sinkTUN{},
		OpenUplink: func(Uplink, flowtable.PortRange) (UplinkIO, error) { return h.up, nil },
		Workers:    1,
		Flows:      flowtable.Config{Capacity: 1 << 16, Ports: natPorts, Timeouts: flowtable.DefaultTimeouts(), MaxFlowsPerHost: 1 << 16},
		RouterAddr: netip.AddrFrom4(routerIP),
		LANPrefixes: []netip.Prefix{
			netip.MustParsePrefix("192.168.0.0/16"),
			netip.MustParsePrefix("172.16.0.0/12"),
			netip.MustParsePrefix("10.77.0.0/24"),
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
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

// TestDropPathsZeroAllocs: the hardening paths allocate nothing per
// packet: a spoofed source, a bad destination, a host over its flow limit
// (answered with ICMP), and new flows placed by the NAT-port fallback once
// the worker has built its fallback policy.
func TestDropPathsZeroAllocs(t *testing.T) {
	h := newHotPathWith(t, func(c *Config) {
		c.Flows.MaxFlowsPerHost = 1
		c.Flows.Ports = flowtable.PortRange{Lo: 20000, Hi: 20001}
	})
	// Two uplinks: a (tier 1) and b (tier 2).
	pol, err := policy.New([]policy.Uplink{{Name: "a", Tier: 1, Weight: 1, Available: true}, {Name: "b", Tier: 2, Weight: 1, Available: true}}, policy.AffinityFlow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.e.Update([]Uplink{
		{Index: 0, Name: "a", Ifindex: 1, Addr: netip.AddrFrom4(upAddr[0]), MTU: 1500, Available: true},
		{Index: 1, Name: "b", Ifindex: 2, Addr: netip.AddrFrom4(upAddr[1]), MTU: 1500, Available: true},
	}, pol); err != nil {
		t.Fatal(err)
	}
	hostN := func(n byte) [4]byte { return [4]byte{10, 77, 0, n} }
	// Hosts 20 and 21 take uplink a's two UDP ports.
	h.run(pt.UDP(pt.IP{Src: hostN(20), Dst: server}, 40000, 53, nil), -1)
	h.run(pt.UDP(pt.IP{Src: hostN(21), Dst: server}, 40000, 53, nil), -1)
	spoofed := pt.UDP(pt.IP{Src: [4]byte{198, 51, 100, 1}, Dst: server}, 40000, 53, nil)
	bcast := pt.UDP(pt.IP{Src: lanHost, Dst: [4]byte{255, 255, 255, 255}}, 40000, 53, nil)
	overLimit := pt.UDP(pt.IP{Src: hostN(20), Dst: server}, 40001, 53, nil)
	fallback := pt.UDP(pt.IP{Src: hostN(22), Dst: server}, 40000, 53, nil)
	fk := flowtable.Key{Src: hostN(22), Dst: server, SrcPort: 40000, DstPort: 53, Proto: flowtable.ProtoUDP}
	tests := []struct {
		name string
		fn   func()
		c    Counter
	}{
		{"spoofed source", func() { h.run(spoofed, -1) }, OutDropSpoofed},
		{"broadcast destination", func() { h.run(bcast, -1) }, OutDropBadDestination},
		{"host limit", func() { h.run(overLimit, -1) }, OutDropHostLimit},
		{"ports exhausted fallback", func() {
			h.run(fallback, -1)
			h.w.ft.Remove(h.w.ft.Lookup(fk))
		}, OutPortsExhaustedFallback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn()
			before := h.w.count.get(tt.c)
			if a := testing.AllocsPerRun(1000, tt.fn); a != 0 {
				t.Errorf("%v allocs per packet, want 0", a)
			}
			if got := h.w.count.get(tt.c) - before; got < 1000 {
				t.Errorf("%v counted %d times, want ≥ 1000", tt.c, got)
			}
		})
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
