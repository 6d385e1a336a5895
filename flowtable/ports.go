package flowtable

import (
	"math/bits"
	"math/rand/v2"
)

// A mapping is one endpoint-independent NAT binding: LAN (src, srcPort,
// proto) over uplink → natPort, shared by refs flows (RFC 4787 REQ-1).
type mapping struct {
	src     [4]byte
	srcPort uint16
	natPort uint16
	proto   uint8
	uplink  uint8
	// refs is the number of flows sharing a live mapping; in a free one it
	// is the index of the next free mapping (-1: none).
	refs int32
}

// pool is the set of NAT ports of this worker's partition for one
// (uplink, proto): bit b stands for port first + b*workers. A set bit is in
// use; the bits past the partition's end in the last word are kept set so
// they are never handed out.
type pool struct {
	bits []uint64 // allocated on first use
	free int
}

// protoClass returns the pool class of a protocol, or -1.
func protoClass(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return 0
	case ProtoUDP:
		return 1
	case ProtoICMP:
		return 2
	}
	return -1
}

const numProtoClasses = 3

func (t *Table) mappingAt(i int32) *mapping {
	return &t.mapChunks[i>>chunkShift][i&chunkMask]
}

// findMapping returns the index of the live mapping for (src, srcPort,
// proto, uplink), or -1.
func (t *Table) findMapping(h uint32, src [4]byte, srcPort uint16, proto, uplink uint8) int32 {
	ix := &t.mapIdx
	if ix.n == 0 {
		return -1
	}
	mask := ix.mask
	for p := h & mask; ; p = (p + 1) & mask {
		s := ix.slots[p]
		if s == 0 {
			return -1
		}
		if uint32(s>>32) != h {
			continue
		}
		mi := slotIdx(s)
		m := t.mappingAt(mi)
		if m.src == src && m.srcPort == srcPort && m.proto == proto && m.uplink == uplink {
			return mi
		}
	}
}

// acquire takes a reference on the mapping for (src, srcPort, proto, uplink),
// creating it (and taking a NAT port) if needed. proto and uplink must be
// valid.
func (t *Table) acquire(src [4]byte, srcPort uint16, proto, uplink uint8) (int32, error) {
	h := t.hash.mapping(src, srcPort, proto, uplink)
	if mi := t.findMapping(h, src, srcPort, proto, uplink); mi >= 0 {
		t.mappingAt(mi).refs++
		return mi, nil
	}
	if t.mapFree < 0 && t.mapHW >= t.mapCap {
		// Cannot happen: there are Capacity+1 mapping slots and each flow
		// holds at most one mapping. Report it rather than panic.
		return -1, ErrFull
	}
	pl := &t.pools[int(uplink)*numProtoClasses+protoClass(proto)]
	if pl.bits == nil {
		t.initPool(pl)
	}
	port, preserved, ok := t.takePort(pl, srcPort)
	if !ok {
		return -1, ErrPortsExhausted
	}
	if preserved {
		t.stats.PortsPreserved++
	}
	return t.newMapping(h, src, srcPort, proto, uplink, port), nil
}

// newMapping stores a mapping with one reference for a port already taken
// from its pool and indexes it under h. A free slot must exist (the
// callers check mapFree and mapHW).
func (t *Table) newMapping(h uint32, src [4]byte, srcPort uint16, proto, uplink uint8, port uint16) int32 {
	var mi int32
	if t.mapFree >= 0 {
		mi = t.mapFree
		t.mapFree = t.mappingAt(mi).refs
	} else {
		mi = t.mapHW
		if c := int(mi >> chunkShift); c == len(t.mapChunks) {
			t.mapChunks = append(t.mapChunks, make([]mapping, min(chunkSize, int(t.mapCap)-c<<chunkShift)))
		}
		t.mapHW++
	}
	*t.mappingAt(mi) = mapping{src: src, srcPort: srcPort, natPort: port, proto: proto, uplink: uplink, refs: 1}
	t.mapIdx.insert(h, mi)
	t.mappings++
	return mi
}

// release drops a reference on mapping mi, freeing it and its port when it
// was the last.
func (t *Table) release(mi int32) {
	m := t.mappingAt(mi)
	m.refs--
	if m.refs > 0 {
		return
	}
	pl := &t.pools[int(m.uplink)*numProtoClasses+protoClass(m.proto)]
	b := (int(m.natPort) - t.first) / t.workers
	pl.bits[b>>6] &^= 1 << (b & 63)
	pl.free++
	t.mapIdx.remove(t.hash.mapping(m.src, m.srcPort, m.proto, m.uplink), mi)
	m.refs = t.mapFree
	t.mapFree = mi
	t.mappings--
}

func (t *Table) initPool(pl *pool) {
	words := (t.span + 63) / 64
	pl.bits = make([]uint64, words)
	if r := t.span & 63; r != 0 {
		pl.bits[words-1] = ^uint64(0) << r
	}
	pl.free = t.span
}

// takePort takes a free port from pl: srcPort itself when it is in this
// worker's partition and free (port preservation, RFC 4787 REQ-3),
// otherwise the first free one from a random position (RFC 6056 port
// randomization: a sequential NAT would undo the randomized source ports
// of the LAN's resolvers, and let an off-path attacker guess the port of a
// DNS query it wants to answer with a forged reply).
func (t *Table) takePort(pl *pool, srcPort uint16) (port uint16, preserved, ok bool) {
	if pl.free == 0 {
		return 0, false, false
	}
	if p := int(srcPort); p >= t.first && p <= int(t.ports.Hi) && p%t.workers == t.worker {
		b := (p - t.first) / t.workers
		if pl.bits[b>>6]&(1<<(b&63)) == 0 {
			pl.bits[b>>6] |= 1 << (b & 63)
			pl.free--
			return srcPort, true, true
		}
	}
	// pl.free > 0 guarantees a clear bit; at most len(bits)+1 words are
	// looked at (the start's word twice: above, then below the start).
	start := int(rand.Uint64N(uint64(t.span)))
	w := start >> 6
	x := ^pl.bits[w] & (^uint64(0) << (start & 63))
	for range len(pl.bits) + 1 {
		if x != 0 {
			b := w<<6 + bits.TrailingZeros64(x)
			pl.bits[w] |= 1 << (b & 63)
			pl.free--
			return uint16(t.first + b*t.workers), false, true
		}
		w++
		if w == len(pl.bits) {
			w = 0
		}
		x = ^pl.bits[w]
	}
	return 0, false, false // unreachable while pl.free is accurate
}
