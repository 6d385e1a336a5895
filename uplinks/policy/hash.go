package policy

import (
	"encoding/binary"
	"math"
)

// The hash used by the policy is fixed and written out here so that the
// same inputs give the same uplink in every process, on every architecture,
// forever. Changing any constant below changes which uplink existing flows
// map to after a restart; treat it as a wire format.

const (
	fnvOffset64 = 0xcbf29ce484222325 // FNV-1a 64 offset basis
	fnvPrime64  = 0x100000001b3      // FNV-1a 64 prime
	keySeed     = 0x9e3779b97f4a7c15 // 2^64 / golden ratio, the splitmix64 increment
)

// Mix64 is the splitmix64 finalizer (Steele, Lea and Flood, "Fast splittable
// pseudorandom number generators", OOPSLA 2014; constants of Stafford's
// Mix13). It is a bijection on uint64 with full avalanche, used for every
// mixing step of the policy hash.
func Mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// NameHash is the 64-bit hash of an uplink name that feeds its rendezvous
// score: Mix64 of the FNV-1a 64 hash of the name's bytes. Hashing the name,
// not the uplink's index, keeps choices stable when uplinks are reordered,
// added or removed in the configuration.
func NameHash(name string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= fnvPrime64
	}
	return Mix64(h)
}

// KeyHash is the 64-bit affinity key of f: only the fields selected by a
// take part, so that flows that must stick together hash alike.
//
//	a = src<<32 | dst         (AffinityFlow, AffinitySrcDst)
//	a = src<<32               (AffinitySrc)
//	b = proto<<32 | srcport<<16 | dstport   (AffinityFlow; 0 otherwise)
//	KeyHash = Mix64(Mix64(a + keySeed) ^ b)
//
// Addresses are read in network byte order.
func KeyHash(a Affinity, f *Flow) uint64 {
	src := uint64(binary.BigEndian.Uint32(f.Src[:]))
	dst := uint64(binary.BigEndian.Uint32(f.Dst[:]))
	var x, y uint64
	switch a {
	case AffinitySrc:
		x = src << 32
	case AffinitySrcDst:
		x = src<<32 | dst
	default: // AffinityFlow
		x = src<<32 | dst
		y = uint64(f.Proto)<<32 | uint64(f.SrcPort)<<16 | uint64(f.DstPort)
	}
	return Mix64(Mix64(x+keySeed) ^ y)
}

// Hash64 is the per-uplink rendezvous hash of a flow key and an uplink's
// NameHash: Mix64(key ^ name).
func Hash64(key, name uint64) uint64 {
	return Mix64(key ^ name)
}

// unitInterval maps a 64-bit hash to u in the open interval (0,1) from its
// top 52 bits: u = (h>>12 + 0.5) / 2^52. Neither 0 nor 1 is reachable, so
// ln(u) is finite and strictly negative.
func unitInterval(h uint64) float64 {
	return (float64(h>>12) + 0.5) * (1.0 / (1 << 52))
}

// Score is the weighted rendezvous (HRW) score of an uplink with weight w
// whose Hash64 is h: -w / ln(u), u = unitInterval(h). For independent
// uniform u, the uplink with the highest score wins with probability
// w / sum(w) (it is the minimum of exponential variables of rate w). A
// weight of 0 scores 0 and never wins against a positive weight. The result
// is bit-identical on every architecture (see ln).
func Score(h uint64, w uint32) float64 {
	if w == 0 {
		return 0
	}
	return -float64(w) / ln(unitInterval(h))
}

// ln is the natural logarithm of a positive, finite, normal x, by the
// algorithm of fdlibm's e_log.c (also Go's portable math.Log). It exists
// because math.Log is assembly on amd64 and Go elsewhere, where the compiler
// may fuse a*b+c into one FMA: the last bit could differ between a Raspberry
// Pi and a PC, and so, on a near-tie, could the chosen uplink. Every product
// below is rounded explicitly with float64(), which the Go spec guarantees
// prevents fusion, so ln gives the same bits everywhere. It is within 1 ulp
// of math.Log.
func ln(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01 // 3fe62e42 fee00000
		ln2Lo = 1.90821492927058770002e-10 // 3dea39ef 35793c76
		l1    = 6.666666666666735130e-01   // 3fe55555 55555593
		l2    = 3.999999999940941908e-01   // 3fd99999 9997fa04
		l3    = 2.857142874366239149e-01   // 3fd24924 94229359
		l4    = 2.222219843214978396e-01   // 3fcc71c5 1d8e78af
		l5    = 1.818357216161805012e-01   // 3fc74664 96cb03de
		l6    = 1.531383769920937332e-01   // 3fc39a09 d078c69f
		l7    = 1.479819860511658591e-01   // 3fc2f112 df3e5244
	)
	f1, ki := math.Frexp(x) // exact
	if f1 < math.Sqrt2/2 {
		f1 *= 2 // exact
		ki--
	}
	f := f1 - 1
	k := float64(ki)
	s := f / (2 + f)
	s2 := float64(s * s)
	s4 := float64(s2 * s2)
	t1 := float64(s2 * (l1 + float64(s4*(l3+float64(s4*(l5+float64(s4*l7)))))))
	t2 := float64(s4 * (l2 + float64(s4*(l4+float64(s4*l6)))))
	r := t1 + t2
	hfsq := float64(float64(0.5*f) * f)
	return float64(k*ln2Hi) - ((hfsq - (float64(s*(hfsq+r)) + float64(k*ln2Lo))) - f)
}
