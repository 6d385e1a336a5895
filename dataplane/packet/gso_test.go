package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestVirtioNetHdr(t *testing.T) {
	h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, HdrLen: 52, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	b := make([]byte, VirtioNetHdrLen)
	if !h.Encode(b) {
		t.Fatal("Encode failed")
	}
	if binary.NativeEndian.Uint16(b[4:]) != 1448 || b[0] != 1 || b[1] != 1 {
		t.Errorf("encoded % x", b)
	}
	var g VirtioNetHdr
	if !g.Decode(b) || g != h {
		t.Errorf("round trip: %+v, want %+v", g, h)
	}
	if g.Decode(b[:9]) || h.Encode(b[:9]) {
		t.Errorf("short buffer accepted")
	}
}

// superTCP builds a TCP super-packet as the kernel hands it over with
// CHECKSUM_PARTIAL: the TCP checksum field holds the folded pseudo-header
// sum over the whole super-packet's TCP length.
func superTCP(src, dst [4]byte, payload []byte, flags uint8) []byte {
	opts := []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} // NOP NOP timestamps
	b := buildTCP(src, dst, tcpSeg{sport: 443, dport: 20001, seq: 0xfffff000, ack: 77, flags: flags, opts: opts, payload: payload},
		ipOpts{id: 0xfffe, flags: header.IPv4FlagDontFragment})
	l4 := b[20:]
	binary.BigEndian.PutUint16(l4[16:], PseudoHeaderSum(6, src, dst, uint16(len(l4))))
	return b
}

func superUDP(src, dst [4]byte, payload []byte) []byte {
	b := buildUDP(src, dst, 443, 20001, payload, false, ipOpts{id: 100})
	l4 := b[20:]
	binary.BigEndian.PutUint16(l4[6:], PseudoHeaderSum(17, src, dst, uint16(len(l4))))
	return b
}

func TestGSOSplitTCP(t *testing.T) {
	payload := payloadN(64000)
	tests := []struct {
		name  string
		flags uint8
		ecn   bool
		size  uint16
		n     int
	}{
		{"64k at 1448", TCPFlagACK | TCPFlagPSH | TCPFlagFIN, false, 1448, 45},
		{"cwr with ecn", TCPFlagACK | TCPFlagCWR | TCPFlagPSH, true, 1448, 45},
		{"one segment", TCPFlagACK | TCPFlagPSH, false, 64000, 1},
		{"exact multiple", TCPFlagACK, false, 1000, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := superTCP(server, uplink1, payload, tt.flags)
			orig := clone(in)
			h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, HdrLen: 52,
				GSOSize: tt.size, CsumStart: 20, CsumOffset: 16}
			if tt.ecn {
				h.GSOType |= VirtioNetHdrGSOECN
			}
			const off = 16
			out, sizes := makeBufs(64, 1600, off)
			if tt.size == 64000 {
				out, sizes = makeBufs(1, 65535, off)
			}
			n, ok := GSOSplit(in, h, out, sizes, off)
			if !ok || n != tt.n {
				t.Fatalf("GSOSplit = %d, %v; want %d", n, ok, tt.n)
			}
			if !bytes.Equal(in, orig) {
				t.Errorf("input modified")
			}
			var got []byte
			for i := range n {
				s := out[i][off : off+sizes[i]]
				checkAll(t, "segment", s)
				p := decode(t, s, KindTCP)
				tcp := header.TCP(s[20:])
				if p.ID != 0xfffe+uint16(i) {
					t.Errorf("segment %d: IP ID %#x", i, p.ID)
				}
				if want := 0xfffff000 + uint32(len(got)); tcp.SequenceNumber() != want {
					t.Errorf("segment %d: seq %#x, want %#x", i, tcp.SequenceNumber(), want)
				}
				wantFlags := tt.flags
				if i < n-1 {
					wantFlags &^= TCPFlagFIN | TCPFlagPSH
				}
				if i > 0 {
					wantFlags &^= TCPFlagCWR
				}
				if p.TCPFlags != wantFlags {
					t.Errorf("segment %d: flags %#x, want %#x", i, p.TCPFlags, wantFlags)
				}
				if !bytes.Equal(s[20:24], orig[20:24]) || !bytes.Equal(s[28:33], orig[28:33]) || !bytes.Equal(s[34:36], orig[34:36]) ||
					!bytes.Equal(s[40:52], orig[40:52]) {
					t.Errorf("segment %d: TCP header not replicated", i)
				}
				if i < n-1 && len(s)-52 != int(tt.size) {
					t.Errorf("segment %d: payload %d bytes", i, len(s)-52)
				}
				got = append(got, s[52:]...)
			}
			if !bytes.Equal(got, payload) {
				t.Errorf("payloads differ")
			}
		})
	}
}

