package packet

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Protocol numbers and header geometry used throughout the package.
const (
	protoICMP = uint8(header.ICMPv4ProtocolNumber)
	protoTCP  = uint8(header.TCPProtocolNumber)
	protoUDP  = uint8(header.UDPProtocolNumber)

	ipv4MinHeaderLen = header.IPv4MinimumSize
	ipv4MaxHeaderLen = header.IPv4MaximumHeaderSize
	tcpMinHeaderLen  = header.TCPMinimumSize
	udpHeaderLen     = header.UDPMinimumSize
	icmpHeaderLen    = header.ICMPv4MinimumSize

	ipFlagsOff  = 6
	ipTTLOff    = 8
	ipCsumOff   = 10
	ipSrcOff    = 12
	ipDstOff    = 16
	tcpSeqOff   = 4
	tcpAckOff   = 8
	tcpFlagsOff = 13
	tcpCsumOff  = 16
	udpLenOff   = 4
	udpCsumOff  = 6
	icmpCsumOff = 2
	icmpIDOff   = 4

	flagDF      = 0x4000
	flagMF      = 0x2000
	fragOffMask = 0x1fff
)

// TCP flag bits, as in Parsed.TCPFlags (RFC 793, RFC 3168).
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20
	TCPFlagECE = 0x40
	TCPFlagCWR = 0x80
)

// ICMP types the dataplane handles (RFC 792).
const (
	ICMPEchoReply      = 0
	ICMPDestUnreach    = 3
	ICMPSourceQuench   = 4
	ICMPEchoRequest    = 8
	ICMPTimeExceeded   = 11
	ICMPParamProblem   = 12
	ICMPCodeFragNeeded = 4 // with ICMPDestUnreach (RFC 1191)
)

// Kind is the verdict of Parsed.Decode: which translation path a packet takes.
type Kind uint8

const (
	// KindInvalid is a packet to drop; Parsed.Drop says why.
	KindInvalid Kind = iota
	// KindTCP is an unfragmented TCP segment; ports and TCPFlags are valid.
	KindTCP
	// KindUDP is an unfragmented UDP datagram; ports are valid.
	KindUDP
	// KindICMPEcho is an unfragmented ICMP echo request or reply; SrcPort
	// and DstPort both hold the echo identifier, the NAT "port" (RFC 5508 §3.1).
	KindICMPEcho
	// KindICMPError is an unfragmented ICMP destination unreachable, source
	// quench, time exceeded or parameter problem; Inner describes the
	// embedded datagram.
	KindICMPError
	// KindFragment is an IPv4 fragment (MF set or non-zero offset). Ports are
	// valid only in the first fragment (FragOff == 0), see Parsed.HasPorts.
	KindFragment
	// KindOther is a valid unfragmented IPv4 packet of another protocol, or
	// an ICMP message that is neither echo nor a translated error.
	KindOther
)

var kindNames = [...]string{"invalid", "tcp", "udp", "icmp-echo", "icmp-error", "fragment", "other"}

// String returns the kind's name, for logs and metric labels.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// DropReason says why Decode marked a packet KindInvalid.
type DropReason uint8

const (
	// DropNone is the reason of every valid packet.
	DropNone DropReason = iota
	// DropTooShort is a packet shorter than an IPv4 header.
	DropTooShort
	// DropBadVersion is a packet whose version is not 4.
	DropBadVersion
	// DropBadIHL is a header length below 20 bytes.
	DropBadIHL
	// DropBadTotalLen is a total length below the header length or beyond
	// the bytes received.
	DropBadTotalLen
	// DropBadChecksum is an IPv4 header checksum that does not verify.
	DropBadChecksum
	// DropTruncatedL4 is a TCP, UDP or ICMP header cut short.
	DropTruncatedL4
	// DropBadTCPOffset is a TCP data offset below 5 words or beyond the packet.
	DropBadTCPOffset
	// DropBadUDPLength is a UDP length below 8 or beyond the IP payload.
	DropBadUDPLength
	// DropTinyFragment is a first fragment too short to hold its transport
	// header, or a TCP fragment at offset 8 (RFC 1858 §3: tiny and
	// overlapping fragment attacks).
	DropTinyFragment
)

var dropNames = [...]string{"none", "too_short", "bad_version", "bad_ihl", "bad_total_len",
	"bad_checksum", "truncated_l4", "bad_tcp_offset", "bad_udp_length", "tiny_fragment"}

// String returns the reason's name, usable as a metric label.
func (d DropReason) String() string {
	if int(d) < len(dropNames) {
		return dropNames[d]
	}
	return "unknown"
}

