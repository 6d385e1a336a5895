package flowtable

import (
	"math/bits"
	"math/rand/v2"
)

// hasher is a seeded 128→32-bit hash (two rounds of the wyhash 64×64→128
// multiply-fold). The seeds are random per Table, so hash values, and hence
// probe sequences, cannot be predicted from outside.
type hasher struct {
	k0, k1, k2 uint64
}

func newHasher() hasher {
	return hasher{k0: rand.Uint64(), k1: rand.Uint64(), k2: rand.Uint64()}
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (h *hasher) hash(a, b uint64) uint32 {
	return uint32(mum(mum(a^h.k0, b^h.k1)^h.k2, 0xe7037ed1a0b428db))
}

func le32(b [4]byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
}

func (h *hasher) key(k *Key) uint32 {
	return h.hash(le32(k.Src)|le32(k.Dst)<<32,
		uint64(k.SrcPort)|uint64(k.DstPort)<<16|uint64(k.Proto)<<32)
}

func (h *hasher) reply(rk *ReplyKey) uint32 {
	return h.hash(le32(rk.Remote)|uint64(rk.RemotePort)<<32|uint64(rk.NATPort)<<48,
		uint64(rk.Uplink)|uint64(rk.Proto)<<8|1<<40)
}

func (h *hasher) mapping(src [4]byte, srcPort uint16, proto, uplink uint8) uint32 {
	return h.hash(le32(src)|uint64(srcPort)<<32|uint64(proto)<<48|uint64(uplink)<<56, 2<<40)
}

// index is an open-addressing hash index from a 32-bit hash to an arena
// index. A slot is hash<<32 | (arena index + 1); 0 is empty. The home slot of
// a hash is hash & mask, collisions probe linearly, deletion shifts the
// following run back (no tombstones), and the table doubles when it would
// become more than 3/4 full. Callers compare the hash tag and then the key
// stored in the arena.
type index struct {
	slots []uint64
	mask  uint32
	n     int
}

const minIndexSlots = 64

func slot(h uint32, i int32) uint64 { return uint64(h)<<32 | uint64(uint32(i)+1) }

func slotIdx(s uint64) int32 { return int32(uint32(s) - 1) }

// insert adds arena index i under hash h. It allocates only when it grows.
func (ix *index) insert(h uint32, i int32) {
	if (ix.n+1)*4 > len(ix.slots)*3 {
		ix.grow()
	}
	ix.place(slot(h, i))
	ix.n++
}

func (ix *index) place(s uint64) {
	p := uint32(s>>32) & ix.mask
	for ix.slots[p] != 0 {
		p = (p + 1) & ix.mask
	}
	ix.slots[p] = s
}

func (ix *index) grow() {
	size := 2 * len(ix.slots)
	if size < minIndexSlots {
		size = minIndexSlots
	}
	old := ix.slots
	ix.slots = make([]uint64, size)
	ix.mask = uint32(size - 1)
	for _, s := range old {
		if s != 0 {
			ix.place(s)
		}
	}
}

// remove deletes arena index i stored under hash h. It reports whether it
// was found.
func (ix *index) remove(h uint32, i int32) bool {
	if ix.n == 0 {
		return false
	}
	want := slot(h, i)
	mask := ix.mask
	p := h & mask
	for {
		s := ix.slots[p]
		if s == 0 {
			return false
		}
		if s == want {
			break
		}
		p = (p + 1) & mask
	}
	// Backward-shift deletion: move later members of the probe run into the
	// hole unless their home lies cyclically in (hole, their position].
	hole, j := p, p
	for {
		j = (j + 1) & mask
		s := ix.slots[j]
		if s == 0 {
			break
		}
		home := uint32(s>>32) & mask
		if (j-home)&mask < (j-hole)&mask {
			continue // home is after the hole: s must stay
		}
		ix.slots[hole] = s
		hole = j
	}
	ix.slots[hole] = 0
	ix.n--
	return true
}