func TestGSOSplitUDP(t *testing.T) {
	payload := payloadN(10*1200 + 500)
	in := superUDP(server, uplink1, payload)
	h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOUDPL4, HdrLen: 28, GSOSize: 1200, CsumStart: 20, CsumOffset: 6}
	out, sizes := makeBufs(16, 1500, 0)
	n, ok := GSOSplit(in, h, out, sizes, 0)
	if !ok || n != 11 {
		t.Fatalf("GSOSplit = %d, %v", n, ok)
	}
	for i := range n {
		s := out[i][:sizes[i]]
		checkAll(t, "datagram", s)
		p := decode(t, s, KindUDP)
		want := payload[i*1200 : min((i+1)*1200, len(payload))]
		if !bytes.Equal(s[28:], want) || int(header.UDP(s[20:]).Length()) != 8+len(want) || p.ID != 100+uint16(i) {
			t.Errorf("datagram %d: wrong payload, length or ID", i)
		}
		if header.UDP(s[20:]).Checksum() == 0 {
			t.Errorf("datagram %d: no checksum", i)
		}
	}
}

func TestGSOSplitNone(t *testing.T) {
	out, sizes := makeBufs(1, 1500, 4)
	t.Run("needs csum udp", func(t *testing.T) {
		in := superUDP(lanHost, server, []byte("partial checksum"))
		h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: 6}
		n, ok := GSOSplit(in, h, out, sizes, 4)
		if !ok || n != 1 {
			t.Fatalf("GSOSplit = %d, %v", n, ok)
		}
		checkAll(t, "completed", out[0][4:4+sizes[0]])
	})
	t.Run("needs csum tcp", func(t *testing.T) {
		in := superTCP(lanHost, server, []byte("partial"), TCPFlagACK)
		want := clone(in)
		setL4Checksum(want[20:], 16, 6, lanHost, server)
		h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: 16}
		n, ok := GSOSplit(in, h, out, sizes, 4)
		if !ok || n != 1 || !bytes.Equal(out[0][4:4+sizes[0]], want) {
			t.Fatalf("GSOSplit = %d, %v; got % x", n, ok, out[0][4:4+sizes[0]])
		}
	})
	t.Run("needs csum generic", func(t *testing.T) {
		// An ICMP message with a partial (zero-seeded) checksum.
		in := buildICMP(lanHost, server, 8, 0, 1, []byte("ping"), ipOpts{})
		want := clone(in)
		in[22], in[23] = 0, 0
		h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: 2}
		n, ok := GSOSplit(in, h, out, sizes, 4)
		if !ok || n != 1 || !bytes.Equal(out[0][4:4+sizes[0]], want) {
			t.Fatalf("GSOSplit = %d, %v", n, ok)
		}
		h.CsumOffset = 200
		if _, ok := GSOSplit(in, h, out, sizes, 4); ok {
			t.Errorf("checksum offset beyond the packet accepted")
		}
	})
	t.Run("plain copy", func(t *testing.T) {
		in := append(buildUDP(lanHost, server, 1, 2, []byte("as is"), true, ipOpts{}), 0, 0) // padding
		n, ok := GSOSplit(in, VirtioNetHdr{}, out, sizes, 4)
		if !ok || n != 1 || !bytes.Equal(out[0][4:4+sizes[0]], in[:len(in)-2]) {
			t.Fatalf("GSOSplit = %d, %v", n, ok)
		}
	})
}

