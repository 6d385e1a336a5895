package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// seedPackets returns well-formed packets of every kind for the corpora.
func seedPackets() [][]byte {
	syn := buildTCP(lanHost, server, tcpSeg{sport: 40000, dport: 443, flags: TCPFlagSYN, opts: []byte{1, 2, 4, 5, 0xb4, 1, 1, 1}}, ipOpts{})
	udp := buildUDP(lanHost, server, 5353, 9000, []byte("hello"), true, ipOpts{})
	udp0 := buildUDP(lanHost, server, 5353, 9000, []byte("hello"), false, ipOpts{})
	echo := buildICMP(lanHost, server, ICMPEchoRequest, 0, 0x12340001, []byte("ping"), ipOpts{})
	te := buildICMP(isp1, uplink1, ICMPTimeExceeded, 0, 0, buildUDP(uplink1, server, 20002, 33434, []byte("x"), true, ipOpts{ttl: 1}), ipOpts{})
	teTCP := buildICMP(isp1, uplink1, ICMPDestUnreach, 4, 1400, buildTCP(uplink1, server, tcpSeg{sport: 20000, dport: 443, flags: TCPFlagACK, payload: payloadN(40)}, ipOpts{})[:48], ipOpts{})
	teEcho := buildICMP(isp1, uplink1, ICMPTimeExceeded, 0, 0, buildICMP(uplink1, server, 8, 0, 0x4e200001, nil, ipOpts{}), ipOpts{})
	rr := header.IPv4SerializableRouterAlertOption{}
	opts := buildUDP(lanHost, server, 1, 2, payloadN(100), true, ipOpts{options: header.IPv4OptionsSerializer{&rr}})
	frag := buildIPv4(17, lanHost, server, ipOpts{flags: header.IPv4FlagMoreFragments, id: 3}, append(clone(udp[20:]), 1, 2, 3))
	later := buildIPv4(17, lanHost, server, ipOpts{fragOff: 16, id: 3}, []byte("later"))
	return [][]byte{syn, udp, udp0, echo, te, teTCP, teEcho, opts, frag, later}
}

// innerL4Valid reports whether the ICMP error p quotes its whole embedded
// datagram and that datagram's transport checksum verifies.
func innerL4Valid(b []byte, p *Parsed) bool {
	e := b[p.Inner.Off:p.TotalLen]
	ihl := int(e[0]&0xf) * 4
	tl := int(binary.BigEndian.Uint16(e[2:]))
	if tl != len(e) || ihl > tl || binary.BigEndian.Uint16(e[6:])&(flagMF|fragOffMask) != 0 {
		return false
	}
	l4 := e[ihl:]
	switch p.Inner.Proto {
	case protoTCP, protoUDP:
		if len(l4) < 8 || p.Inner.Proto == protoTCP && len(l4) < 20 {
			return false
		}
		if p.Inner.Proto == protoUDP && binary.BigEndian.Uint16(l4[6:]) == 0 {
			return true
		}
		return checksum.Checksum(l4, PseudoHeaderSum(p.Inner.Proto, p.Inner.Src, p.Inner.Dst, uint16(len(l4)))) == 0xffff
	case protoICMP:
		return checksum.Checksum(l4, 0) == 0xffff
	}
	return false
}

// invariants captures what a translation must preserve.
type invariants struct {
	l4, inner, innerL4 bool
}

func capture(b []byte, p *Parsed) invariants {
	var v invariants
	v.l4 = L4ChecksumValid(b, p)
	if p.Kind == KindICMPError && p.Inner.Valid {
		v.inner = IPHeaderChecksumValid(b[p.Inner.Off:])
		v.innerL4 = innerL4Valid(b, p)
	}
	return v
}

