package packet

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Addresses of the lab's address plan.
var (
	lanHost  = [4]byte{10, 77, 0, 10}
	uplink1  = [4]byte{100, 64, 1, 2}
	uplink2  = [4]byte{100, 64, 2, 2}
	server   = [4]byte{203, 0, 113, 10}
	isp1     = [4]byte{100, 64, 1, 1}
	routerIP = [4]byte{10, 77, 0, 1}
)

// ipOpts describes the IPv4 header of a test packet.
type ipOpts struct {
	id      uint16
	flags   uint8 // header.IPv4FlagDontFragment | header.IPv4FlagMoreFragments
	fragOff uint16
	ttl     uint8
	tos     uint8
	options header.IPv4OptionsSerializer
}

// buildIPv4 encodes an IPv4 packet around payload with gVisor's encoder
// and computes its header checksum.
func buildIPv4(proto uint8, src, dst [4]byte, o ipOpts, payload []byte) []byte {
	if o.ttl == 0 {
		o.ttl = 64
	}
	hl := header.IPv4MinimumSize + int(o.options.Length())
	b := make([]byte, hl+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TOS:            o.tos,
		TotalLength:    uint16(len(b)),
		ID:             o.id,
		Flags:          o.flags,
		FragmentOffset: o.fragOff,
		TTL:            o.ttl,
		Protocol:       proto,
		SrcAddr:        tcpip.AddrFrom4(src),
		DstAddr:        tcpip.AddrFrom4(dst),
		Options:        o.options,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[hl:], payload)
	return b
}

// tcpSeg describes a TCP segment.
type tcpSeg struct {
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	opts         []byte // multiple of 4
	payload      []byte
}

// buildTCP returns a TCP/IPv4 packet with a correct checksum.
func buildTCP(src, dst [4]byte, s tcpSeg, o ipOpts) []byte {
	t := make([]byte, header.TCPMinimumSize+len(s.opts)+len(s.payload))
	header.TCP(t).Encode(&header.TCPFields{
		SrcPort: s.sport, DstPort: s.dport, SeqNum: s.seq, AckNum: s.ack,
		DataOffset: uint8(header.TCPMinimumSize + len(s.opts)),
		Flags:      header.TCPFlags(s.flags), WindowSize: 64240,
	})
	copy(t[header.TCPMinimumSize:], s.opts)
	copy(t[header.TCPMinimumSize+len(s.opts):], s.payload)
	setL4Checksum(t, 16, uint8(header.TCPProtocolNumber), src, dst)
	return buildIPv4(uint8(header.TCPProtocolNumber), src, dst, o, t)
}

// buildUDP returns a UDP/IPv4 packet, with a checksum if csum.
func buildUDP(src, dst [4]byte, sport, dport uint16, payload []byte, csum bool, o ipOpts) []byte {
	u := make([]byte, header.UDPMinimumSize+len(payload))
	header.UDP(u).Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], payload)
	if csum {
		setL4Checksum(u, 6, uint8(header.UDPProtocolNumber), src, dst)
	}
	return buildIPv4(uint8(header.UDPProtocolNumber), src, dst, o, u)
}

// buildICMP returns an ICMP/IPv4 packet: the 8-byte header (type, code, rest)
// followed by body, with its checksum.
func buildICMP(src, dst [4]byte, typ, code uint8, rest uint32, body []byte, o ipOpts) []byte {
	m := make([]byte, header.ICMPv4MinimumSize+len(body))
	ic := header.ICMPv4(m)
	ic.SetType(header.ICMPv4Type(typ))
	ic.SetCode(header.ICMPv4Code(code))
	binary.BigEndian.PutUint32(m[4:], rest)
	copy(m[8:], body)
	ic.SetChecksum(^checksum.Checksum(m, 0))
	return buildIPv4(uint8(header.ICMPv4ProtocolNumber), src, dst, o, m)
}

// setL4Checksum computes a TCP/UDP checksum from scratch with gVisor.
func setL4Checksum(l4 []byte, off int, proto uint8, src, dst [4]byte) {
	l4[off], l4[off+1] = 0, 0
	ph := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto),
		tcpip.AddrFrom4(src), tcpip.AddrFrom4(dst), uint16(len(l4)))
	c := ^checksum.Checksum(l4, ph)
	if c == 0 && proto == uint8(header.UDPProtocolNumber) {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

// checkIP verifies the IPv4 header checksum of b with gVisor.
func checkIP(t testing.TB, what string, b []byte) {
	t.Helper()
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) || !ip.IsChecksumValid() {
		t.Errorf("%s: IP header invalid or bad checksum: % x", what, b[:min(len(b), 20)])
	}
}

// checkL4 verifies the transport checksum of the whole unfragmented packet
// b from scratch with gVisor (UDP zero checksum accepted).
func checkL4(t testing.TB, what string, b []byte) {
	t.Helper()
	ip := header.IPv4(b)
	l4 := b[ip.HeaderLength():ip.TotalLength()]
	var sum uint16
	switch ip.Protocol() {
	case uint8(header.TCPProtocolNumber), uint8(header.UDPProtocolNumber):
		if ip.Protocol() == uint8(header.UDPProtocolNumber) && header.UDP(l4).Checksum() == 0 {
			return
		}
		ph := header.PseudoHeaderChecksum(ip.TransportProtocol(), ip.SourceAddress(), ip.DestinationAddress(), uint16(len(l4)))
		sum = checksum.Checksum(l4, ph)
	case uint8(header.ICMPv4ProtocolNumber):
		sum = checksum.Checksum(l4, 0)
	default:
		return
	}
	if sum != 0xffff {
		t.Errorf("%s: L4 checksum does not verify (sum %#04x)", what, sum)
	}
}

// checkAll verifies the IP and L4 checksums of b.
func checkAll(t testing.TB, what string, b []byte) {
	t.Helper()
	checkIP(t, what, b)
	checkL4(t, what, b)
}

// unhex decodes a hex string that may contain spaces and newlines.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex: %v", err)
	}
	return b
}

// decode decodes b and fails the test unless it has the wanted kind.
func decode(t testing.TB, b []byte, want Kind) Parsed {
	t.Helper()
	var p Parsed
	p.Decode(b)
	if p.Kind != want {
		t.Fatalf("Decode: kind %v (drop %v), want %v", p.Kind, p.Drop, want)
	}
	return p
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// makeBufs returns n buffers of size bytes after offset bytes of headroom,
// and a sizes slice, like a batch of wireguard-go tun buffers.
func makeBufs(n, size, offset int) ([][]byte, []int) {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, offset+size)
	}
	return out, make([]int, n)
}

// checkIPHeader verifies only the header checksum of the IPv4 header at the
// start of b (a quoted header whose datagram is truncated).
func checkIPHeader(t testing.TB, what string, b []byte) {
	t.Helper()
	if len(b) < header.IPv4MinimumSize || !header.IPv4(b).IsChecksumValid() {
		t.Errorf("%s: bad IP header checksum", what)
	}
}
