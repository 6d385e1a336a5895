package packet

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// checkParsedCurrent verifies that p, updated by a rewrite, equals a fresh
// decode of b.
func checkParsedCurrent(t testing.TB, b []byte, p *Parsed) {
	t.Helper()
	var q Parsed
	q.Decode(b)
	if q != *p {
		t.Errorf("Parsed not kept current:\n updated %+v\n decoded %+v", *p, q)
	}
}

func TestNATGolden(t *testing.T) {
	tests := []struct {
		name    string
		in, out string
		kind    Kind
		dst     bool
		icmpIn  bool
		addr    [4]byte
		port    uint16
	}{
		{
			name: "tcp syn snat", kind: KindTCP, addr: uplink1, port: 20001,
			in:  "45000030123440004006e2320a4d000acb00710a9c40000701020304000000007002faf0a17f0000020405b401010402",
			out: "45000030123440004006874764400102cb00710a4e21000701020304000000007002faf094b30000020405b401010402",
		},
		{
			name: "udp snat", kind: KindUDP, addr: uplink1, port: 20002,
			in:  "4500002100070000401134640a4d000acb00710a14e92328000d3d8f68656c6c6f",
			out: "45000021000700004011d97864400102cb00710a4e222328000da96a68656c6c6f",
		},
		{
			name: "time exceeded about udp, translated in", kind: KindICMPError, icmpIn: true, addr: lanHost, port: 5353,
			in: "45000042000500004001b03364400101644001020b0096700000000045000026004d00000111182e64400102cb00710a" +
				"4e22829a00126e9d7472616365726f757465",
			out: "450000420005000040010b1f644001010a4d000a0b003b850000000045000026004d0000011173190a4d000acb00710a" +
				"14e9829a001202c27472616365726f757465",
		},
		{
			name: "echo request snat", kind: KindICMPEcho, addr: uplink1, port: 20003,
			in:  "4500002000090000400134730a4d000acb00710a08000e720abc000170696e67",
			out: "45000020000900004001d98764400102cb00710a0800cb0a4e23000170696e67",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := unhex(t, tt.in)
			checkAll(t, "input", b)
			p := decode(t, b, tt.kind)
			switch {
			case tt.icmpIn:
				RewriteICMPErrorIn(b, &p, tt.addr, tt.port)
				checkAll(t, "embedded", embedded(b))
			case tt.dst:
				RewriteDst(b, &p, tt.addr, tt.port)
			default:
				RewriteSrc(b, &p, tt.addr, tt.port)
			}
			if got := hex.EncodeToString(b); got != tt.out {
				t.Errorf("rewrite:\n got %s\nwant %s", got, tt.out)
			}
			checkAll(t, "output", b)
			checkParsedCurrent(t, b, &p)
		})
	}
}

