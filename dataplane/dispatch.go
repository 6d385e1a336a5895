package dataplane

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/wanflow/wanflow/dataplane/packet"
)

// reassemblyLimit bounds each reader's IPv4 reassembly: datagrams in flight.
const (
	reassemblyDatagrams = 256
	reassemblyTimeout   = 30 * time.Second // RFC 791's recommended upper bound is 15 s per fragment; Linux uses 30 s
)

// dispatcher is a reader's per-worker batching state.
type dispatcher struct {
	e       *Engine
	uplink  int
	pending []*batch
	count   *counters
	full    Counter // counted when a worker's queue is full
	nobuf   Counter
	reasm   *packet.Reassembler
	reassem Counter
	frag    Counter                // first of the four fragment-drop counters of its direction
	fragPub packet.ReassemblyStats // the reassembler's figures last added to the counters
	badGSO  Counter
	p       packet.Parsed
	// scratch for segmenting super-packets the workers cannot take whole
	segs     [64][]byte
	segSizes [64]int
}

func (e *Engine) newDispatcher(uplink int, c *counters) *dispatcher {
	d := &dispatcher{
		e:       e,
		uplink:  uplink,
		pending: make([]*batch, len(e.workers)),
		count:   c,
		reasm:   packet.NewReassembler(reassemblyDatagrams, 65535, reassemblyTimeout),
	}
	if uplink < 0 {
		d.full, d.nobuf, d.reassem, d.badGSO, d.frag = OutDropQueueFull, OutDropNoBuffer, OutReassembled, OutDropInvalid, OutDropFragOverlap
	} else {
		d.full, d.nobuf, d.reassem, d.badGSO, d.frag = InDropQueueFull, InDropNoBuffer, InReassembled, InDropGSO, InDropFragOverlap
	}
	return d
}

// addFrame is add for a packet with its virtio-net header in front: a
// packet whose checksum was left to offload is completed; a TCP super-packet
// goes on whole (its worker NATs it whole); any other super-packet is
// segmented here into fresh buffers.
func (d *dispatcher) addFrame(buf []byte, n int, now int64) {
	hb := buf[headroom-packet.VirtioNetHdrLen : headroom]
	if isPlain(hb) {
		d.add(buf, n, now)
		return
	}
	var h packet.VirtioNetHdr
	h.Decode(hb)
	pkt := buf[headroom : headroom+n]
	switch {
	case h.GSOType == packet.VirtioNetHdrGSONone:
		if !packet.CompleteChecksum(pkt, h) {
			d.count.inc(d.badGSO)
			d.e.bufs.Put(buf)
			return
		}
		clear(hb)
		d.add(buf, n, now)
		return
	case h.GSOType&^packet.VirtioNetHdrGSOECN == packet.VirtioNetHdrGSOTCPv4 && h.GSOSize > 0:
		d.add(buf, n, now)
		return
	}
	ns, ok := d.e.segment(buf, n, h, d.segs[:], d.segSizes[:])
	if !ok {
		d.count.inc(d.badGSO)
	}
	for j := 0; j < ns; j++ {
		seg := d.segs[j]
		d.segs[j] = nil
		d.add(seg, d.segSizes[j], now)
	}
}

// segment splits the super-packet of size n in buf into plain packets in
// fresh pool buffers segs[:ns] (sizes in sizes), with full checksums and
// cleared virtio-net headers. buf and any buffer not used go back to the
// pool. ok is false when the packet cannot be split (ns is then 0).
func (e *Engine) segment(buf []byte, n int, h packet.VirtioNetHdr, segs [][]byte, sizes []int) (ns int, ok bool) {
	k := 0
	for ; k < len(segs); k++ {
		if segs[k] = e.bufs.Get(); segs[k] == nil {
			break
		}
	}
	ns, ok = packet.GSOSplit(buf[headroom:headroom+n], h, segs[:k], sizes[:k], headroom)
	e.bufs.Put(buf)
	if !ok {
		ns = 0
	}
	for j := 0; j < k; j++ {
		if j < ns {
			clear(segs[j][headroom-packet.VirtioNetHdrLen : headroom])
		} else {
			e.bufs.Put(segs[j])
			segs[j] = nil
		}
	}
	return ns, ok
}

// add hands the packet of size n in buf to its worker's pending batch and
// takes ownership of buf. A fragment is kept by the reassembler until its
// datagram is whole.
func (d *dispatcher) add(buf []byte, n int, now int64) {
	pkt := buf[headroom : headroom+n]
	d.p.Decode(pkt)
	if d.p.Kind == packet.KindFragment {
		whole, done := d.reasm.Add(pkt, &d.p, now)
		if !done {
			d.e.bufs.Put(buf)
			return
		}
		n = copy(buf[headroom:], whole)
		d.count.inc(d.reassem)
		d.p.Decode(buf[headroom : headroom+n])
	}
	var w int
	if d.uplink < 0 {
		w = d.e.outWorker(&d.p)
	} else {
		w = d.e.inWorker(&d.p)
	}
	b := d.pending[w]
	if b == nil {
		if b = d.e.batches.Get(); b == nil {
			d.count.inc(d.full)
			d.e.bufs.Put(buf)
			return
		}
		b.uplink = d.uplink
		d.pending[w] = b
	}
	b.bufs[b.n] = buf
	b.sizes[b.n] = n
	b.n++
	if b.n == batchSize {
		d.send(w)
	}
}

