package packet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// Checksum returns the Internet checksum (RFC 1071) of b with initial (a
// folded, uncomplemented partial sum such as PseudoHeaderSum) added in: the
// complemented value to store in a checksum field. The checksum field itself
// must be zero in b when computing a value to store.
func Checksum(b []byte, initial uint16) uint16 {
	return ^checksum.Checksum(b, initial)
}

// PseudoHeaderSum returns the folded, uncomplemented one's-complement sum of
// the TCP/UDP pseudo-header (RFC 793 §3.1, RFC 768): source and destination
// addresses, protocol and L4 length.
func PseudoHeaderSum(proto uint8, src, dst [4]byte, length uint16) uint16 {
	acc := uint32(src[0])<<8 | uint32(src[1])
	acc += uint32(src[2])<<8 | uint32(src[3])
	acc += uint32(dst[0])<<8 | uint32(dst[1])
	acc += uint32(dst[2])<<8 | uint32(dst[3])
	acc += uint32(proto) + uint32(length)
	return fold(acc)
}

// UpdateChecksum16 returns the checksum field value after a 16-bit word at an
// even offset of the checksummed data changed from old to new (RFC 1624
// eqn. 3: HC' = ~(~HC + ~m + m')).
func UpdateChecksum16(field, old, new uint16) uint16 {
	return applyDelta(field, delta16(old, new))
}

// UpdateChecksumAddr returns the checksum field value after an IPv4 address
// at an even offset of the checksummed data (or in the pseudo-header) changed
// from old to new (RFC 1624).
func UpdateChecksumAddr(field uint16, old, new [4]byte) uint16 {
	return applyDelta(field, deltaAddr(old, new))
}

// IPHeaderChecksumValid reports whether b starts with an IPv4 header whose
// length fits in b and whose header checksum verifies (RFC 1071 §1: the sum
// over the header, checksum included, is all ones).
func IPHeaderChecksumValid(b []byte) bool {
	if len(b) < ipv4MinHeaderLen {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < ipv4MinHeaderLen || ihl > len(b) {
		return false
	}
	return headerSum(b[:ihl]) == 0xffff
}

// L4ChecksumValid reports whether the transport checksum of the packet p
// decoded from b verifies from scratch: TCP and UDP with their pseudo-header
// (a zero UDP checksum, "no checksum", is valid), ICMP over the whole ICMP
// message. It is false for fragments and other protocols, whose checksum
// cannot be checked on one packet. It reads the whole packet, so it is meant
// for tests, fuzzing and diagnostics, not the per-packet path.
func L4ChecksumValid(b []byte, p *Parsed) bool {
	if p.TotalLen > len(b) || p.L4Off > p.TotalLen {
		return false
	}
	l4 := b[p.L4Off:p.TotalLen]
	switch p.Kind {
	case KindTCP, KindUDP:
		if p.Kind == KindUDP && binary.BigEndian.Uint16(l4[udpCsumOff:]) == 0 {
			return true
		}
		ph := PseudoHeaderSum(p.Proto, p.Src, p.Dst, uint16(len(l4)))
		return checksum.Checksum(l4, ph) == 0xffff
	case KindICMPEcho, KindICMPError:
		return checksum.Checksum(l4, 0) == 0xffff
	case KindOther:
		if p.Proto == protoICMP {
			return checksum.Checksum(l4, 0) == 0xffff
		}
	}
	return false
}

// headerSum returns the folded one's-complement sum of h, whose length is
// even and at most 60 bytes (an IPv4 header).
func headerSum(h []byte) uint16 {
	var acc uint32
	for i := 0; i+1 < len(h); i += 2 {
		acc += uint32(h[i])<<8 | uint32(h[i+1])
	}
	return fold(acc)
}

// fold reduces a 32-bit one's-complement accumulator to 16 bits with
// end-around carry.
func fold(acc uint32) uint16 {
	acc = acc>>16 + acc&0xffff
	acc = acc>>16 + acc&0xffff
	return uint16(acc)
}

// delta16 is the one's-complement contribution of replacing the word old by
// new: ~m + m'.
func delta16(old, new uint16) uint32 {
	return uint32(^old) + uint32(new)
}

// deltaAddr is delta16 for both words of an IPv4 address.
func deltaAddr(old, new [4]byte) uint32 {
	return delta16(uint16(old[0])<<8|uint16(old[1]), uint16(new[0])<<8|uint16(new[1])) +
		delta16(uint16(old[2])<<8|uint16(old[3]), uint16(new[2])<<8|uint16(new[3]))
}

// applyDelta applies an accumulated delta (a sum of delta16 terms, at most a
// few dozen) to a stored checksum field (RFC 1624 eqn. 3).
func applyDelta(field uint16, d uint32) uint16 {
	return ^fold(uint32(^field) + d)
}

// updateField rewrites the checksum stored at b[off:off+2] by delta d.
func updateField(b []byte, off int, d uint32) {
	binary.BigEndian.PutUint16(b[off:], applyDelta(binary.BigEndian.Uint16(b[off:]), d))
}

// updateUDPField is updateField for a UDP checksum: a field of zero (no
// checksum, RFC 768) stays zero, and a computed zero is sent as all ones.
func updateUDPField(b []byte, off int, d uint32) {
	f := binary.BigEndian.Uint16(b[off:])
	if f == 0 {
		return
	}
	f = applyDelta(f, d)
	if f == 0 {
		f = 0xffff
	}
	binary.BigEndian.PutUint16(b[off:], f)
}

// set16 stores v at b[off:] and returns the checksum delta of the change.
func set16(b []byte, off int, v uint16) uint32 {
	old := binary.BigEndian.Uint16(b[off:])
	binary.BigEndian.PutUint16(b[off:], v)
	return delta16(old, v)
}

// setAddr stores a at b[off:] and returns the checksum delta of the change.
func setAddr(b []byte, off int, a [4]byte) uint32 {
	var old [4]byte
	copy(old[:], b[off:off+4])
	copy(b[off:off+4], a[:])
	return deltaAddr(old, a)
}