// TestRewriteMatchesScratch checks every translation against the same
// packet built from scratch with gVisor's encoders.
func TestRewriteMatchesScratch(t *testing.T) {
	payload := []byte("an odd-length payload!")
	tests := []struct {
		name string
		kind Kind
		dst  bool
		addr [4]byte
		port uint16
		mk   func(src, dst [4]byte, sport, dport uint16) []byte
		// out builds the expected packet: src/dst/ports after translation
	}{
		{"tcp", KindTCP, false, uplink1, 20004, func(s, d [4]byte, sp, dp uint16) []byte {
			return buildTCP(s, d, tcpSeg{sport: sp, dport: dp, seq: 7, ack: 9, flags: TCPFlagACK | TCPFlagPSH, payload: payload}, ipOpts{id: 3})
		}},
		{"tcp dnat", KindTCP, true, lanHost, 40000, func(s, d [4]byte, sp, dp uint16) []byte {
			return buildTCP(s, d, tcpSeg{sport: sp, dport: dp, seq: 7, ack: 9, flags: TCPFlagACK, payload: payload}, ipOpts{id: 3})
		}},
		{"udp", KindUDP, false, uplink2, 20006, func(s, d [4]byte, sp, dp uint16) []byte {
			return buildUDP(s, d, sp, dp, payload, true, ipOpts{id: 4})
		}},
		{"udp without checksum", KindUDP, false, uplink2, 20008, func(s, d [4]byte, sp, dp uint16) []byte {
			return buildUDP(s, d, sp, dp, payload, false, ipOpts{id: 4})
		}},
		{"udp dnat", KindUDP, true, lanHost, 5353, func(s, d [4]byte, sp, dp uint16) []byte {
			return buildUDP(s, d, sp, dp, payload, true, ipOpts{id: 4})
		}},
		{"echo request", KindICMPEcho, false, uplink1, 20010, func(s, d [4]byte, sp, dp uint16) []byte {
			return buildICMP(s, d, ICMPEchoRequest, 0, uint32(sp)<<16|1, payload, ipOpts{id: 5})
		}},
		{"echo reply dnat", KindICMPEcho, true, lanHost, 0x0abc, func(s, d [4]byte, sp, dp uint16) []byte {
			return buildICMP(s, d, ICMPEchoReply, 0, uint32(dp)<<16|1, payload, ipOpts{id: 5})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b, want []byte
			if tt.dst { // a reply from the server to the NAT address
				b = tt.mk(server, uplink1, 7, 20000)
				want = tt.mk(server, tt.addr, 7, tt.port)
				if tt.kind == KindICMPEcho {
					b = tt.mk(server, uplink1, 20000, 20000)
					want = tt.mk(server, tt.addr, tt.port, tt.port)
				}
			} else {
				b = tt.mk(lanHost, server, 40000, 7)
				want = tt.mk(tt.addr, server, tt.port, 7)
				if tt.kind == KindICMPEcho {
					b = tt.mk(lanHost, server, 40000, 40000)
					want = tt.mk(tt.addr, server, tt.port, tt.port)
				}
			}
			p := decode(t, b, tt.kind)
			if tt.dst {
				RewriteDst(b, &p, tt.addr, tt.port)
			} else {
				RewriteSrc(b, &p, tt.addr, tt.port)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("translated:\n got % x\nwant % x", b, want)
			}
			checkAll(t, "translated", b)
			checkParsedCurrent(t, b, &p)
		})
	}
}

// TestRewriteUDPZeroResult finds a port whose translated checksum computes
// to zero and checks it is sent as all ones (RFC 768).
func TestRewriteUDPZeroResult(t *testing.T) {
	for port := 1; port < 65536; port++ {
		want := buildUDP(uplink1, server, uint16(port), 9000, []byte("zero?"), true, ipOpts{})
		if binary.BigEndian.Uint16(want[26:]) != 0xffff {
			continue
		}
		b := buildUDP(lanHost, server, 40000, 9000, []byte("zero?"), true, ipOpts{})
		p := decode(t, b, KindUDP)
		RewriteSrc(b, &p, uplink1, uint16(port))
		if got := binary.BigEndian.Uint16(b[26:]); got != 0xffff {
			t.Fatalf("port %d: UDP checksum %#04x, want 0xffff", port, got)
		}
		checkAll(t, "translated", b)
		return
	}
	t.Skip("no port yields a zero checksum for this payload")
}

func TestRewriteInvalidIsNoop(t *testing.T) {
	b := buildUDP(lanHost, server, 1, 2, nil, true, ipOpts{})
	b[10] ^= 0xff
	orig := clone(b)
	var p Parsed
	p.Decode(b)
	RewriteSrc(b, &p, uplink1, 9)
	RewriteDst(b, &p, uplink1, 9)
	RewriteICMPErrorIn(b, &p, uplink1, 9)
	RewriteICMPErrorOut(b, &p, uplink1, 9)
	if ClampMSS(b, &p, 100) || !bytes.Equal(b, orig) {
		t.Errorf("invalid packet modified")
	}
}

