package packet

import "encoding/binary"

// RewriteSrc performs source NAT on the packet p decoded from b: the IP
// source address becomes addr and, when p.HasPorts, the TCP/UDP source port
// (or the ICMP echo identifier) becomes port. The IP header checksum and the
// transport checksum are updated incrementally (RFC 1624): TCP and UDP
// include the pseudo-header, a zero UDP checksum stays zero (RFC 768), ICMP
// has no pseudo-header. A non-first fragment only changes its address; its
// transport checksum lives in the first fragment, which RewriteSrc updates
// for the whole datagram. ICMP errors change only the outer address (see
// RewriteICMPErrorOut for the embedded datagram). p is updated to match.
// KindInvalid packets are left untouched.
func RewriteSrc(b []byte, p *Parsed, addr [4]byte, port uint16) {
	if p.Kind == KindInvalid {
		return
	}
	rewrite(b, p, ipSrcOff, addr, port, 0)
	p.Src = addr
	if p.HasPorts() {
		p.SrcPort = port
		if p.Proto == protoICMP {
			p.DstPort = port
		}
	}
}

// RewriteDst performs destination NAT (the reverse translation of replies):
// the IP destination address becomes addr and, when p.HasPorts, the
// destination port (or the ICMP echo identifier of an echo reply) becomes
// port, with the same checksum rules as RewriteSrc. p is updated to match.
func RewriteDst(b []byte, p *Parsed, addr [4]byte, port uint16) {
	if p.Kind == KindInvalid {
		return
	}
	rewrite(b, p, ipDstOff, addr, port, 2)
	p.Dst = addr
	if p.HasPorts() {
		p.DstPort = port
		if p.Proto == protoICMP {
			p.SrcPort = port
		}
	}
}

// rewrite changes the address at addrOff (ipSrcOff or ipDstOff) and, when the
// packet carries ports, the port at portOff in the transport header (0:
// source, 2: destination; ICMP echo always uses the identifier).
func rewrite(b []byte, p *Parsed, addrOff int, addr [4]byte, port uint16, portOff int) {
	b = b[:p.TotalLen]
	da := setAddr(b, addrOff, addr)
	updateField(b, ipCsumOff, da)
	if !p.HasPorts() {
		return
	}
	l4 := b[p.L4Off:]
	switch p.Proto {
	case protoTCP:
		updateField(l4, tcpCsumOff, da+set16(l4, portOff, port))
	case protoUDP:
		d := da + set16(l4, portOff, port)
		updateUDPField(l4, udpCsumOff, d)
	case protoICMP:
		updateField(l4, icmpCsumOff, set16(l4, icmpIDOff, port))
	}
}

// RewriteICMPErrorIn translates an ICMP error received from the internet
// about a packet this router source-NATed (RFC 5508 §4.2, RFC 3022 §4.3,
// RFC 5382 §7.2): the outer destination becomes lanAddr, and the embedded
// datagram's source address and port (or echo identifier) become
// lanAddr:lanPort. It fixes the embedded IP header checksum, the embedded
// transport checksum when its field was quoted (TCP when the quote reaches
// byte 18, UDP when non-zero, ICMP echo; incremental updates stay correct
// for the whole original datagram even though the quote is truncated), the
// outer ICMP checksum and the outer IP header checksum. It is a no-op unless
// p.Kind is KindICMPError and p.Inner.Valid. p is updated to match.
func RewriteICMPErrorIn(b []byte, p *Parsed, lanAddr [4]byte, lanPort uint16) {
	if p.Kind != KindICMPError || !p.Inner.Valid {
		return
	}
	b = b[:p.TotalLen]
	updateField(b, ipCsumOff, setAddr(b, ipDstOff, lanAddr))
	p.Dst = lanAddr
	d := rewriteInner(b, p, ipSrcOff, lanAddr, lanPort, 0)
	updateField(b, p.L4Off+icmpCsumOff, d)
	p.Inner.Src = lanAddr
	if p.Inner.Proto == protoTCP || p.Inner.Proto == protoUDP || p.Inner.Proto == protoICMP {
		p.Inner.SrcPort = lanPort
		if p.Inner.Proto == protoICMP {
			p.Inner.DstPort = lanPort
		}
	}
}

