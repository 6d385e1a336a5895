package packet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// Geometry of packets the router originates.
const (
	// ICMPErrorMaxLen is the largest ICMP error BuildICMPError writes: RFC
	// 1812 §4.3.2.3 quotes as much of the original datagram as fits in 576
	// bytes.
	ICMPErrorMaxLen = 576
	// TCPResetLen is the length of the packets BuildTCPReset writes.
	TCPResetLen = ipv4MinHeaderLen + tcpMinHeaderLen

	originTTL = 64
	// tosInternetControl is IP precedence 6, which RFC 1812 §4.3.2.5
	// recommends for ICMP errors.
	tosInternetControl = 0xc0
)

// putIPv4 writes a 20-byte IPv4 header (no options, DF set, ID 0: an atomic
// datagram, RFC 6864 §4) with its checksum into b.
func putIPv4(b []byte, tos uint8, totalLen int, proto uint8, src, dst [4]byte) {
	b[0], b[1] = 0x45, tos
	binary.BigEndian.PutUint16(b[2:], uint16(totalLen))
	binary.BigEndian.PutUint32(b[4:], flagDF)
	b[ipTTLOff], b[9] = originTTL, proto
	b[ipCsumOff], b[ipCsumOff+1] = 0, 0
	copy(b[ipSrcOff:], src[:])
	copy(b[ipDstOff:], dst[:])
	binary.BigEndian.PutUint16(b[ipCsumOff:], ^headerSum(b[:ipv4MinHeaderLen]))
}

// isUnicast4 reports whether a is usable as the source of a datagram that
// deserves an ICMP error (RFC 1812 §4.3.2.7, §5.3.7): not 0/8, not
// loopback, not multicast, not class E or limited broadcast.
func isUnicast4(a [4]byte) bool {
	return a[0] != 0 && a[0] != 127 && a[0] < 224
}

// BuildICMPError writes into dst a complete IPv4 ICMP error from src about
// orig, the offending datagram as the router received it (before any NAT),
// and returns its length. typ and code select the error: time exceeded
// (11/0), destination unreachable (3/0 net, 3/1 host, 3/3 port, ...) and
// fragmentation needed (3/4), which carries mtu as the next-hop MTU (RFC
// 1191 §4); mtu is ignored otherwise. The message quotes orig's IP header
// and as much of its data as fits in ICMPErrorMaxLen bytes (RFC 792, RFC 1812
// §4.3.2.3); both checksums are computed.
//
// It returns 0, writing nothing useful, when dst is too small or when RFC
// 1812 §4.3.2.7 forbids an error: orig is malformed, is a non-first
// fragment, is itself an ICMP error, or has a source or destination that is
// not unicast (broadcast, multicast, loopback, 0/8, class E).
func BuildICMPError(dst []byte, orig []byte, src [4]byte, typ, code uint8, mtu uint16) int {
	if len(orig) < ipv4MinHeaderLen || orig[0]>>4 != 4 {
		return 0
	}
	ihl := int(orig[0]&0x0f) * 4
	ol := int(binary.BigEndian.Uint16(orig[2:]))
	if ihl < ipv4MinHeaderLen || ol < ihl || ihl > len(orig) {
		return 0
	}
	ol = min(ol, len(orig))
	if binary.BigEndian.Uint16(orig[ipFlagsOff:])&fragOffMask != 0 {
		return 0
	}
	var osrc, odst [4]byte
	copy(osrc[:], orig[ipSrcOff:])
	copy(odst[:], orig[ipDstOff:])
	if !isUnicast4(osrc) || !isUnicast4(odst) {
		return 0
	}
	if orig[9] == protoICMP && (ol == ihl || isICMPError(orig[ihl]) || orig[ihl] == 5) {
		return 0 // an ICMP error (or redirect), or too short to tell
	}
	q := min(ol, ICMPErrorMaxLen-ipv4MinHeaderLen-icmpHeaderLen)
	n := ipv4MinHeaderLen + icmpHeaderLen + q
	if len(dst) < n {
		return 0
	}
	dst = dst[:n]
	putIPv4(dst, tosInternetControl, n, protoICMP, src, osrc)
	icmp := dst[ipv4MinHeaderLen:]
	icmp[0], icmp[1] = typ, code
	binary.BigEndian.PutUint32(icmp[icmpCsumOff:], 0) // checksum and unused
	icmp[6], icmp[7] = 0, 0
	if typ == ICMPDestUnreach && code == ICMPCodeFragNeeded {
		binary.BigEndian.PutUint16(icmp[6:], mtu)
	}
	copy(icmp[icmpHeaderLen:], orig[:q])
	binary.BigEndian.PutUint16(icmp[icmpCsumOff:], ^checksum.Checksum(icmp, 0))
	return n
}

