package dataplane

import (
	"context"
	"sync"
	"time"

	"github.com/wanflow/wanflow/dataplane/packet"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/policy"
)

// worker owns one flow-table shard. Everything it touches per packet is its
// own: the table, the tx queues, the counters (written only by it).
type worker struct {
	e     *Engine
	id    int
	ft    *flowtable.Table
	in    chan *batch
	ctl   chan func()
	count counters
	// traffic per uplink index, written only by the worker.
	traffic []uplinkCounters

	mu      sync.Mutex // held while the worker routine runs; ctl requests bypass it
	running bool

	txUp  [][][]byte // per uplink index: packets to send this batch
	txFr  [][][]byte // per uplink index: buffers of frames (super-packets) to send this batch
	txFrS [][]int    // per uplink index: where each frame starts in its buffer
	frame [][]byte   // scratch: the frames of one uplink
	txTUN [][]byte   // packets to write to the TUN device this batch
	segs  [64][]byte // super-packet segments
	ssize [64]int
	frag  [64][]byte // fragment buffers
	fsize [64]int

	// policies with uplinks masked out, for the NAT-port fallback
	fallback     [4]fallbackPolicy
	fallbackNext int
}

func newWorker(e *Engine, id int, ft *flowtable.Table) *worker {
	w := &worker{
		e:       e,
		id:      id,
		ft:      ft,
		in:      make(chan *batch, e.cfg.QueueLen),
		ctl:     make(chan func()),
		txUp:    make([][][]byte, e.cfg.MaxUplinks),
		txFr:    make([][][]byte, e.cfg.MaxUplinks),
		txFrS:   make([][]int, e.cfg.MaxUplinks),
		frame:   make([][]byte, 0, batchSize),
		txTUN:   make([][]byte, 0, 2*batchSize),
		traffic: make([]uplinkCounters, e.cfg.MaxUplinks),
	}
	for i := range w.txUp {
		w.txUp[i] = make([][]byte, 0, 2*batchSize)
		w.txFr[i] = make([][]byte, 0, batchSize)
		w.txFrS[i] = make([]int, 0, batchSize)
	}
	return w
}

var epoch = time.Now()

// nanotime is monotonic nanoseconds since the process started; it does not
// allocate.
func nanotime() int64 { return int64(time.Since(epoch)) }

// Now is the dataplane's clock: the unit of flowtable.Entry's Created and
// LastSeen (monotonic nanoseconds since the process started).
func Now() int64 { return nanotime() }

func (w *worker) routineWorker(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	w.mu.Lock()
	w.running = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.running = false
		w.mu.Unlock()
	}()
	tick := time.NewTicker(w.e.cfg.ExpireEvery)
	defer tick.Stop()
	for {
		select {
		case b := <-w.in:
			w.process(b)
		case fn := <-w.ctl:
			fn()
		case <-tick.C:
			w.ft.Expire(nanotime())
		case <-ctx.Done():
			for {
				select {
				case b := <-w.in:
					w.release(b)
				default:
					return
				}
			}
		}
	}
}

