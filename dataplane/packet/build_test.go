package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestBuildICMPError(t *testing.T) {
	big := buildUDP(lanHost, server, 40000, 9000, bytes.Repeat([]byte{0xab}, 1472), true, ipOpts{id: 1, ttl: 1, tos: 0x2b})
	small := buildTCP(lanHost, server, tcpSeg{sport: 40000, dport: 443, seq: 1, flags: TCPFlagSYN}, ipOpts{ttl: 1})
	echo := buildICMP(lanHost, server, ICMPEchoRequest, 0, 1, []byte("ping"), ipOpts{ttl: 1})
	tests := []struct {
		name      string
		orig      []byte
		typ, code uint8
		mtu       uint16
		wantLen   int
	}{
		{"time exceeded, capped at 576", big, ICMPTimeExceeded, 0, 0, 576},
		{"frag needed", big, ICMPDestUnreach, ICMPCodeFragNeeded, 1400, 576},
		{"host unreachable, small", small, ICMPDestUnreach, 1, 0, 28 + len(small)},
		{"about an echo request", echo, ICMPTimeExceeded, 0, 0, 28 + len(echo)},
		{"padded orig quotes total length only", append(clone(small), 0, 0, 0), ICMPDestUnreach, 0, 0, 28 + len(small)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, 1500)
			n := BuildICMPError(dst, tt.orig, routerIP, tt.typ, tt.code, tt.mtu)
			if n != tt.wantLen {
				t.Fatalf("length = %d, want %d", n, tt.wantLen)
			}
			b := dst[:n]
			checkAll(t, "error", b)
			p := decode(t, b, KindICMPError)
			if p.Src != routerIP || p.Dst != lanHost || p.ICMPType != tt.typ || p.ICMPCode != tt.code || p.TTL != 64 {
				t.Errorf("header: %+v", p)
			}
			if b[1] != 0xc0 {
				t.Errorf("TOS %#x: want precedence 6 (0xc0), not ECN-capable", b[1])
			}
			if !p.Inner.Valid || p.Inner.Src != lanHost || p.Inner.Dst != server {
				t.Errorf("inner: %+v", p.Inner)
			}
			if q := b[28:]; !bytes.Equal(q, tt.orig[:len(q)]) {
				t.Errorf("quote differs from the original datagram")
			}
			icmp := header.ICMPv4(b[20:])
			if tt.code == ICMPCodeFragNeeded {
				if icmp.MTU() != tt.mtu {
					t.Errorf("MTU = %d, want %d", icmp.MTU(), tt.mtu)
				}
			} else if binary.BigEndian.Uint32(b[24:]) != 0 {
				t.Errorf("unused field not zero")
			}
		})
	}

	refused := map[string][]byte{
		"icmp error":         buildICMP(lanHost, server, ICMPTimeExceeded, 0, 0, small[:28], ipOpts{}),
		"redirect":           buildICMP(lanHost, server, 5, 0, 0, small[:28], ipOpts{}),
		"non-first fragment": buildIPv4(17, lanHost, server, ipOpts{fragOff: 1480}, []byte("tail")),
		"broadcast dst":      buildUDP(lanHost, [4]byte{255, 255, 255, 255}, 68, 67, nil, true, ipOpts{}),
		"multicast dst":      buildUDP(lanHost, [4]byte{224, 0, 0, 251}, 5353, 5353, nil, true, ipOpts{}),
		"zero src":           buildUDP([4]byte{}, server, 68, 67, nil, true, ipOpts{}),
		"loopback src":       buildUDP([4]byte{127, 0, 0, 1}, server, 1, 2, nil, true, ipOpts{}),
		"empty icmp":         buildIPv4(1, lanHost, server, ipOpts{}, nil),
		"short":              small[:19],
		"not ipv4":           append([]byte{0x60}, small[1:]...),
		"bad ihl":            append([]byte{0x43}, small[1:]...),
	}
	for name, orig := range refused {
		t.Run("refuses "+name, func(t *testing.T) {
			if n := BuildICMPError(make([]byte, 1500), orig, routerIP, ICMPTimeExceeded, 0, 0); n != 0 {
				t.Errorf("length = %d, want 0", n)
			}
		})
	}
	t.Run("dst too small", func(t *testing.T) {
		if n := BuildICMPError(make([]byte, 575), big, routerIP, ICMPTimeExceeded, 0, 0); n != 0 {
			t.Errorf("length = %d, want 0", n)
		}
	})
}