// BuildTCPReset writes into dst a TCP RST answering the segment orig
// (decoded into p, KindTCP) as if sent by orig's destination, and returns
// its length (TCPResetLen), or 0 if dst is too small, p is not an
// unfragmented TCP segment, or orig itself carries RST (RFC 793 §3.4: a
// reset is never answered). Following RFC 793 "Reset Generation", if orig
// has ACK the reset takes its sequence number from orig's acknowledgment
// number; otherwise its sequence number is zero and it acknowledges orig's
// sequence number plus segment length (SYN and FIN count one each). Used to
// reset LAN hosts at once when their uplink dies: the last segment the host
// sent acknowledges exactly the host's RCV.NXT, which passes RFC 5961 §3.
func BuildTCPReset(dst []byte, p *Parsed, orig []byte) int {
	if p.Kind != KindTCP || p.TCPFlags&TCPFlagRST != 0 || p.TotalLen > len(orig) {
		return 0
	}
	tcp := orig[p.L4Off:p.TotalLen]
	seq := binary.BigEndian.Uint32(tcp[tcpSeqOff:])
	ack := binary.BigEndian.Uint32(tcp[tcpAckOff:])
	if p.TCPFlags&TCPFlagACK != 0 {
		return BuildTCPResetSeq(dst, p.Dst, p.Src, p.DstPort, p.SrcPort, ack, 0, false)
	}
	segLen := uint32(len(tcp) - int(tcp[12]>>4)*4)
	if p.TCPFlags&TCPFlagSYN != 0 {
		segLen++
	}
	if p.TCPFlags&TCPFlagFIN != 0 {
		segLen++
	}
	return BuildTCPResetSeq(dst, p.Dst, p.Src, p.DstPort, p.SrcPort, 0, seq+segLen, true)
}

// BuildTCPResetSeq writes into dst a TCP RST from src:sport to dstAddr:dport
// with sequence number seq and, if withAck, the ACK flag and acknowledgment
// number ack, and returns its length (TCPResetLen), or 0 if dst is too
// small. It lets the dataplane reset a flow from the sequence numbers its
// flow table tracked, without a packet in hand.
func BuildTCPResetSeq(dst []byte, src, dstAddr [4]byte, sport, dport uint16, seq, ack uint32, withAck bool) int {
	if len(dst) < TCPResetLen {
		return 0
	}
	dst = dst[:TCPResetLen]
	putIPv4(dst, 0, TCPResetLen, protoTCP, src, dstAddr)
	tcp := dst[ipv4MinHeaderLen:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[tcpSeqOff:], seq)
	flags := uint8(TCPFlagRST)
	if withAck {
		flags |= TCPFlagACK
	} else {
		ack = 0
	}
	binary.BigEndian.PutUint32(tcp[tcpAckOff:], ack)
	tcp[12], tcp[tcpFlagsOff] = 5<<4, flags
	binary.BigEndian.PutUint32(tcp[14:], 0) // window, checksum
	binary.BigEndian.PutUint16(tcp[18:], 0) // urgent pointer
	ph := PseudoHeaderSum(protoTCP, src, dstAddr, tcpMinHeaderLen)
	binary.BigEndian.PutUint16(tcp[tcpCsumOff:], ^checksum.Checksum(tcp, ph))
	return TCPResetLen
}
