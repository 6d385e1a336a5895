package packet

import (
	"encoding/binary"
	"time"
)

// MaxFragments is the most fragments one datagram may arrive in; a datagram
// needing more is discarded (counted in ReassemblyStats.TooMany). 64 KiB in
// 576-byte fragments needs 118.
const MaxFragments = 128

// ReassemblyStats counts what a Reassembler did. Every discarded fragment or
// datagram is counted in exactly one field.
type ReassemblyStats struct {
	// Completed counts datagrams reassembled and returned.
	Completed uint64
	// Timeouts counts datagrams discarded incomplete after the timeout.
	Timeouts uint64
	// Overlaps counts datagrams discarded because two fragments overlapped
	// without being identical (RFC 5722 style; RFC 1858 §4).
	Overlaps uint64
	// Duplicates counts exact duplicate fragments dropped (the datagram is
	// kept).
	Duplicates uint64
	// TooBig counts datagrams discarded for exceeding the size bound.
	TooBig uint64
	// TooMany counts datagrams discarded for arriving in more than
	// MaxFragments fragments.
	TooMany uint64
	// Evicted counts incomplete datagrams discarded to make room for a new
	// one when every slot was in use (the oldest is evicted).
	Evicted uint64
	// Malformed counts fragments dropped as inconsistent: not a fragment, a
	// non-last fragment whose length is not a multiple of 8 or is zero, data
	// beyond a known end, or two different ends (the datagram is discarded
	// when it can no longer complete).
	Malformed uint64
	// InFlight is the number of datagrams being reassembled now.
	InFlight int
}

// fragRange is the data byte range [start, end) of one received fragment.
type fragRange struct{ start, end int32 }

// reasmSlot holds one datagram under reassembly.
type reasmSlot struct {
	used     bool
	proto    uint8
	id       uint16
	src, dst [4]byte
	deadline int64
	// hlen is the first fragment's header length, 0 until it arrives.
	hlen int
	// dataLen is the datagram's data length, -1 until the last fragment
	// (MF clear) arrives.
	dataLen int
	// got is the number of data bytes received (fragments never overlap).
	got    int
	nr     int
	ranges [MaxFragments]fragRange
	// buf is the header (ending at ipv4MaxHeaderLen) followed by the data;
	// allocated on the slot's first use and reused afterwards.
	buf []byte
}

// Reassembler rebuilds IPv4 datagrams from fragments (RFC 791 §3.2,
// "Reassembly"), bounded in datagrams in flight, datagram size and time.
// Fragments are keyed by (source, destination, protocol, identification).
// Any two fragments that overlap without being identical discard the whole
// datagram, as RFC 5722 requires for IPv6 and Linux does for IPv4, which
// defeats overlapping-fragment attacks (RFC 1858); exact duplicates are
// dropped. Slots are preallocated and their buffers allocated on first use,
// so Add does not allocate in steady state.
//
// A Reassembler is not safe for concurrent use. The dataplane gives one to
// each reader goroutine (the TUN reader, each uplink's receiver), which
// sees every fragment of the datagrams it reads, and reassembles before it
// picks a worker (fragments after the first carry no ports).
type Reassembler struct {
	slots   []reasmSlot
	maxSize int
	timeout int64
	stats   ReassemblyStats
}

// NewReassembler returns a Reassembler holding at most maxDatagrams
// incomplete datagrams (at least 1) of at most maxSize bytes each,
// header included (clamped to 68..65535), each discarded if still
// incomplete timeout after its first fragment (30 s when timeout <= 0, the
// Linux default; RFC 791 suggests 15 s). Its memory is bounded by
// maxDatagrams * (maxSize + 40) bytes of buffers.
func NewReassembler(maxDatagrams int, maxSize int, timeout time.Duration) *Reassembler {
	maxDatagrams = max(maxDatagrams, 1)
	maxSize = min(max(maxSize, 68), 65535)
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Reassembler{
		slots:   make([]reasmSlot, maxDatagrams),
		maxSize: maxSize,
		timeout: int64(timeout),
	}
}