// do runs fn on the worker goroutine between batches (or directly when the
// worker is not running), so fn may read and change the shard.
func (w *worker) do(fn func()) {
	w.mu.Lock()
	running := w.running
	if !running {
		fn()
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	done := make(chan struct{})
	select {
	case w.ctl <- func() { fn(); close(done) }:
		<-done
	case <-w.e.ctx.Done():
		// Stopping: the routine may already be gone; wait for it and run fn
		// on the quiet shard.
		w.e.wg.Wait()
		fn()
	}
}

func (w *worker) flowStats() FlowShardStats {
	var fs FlowShardStats
	w.do(func() {
		fs = FlowShardStats{Worker: w.id, Flows: w.ft.Len(), Stats: w.ft.Stats()}
	})
	return fs
}

// release returns a batch and its buffers to their pools unprocessed.
func (w *worker) release(b *batch) {
	for i := 0; i < b.n; i++ {
		w.e.bufs.Put(b.bufs[i])
		b.bufs[i] = nil
	}
	w.e.batches.Put(b)
}

func (w *worker) process(b *batch) {
	s := w.e.snap.Load()
	now := nanotime()
	for i := 0; i < b.n; i++ {
		buf := b.bufs[i]
		b.bufs[i] = nil
		if b.uplink < 0 {
			w.outbound(s, buf, b.sizes[i], now)
		} else {
			w.inbound(s, b.uplink, buf, b.sizes[i], now)
		}
	}
	w.e.batches.Put(b)
	w.flush(s)
}

// flush sends what the batch produced: per-uplink sendmmsg, then one TUN
// write (where the tun package coalesces TCP segments into GSO packets).
func (w *worker) flush(s *snapshot) {
	for idx := range w.txUp {
		q := w.txUp[idx]
		if len(q) == 0 {
			continue
		}
		var sent int
		if p := s.uplinks[idx].port; p != nil {
			sent, _ = p.write(q)
		}
		if sent < len(q) {
			w.count.add(OutDropSendError, uint64(len(q)-sent))
		}
		tr := &w.traffic[idx]
		for i, buf := range q {
			if i < sent {
				w.count.inc(OutPackets)
				w.count.add(OutBytes, uint64(len(buf)-headroom))
				tr.add(len(buf)-headroom, trafficOut)
			}
			w.e.bufs.Put(buf)
			q[i] = nil
		}
		w.txUp[idx] = q[:0]
	}
	for idx := range w.txFr {
		q := w.txFr[idx]
		if len(q) == 0 {
			continue
		}
		starts := w.txFrS[idx]
		w.frame = w.frame[:0]
		for i, buf := range q {
			w.frame = append(w.frame, buf[starts[i]:])
		}
		var sent int
		if p := s.uplinks[idx].port; p != nil {
			sent, _ = p.writeFrames(w.frame)
		}
		if sent < len(q) {
			w.count.add(OutDropSendError, uint64(len(q)-sent))
		}
		tr := &w.traffic[idx]
		for i, buf := range q {
			if i < sent {
				w.count.inc(OutPackets)
				w.count.inc(OutGSOFrames)
				w.count.add(OutBytes, uint64(len(buf)-headroom))
				tr.add(len(buf)-headroom, trafficOut)
			}
			w.e.bufs.Put(buf)
			q[i] = nil
			w.frame[i] = nil
		}
		w.txFr[idx] = q[:0]
		w.txFrS[idx] = starts[:0]
	}
	if len(w.txTUN) > 0 {
		for _, buf := range w.txTUN {
			w.count.inc(InPackets)
			w.count.add(InBytes, uint64(len(buf)-headroom))
		}
		if _, err := w.e.tunDev.Write(w.txTUN, headroom); err != nil {
			w.count.inc(InDropWriteError)
		}
		for i, buf := range w.txTUN {
			w.e.bufs.Put(buf[:cap(buf)])
			w.txTUN[i] = nil
		}
		w.txTUN = w.txTUN[:0]
	}
}

func (w *worker) drop(buf []byte, c Counter) {
	w.count.inc(c)
	w.e.bufs.Put(buf)
}

// Decision encoding in flowtable.Entry.Decision: reason | tier<<8 | (rule+1)<<16.
func encodeDecision(d policy.Decision) uint32 {
	return uint32(d.Reason) | uint32(uint8(d.Tier))<<8 | uint32(uint16(d.Rule+1))<<16
}

// DecodeDecision unpacks flowtable.Entry.Decision as recorded by the
// dataplane: the policy decision that placed the flow (see also
// DecisionPortsFallback).
func DecodeDecision(v uint32) (reason policy.Reason, tier int, rule int) {
	return policy.Reason(v & 0x7f), int(v >> 8 & 0xff), int(v>>16&0xffff) - 1
}

// outbound handles one packet from the LAN (read from the TUN device).
func (w *worker) outbound(s *snapshot, buf []byte, n int, now int64) {
	pkt := buf[headroom : headroom+n]
	var p packet.Parsed
	p.Decode(pkt)
	if p.Kind != packet.KindInvalid {
		if c, ok := w.e.checkOut(&p); !ok {
			w.drop(buf, c)
			return
		}
	}
	switch p.Kind {
	case packet.KindTCP, packet.KindUDP:
	case packet.KindICMPEcho:
		if p.ICMPType != icmpEchoRequest {
			w.drop(buf, OutDropUnsupported)
			return
		}
	case packet.KindICMPError:
		w.outboundICMPError(s, buf, pkt, &p, now)
		return
	case packet.KindInvalid, packet.KindFragment:
		w.drop(buf, OutDropInvalid)
		return
	default:
		w.drop(buf, OutDropUnsupported)
		return
	}
	if p.TTL == 0 {
		w.replyICMP(buf, pkt, icmpTimeExceeded, 0, 0, OutICMPTimeExceeded)
		return
	}
	key := flowtable.Key{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: p.Proto}
	if p.Kind == packet.KindICMPEcho {
		key.DstPort = 0
	}
	ent := w.ft.Lookup(key)
	if ent != nil {
		up := &s.uplinks[ent.Uplink]
		if !up.ok || up.port == nil || !up.Available || up.addr4 != ent.NATAddr {
			// The flow's uplink went away or changed address: its NAT
			// mapping is dead. A TCP connection cannot survive that, so the
			// LAN host gets a reset at once instead of a timeout; other
			// flows are placed again.
			w.ft.Remove(ent)
			ent = nil
			if p.Proto == flowtable.ProtoTCP {
				w.count.inc(OutResetStale)
				w.resetLAN(buf, pkt, &p)
				return
			}
			w.count.inc(OutRepinned)
		}
	}
	if ent == nil && p.Kind == packet.KindTCP && p.TCPFlags&tcpSYN == 0 {
		// A segment of a connection wanflow has no flow for (it expired,
		// was reset, or predates a restart): no NAT mapping can carry it
		// on, so the LAN host learns at once instead of retransmitting.
		w.count.inc(OutResetNoFlow)
		w.resetLAN(buf, pkt, &p)
		return
	}
	if ent == nil {
		if s.policy == nil {
			w.replyICMP(buf, pkt, icmpUnreachable, icmpNetUnreachable, 0, OutDropNoUplink)
			return
		}
		f := policy.Flow{Proto: p.Proto, Src: p.Src, Dst: p.Dst, SrcPort: key.SrcPort, DstPort: key.DstPort}
		d := s.policy.Choose(f)
		if d.Uplink < 0 || d.Uplink >= len(s.uplinks) || s.uplinks[d.Uplink].port == nil {
			w.replyICMP(buf, pkt, icmpUnreachable, icmpNetUnreachable, 0, OutDropNoUplink)
			return
		}
		var err error
		ent, err = w.ft.Create(key, uint8(d.Uplink), s.uplinks[d.Uplink].addr4, now)
		fallback := false
		if err == flowtable.ErrPortsExhausted {
			ent, d, err = w.createFallback(s, &f, key, d, now)
			fallback = err == nil
		}
		if err != nil {
			switch err {
			case flowtable.ErrPortsExhausted:
				w.drop(buf, OutDropPortsExhausted)
			case flowtable.ErrHostLimit:
				// The host learns at once (a TCP connect fails with
				// EHOSTUNREACH instead of retrying its SYN for a minute),
				// and the error says why: a policy, not a dead route.
				w.replyICMP(buf, pkt, icmpUnreachable, icmpAdminProhibited, 0, OutDropHostLimit)
			default:
				w.drop(buf, OutDropTableFull)
			}
			return
		}
		ent.Decision = encodeDecision(d)
		if fallback {
			ent.Decision |= decisionPortsFallback
			w.count.inc(OutPortsExhaustedFallback)
		}
		w.count.inc(OutFlowsCreated)
	}
	up := &s.uplinks[ent.Uplink]
	if hb := buf[headroom-packetVirtioLen : headroom]; !isPlain(hb) {
		// A TCP super-packet (TSO from the LAN host): sent whole when the
		// uplink's socket can take it and its segments fit the uplink,
		// else segmented here and each segment forwarded on its own.
		var vh packet.VirtioNetHdr
		vh.Decode(hb)
		tcphl := int(pkt[p.L4Off+12]>>4) * 4
		if up.gso && p.L4Off+tcphl+int(vh.GSOSize) <= up.MTU {
			w.ft.Touch(ent, flowtable.DirOut, p.TCPFlags, n, now)
			packet.RewriteSrcPartial(pkt, &p, ent.NATAddr, ent.NATPort)
			llen := len(up.linkHdr)
			start := headroom - llen - packetVirtioLen
			copy(buf[headroom-llen:headroom], up.linkHdr)
			vh.Flags = packet.VirtioNetHdrFNeedsCsum
			vh.CsumStart = uint16(llen + p.L4Off)
			vh.CsumOffset = 16
			vh.HdrLen = uint16(llen + p.L4Off + tcphl)
			vh.Encode(buf[start:])
			w.txFr[ent.Uplink] = append(w.txFr[ent.Uplink], buf[:headroom+n])
			w.txFrS[ent.Uplink] = append(w.txFrS[ent.Uplink], start)
			return
		}
		w.count.inc(OutGSOSplit)
		w.splitSuper(s, -1, buf, n, vh, now)
		return
	}
	fragment := false
	if p.TotalLen > up.MTU {
		if p.DF {
			w.replyICMP(buf, pkt, icmpUnreachable, icmpFragNeeded, uint16(up.MTU), OutICMPFragNeeded)
			return
		}
		fragment = true
	}
	if p.Kind == packet.KindTCP && p.TCPFlags&tcpSYN != 0 {
		if packet.ClampMSS(pkt, &p, up.mss) {
			w.count.inc(OutMSSClamped)
		}
	}
	w.ft.Touch(ent, flowtable.DirOut, p.TCPFlags, n, now)
	packet.RewriteSrc(pkt, &p, ent.NATAddr, ent.NATPort)
	if fragment {
		w.sendFragments(int(ent.Uplink), buf, pkt, up.MTU)
		return
	}
	w.txUp[ent.Uplink] = append(w.txUp[ent.Uplink], buf[:headroom+n])
}

// outboundICMPError forwards an ICMP error a LAN host sends about a packet
// it received through the NAT (e.g. port unreachable for a UDP reply): the
// embedded packet went remote → LAN host, so its flow is found by its
// reversed 5-tuple.
func (w *worker) outboundICMPError(s *snapshot, buf, pkt []byte, p *packet.Parsed, now int64) {
	if !p.Inner.Valid {
		w.drop(buf, OutDropInvalid)
		return
	}
	key := flowtable.Key{Src: p.Inner.Dst, Dst: p.Inner.Src, SrcPort: p.Inner.DstPort, DstPort: p.Inner.SrcPort, Proto: p.Inner.Proto}
	if key.Proto == flowtable.ProtoICMP {
		key.DstPort = 0
	}
	ent := w.ft.Lookup(key)
	if ent == nil {
		w.drop(buf, OutDropNoFlowICMPError)
		return
	}
	up := &s.uplinks[ent.Uplink]
	if up.port == nil || up.addr4 != ent.NATAddr {
		w.drop(buf, OutDropNoUplink)
		return
	}
	packet.RewriteICMPErrorOut(pkt, p, ent.NATAddr, ent.NATPort)
	if p.TotalLen > up.MTU {
		w.drop(buf, OutDropInvalid)
		return
	}
	w.txUp[ent.Uplink] = append(w.txUp[ent.Uplink], buf[:headroom+len(pkt)])
}

// inbound handles one packet received on uplink idx.
func (w *worker) inbound(s *snapshot, idx int, buf []byte, n int, now int64) {
	pkt := buf[headroom : headroom+n]
	var p packet.Parsed
	p.Decode(pkt)
	var rk flowtable.ReplyKey
	switch p.Kind {
	case packet.KindTCP, packet.KindUDP:
		rk = flowtable.ReplyKey{Remote: p.Src, RemotePort: p.SrcPort, NATPort: p.DstPort, Uplink: uint8(idx), Proto: p.Proto}
	case packet.KindICMPEcho:
		if p.ICMPType != icmpEchoReply {
			// Echo requests to the router are the kernel's to answer.
			w.drop(buf, InDropNoFlow)
			return
		}
		rk = flowtable.ReplyKey{Remote: p.Src, NATPort: p.DstPort, Uplink: uint8(idx), Proto: flowtable.ProtoICMP}
	case packet.KindICMPError:
		if !p.Inner.Valid {
			w.drop(buf, InDropInvalid)
			return
		}
		rk = flowtable.ReplyKey{Remote: p.Inner.Dst, RemotePort: p.Inner.DstPort, NATPort: p.Inner.SrcPort, Uplink: uint8(idx), Proto: p.Inner.Proto}
		if rk.Proto == flowtable.ProtoICMP {
			rk.RemotePort = 0
		}
	default:
		w.drop(buf, InDropInvalid)
		return
	}
	ent := w.ft.LookupReply(rk)
	if ent == nil || ent.NATAddr != p.Dst {
		w.drop(buf, InDropNoFlow)
		return
	}
	if p.Kind == packet.KindTCP {
		if end := tcpSeqEnd(pkt, &p); ent.RemoteSeq == 0 || int32(end-ent.RemoteSeq) > 0 {
			ent.RemoteSeq = end
		}
	}
	if p.Kind == packet.KindICMPError {
		packet.RewriteICMPErrorIn(pkt, &p, ent.Key.Src, ent.Key.SrcPort)
		w.count.inc(InICMPErrorTranslated)
		w.ft.Touch(ent, flowtable.DirIn, 0, n, now)
	} else if hb := buf[headroom-packetVirtioLen : headroom]; !isPlain(hb) {
		// A GRO super-packet from the uplink: written to the LAN whole
		// when the TUN device takes super-packets, else segmented.
		var vh packet.VirtioNetHdr
		vh.Decode(hb)
		if !w.e.gsoLAN || p.Kind != packet.KindTCP {
			w.splitSuper(s, idx, buf, n, vh, now)
			return
		}
		w.ft.Touch(ent, flowtable.DirIn, p.TCPFlags, n, now)
		packet.RewriteDstPartial(pkt, &p, ent.Key.Src, ent.Key.SrcPort)
		vh.Flags = packet.VirtioNetHdrFNeedsCsum
		vh.CsumStart = uint16(p.L4Off)
		vh.CsumOffset = 16
		vh.HdrLen = uint16(p.L4Off + int(pkt[p.L4Off+12]>>4)*4)
		vh.Encode(hb)
		w.count.inc(InGSOFrames)
	} else {
		if p.Kind == packet.KindTCP && p.TCPFlags&tcpSYN != 0 {
			if up := &s.uplinks[idx]; up.ok && packet.ClampMSS(pkt, &p, up.mss) {
				w.count.inc(InMSSClamped)
			}
		}
		w.ft.Touch(ent, flowtable.DirIn, p.TCPFlags, n, now)
		packet.RewriteDst(pkt, &p, ent.Key.Src, ent.Key.SrcPort)
	}
	w.traffic[idx].add(n, trafficIn)
	w.txTUN = append(w.txTUN, buf[:headroom+n])
}

// splitSuper segments the super-packet in buf into plain packets and
// forwards each on its own: outbound when uplink < 0, else inbound from
// that uplink. The segments carry full checksums.
func (w *worker) splitSuper(s *snapshot, uplink int, buf []byte, n int, vh packet.VirtioNetHdr, now int64) {
	ns, ok := w.e.segment(buf, n, vh, w.segs[:], w.ssize[:])
	if !ok {
		if uplink < 0 {
			w.count.inc(OutDropInvalid)
		} else {
			w.count.inc(InDropGSO)
		}
	}
	for j := 0; j < ns; j++ {
		seg := w.segs[j]
		w.segs[j] = nil
		if uplink < 0 {
			w.outbound(s, seg, w.ssize[j], now)
		} else {
			w.inbound(s, uplink, seg, w.ssize[j], now)
		}
	}
}

// replyICMP answers the LAN packet pkt (in buf) with an ICMP error from the
// router and counts c. buf is reused for the answer.
func (w *worker) replyICMP(buf, pkt []byte, typ, code uint8, mtu uint16, c Counter) {
	w.count.inc(c)
	out := w.e.bufs.Get()
	if out == nil {
		w.drop(buf, OutDropNoBuffer)
		return
	}
	clear(out[headroom-packetVirtioLen : headroom])
	n := packet.BuildICMPError(out[headroom:], pkt, w.e.cfg.RouterAddr.As4(), typ, code, mtu)
	w.e.bufs.Put(buf)
	if n == 0 {
		w.e.bufs.Put(out)
		return
	}
	w.txTUN = append(w.txTUN, out[:headroom+n])
}

// resetLAN answers a TCP segment from the LAN whose flow is dead with an RST
// as if from the remote end.
func (w *worker) resetLAN(buf, pkt []byte, p *packet.Parsed) {
	if p.TCPFlags&tcpRST != 0 {
		w.e.bufs.Put(buf)
		return
	}
	out := w.e.bufs.Get()
	if out == nil {
		w.drop(buf, OutDropNoBuffer)
		return
	}
	clear(out[headroom-packetVirtioLen : headroom])
	n := packet.BuildTCPReset(out[headroom:], p, pkt)
	w.e.bufs.Put(buf)
	if n == 0 {
		w.e.bufs.Put(out)
		return
	}
	w.txTUN = append(w.txTUN, out[:headroom+n])
}

// sendFragments splits the NATed datagram pkt to fit mtu (RFC 791) and
// queues the fragments on uplink idx.
func (w *worker) sendFragments(idx int, buf, pkt []byte, mtu int) {
	need := (len(pkt)+mtu-1)/(mtu-60) + 1
	if need > len(w.frag) {
		need = len(w.frag)
	}
	got := 0
	for ; got < need; got++ {
		if w.frag[got] = w.e.bufs.Get(); w.frag[got] == nil {
			break
		}
	}
	n, ok := packet.Fragment(pkt, mtu, w.frag[:got], w.fsize[:got], headroom)
	w.e.bufs.Put(buf)
	if !ok {
		n = 0
		w.count.inc(OutDropNoBuffer)
	} else {
		w.count.inc(OutFragmented)
	}
	for i := 0; i < got; i++ {
		if i < n {
			w.txUp[idx] = append(w.txUp[idx], w.frag[i][:headroom+w.fsize[i]])
		} else {
			w.e.bufs.Put(w.frag[i])
		}
		w.frag[i] = nil
	}
}

const (
	icmpEchoReply      = 0
	icmpUnreachable    = 3
	icmpEchoRequest    = 8
	icmpTimeExceeded   = 11
	icmpNetUnreachable = 0
	icmpFragNeeded     = 4

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
)

// tcpSeqEnd is the sequence number following the TCP segment p in pkt:
// what its receiver acknowledges once it has it (SYN and FIN count one).
func tcpSeqEnd(pkt []byte, p *packet.Parsed) uint32 {
	l4 := pkt[p.L4Off:]
	seq := uint32(l4[4])<<24 | uint32(l4[5])<<16 | uint32(l4[6])<<8 | uint32(l4[7])
	payload := p.TotalLen - p.L4Off - int(l4[12]>>4)*4
	end := seq + uint32(max(payload, 0))
	if p.TCPFlags&tcpSYN != 0 {
		end++
	}
	if p.TCPFlags&tcpFIN != 0 {
		end++
	}
	return end
}