// TestGSOSplitNATOrder checks that translating a super-packet before
// splitting gives the same segments as splitting first and translating
// every segment: the split recomputes every checksum.
func TestGSOSplitNATOrder(t *testing.T) {
	for _, typ := range []uint8{VirtioNetHdrGSOTCPv4, VirtioNetHdrGSOUDPL4} {
		var in []byte
		kind := KindTCP
		if typ == VirtioNetHdrGSOTCPv4 {
			in = superTCP(server, uplink1, payloadN(20000), TCPFlagACK|TCPFlagPSH)
		} else {
			in = superUDP(server, uplink1, payloadN(20000))
			kind = KindUDP
		}
		h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: typ, GSOSize: 1400}
		first := clone(in)
		p := decode(t, first, kind)
		RewriteDst(first, &p, lanHost, 40000)
		a, as := makeBufs(16, 1500, 0)
		na, oka := GSOSplit(first, h, a, as, 0)

		b, bs := makeBufs(16, 1500, 0)
		nb, okb := GSOSplit(in, h, b, bs, 0)
		if !oka || !okb || na != nb || na != 15 {
			t.Fatalf("split: %d %v, %d %v", na, oka, nb, okb)
		}
		for i := range nb {
			s := b[i][:bs[i]]
			p := decode(t, s, kind)
			RewriteDst(s, &p, lanHost, 40000)
			if !bytes.Equal(s, a[i][:as[i]]) {
				t.Errorf("type %d segment %d: NAT-then-split differs from split-then-NAT", typ, i)
			}
			checkAll(t, "segment", s)
		}
	}
}

func TestGSOSplitRefusals(t *testing.T) {
	tcp := superTCP(server, uplink1, payloadN(5000), TCPFlagACK)
	udp := superUDP(server, uplink1, payloadN(5000))
	frag := buildIPv4(6, server, uplink1, ipOpts{flags: header.IPv4FlagMoreFragments}, tcp[20:])
	h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1000}
	out, sizes := makeBufs(8, 1100, 0)
	if n, ok := GSOSplit(tcp, h, out, sizes, 0); !ok || n != 5 {
		t.Fatalf("baseline: %d %v", n, ok)
	}
	badOff := clone(tcp)
	badOff[32] = 0x40
	cases := []struct {
		name string
		in   []byte
		h    VirtioNetHdr
		out  [][]byte
	}{
		{"too few buffers", tcp, h, out[:4]},
		{"buffers too small", tcp, VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1100}, out},
		{"gso size zero", tcp, VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv4}, out},
		{"tcp header says udp", udp, h, out},
		{"udp header says tcp", tcp, VirtioNetHdr{GSOType: VirtioNetHdrGSOUDPL4, GSOSize: 1000}, out},
		{"tcpv6", tcp, VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv6, GSOSize: 1000}, out},
		{"ufo", udp, VirtioNetHdr{GSOType: VirtioNetHdrGSOUDP, GSOSize: 1000}, out},
		{"fragment", frag, h, out},
		{"bad tcp offset", badOff, h, out},
		{"truncated", tcp[:100], h, out},
		{"not ipv4", append([]byte{0x60}, tcp[1:]...), h, out},
		{"short", tcp[:10], h, out},
	}
	for _, c := range cases {
		if _, ok := GSOSplit(c.in, c.h, c.out, sizes, 0); ok {
			t.Errorf("%s: ok", c.name)
		}
	}
	// BIG TCP: a total length of zero means len(in).
	big := clone(tcp)
	big[2], big[3] = 0, 0
	if n, ok := GSOSplit(big, h, out, sizes, 0); !ok || n != 5 {
		t.Errorf("BIG TCP: %d %v", n, ok)
	}
}