func (v invariants) check(t *testing.T, what string, b []byte, p *Parsed) {
	t.Helper()
	if !IPHeaderChecksumValid(b) {
		t.Fatalf("%s: IP header checksum broken", what)
	}
	var q Parsed
	q.Decode(b)
	if q != *p {
		t.Fatalf("%s: Parsed not kept current:\n updated %+v\n decoded %+v", what, *p, q)
	}
	if v.l4 && !L4ChecksumValid(b, p) {
		t.Fatalf("%s: L4 checksum broken", what)
	}
	if v.inner && !IPHeaderChecksumValid(b[p.Inner.Off:]) {
		t.Fatalf("%s: embedded IP checksum broken", what)
	}
	if v.innerL4 && !innerL4Valid(b, p) {
		t.Fatalf("%s: embedded L4 checksum broken", what)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range seedPackets() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzPacket(t, data)
		// Random bytes rarely carry valid checksums; repair them so that the
		// translations run on packets whose checksums must stay valid.
		fuzzPacket(t, repair(clone(data)))
	})
}

// repair fixes the IP header checksum of b and, for a TCP/UDP/ICMP packet,
// the embedded IP header checksum of an ICMP error and the L4 checksum, all
// computed from scratch with gVisor.
func repair(b []byte) []byte {
	ip := header.IPv4(b)
	if len(b) < 20 || b[0]>>4 != 4 || !ip.IsValid(len(b)) {
		return b
	}
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	var p Parsed
	p.Decode(b)
	switch p.Kind {
	case KindTCP:
		setL4Checksum(b[p.L4Off:p.TotalLen], 16, protoTCP, p.Src, p.Dst)
	case KindUDP:
		if b[p.L4Off+6]&1 == 0 { // keep some zero checksums
			setL4Checksum(b[p.L4Off:p.TotalLen], 6, protoUDP, p.Src, p.Dst)
		}
	case KindICMPError:
		if p.Inner.Valid {
			in := header.IPv4(b[p.Inner.Off:])
			in.SetChecksum(0)
			in.SetChecksum(^checksum.Checksum(b[p.Inner.Off:p.Inner.L4Off], 0))
		}
		fallthrough
	case KindICMPEcho:
		icmp := b[p.L4Off:p.TotalLen]
		icmp[2], icmp[3] = 0, 0
		binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, 0))
	}
	return b
}

// guard is the number of bytes after each fuzzed packet that the rewrites
// must leave untouched.
const guard = 32

// fuzzPacket decodes data, translates it in every way and checks the
// invariants.
func fuzzPacket(t *testing.T, data []byte) {
	{
		var p Parsed
		p.Decode(data)
		if p.Kind == KindInvalid {
			if p.Drop == DropNone {
				t.Fatalf("invalid without a reason")
			}
			// Builders must refuse or produce valid packets on anything.
			fuzzBuilders(t, data, &p)
			return
		}
		if p.Drop != DropNone || p.TotalLen > len(data) || p.L4Off != p.IPHLen {
			t.Fatalf("inconsistent verdict %+v", p)
		}
		buf := make([]byte, len(data)+guard)
		copy(buf, data)
		for i := len(data); i < len(buf); i++ {
			buf[i] = 0xa5
		}
		b := buf[:len(data):len(data)]

		ops := []struct {
			name string
			f    func(b []byte, p *Parsed)
		}{
			{"RewriteSrc", func(b []byte, p *Parsed) { RewriteSrc(b, p, uplink1, 20001) }},
			{"RewriteDst", func(b []byte, p *Parsed) { RewriteDst(b, p, lanHost, 40000) }},
			{"ClampMSS", func(b []byte, p *Parsed) {
				old := clone(b)
				if changed := ClampMSS(b, p, 1000); changed == bytes.Equal(old, b) {
					t.Fatalf("ClampMSS reported %v", changed)
				}
			}},
			{"RewriteICMPErrorIn", func(b []byte, p *Parsed) { RewriteICMPErrorIn(b, p, lanHost, 40000) }},
			{"RewriteICMPErrorOut", func(b []byte, p *Parsed) { RewriteICMPErrorOut(b, p, uplink2, 20002) }},
			{"DecTTL", func(b []byte, p *Parsed) {
				if b[8] > 0 {
					DecTTL(b)
					p.TTL--
				}
			}},
		}
		for _, op := range ops {
			v := capture(b, &p)
			op.f(b, &p)
			v.check(t, op.name, b, &p)
		}
		for i := len(data); i < len(buf); i++ {
			if buf[i] != 0xa5 {
				t.Fatalf("wrote outside the packet at %d", i)
			}
		}
		fuzzBuilders(t, b, &p)
	}
}