// RewriteICMPErrorOut translates an ICMP error that a LAN host sends about a
// packet this router destination-NATed towards it (for example a port
// unreachable answering a UDP reply, or a time exceeded): the outer source
// becomes natAddr, and the embedded datagram's destination address and port
// (or echo identifier) become natAddr:natPort, so the remote end can match
// the error to its flow. Checksums are fixed as in RewriteICMPErrorIn. It is
// a no-op unless p.Kind is KindICMPError and p.Inner.Valid. p is updated.
func RewriteICMPErrorOut(b []byte, p *Parsed, natAddr [4]byte, natPort uint16) {
	if p.Kind != KindICMPError || !p.Inner.Valid {
		return
	}
	b = b[:p.TotalLen]
	updateField(b, ipCsumOff, setAddr(b, ipSrcOff, natAddr))
	p.Src = natAddr
	d := rewriteInner(b, p, ipDstOff, natAddr, natPort, 2)
	updateField(b, p.L4Off+icmpCsumOff, d)
	p.Inner.Dst = natAddr
	if p.Inner.Proto == protoTCP || p.Inner.Proto == protoUDP || p.Inner.Proto == protoICMP {
		p.Inner.DstPort = natPort
		if p.Inner.Proto == protoICMP {
			p.Inner.SrcPort = natPort
		}
	}
}

// rewriteInner changes the embedded datagram's address at addrOff and port at
// portOff, fixes its checksums, and returns the sum of every change made to
// the ICMP message, for the outer ICMP checksum. All fields touched lie at
// even offsets from the ICMP header (the embedded header starts 8 bytes in
// and its length is a multiple of 4).
func rewriteInner(b []byte, p *Parsed, addrOff int, addr [4]byte, port uint16, portOff int) uint32 {
	in := p.Inner.Off
	da := setAddr(b, in+addrOff, addr)
	ic := binary.BigEndian.Uint16(b[in+ipCsumOff:])
	d := da + set16(b, in+ipCsumOff, applyDelta(ic, da))
	l4 := p.Inner.L4Off // 8 bytes guaranteed by decodeInner
	switch p.Inner.Proto {
	case protoTCP:
		dp := set16(b, l4+portOff, port)
		d += dp
		if l4+tcpCsumOff+2 <= len(b) {
			c := binary.BigEndian.Uint16(b[l4+tcpCsumOff:])
			d += set16(b, l4+tcpCsumOff, applyDelta(c, da+dp))
		}
	case protoUDP:
		dp := set16(b, l4+portOff, port)
		d += dp
		if c := binary.BigEndian.Uint16(b[l4+udpCsumOff:]); c != 0 {
			nc := applyDelta(c, da+dp)
			if nc == 0 {
				nc = 0xffff
			}
			d += set16(b, l4+udpCsumOff, nc)
		}
	case protoICMP:
		dp := set16(b, l4+icmpIDOff, port)
		d += dp
		c := binary.BigEndian.Uint16(b[l4+icmpCsumOff:])
		d += set16(b, l4+icmpCsumOff, applyDelta(c, dp))
	}
	return d
}

// ClampMSS lowers the MSS option of a TCP segment with SYN set (SYN or
// SYN-ACK) to mss when it is larger, fixing the TCP checksum incrementally,
// and reports whether it changed the segment. Clamping keeps segments within
// the uplink's MTU when path MTU discovery is broken (RFC 4459 §3.2). A SYN
// without the option already implies 536 (RFC 1122 §4.2.2.6) and is left
// alone.
func ClampMSS(b []byte, p *Parsed, mss uint16) bool {
	if !p.IsTCPSyn() {
		return false
	}
	tcp := b[p.L4Off:p.TotalLen]
	opts := tcp[tcpMinHeaderLen : int(tcp[12]>>4)*4]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0: // end of option list
			return false
		case 1: // no-operation
			i++
			continue
		}
		if i+1 >= len(opts) {
			return false
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return false
		}
		if opts[i] == 2 && l == 4 {
			old := binary.BigEndian.Uint16(opts[i+2:])
			if old <= mss {
				return false
			}
			binary.BigEndian.PutUint16(opts[i+2:], mss)
			// The value sits at TCP offset 20+i+2; at an odd offset its
			// bytes straddle two checksum words, which contributes the
			// byte-swapped value (RFC 1071 §2(B)).
			d := delta16(old, mss)
			if i&1 != 0 {
				d = delta16(old>>8|old<<8, mss>>8|mss<<8)
			}
			updateField(tcp, tcpCsumOff, d)
			return true
		}
		i += l
	}
	return false
}

// DecTTL decrements the TTL of the IPv4 header at the start of b and updates
// the header checksum incrementally (RFC 1624, RFC 1812 §5.3.1). A TTL that
// is already zero, or a b too short for a header, is left alone; callers
// check TTL <= 1 first and answer with BuildICMPError (time exceeded). A
// Parsed of b keeps the old TTL.
func DecTTL(b []byte) {
	if len(b) < ipv4MinHeaderLen || b[ipTTLOff] == 0 {
		return
	}
	old := binary.BigEndian.Uint16(b[ipTTLOff:])
	b[ipTTLOff]--
	updateField(b, ipCsumOff, delta16(old, old-0x100))
}