// TestRewriteFragments NATs every fragment of a UDP datagram separately
// (only the first carries the port and the checksum) and checks that the
// reassembled datagram equals the translated datagram built from scratch.
func TestRewriteFragments(t *testing.T) {
	payload := make([]byte, 3000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, proto := range []string{"udp", "tcp", "icmp"} {
		t.Run(proto, func(t *testing.T) {
			var orig, want []byte
			switch proto {
			case "udp":
				orig = buildUDP(lanHost, server, 40000, 9000, payload, true, ipOpts{id: 99})
				want = buildUDP(uplink1, server, 20000, 9000, payload, true, ipOpts{id: 99})
			case "tcp":
				orig = buildTCP(lanHost, server, tcpSeg{sport: 40000, dport: 7, flags: TCPFlagACK, payload: payload}, ipOpts{id: 99})
				want = buildTCP(uplink1, server, tcpSeg{sport: 20000, dport: 7, flags: TCPFlagACK, payload: payload}, ipOpts{id: 99})
			case "icmp":
				orig = buildICMP(lanHost, server, ICMPEchoRequest, 0, 40000<<16|1, payload, ipOpts{id: 99})
				want = buildICMP(uplink1, server, ICMPEchoRequest, 0, 20000<<16|1, payload, ipOpts{id: 99})
			}
			out, sizes := makeBufs(8, 1500, 0)
			n, ok := Fragment(orig, 1500, out, sizes, 0)
			if !ok || n != 3 {
				t.Fatalf("Fragment = %d, %v", n, ok)
			}
			r := NewReassembler(4, 65535, 0)
			var whole []byte
			for i := range n {
				f := out[i][:sizes[i]]
				p := decode(t, f, KindFragment)
				if p.HasPorts() != (i == 0) {
					t.Errorf("fragment %d: HasPorts = %v", i, p.HasPorts())
				}
				RewriteSrc(f, &p, uplink1, 20000)
				checkIP(t, "fragment", f)
				checkParsedCurrent(t, f, &p)
				if i > 0 && !bytes.Equal(f[20:], orig[20+p.FragOff:20+int(p.FragOff)+len(f)-20]) {
					t.Errorf("non-first fragment %d: payload changed", i)
				}
				if w, done := r.Add(f, &p, 0); done {
					whole = w
				}
			}
			if !bytes.Equal(whole, want) {
				t.Fatalf("reassembled translated datagram differs from scratch build")
			}
			checkAll(t, "reassembled", whole)
		})
	}
}

// embedded returns the datagram quoted in the ICMP error b.
func embedded(b []byte) []byte { return b[28:] }

func TestRewriteICMPErrorIn(t *testing.T) {
	udpOut := func(src [4]byte, sport uint16) []byte { // the datagram as it left
		return buildUDP(src, server, sport, 33434, []byte("traceroute probe"), true, ipOpts{id: 77, ttl: 1})
	}
	tcpOut := func(src [4]byte, sport uint16) []byte {
		return buildTCP(src, server, tcpSeg{sport: sport, dport: 443, seq: 1000, ack: 2000,
			flags: TCPFlagACK | TCPFlagPSH, payload: bytes.Repeat([]byte("data"), 350)}, ipOpts{id: 78, flags: header.IPv4FlagDontFragment})
	}
	echoOut := func(src [4]byte, id uint16) []byte {
		return buildICMP(src, server, ICMPEchoRequest, 0, uint32(id)<<16|3, []byte("ping payload"), ipOpts{id: 79, ttl: 1})
	}
	tests := []struct {
		name      string
		typ, code uint8
		rest      uint32
		mk        func([4]byte, uint16) []byte
		quote     int // bytes of the datagram quoted; 0: all
		fullInner bool
	}{
		{"time exceeded udp", ICMPTimeExceeded, 0, 0, udpOut, 0, true},
		{"time exceeded udp 8 bytes", ICMPTimeExceeded, 0, 0, udpOut, 28, false},
		{"time exceeded tcp 8 bytes", ICMPTimeExceeded, 0, 0, tcpOut, 28, false},
		{"time exceeded tcp 548 bytes", ICMPTimeExceeded, 0, 0, tcpOut, 548, false},
		{"frag needed tcp", ICMPDestUnreach, ICMPCodeFragNeeded, 1400, tcpOut, 548, false},
		{"port unreachable udp", ICMPDestUnreach, 3, 0, udpOut, 0, true},
		{"time exceeded echo", ICMPTimeExceeded, 0, 0, echoOut, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			natted := tt.mk(uplink1, 20002)
			lan := tt.mk(lanHost, 40000)
			q := len(natted)
			if tt.quote != 0 {
				q = tt.quote
			}
			b := buildICMP(isp1, uplink1, tt.typ, tt.code, tt.rest, natted[:q], ipOpts{id: 5})
			want := buildICMP(isp1, lanHost, tt.typ, tt.code, tt.rest, lan[:q], ipOpts{id: 5})
			p := decode(t, b, KindICMPError)
			if !p.Inner.Valid || p.Inner.SrcPort != 20002 {
				t.Fatalf("inner = %+v", p.Inner)
			}
			RewriteICMPErrorIn(b, &p, lanHost, 40000)
			if !bytes.Equal(b, want) {
				t.Errorf("translated:\n got % x\nwant % x", b, want)
			}
			checkAll(t, "outer", b)
			checkIPHeader(t, "embedded", embedded(b))
			if tt.fullInner {
				checkL4(t, "embedded", embedded(b))
			}
			if tt.typ == ICMPDestUnreach && tt.code == ICMPCodeFragNeeded {
				if mtu := header.ICMPv4(b[20:]).MTU(); mtu != 1400 {
					t.Errorf("next-hop MTU = %d", mtu)
				}
			}
			checkParsedCurrent(t, b, &p)
			if p.Dst != lanHost || p.Inner.Src != lanHost || p.Inner.SrcPort != 40000 {
				t.Errorf("parsed = %+v", p)
			}
		})
	}
}

