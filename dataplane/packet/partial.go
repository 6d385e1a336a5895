package packet

import "encoding/binary"

// A packet handed over with a virtio-net header that says NEEDS_CSUM
// (CHECKSUM_PARTIAL in the kernel: TSO/GSO super-packets, and packets whose
// sender left the checksum to offload) carries in its TCP/UDP checksum field
// only the folded, uncomplemented pseudo-header sum; whoever segments or
// transmits it sums the rest. The functions here NAT and finish such packets
// in place, so super-packets can cross the dataplane whole.

// RewriteSrcPartial is RewriteSrc for a TCP or UDP packet whose checksum
// field holds a partial sum: the address change is applied to the
// pseudo-header sum; the port change is not (the transport header is summed
// when the checksum is completed).
func RewriteSrcPartial(b []byte, p *Parsed, addr [4]byte, port uint16) {
	old := p.Src
	off, ok := l4CsumOff(p)
	if !ok {
		RewriteSrc(b, p, addr, port)
		return
	}
	v := binary.BigEndian.Uint16(b[off:])
	RewriteSrc(b, p, addr, port)
	binary.BigEndian.PutUint16(b[off:], ^UpdateChecksumAddr(^v, old, addr))
}

// RewriteDstPartial is RewriteDst for a packet whose checksum field holds a
// partial sum; see RewriteSrcPartial.
func RewriteDstPartial(b []byte, p *Parsed, addr [4]byte, port uint16) {
	old := p.Dst
	off, ok := l4CsumOff(p)
	if !ok {
		RewriteDst(b, p, addr, port)
		return
	}
	v := binary.BigEndian.Uint16(b[off:])
	RewriteDst(b, p, addr, port)
	binary.BigEndian.PutUint16(b[off:], ^UpdateChecksumAddr(^v, old, addr))
}

func l4CsumOff(p *Parsed) (int, bool) {
	switch p.Kind {
	case KindTCP:
		return p.L4Off + tcpCsumOff, true
	case KindUDP:
		return p.L4Off + udpCsumOff, true
	}
	return 0, false
}

// CompleteChecksum finishes in place the checksum of the IPv4 packet b,
// which is not a super-packet and whose virtio-net header h has NEEDS_CSUM.
// It reports false for a packet it cannot make sense of.
func CompleteChecksum(b []byte, h VirtioNetHdr) bool {
	if len(b) < ipv4MinHeaderLen || b[0]>>4 != 4 {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	tl := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < ipv4MinHeaderLen || tl < ihl || tl > len(b) {
		return false
	}
	frag := binary.BigEndian.Uint16(b[ipFlagsOff:])&(flagMF|fragOffMask) != 0
	return completeChecksum(b[:tl], ihl, b[9], frag, h)
}
