package health

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/net/bpf"
)

// ICMP types (RFC 792).
const (
	icmpEchoReply    = 0
	icmpUnreachable  = 3
	icmpEcho         = 8
	icmpTimeExceeded = 11
)

// echoMagic follows the Prober's token in every echo request's payload, so
// that a capture shows which packets are probes.
var echoMagic = [8]byte{'w', 'a', 'n', 'f', 'l', 'o', 'w', '!'}

// echoLen is the length of a probe's ICMP message: header, token, magic.
const echoLen = 8 + 8 + 8

// marshalEcho returns an ICMP echo request (header and payload, no IP
// header) with identifier id, sequence number seq and payload token+magic.
func marshalEcho(id, seq uint16, token [8]byte) []byte {
	b := make([]byte, echoLen)
	b[0] = icmpEcho
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], token[:])
	copy(b[16:], echoMagic[:])
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var s uint32
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// icmpMsg is an ICMP message received on a probe socket that concerns one
// of the Prober's echo requests: an echo reply, or an error (destination
// unreachable, time exceeded) quoting the request.
type icmpMsg struct {
	// Src and Dst are the outer IP header's addresses.
	Src, Dst netip.Addr
	// Type and Code are the message's.
	Type, Code uint8
	// Seq is the echo request's sequence number.
	Seq uint16
	// Target is the probed address: Src for an echo reply, the quoted
	// packet's destination for an error.
	Target netip.Addr
	// Token is the payload's token; valid iff Type is icmpEchoReply.
	Token [8]byte
}

// ipv4Header checks the IPv4 header at the start of b and returns its
// length, or 0 when b does not start with an unfragmented (first fragment
// for quoted packets) IPv4 ICMP packet.
func ipv4Header(b []byte, quoted bool) int {
	if len(b) < 20 || b[0]>>4 != 4 {
		return 0
	}
	hl := int(b[0]&0x0f) * 4
	if hl < 20 || len(b) < hl || b[9] != 1 {
		return 0
	}
	frag := binary.BigEndian.Uint16(b[6:])
	if frag&0x1fff != 0 || !quoted && frag&0x2000 != 0 {
		return 0 // not the first fragment, or a fragment we would need to reassemble
	}
	if !quoted {
		if tl := int(binary.BigEndian.Uint16(b[2:])); tl < hl || tl > len(b) {
			return 0
		}
	}
	return hl
}

// parseICMP parses a packet read from a raw ICMP socket (IPv4 header
// included) and reports whether it concerns an echo request with
// identifier id. Any packet is safe to pass.
func parseICMP(b []byte, id uint16) (icmpMsg, bool) {
	hl := ipv4Header(b, false)
	if hl == 0 {
		return icmpMsg{}, false
	}
	tl := int(binary.BigEndian.Uint16(b[2:]))
	var m icmpMsg
	m.Src = netip.AddrFrom4([4]byte(b[12:16]))
	m.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	ic := b[hl:tl]
	if len(ic) < 8 || checksum(ic) != 0 {
		return icmpMsg{}, false
	}
	m.Type, m.Code = ic[0], ic[1]
	switch m.Type {
	case icmpEchoReply:
		if binary.BigEndian.Uint16(ic[4:]) != id || len(ic) < 16 {
			return icmpMsg{}, false
		}
		m.Seq = binary.BigEndian.Uint16(ic[6:])
		m.Target = m.Src
		m.Token = [8]byte(ic[8:16])
		return m, true
	case icmpUnreachable, icmpTimeExceeded:
		q := ic[8:]
		qhl := ipv4Header(q, true)
		if qhl == 0 || len(q) < qhl+8 {
			return icmpMsg{}, false
		}
		qi := q[qhl:]
		if qi[0] != icmpEcho || binary.BigEndian.Uint16(qi[4:]) != id {
			return icmpMsg{}, false
		}
		m.Seq = binary.BigEndian.Uint16(qi[6:])
		m.Target = netip.AddrFrom4([4]byte(q[16:20]))
		return m, true
	}
	return icmpMsg{}, false
}

// icmpFilter returns a classic BPF program for a raw ICMP socket that keeps
// only what parseICMP can accept for identifier id: echo replies with that
// identifier, and unreachable / time-exceeded errors quoting an echo
// request with it. Every other ICMP packet of the host (the dataplane's
// NATed pings, other uplinks' probes) is dropped in the kernel.
func icmpFilter(id uint16) []bpf.Instruction {
	const (
		accept = 0x40000
		drop   = 0
	)
	// Jump offsets are counted from the next instruction.
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: 6, Size: 2}, // flags + fragment offset
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 19}, // not a first fragment
		/* 2 */ bpf.LoadMemShift{Off: 0}, // X = IP header length
		/* 3 */ bpf.LoadIndirect{Off: 0, Size: 1}, // ICMP type
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpEchoReply, SkipFalse: 2},
		/* 5 */ bpf.LoadIndirect{Off: 4, Size: 2}, // echo identifier
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(id), SkipTrue: 13, SkipFalse: 14},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpUnreachable, SkipTrue: 1},
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpTimeExceeded, SkipFalse: 12},
		/* 9 */ bpf.LoadIndirect{Off: 8 + 9, Size: 1}, // quoted IP protocol
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipFalse: 10},
		/* 11 */ bpf.LoadIndirect{Off: 8, Size: 1}, // quoted version + IHL
		/* 12 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
		/* 13 */ bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
		/* 14 */ bpf.ALUOpX{Op: bpf.ALUOpAdd}, // A = outer + quoted header lengths
		/* 15 */ bpf.TAX{},
		/* 16 */ bpf.LoadIndirect{Off: 8, Size: 1}, // quoted ICMP type
		/* 17 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpEcho, SkipFalse: 3},
		/* 18 */ bpf.LoadIndirect{Off: 8 + 4, Size: 2}, // quoted echo identifier
		/* 19 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(id), SkipFalse: 1},
		/* 20 */ bpf.RetConstant{Val: accept},
		/* 21 */ bpf.RetConstant{Val: drop},
	}
}
