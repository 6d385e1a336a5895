// Package packettest builds IPv4 test packets with gVisor's header encoders
// and checks their checksums from scratch, for the dataplane's tests.
package packettest

import (
	"encoding/binary"
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// IP describes the IPv4 header of a test packet; zero values are sensible
// (TTL 64, no flags).
type IP struct {
	Src, Dst [4]byte
	ID       uint16
	DF       bool
	TTL      uint8
}

func ipv4(proto uint8, o IP, payload []byte) []byte {
	if o.TTL == 0 {
		o.TTL = 64
	}
	b := make([]byte, header.IPv4MinimumSize+len(payload))
	var flags uint8
	if o.DF {
		flags = header.IPv4FlagDontFragment
	}
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)),
		ID:          o.ID,
		Flags:       flags,
		TTL:         o.TTL,
		Protocol:    proto,
		SrcAddr:     tcpip.AddrFrom4(o.Src),
		DstAddr:     tcpip.AddrFrom4(o.Dst),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], payload)
	return b
}

func pseudo(proto uint8, src, dst [4]byte, n int) uint16 {
	return header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), tcpip.AddrFrom4(src), tcpip.AddrFrom4(dst), uint16(n))
}

// UDP returns an IPv4/UDP packet with a valid checksum.
func UDP(o IP, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, header.UDPMinimumSize+len(payload))
	h := header.UDP(u)
	h.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], payload)
	xsum := checksum.Checksum(u, pseudo(uint8(header.UDPProtocolNumber), o.Src, o.Dst, len(u)))
	if xsum != 0xffff {
		xsum = ^xsum
	}
	h.SetChecksum(xsum)
	return ipv4(uint8(header.UDPProtocolNumber), o, u)
}

// TCP returns an IPv4/TCP segment with a valid checksum. mss > 0 adds an
// MSS option.
func TCP(o IP, sport, dport uint16, seq, ack uint32, flags uint8, mss uint16, payload []byte) []byte {
	hl := header.TCPMinimumSize
	if mss > 0 {
		hl += 4
	}
	t := make([]byte, hl+len(payload))
	h := header.TCP(t)
	h.Encode(&header.TCPFields{
		SrcPort: sport, DstPort: dport, SeqNum: seq, AckNum: ack,
		DataOffset: uint8(hl), Flags: header.TCPFlags(flags), WindowSize: 65535,
	})
	if mss > 0 {
		t[20], t[21] = 2, 4
		binary.BigEndian.PutUint16(t[22:], mss)
	}
	copy(t[hl:], payload)
	h.SetChecksum(^checksum.Checksum(t, pseudo(uint8(header.TCPProtocolNumber), o.Src, o.Dst, len(t))))
	return ipv4(uint8(header.TCPProtocolNumber), o, t)
}

// ICMPEcho returns an ICMP echo request (reply false) or reply.
func ICMPEcho(o IP, reply bool, id, seq uint16, payload []byte) []byte {
	m := make([]byte, header.ICMPv4MinimumSize+len(payload))
	h := header.ICMPv4(m)
	h.SetType(header.ICMPv4Echo)
	if reply {
		h.SetType(header.ICMPv4EchoReply)
	}
	h.SetIdent(id)
	h.SetSequence(seq)
	copy(m[header.ICMPv4MinimumSize:], payload)
	h.SetChecksum(^checksum.Checksum(m, 0))
	return ipv4(uint8(header.ICMPv4ProtocolNumber), o, m)
}

// ICMPError returns an ICMP error of type typ/code from o.Src to o.Dst
// quoting orig's IP header and the first 8 bytes after it (RFC 792).
func ICMPError(o IP, typ, code uint8, mtu uint16, orig []byte) []byte {
	ihl := int(orig[0]&0xf) * 4
	q := orig
	if len(q) > ihl+8 {
		q = q[:ihl+8]
	}
	m := make([]byte, header.ICMPv4MinimumSize+len(q))
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint16(m[6:], mtu)
	copy(m[8:], q)
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, 0))
	return ipv4(uint8(header.ICMPv4ProtocolNumber), o, m)
}

// Verify recomputes every checksum of an IPv4 packet from scratch — the IP
// header, TCP/UDP/ICMP, and for ICMP errors the quoted IP header — and
// returns an error naming the first that is wrong.
func Verify(b []byte) error {
	if len(b) < header.IPv4MinimumSize {
		return fmt.Errorf("short packet: %d bytes", len(b))
	}
	ip := header.IPv4(b)
	if !ip.IsChecksumValid() {
		return fmt.Errorf("bad IPv4 header checksum %#04x", ip.Checksum())
	}
	if int(ip.TotalLength()) != len(b) {
		return fmt.Errorf("total length %d, packet %d bytes", ip.TotalLength(), len(b))
	}
	if ip.FragmentOffset() != 0 || ip.Flags()&header.IPv4FlagMoreFragments != 0 {
		return nil // a fragment: the L4 checksum covers the whole datagram
	}
	l4 := b[ip.HeaderLength():]
	src, dst := ip.SourceAddress(), ip.DestinationAddress()
	switch ip.TransportProtocol() {
	case header.TCPProtocolNumber:
		if checksum.Checksum(l4, header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(l4)))) != 0xffff {
			return fmt.Errorf("bad TCP checksum")
		}
	case header.UDPProtocolNumber:
		if header.UDP(l4).Checksum() != 0 && checksum.Checksum(l4, header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(len(l4)))) != 0xffff {
			return fmt.Errorf("bad UDP checksum")
		}
	case header.ICMPv4ProtocolNumber:
		if checksum.Checksum(l4, 0) != 0xffff {
			return fmt.Errorf("bad ICMP checksum")
		}
		if len(l4) >= 8+header.IPv4MinimumSize && (l4[0] == 3 || l4[0] == 11 || l4[0] == 12) {
			inner := header.IPv4(l4[8:])
			if !inner.IsChecksumValid() {
				return fmt.Errorf("bad quoted IPv4 header checksum")
			}
		}
	}
	return nil
}

// Addr4 returns the source and destination addresses of an IPv4 packet.
func Addr4(b []byte) (src, dst [4]byte) {
	copy(src[:], b[12:16])
	copy(dst[:], b[16:20])
	return
}

// Ports returns the first two 16-bit fields after the IPv4 header: the
// ports of TCP/UDP, or type/code and checksum for ICMP.
func Ports(b []byte) (uint16, uint16) {
	ihl := int(b[0]&0xf) * 4
	return binary.BigEndian.Uint16(b[ihl:]), binary.BigEndian.Uint16(b[ihl+2:])
}