func TestRewriteICMPErrorOut(t *testing.T) {
	// A reply from the server, DNATed to the LAN host, is refused by it.
	reply := func(dst [4]byte, dport uint16) []byte {
		return buildUDP(server, dst, 9000, dport, []byte("answer"), true, ipOpts{id: 12})
	}
	tcpReply := func(dst [4]byte, dport uint16) []byte {
		return buildTCP(server, dst, tcpSeg{sport: 443, dport: dport, seq: 5, ack: 6, flags: TCPFlagACK, payload: []byte("x")}, ipOpts{id: 13})
	}
	echoReply := func(dst [4]byte, id uint16) []byte {
		return buildICMP(server, dst, ICMPEchoReply, 0, uint32(id)<<16|1, []byte("pong"), ipOpts{id: 14})
	}
	for _, tc := range []struct {
		name string
		mk   func([4]byte, uint16) []byte
	}{{"udp", reply}, {"tcp", tcpReply}, {"echo", echoReply}} {
		t.Run(tc.name, func(t *testing.T) {
			b := buildICMP(lanHost, server, ICMPDestUnreach, 3, 0, tc.mk(lanHost, 5353), ipOpts{id: 1})
			want := buildICMP(uplink1, server, ICMPDestUnreach, 3, 0, tc.mk(uplink1, 20002), ipOpts{id: 1})
			p := decode(t, b, KindICMPError)
			RewriteICMPErrorOut(b, &p, uplink1, 20002)
			if !bytes.Equal(b, want) {
				t.Errorf("translated:\n got % x\nwant % x", b, want)
			}
			checkAll(t, "outer", b)
			checkAll(t, "embedded", embedded(b))
			checkParsedCurrent(t, b, &p)
		})
	}
}

func TestRewriteICMPErrorOuterOnly(t *testing.T) {
	// RewriteSrc on an ICMP error changes the outer address only.
	inner := buildUDP(server, lanHost, 9000, 5353, nil, true, ipOpts{})
	b := buildICMP(lanHost, server, ICMPDestUnreach, 3, 0, inner, ipOpts{})
	want := buildICMP(uplink1, server, ICMPDestUnreach, 3, 0, inner, ipOpts{})
	p := decode(t, b, KindICMPError)
	RewriteSrc(b, &p, uplink1, 1)
	if !bytes.Equal(b, want) {
		t.Errorf("got % x\nwant % x", b, want)
	}
	checkParsedCurrent(t, b, &p)
}