// flush hands every pending batch to its worker.
// publishFragDrops adds what the reassembler discarded since the last call
// to the fragment-drop counters (the reassembler's own figures belong to
// the dispatcher's goroutine; the counters may be read by anyone).
func (d *dispatcher) publishFragDrops() {
	s := d.reasm.Stats()
	p := &d.fragPub
	if s.Overlaps == p.Overlaps && s.Timeouts == p.Timeouts && s.Malformed == p.Malformed &&
		s.TooBig == p.TooBig && s.TooMany == p.TooMany && s.Evicted == p.Evicted {
		return
	}
	d.count.add(d.frag, s.Overlaps-p.Overlaps)
	d.count.add(d.frag+1, s.Timeouts-p.Timeouts)
	d.count.add(d.frag+2, s.Malformed-p.Malformed)
	d.count.add(d.frag+3, (s.TooBig-p.TooBig)+(s.TooMany-p.TooMany)+(s.Evicted-p.Evicted))
	*p = s
}

func (d *dispatcher) flush() {
	d.publishFragDrops()
	for w, b := range d.pending {
		if b != nil {
			d.send(w)
		}
	}
}

// send hands worker w its pending batch. It waits while the worker's queue
// is full: a busy dataplane stops reading, so the kernel's device queues
// absorb the burst (and drop what exceeds them, as any NIC would) instead
// of the dataplane dropping packets it has already read.
func (d *dispatcher) send(w int) {
	b := d.pending[w]
	d.pending[w] = nil
	select {
	case d.e.workers[w].in <- b:
	case <-d.e.ctx.Done():
		d.count.add(d.full, uint64(b.n))
		d.e.workers[w].release(b)
	}
}

// outWorker is the worker of a LAN packet: a hash of its LAN endpoint
// (source address, port, protocol), so every flow of one endpoint — which
// share one NAT mapping (RFC 4787 endpoint-independent mapping) — lands on
// the worker that owns that mapping. Ports alone would not do: Linux hands
// out even ephemeral ports to connect() and odd ones to bind(), which would
// load one worker of two.
func (e *Engine) outWorker(p *packet.Parsed) int {
	switch p.Kind {
	case packet.KindTCP, packet.KindUDP, packet.KindICMPEcho:
		return e.endpointWorker(p.Src, p.SrcPort, p.Proto)
	case packet.KindICMPError:
		if p.Inner.Valid {
			return e.endpointWorker(p.Inner.Dst, p.Inner.DstPort, p.Inner.Proto)
		}
	}
	return 0
}

// endpointWorker maps a LAN endpoint to a worker.
func (e *Engine) endpointWorker(addr [4]byte, port uint16, proto uint8) int {
	if len(e.workers) == 1 {
		return 0
	}
	x := uint64(addr[0])<<56 | uint64(addr[1])<<48 | uint64(addr[2])<<40 | uint64(addr[3])<<32 | uint64(port)<<16 | uint64(proto)
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return int(x % uint64(len(e.workers)))
}

// inWorker is the worker of a packet from an uplink: NAT port % W.
func (e *Engine) inWorker(p *packet.Parsed) int {
	W := uint16(len(e.workers))
	switch p.Kind {
	case packet.KindTCP, packet.KindUDP, packet.KindICMPEcho:
		return int(p.DstPort % W)
	case packet.KindICMPError:
		if p.Inner.Valid {
			return int(p.Inner.SrcPort % W)
		}
	}
	return 0
}

// routineTUNRead is the only reader of the TUN device.
func (e *Engine) routineTUNRead(ctx context.Context) {
	defer e.wg.Done()
	n := e.tunDev.BatchSize()
	if n > batchSize || n <= 0 {
		n = batchSize
	}
	bufs := make([][]byte, n)
	sizes := make([]int, n)
	d := e.newDispatcher(-1, &e.rdCount)
	lastExpire := nanotime()
	for {
		for i := range bufs {
			if bufs[i] == nil {
				if bufs[i] = e.bufs.GetWait(ctx); bufs[i] == nil {
					e.putAll(bufs)
					return
				}
			}
		}
		got, err := e.tunDev.Read(bufs, sizes, headroom)
		now := nanotime()
		for i := 0; i < got; i++ {
			d.addFrame(bufs[i], sizes[i], now)
			bufs[i] = nil
		}
		d.flush()
		if now-lastExpire > int64(time.Second) {
			d.reasm.Expire(now)
			d.publishFragDrops()
			lastExpire = now
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				e.putAll(bufs)
				return
			}
			// A malformed offload packet from the kernel: counted, not fatal.
			e.rdCount.inc(OutReadError)
		}
	}
}

// routineUplinkRx is the only reader of one uplink's socket.
func (e *Engine) routineUplinkRx(ctx context.Context, p *uplinkPort) {
	defer e.wg.Done()
	defer close(p.done)
	bufs := make([][]byte, batchSize)
	sizes := make([]int, batchSize)
	c := &e.rxCount[p.index]
	d := e.newDispatcher(p.index, c)
	lastExpire := nanotime()
	for {
		for i := range bufs {
			if bufs[i] == nil {
				if bufs[i] = e.bufs.GetWait(ctx); bufs[i] == nil {
					e.putAll(bufs)
					return
				}
			}
		}
		got, err := p.io.ReadBatch(bufs, sizes, headroom)
		now := nanotime()
		for i := 0; i < got; i++ {
			d.addFrame(bufs[i], sizes[i], now)
			bufs[i] = nil
		}
		d.flush()
		if now-lastExpire > int64(time.Second) {
			d.reasm.Expire(now)
			d.publishFragDrops()
			lastExpire = now
		}
		if err != nil {
			p.mu.RLock()
			closed := p.closed
			p.mu.RUnlock()
			if closed || ctx.Err() != nil {
				e.putAll(bufs)
				return
			}
			// Transient (e.g. ENETDOWN while the link is down): back off a
			// little instead of spinning.
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

func (e *Engine) putAll(bufs [][]byte) {
	for i, b := range bufs {
		if b != nil {
			e.bufs.Put(b)
			bufs[i] = nil
		}
	}
}