func TestBuildTCPReset(t *testing.T) {
	tests := []struct {
		name      string
		seg       tcpSeg
		wantSeq   uint32
		wantAck   uint32
		wantFlags uint8
	}{
		{"established, has ack", tcpSeg{seq: 1000, ack: 5000, flags: TCPFlagACK | TCPFlagPSH, payload: []byte("hello")},
			5000, 0, TCPFlagRST},
		{"syn", tcpSeg{seq: 0xfffffffe, flags: TCPFlagSYN}, 0, 0xffffffff, TCPFlagRST | TCPFlagACK},
		{"data and fin without ack", tcpSeg{seq: 0xfffffff0, flags: TCPFlagFIN, payload: make([]byte, 20)},
			0, 5, TCPFlagRST | TCPFlagACK}, // wraps: 0xfffffff0 + 20 + 1
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.seg.sport, tt.seg.dport = 40000, 443
			orig := buildTCP(lanHost, server, tt.seg, ipOpts{})
			p := decode(t, orig, KindTCP)
			dst := make([]byte, 64)
			n := BuildTCPReset(dst, &p, orig)
			if n != TCPResetLen {
				t.Fatalf("length = %d", n)
			}
			b := dst[:n]
			checkAll(t, "reset", b)
			r := decode(t, b, KindTCP)
			tcp := header.TCP(b[20:])
			if r.Src != server || r.Dst != lanHost || r.SrcPort != 443 || r.DstPort != 40000 {
				t.Errorf("addresses: %v -> %v", r.SrcAddrPort(), r.DstAddrPort())
			}
			if tcp.SequenceNumber() != tt.wantSeq || tcp.AckNumber() != tt.wantAck || r.TCPFlags != tt.wantFlags {
				t.Errorf("seq %d ack %d flags %#x, want %d %d %#x", tcp.SequenceNumber(), tcp.AckNumber(), r.TCPFlags,
					tt.wantSeq, tt.wantAck, tt.wantFlags)
			}
			if tcp.WindowSize() != 0 || tcp.DataOffset() != 20 {
				t.Errorf("window %d offset %d", tcp.WindowSize(), tcp.DataOffset())
			}
		})
	}
	rst := buildTCP(lanHost, server, tcpSeg{sport: 1, dport: 2, flags: TCPFlagRST | TCPFlagACK}, ipOpts{})
	p := decode(t, rst, KindTCP)
	if n := BuildTCPReset(make([]byte, 64), &p, rst); n != 0 {
		t.Errorf("reset answered a reset")
	}
	ok := buildTCP(lanHost, server, tcpSeg{sport: 1, dport: 2, flags: TCPFlagACK}, ipOpts{})
	p = decode(t, ok, KindTCP)
	if n := BuildTCPReset(make([]byte, 39), &p, ok); n != 0 {
		t.Errorf("wrote into a short buffer")
	}
	u := buildUDP(lanHost, server, 1, 2, nil, true, ipOpts{})
	p = decode(t, u, KindUDP)
	if n := BuildTCPReset(make([]byte, 64), &p, u); n != 0 {
		t.Errorf("reset for UDP")
	}
}

func TestBuildTCPResetSeq(t *testing.T) {
	b := make([]byte, TCPResetLen)
	if n := BuildTCPResetSeq(b, server, lanHost, 443, 40000, 77, 99, false); n != TCPResetLen {
		t.Fatalf("length = %d", n)
	}
	want := buildTCP(server, lanHost, tcpSeg{sport: 443, dport: 40000, seq: 77, flags: TCPFlagRST}, ipOpts{flags: header.IPv4FlagDontFragment})
	header.TCP(want[20:]).SetWindowSize(0)
	setL4Checksum(want[20:], 16, 6, server, lanHost)
	if !bytes.Equal(b, want) {
		t.Errorf("got % x\nwant % x", b, want)
	}
}