// InnerHeader describes the datagram embedded in an ICMP error (RFC 792: its
// IP header and at least its first 8 payload bytes).
type InnerHeader struct {
	// Proto is the embedded datagram's protocol.
	Proto uint8
	// Src and Dst are the embedded datagram's addresses.
	Src, Dst [4]byte
	// SrcPort and DstPort are the embedded TCP/UDP ports; for an embedded
	// ICMP echo both hold the identifier. Zero for other protocols.
	SrcPort, DstPort uint16
	// Off is the offset of the embedded IP header in the packet.
	Off int
	// L4Off is the offset of the embedded transport header in the packet.
	L4Off int
	// Valid reports whether the embedded datagram can be translated: a
	// well-formed IPv4 header followed by at least 8 bytes, not a non-first
	// fragment, and for ICMP an echo request or reply. Other protocols are
	// valid with zero ports (addresses only). The other fields are
	// meaningful only when Valid.
	Valid bool
}

// Parsed is the decoded view of one IPv4 packet, in the style of
// Tailscale's packet.Parsed: a value type filled by Decode that never
// returns an error. It holds no reference to the packet bytes.
type Parsed struct {
	// Kind is the verdict; KindInvalid packets are dropped and counted.
	Kind Kind
	// Drop says why Kind is KindInvalid; DropNone otherwise.
	Drop DropReason

	// IPHLen is the IP header length in bytes (20..60).
	IPHLen int
	// TotalLen is the IP total length; bytes of the packet beyond it
	// (link-layer padding) are ignored.
	TotalLen int
	// Proto is the IP protocol number.
	Proto uint8
	// TTL is the time to live.
	TTL uint8
	// ID is the IP identification.
	ID uint16
	// DF and MF are the don't-fragment and more-fragments flags.
	DF, MF bool
	// FragOff is the fragment offset in bytes.
	FragOff uint16
	// Src and Dst are the IP addresses.
	Src, Dst [4]byte

	// SrcPort and DstPort are the TCP/UDP ports; for an ICMP echo both are
	// the identifier. Valid iff HasPorts.
	SrcPort, DstPort uint16
	// ICMPType and ICMPCode are valid iff Proto is ICMP and the packet holds
	// the ICMP header (not a non-first fragment).
	ICMPType, ICMPCode uint8
	// TCPFlags is valid iff Kind is KindTCP (or a first TCP fragment).
	TCPFlags uint8
	// L4Off is the offset of the transport header (== IPHLen).
	L4Off int

	// Inner describes the datagram embedded in a KindICMPError.
	Inner InnerHeader
}

// HasPorts reports whether SrcPort and DstPort are meaningful: TCP, UDP and
// ICMP echo packets, unfragmented or first fragments.
func (p *Parsed) HasPorts() bool {
	switch p.Kind {
	case KindTCP, KindUDP, KindICMPEcho:
		return true
	case KindFragment:
		return p.FragOff == 0 && (p.Proto == protoTCP || p.Proto == protoUDP ||
			(p.Proto == protoICMP && isEcho(p.ICMPType)))
	}
	return false
}

// IsTCPSyn reports whether p is a TCP segment with SYN set (SYN or SYN-ACK).
func (p *Parsed) IsTCPSyn() bool {
	return p.Kind == KindTCP && p.TCPFlags&TCPFlagSYN != 0
}

// SrcAddrPort returns the source address and port (zero port if !HasPorts).
func (p *Parsed) SrcAddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(p.Src), p.SrcPort)
}

// DstAddrPort returns the destination address and port (zero port if
// !HasPorts).
func (p *Parsed) DstAddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(p.Dst), p.DstPort)
}

func isEcho(t uint8) bool { return t == ICMPEchoRequest || t == ICMPEchoReply }

func isICMPError(t uint8) bool {
	return t == ICMPDestUnreach || t == ICMPSourceQuench || t == ICMPTimeExceeded || t == ICMPParamProblem
}

// Decode decodes b, which holds exactly one IPv4 packet (bytes beyond its
// total length are link-layer padding and ignored), into p. It validates the
// version, header length, total length and header checksum, the minimal
// TCP/UDP/ICMP header lengths, and parses the embedded header of ICMP errors.
// On failure p.Kind is KindInvalid and p.Drop says why. It does not verify
// transport checksums (the NAT updates them incrementally, which keeps a bad
// checksum bad). Decode does not retain b.
func (p *Parsed) Decode(b []byte) {
	*p = Parsed{}
	if len(b) < ipv4MinHeaderLen {
		p.Drop = DropTooShort
		return
	}
	ip := header.IPv4(b)
	if b[0]>>4 != header.IPv4Version {
		p.Drop = DropBadVersion
		return
	}
	ihl := int(ip.HeaderLength())
	if ihl < ipv4MinHeaderLen {
		p.Drop = DropBadIHL
		return
	}
	tl := int(ip.TotalLength())
	if tl < ihl || tl > len(b) {
		p.Drop = DropBadTotalLen
		return
	}
	b = b[:tl]
	if headerSum(b[:ihl]) != 0xffff {
		p.Drop = DropBadChecksum
		return
	}
	ff := binary.BigEndian.Uint16(b[ipFlagsOff:])
	p.IPHLen, p.TotalLen, p.L4Off = ihl, tl, ihl
	p.Proto, p.TTL, p.ID = ip.Protocol(), ip.TTL(), ip.ID()
	p.DF, p.MF = ff&flagDF != 0, ff&flagMF != 0
	p.FragOff = (ff & fragOffMask) * 8
	copy(p.Src[:], b[ipSrcOff:ipSrcOff+4])
	copy(p.Dst[:], b[ipDstOff:ipDstOff+4])

	l4 := b[ihl:]
	if p.MF || p.FragOff != 0 {
		p.decodeFragment(l4)
		return
	}
	switch p.Proto {
	case protoTCP:
		if !p.decodeTCP(l4) {
			return
		}
		p.Kind = KindTCP
	case protoUDP:
		if len(l4) < udpHeaderLen {
			p.Drop = DropTruncatedL4
			return
		}
		if ul := int(binary.BigEndian.Uint16(l4[udpLenOff:])); ul < udpHeaderLen || ul > len(l4) {
			p.Drop = DropBadUDPLength
			return
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:])
		p.DstPort = binary.BigEndian.Uint16(l4[2:])
		p.Kind = KindUDP
	case protoICMP:
		if len(l4) < icmpHeaderLen {
			p.Drop = DropTruncatedL4
			return
		}
		p.ICMPType, p.ICMPCode = l4[0], l4[1]
		switch {
		case isEcho(p.ICMPType):
			p.SrcPort = binary.BigEndian.Uint16(l4[icmpIDOff:])
			p.DstPort = p.SrcPort
			p.Kind = KindICMPEcho
		case isICMPError(p.ICMPType):
			p.decodeInner(b)
			p.Kind = KindICMPError
		default:
			p.Kind = KindOther
		}
	default:
		p.Kind = KindOther
	}
}