// fuzzBuilders runs the packet builders and Fragment on b and checks that
// whatever they produce is valid.
func fuzzBuilders(t *testing.T, b []byte, p *Parsed) {
	var dst [ICMPErrorMaxLen]byte
	if n := BuildICMPError(dst[:], b, routerIP, ICMPTimeExceeded, 0, 0); n > 0 {
		var q Parsed
		q.Decode(dst[:n])
		if q.Kind != KindICMPError || !L4ChecksumValid(dst[:n], &q) || n > ICMPErrorMaxLen {
			t.Fatalf("BuildICMPError produced %v (%v), %d bytes", q.Kind, q.Drop, n)
		}
	}
	if n := BuildTCPReset(dst[:], p, b); n > 0 {
		var q Parsed
		q.Decode(dst[:n])
		if q.Kind != KindTCP || q.TCPFlags&TCPFlagRST == 0 || !L4ChecksumValid(dst[:n], &q) {
			t.Fatalf("BuildTCPReset produced %+v", q)
		}
	} else if p.Kind == KindTCP && p.TCPFlags&TCPFlagRST == 0 {
		t.Fatalf("BuildTCPReset refused a TCP segment")
	}
	var fb [8][600]byte
	out := make([][]byte, len(fb))
	for i := range fb {
		out[i] = fb[i][:]
	}
	var sizes [8]int
	if n, ok := Fragment(b, 576, out, sizes[:], 0); ok {
		if n == 1 && !IPHeaderChecksumValid(b) {
			return // copied unchanged, bad checksum and all
		}
		for i := range n {
			var q Parsed
			q.Decode(out[i][:sizes[i]])
			if q.Kind == KindInvalid && q.Drop <= DropBadChecksum || sizes[i] > 576 {
				t.Fatalf("Fragment produced %v (%v), %d bytes", q.Kind, q.Drop, sizes[i])
			}
		}
	}
}

func FuzzReassembler(f *testing.F) {
	f.Add([]byte("a datagram worth fragmenting, long enough to need several pieces at a small MTU"), uint16(68), uint64(0x1234))
	f.Add(payloadN(3000), uint16(1500), uint64(42))
	f.Add(payloadN(600), uint16(100), uint64(7))
	f.Fuzz(func(t *testing.T, data []byte, mtu uint16, perm uint64) {
		r := NewReassembler(4, 4096, time.Second)
		// Structured: fragments of a real datagram, shuffled and duplicated
		// by perm, must reassemble to the datagram exactly once.
		if len(data) <= 4000 {
			d := buildUDP(lanHost, server, 1, 2, data, true, ipOpts{id: uint16(perm)})
			m := 68 + int(mtu)%1500
			out, sizes := makeBufs(80, m, 0)
			if n, ok := Fragment(d, m, out, sizes, 0); ok && n <= 64 {
				order := make([]int, 0, 2*n)
				for i := range n {
					order = append(order, i)
				}
				x := perm
				for i := len(order) - 1; i > 0; i-- {
					j := int(x % uint64(i+1))
					x = x*6364136223846793005 + 1442695040888963407
					order[i], order[j] = order[j], order[i]
				}
				if perm&1 != 0 { // duplicate a fragment
					order = append(order[:1], order...)
				}
				completed := 0
				for _, i := range order {
					var p Parsed
					f := out[i][:sizes[i]]
					p.Decode(f)
					w, done := r.Add(f, &p, 0)
					if done {
						completed++
						if n == 1 || !bytes.Equal(w, d) {
							t.Fatalf("reassembled datagram differs")
						}
					} else if n == 1 && w != nil {
						t.Fatalf("whole returned without done")
					}
				}
				if n > 1 && completed != 1 {
					t.Fatalf("completed %d times (n=%d)", completed, n)
				}
			}
		}
		// Raw: data is a sequence of length-prefixed packets (forged
		// fragments); nothing may panic and what completes must be valid.
		raw := data
		now := int64(0)
		for len(raw) > 2 {
			l := int(binary.BigEndian.Uint16(raw)) % 1600
			raw = raw[2:]
			if l > len(raw) {
				l = len(raw)
			}
			pkt := clone(raw[:l])
			raw = raw[l:]
			var p Parsed
			p.Decode(pkt)
			if p.Kind != KindFragment {
				continue
			}
			now += int64(time.Millisecond) * int64(l%700)
			if w, done := r.Add(pkt, &p, now); done {
				if !IPHeaderChecksumValid(w) || binary.BigEndian.Uint16(w[6:])&(flagMF|fragOffMask) != 0 ||
					int(binary.BigEndian.Uint16(w[2:])) != len(w) || len(w) > 4096 {
					t.Fatalf("bad reassembled datagram % x", w[:20])
				}
			}
			r.Expire(now)
		}
		if s := r.Stats(); s.InFlight < 0 || s.InFlight > 4 {
			t.Fatalf("in flight %d", s.InFlight)
		}
	})
}