// Add adds the fragment b, decoded into p (KindFragment), received at now (a
// monotonic time in nanoseconds, the clock Expire uses). When b completes a
// datagram, Add returns it with done true: its header is the first
// fragment's, with MF and offset cleared and total length and checksum
// fixed, and p is re-decoded from it (check p.Kind: the whole datagram may
// still be invalid). whole is owned by the Reassembler and valid until the
// next call to Add. Add does not retain b.
func (r *Reassembler) Add(b []byte, p *Parsed, now int64) (whole []byte, done bool) {
	if p.Kind != KindFragment || p.TotalLen > len(b) || p.IPHLen < ipv4MinHeaderLen {
		r.stats.Malformed++
		return nil, false
	}
	data := b[p.IPHLen:p.TotalLen]
	start := int(p.FragOff)
	end := start + len(data)
	if p.MF && (len(data) == 0 || len(data)&7 != 0) {
		r.stats.Malformed++
		return nil, false
	}
	s := r.lookup(p, now)
	if end+ipv4MinHeaderLen > r.maxSize {
		r.stats.TooBig++
		if s != nil {
			r.free(s)
		}
		return nil, false
	}
	if s == nil {
		s = r.alloc(p, now)
	}
	if !p.MF {
		if (s.dataLen >= 0 && s.dataLen != end) || s.maxEnd() > end {
			r.stats.Malformed++
			r.free(s)
			return nil, false
		}
		s.dataLen = end
	} else if s.dataLen >= 0 && end > s.dataLen {
		r.stats.Malformed++
		r.free(s)
		return nil, false
	}
	for i := range s.ranges[:s.nr] {
		g := s.ranges[i]
		if int(g.start) < end && start < int(g.end) {
			if int(g.start) == start && int(g.end) == end {
				r.stats.Duplicates++
				return nil, false
			}
			r.stats.Overlaps++
			r.free(s)
			return nil, false
		}
	}
	if s.nr == MaxFragments {
		r.stats.TooMany++
		r.free(s)
		return nil, false
	}
	s.ranges[s.nr] = fragRange{int32(start), int32(end)}
	s.nr++
	s.got += len(data)
	copy(s.buf[ipv4MaxHeaderLen+start:], data)
	if start == 0 {
		s.hlen = p.IPHLen
		copy(s.buf[ipv4MaxHeaderLen-s.hlen:], b[:s.hlen])
	}
	if s.dataLen < 0 || s.got != s.dataLen || s.hlen == 0 {
		return nil, false
	}
	r.free(s)
	total := s.hlen + s.dataLen
	if total > r.maxSize {
		r.stats.TooBig++
		return nil, false
	}
	whole = s.buf[ipv4MaxHeaderLen-s.hlen : ipv4MaxHeaderLen+s.dataLen]
	binary.BigEndian.PutUint16(whole[2:], uint16(total))
	ff := binary.BigEndian.Uint16(whole[ipFlagsOff:])
	binary.BigEndian.PutUint16(whole[ipFlagsOff:], ff&^(flagMF|fragOffMask))
	whole[ipCsumOff], whole[ipCsumOff+1] = 0, 0
	binary.BigEndian.PutUint16(whole[ipCsumOff:], ^headerSum(whole[:s.hlen]))
	r.stats.Completed++
	p.Decode(whole)
	return whole, true
}

// maxEnd returns the highest data end received so far.
func (s *reasmSlot) maxEnd() int {
	m := 0
	for _, g := range s.ranges[:s.nr] {
		m = max(m, int(g.end))
	}
	return m
}

// lookup returns the slot of p's datagram, reclaiming expired slots it
// passes, or nil.
func (r *Reassembler) lookup(p *Parsed, now int64) *reasmSlot {
	for i := range r.slots {
		s := &r.slots[i]
		if !s.used {
			continue
		}
		if now >= s.deadline {
			r.stats.Timeouts++
			r.free(s)
			continue
		}
		if s.id == p.ID && s.proto == p.Proto && s.src == p.Src && s.dst == p.Dst {
			return s
		}
	}
	return nil
}

// alloc claims a free slot for p's datagram, evicting the oldest datagram if
// every slot is in use.
func (r *Reassembler) alloc(p *Parsed, now int64) *reasmSlot {
	var s *reasmSlot
	for i := range r.slots {
		c := &r.slots[i]
		if !c.used {
			s = c
			break
		}
		if s == nil || c.deadline < s.deadline {
			s = c
		}
	}
	if s.used {
		r.stats.Evicted++
		r.free(s)
	}
	if s.buf == nil {
		s.buf = make([]byte, ipv4MaxHeaderLen+r.maxSize-ipv4MinHeaderLen)
	}
	s.used = true
	s.proto, s.id, s.src, s.dst = p.Proto, p.ID, p.Src, p.Dst
	s.deadline = now + r.timeout
	s.hlen, s.dataLen, s.got, s.nr = 0, -1, 0, 0
	r.stats.InFlight++
	return s
}

// free releases s; its buffer is kept for reuse.
func (r *Reassembler) free(s *reasmSlot) {
	s.used = false
	r.stats.InFlight--
}

// Expire discards every datagram whose timeout has passed at now and
// returns how many it discarded (also counted in Stats().Timeouts). Call it
// periodically (for example once per batch or per second) so that slots of
// lost fragments are reclaimed even without further fragments.
func (r *Reassembler) Expire(now int64) int {
	n := 0
	for i := range r.slots {
		s := &r.slots[i]
		if s.used && now >= s.deadline {
			r.free(s)
			n++
		}
	}
	r.stats.Timeouts += uint64(n)
	return n
}

// Stats returns the counters since the Reassembler was created.
func (r *Reassembler) Stats() ReassemblyStats {
	return r.stats
}
