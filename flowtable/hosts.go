package flowtable

// hostCounts counts the flows of each LAN host (Key.Src) for
// Config.MaxFlowsPerHost. It is an open-addressing table of 8-byte slots,
// addr<<32 | count, where a used slot has count >= 1 and 0 is empty (so
// 0.0.0.0 needs no special case), with linear probing from the seeded hash
// of the address and backward-shift deletion (no tombstones). New
// allocates it once, sized from Capacity so that it is at most 3/4 full
// even when every flow has a host of its own (hosts <= flows <=
// Capacity); it never grows, so counting never allocates.
type hostCounts struct {
	slots []uint64
	mask  uint32
	n     int // hosts with at least one flow
}

// newHostCounts returns a table for up to capacity hosts.
func newHostCounts(capacity int) hostCounts {
	size := 16
	for size*3 < capacity*4 {
		size *= 2
	}
	return hostCounts{slots: make([]uint64, size), mask: uint32(size - 1)}
}

func be32(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

func (h *hasher) host(a uint32) uint32 { return h.hash(uint64(a), 3<<40) }

// hostFind returns the slot of host a, or the empty slot that ends its
// probe run and false. The table is never full, so the probe ends.
func (t *Table) hostFind(a uint32) (uint32, bool) {
	hc := &t.hosts
	for p := t.hash.host(a) & hc.mask; ; p = (p + 1) & hc.mask {
		s := hc.slots[p]
		if s == 0 {
			return p, false
		}
		if uint32(s>>32) == a {
			return p, true
		}
	}
}

// hostLen returns the number of flows of host a.
func (t *Table) hostLen(a uint32) int {
	if p, ok := t.hostFind(a); ok {
		return int(uint32(t.hosts.slots[p]))
	}
	return 0
}

// hostDec counts one flow of host a less, and forgets a with its last one.
func (t *Table) hostDec(a uint32) {
	hc := &t.hosts
	p, ok := t.hostFind(a)
	if !ok {
		return // cannot happen: every live flow is counted
	}
	if uint32(hc.slots[p]) > 1 {
		hc.slots[p]--
		return
	}
	// Backward-shift deletion, as in index.remove: move later members of
	// the probe run into the hole unless their home lies cyclically in
	// (hole, their position].
	mask := hc.mask
	hole, j := p, p
	for {
		j = (j + 1) & mask
		s := hc.slots[j]
		if s == 0 {
			break
		}
		home := t.hash.host(uint32(s>>32)) & mask
		if (j-home)&mask < (j-hole)&mask {
			continue
		}
		hc.slots[hole] = s
		hole = j
	}
	hc.slots[hole] = 0
	hc.n--
}

// HostLen returns the number of flows of LAN host src in the table. The
// table counts per host only when Config.MaxFlowsPerHost is set; otherwise
// HostLen returns 0. It is O(1) and does not allocate.
func (t *Table) HostLen(src [4]byte) int {
	if t.hostMax == 0 {
		return 0
	}
	return t.hostLen(be32(src))
}
