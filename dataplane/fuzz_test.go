package dataplane

import (
	"context"
	"testing"

	pt "github.com/wanflow/wanflow/dataplane/packet/packettest"
)

// FuzzWorker feeds arbitrary packets, with or without a virtio-net header,
// through the dispatcher (reassembly, segmentation) and a worker (decode,
// flow lookup, NAT, ICMP translation, TCP state), from the LAN side and
// from the uplink side of an engine that has a few live flows. Nothing may
// panic, every packet buffer must come back to the pool, and the flow table
// stays within its capacity.
func FuzzWorker(f *testing.F) {
	lan := func(b []byte) []byte { return append([]byte{0}, b...) }
	up := func(b []byte) []byte { return append([]byte{1}, b...) }
	udp := pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40000, 7, []byte("x"))
	f.Add(lan(udp), false)
	f.Add(lan(pt.TCP(pt.IP{Src: lanHost, Dst: server}, 40001, 443, 1, 0, 0x02, 1460, nil)), false)
	f.Add(lan(pt.ICMPEcho(pt.IP{Src: lanHost, Dst: server}, false, 77, 1, []byte("ping"))), false)
	f.Add(up(pt.UDP(pt.IP{Src: server, Dst: upAddr[0]}, 7, 20000, []byte("reply"))), false)
	f.Add(up(pt.ICMPError(pt.IP{Src: server, Dst: upAddr[0]}, 3, 4, 1400, pt.UDP(pt.IP{Src: upAddr[0], Dst: server}, 20000, 7, nil))), false)
	f.Add(lan(pt.TCP(pt.IP{Src: lanHost, Dst: server}, 40002, 443, 1, 1, 0x10, 0, make([]byte, 3000))), true)
	frag := pt.UDP(pt.IP{Src: lanHost, Dst: server}, 40003, 7, make([]byte, 64))
	frag[6] = 0x20 // more fragments
	f.Add(lan(frag), false)
	// One engine serves every input (building one per input would make
	// the fuzzer a hundred times slower); the table is small, so inputs
	// also meet a full table.
	h := newHotPathWith(f, func(c *Config) { c.Flows.Capacity = 1024; c.Flows.MaxFlowsPerHost = 64 })
	h.e.ctx = context.Background() // as Start sets it; the engine is driven by hand
	dLAN, dUp := h.e.newDispatcher(-1, &h.e.rdCount), h.e.newDispatcher(0, &h.e.rxCount[0])
	f.Fuzz(func(t *testing.T, data []byte, withHdr bool) {
		if len(data) < 1 || len(data) > 70000 {
			return
		}
		// Live flows for the uplink side to hit.
		h.run(udp, -1)
		h.run(pt.TCP(pt.IP{Src: lanHost, Dst: server}, 40001, 443, 1, 0, 0x02, 1460, nil), -1)
		d := dLAN
		if data[0]&1 == 1 {
			d = dUp
		}
		pkt := data[1:]
		buf := h.e.bufs.Get()
		clear(buf[headroom-packetVirtioLen : headroom])
		if withHdr && len(pkt) >= packetVirtioLen {
			copy(buf[headroom-packetVirtioLen:headroom], pkt[:packetVirtioLen])
			pkt = pkt[packetVirtioLen:]
		}
		if len(pkt) > len(buf)-headroom {
			pkt = pkt[:len(buf)-headroom]
		}
		n := copy(buf[headroom:], pkt)
		d.addFrame(buf, n, nanotime())
		d.flush()
		for _, w := range h.e.workers {
			for len(w.in) > 0 {
				w.process(<-w.in)
			}
		}
		if out := h.e.bufs.made.Load() - int64(len(h.e.bufs.free)); out != 0 {
			t.Fatalf("%d packet buffers not returned to the pool", out)
		}
		if n := h.w.ft.Len(); n > 1024 {
			t.Fatalf("%d flows in a table of 1024", n)
		}
	})
}