func TestClampMSS(t *testing.T) {
	mssOpt := func(pre []byte, mss uint16, post ...byte) []byte {
		o := append(clone(pre), 2, 4, byte(mss>>8), byte(mss))
		return append(o, post...)
	}
	tests := []struct {
		name    string
		flags   uint8
		opts    []byte
		clamp   uint16
		changed bool
		wantOpt []byte
	}{
		{"syn aligned", TCPFlagSYN, mssOpt(nil, 1460, 1, 1, 4, 2), 1400, true, mssOpt(nil, 1400, 1, 1, 4, 2)},
		{"syn odd offset", TCPFlagSYN, mssOpt([]byte{1}, 1460, 1, 1, 1), 1360, true, mssOpt([]byte{1}, 1360, 1, 1, 1)},
		{"syn after window scale", TCPFlagSYN, mssOpt([]byte{3, 3, 7}, 65495, 0), 1452, true, mssOpt([]byte{3, 3, 7}, 1452, 0)},
		{"syn-ack", TCPFlagSYN | TCPFlagACK, mssOpt(nil, 9000), 1460, true, mssOpt(nil, 1460)},
		{"already small", TCPFlagSYN, mssOpt(nil, 1200), 1400, false, mssOpt(nil, 1200)},
		{"equal", TCPFlagSYN, mssOpt(nil, 1400), 1400, false, mssOpt(nil, 1400)},
		{"not syn", TCPFlagACK, mssOpt(nil, 1460), 1400, false, mssOpt(nil, 1460)},
		{"no option", TCPFlagSYN, []byte{1, 1, 4, 2}, 1400, false, []byte{1, 1, 4, 2}},
		{"after end of list", TCPFlagSYN, mssOpt([]byte{0, 0, 0, 0}, 1460), 1400, false, mssOpt([]byte{0, 0, 0, 0}, 1460)},
		{"zero length option", TCPFlagSYN, mssOpt([]byte{8, 0, 1, 1}, 1460), 1400, false, mssOpt([]byte{8, 0, 1, 1}, 1460)},
		{"truncated option", TCPFlagSYN, []byte{1, 1, 1, 2}, 1400, false, []byte{1, 1, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seg := func(opts []byte) []byte {
				o := clone(opts)
				for len(o)%4 != 0 {
					o = append(o, 0)
				}
				return buildTCP(lanHost, server, tcpSeg{sport: 40000, dport: 443, seq: 1, flags: tt.flags, opts: o}, ipOpts{})
			}
			b, want := seg(tt.opts), seg(tt.wantOpt)
			p := decode(t, b, KindTCP)
			if got := ClampMSS(b, &p, tt.clamp); got != tt.changed {
				t.Errorf("ClampMSS = %v, want %v", got, tt.changed)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("got % x\nwant % x", b, want)
			}
			checkAll(t, "clamped", b)
		})
	}
}

func TestDecTTL(t *testing.T) {
	for _, ttl := range []uint8{64, 1, 255, 128} {
		b := buildUDP(lanHost, server, 1, 2, []byte("t"), true, ipOpts{ttl: ttl, id: 0xfeff})
		want := buildUDP(lanHost, server, 1, 2, []byte("t"), true, ipOpts{ttl: ttl - 1, id: 0xfeff})
		if ttl == 1 { // buildIPv4 maps ttl 0 to 64; patch by hand
			want[8] = 0
			header.IPv4(want).SetChecksum(0)
			header.IPv4(want).SetChecksum(^header.IPv4(want).CalculateChecksum())
		}
		DecTTL(b)
		if !bytes.Equal(b, want) {
			t.Errorf("ttl %d: got % x\nwant % x", ttl, b[:20], want[:20])
		}
		checkIP(t, "decremented", b)
	}
	b := buildUDP(lanHost, server, 1, 2, nil, true, ipOpts{ttl: 1})
	DecTTL(b)
	orig := clone(b)
	DecTTL(b) // TTL 0 stays 0
	if !bytes.Equal(b, orig) {
		t.Errorf("TTL 0 decremented")
	}
	DecTTL(b[:10]) // too short: no panic
}