// decodeTCP fills the TCP fields from l4 (a whole segment or the start of a
// first fragment) and reports success; on failure it sets p.Drop.
func (p *Parsed) decodeTCP(l4 []byte) bool {
	if len(l4) < tcpMinHeaderLen {
		p.Drop = DropTruncatedL4
		return false
	}
	if off := int(l4[12]>>4) * 4; off < tcpMinHeaderLen || off > len(l4) {
		p.Drop = DropBadTCPOffset
		return false
	}
	p.SrcPort = binary.BigEndian.Uint16(l4[0:])
	p.DstPort = binary.BigEndian.Uint16(l4[2:])
	p.TCPFlags = l4[tcpFlagsOff]
	return true
}

// decodeFragment classifies a fragment. A first fragment must hold the whole
// transport header (TCP: 20 bytes and its options, UDP and ICMP: 8 bytes),
// so that the ports the NAT rewrites are in it; a TCP fragment at offset 8
// could overwrite the flags of the first (RFC 1858 §3.2). Both are dropped.
func (p *Parsed) decodeFragment(l4 []byte) {
	if p.FragOff == 0 {
		switch p.Proto {
		case protoTCP:
			if !p.decodeTCP(l4) {
				p.Drop = DropTinyFragment
				return
			}
		case protoUDP:
			if len(l4) < udpHeaderLen {
				p.Drop = DropTinyFragment
				return
			}
			p.SrcPort = binary.BigEndian.Uint16(l4[0:])
			p.DstPort = binary.BigEndian.Uint16(l4[2:])
		case protoICMP:
			if len(l4) < icmpHeaderLen {
				p.Drop = DropTinyFragment
				return
			}
			p.ICMPType, p.ICMPCode = l4[0], l4[1]
			if isEcho(p.ICMPType) {
				p.SrcPort = binary.BigEndian.Uint16(l4[icmpIDOff:])
				p.DstPort = p.SrcPort
			}
		}
	} else if p.Proto == protoTCP && p.FragOff == 8 {
		p.Drop = DropTinyFragment
		return
	}
	p.Kind = KindFragment
}

// decodeInner parses the datagram embedded in an ICMP error whose outer
// packet is b (cut at its total length).
func (p *Parsed) decodeInner(b []byte) {
	in := &p.Inner
	off := p.L4Off + icmpHeaderLen
	e := b[off:]
	if len(e) < ipv4MinHeaderLen || e[0]>>4 != header.IPv4Version {
		return
	}
	ihl := int(e[0]&0x0f) * 4
	if ihl < ipv4MinHeaderLen || ihl+8 > len(e) {
		return
	}
	in.Off, in.L4Off = off, off+ihl
	in.Proto = e[9]
	copy(in.Src[:], e[ipSrcOff:ipSrcOff+4])
	copy(in.Dst[:], e[ipDstOff:ipDstOff+4])
	if binary.BigEndian.Uint16(e[ipFlagsOff:])&fragOffMask != 0 {
		return // a non-first fragment: no ports to translate
	}
	l4 := e[ihl:]
	switch in.Proto {
	case protoTCP, protoUDP:
		in.SrcPort = binary.BigEndian.Uint16(l4[0:])
		in.DstPort = binary.BigEndian.Uint16(l4[2:])
	case protoICMP:
		if !isEcho(l4[0]) {
			return // an error about an error, or about an untranslated query
		}
		in.SrcPort = binary.BigEndian.Uint16(l4[icmpIDOff:])
		in.DstPort = in.SrcPort
	}
	in.Valid = true
}