var gsoOut, gsoSizes = makeBufs(64, 2048, 8)

func FuzzGSOSplit(f *testing.F) {
	tcp := superTCP(server, uplink1, payloadN(5000), TCPFlagACK|TCPFlagPSH|TCPFlagFIN)
	udp := superUDP(server, uplink1, payloadN(5000))
	f.Add(tcp, uint8(VirtioNetHdrFNeedsCsum), uint8(VirtioNetHdrGSOTCPv4), uint16(1448))
	f.Add(tcp, uint8(VirtioNetHdrFNeedsCsum), uint8(VirtioNetHdrGSOTCPv4|VirtioNetHdrGSOECN), uint16(100))
	f.Add(udp, uint8(VirtioNetHdrFNeedsCsum), uint8(VirtioNetHdrGSOUDPL4), uint16(1200))
	f.Add(udp[:200], uint8(VirtioNetHdrFNeedsCsum), uint8(VirtioNetHdrGSONone), uint16(0))
	f.Add(tcp[:100], uint8(0), uint8(VirtioNetHdrGSONone), uint16(0))
	f.Fuzz(func(t *testing.T, in []byte, flags, typ uint8, size uint16) {
		h := VirtioNetHdr{Flags: flags, GSOType: typ, GSOSize: size, CsumStart: 20, CsumOffset: 16}
		orig := clone(in)
		n, ok := GSOSplit(in, h, gsoOut, gsoSizes, 8)
		if !bytes.Equal(in, orig) {
			t.Fatalf("input modified")
		}
		if !ok {
			return
		}
		if n < 1 || n > len(gsoOut) {
			t.Fatalf("n = %d", n)
		}
		gso := typ &^ VirtioNetHdrGSOECN
		var payload []byte
		for i := range n {
			s := gsoOut[i][8 : 8+gsoSizes[i]]
			var p Parsed
			p.Decode(s)
			if gso == VirtioNetHdrGSONone {
				if flags&VirtioNetHdrFNeedsCsum == 0 && !bytes.Equal(s, orig[:len(s)]) {
					t.Fatalf("plain packet changed")
				}
				if flags&VirtioNetHdrFNeedsCsum != 0 && (p.Kind == KindTCP || p.Kind == KindUDP) && !L4ChecksumValid(s, &p) {
					t.Fatalf("completed checksum invalid")
				}
				continue
			}
			want := KindTCP
			if gso == VirtioNetHdrGSOUDPL4 {
				want = KindUDP
			}
			if p.Kind != want || !L4ChecksumValid(s, &p) {
				t.Fatalf("segment %d: %v (%v), checksum valid %v", i, p.Kind, p.Drop, L4ChecksumValid(s, &p))
			}
			hl := p.L4Off + 8
			if want == KindTCP {
				hl = p.L4Off + int(s[p.L4Off+12]>>4)*4
			}
			if i < n-1 && len(s)-hl != int(size) {
				t.Fatalf("segment %d: payload %d, want %d", i, len(s)-hl, size)
			}
			payload = append(payload, s[hl:]...)
		}
		if gso != VirtioNetHdrGSONone {
			ihl := int(orig[0]&0xf) * 4
			hl := ihl + 8
			if gso == VirtioNetHdrGSOTCPv4 {
				hl = ihl + int(orig[ihl+12]>>4)*4
			}
			tl := int(binary.BigEndian.Uint16(orig[2:]))
			if tl == 0 {
				tl = len(orig)
			}
			if !bytes.Equal(payload, orig[hl:tl]) {
				t.Fatalf("payloads differ")
			}
		}
	})
}
