package packet

import (
	"testing"
	"time"
)

func BenchmarkDecode(b *testing.B) {
	pkt := buildTCP(lanHost, server, tcpSeg{sport: 40000, dport: 443, flags: TCPFlagACK, payload: payloadN(1400)}, ipOpts{})
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		p.Decode(pkt)
	}
}

// BenchmarkDecodeRewriteSrc is the per-packet NAT cost: decode and SNAT.
func BenchmarkDecodeRewriteSrc(b *testing.B) {
	pkt := buildTCP(lanHost, server, tcpSeg{sport: 40000, dport: 443, flags: TCPFlagACK, payload: payloadN(1400)}, ipOpts{})
	var p Parsed
	addrs := [2][4]byte{uplink1, uplink2}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.Decode(pkt)
		RewriteSrc(pkt, &p, addrs[i&1], uint16(20000+i&1))
		i++
	}
}

func BenchmarkDecodeRewriteSrcUDP(b *testing.B) {
	pkt := buildUDP(lanHost, server, 40000, 443, payloadN(1200), true, ipOpts{})
	var p Parsed
	addrs := [2][4]byte{uplink1, uplink2}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.Decode(pkt)
		RewriteSrc(pkt, &p, addrs[i&1], uint16(20000+i&1))
		i++
	}
}

func BenchmarkRewriteICMPErrorIn(b *testing.B) {
	inner := buildUDP(uplink1, server, 20002, 33434, payloadN(32), true, ipOpts{ttl: 1})
	orig := buildICMP(isp1, uplink1, ICMPTimeExceeded, 0, 0, inner, ipOpts{})
	pkt := clone(orig)
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		copy(pkt, orig) // 88 bytes, so that every run translates
		p.Decode(pkt)
		RewriteICMPErrorIn(pkt, &p, lanHost, 40000)
	}
}

func BenchmarkClampMSS(b *testing.B) {
	pkt := buildTCP(lanHost, server, tcpSeg{sport: 40000, dport: 443, flags: TCPFlagSYN,
		opts: []byte{2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0}}, ipOpts{})
	orig := clone(pkt)
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		copy(pkt, orig)
		p.Decode(pkt)
		ClampMSS(pkt, &p, 1400)
	}
}

func BenchmarkGSOSplit64K(b *testing.B) {
	in := superTCP(server, uplink1, payloadN(65535-52), TCPFlagACK|TCPFlagPSH)
	h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1448}
	out, sizes := makeBufs(64, 1600, 16)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, ok := GSOSplit(in, h, out, sizes, 16); !ok {
			b.Fatal("split failed")
		}
	}
}

func BenchmarkFragmentReassemble(b *testing.B) {
	d := buildUDP(lanHost, server, 40000, 9000, payloadN(3972), true, ipOpts{id: 1})
	out, sizes := makeBufs(4, 1500, 0)
	r := NewReassembler(16, 65535, time.Second)
	var p Parsed
	b.ReportAllocs()
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		n, _ := Fragment(d, 1500, out, sizes, 0)
		for i := range n {
			p.Decode(out[i][:sizes[i]])
			r.Add(out[i][:sizes[i]], &p, 0)
		}
	}
}

func BenchmarkBuildICMPError(b *testing.B) {
	orig := buildUDP(lanHost, server, 40000, 9000, payloadN(1472), true, ipOpts{ttl: 1})
	dst := make([]byte, ICMPErrorMaxLen)
	b.ReportAllocs()
	for b.Loop() {
		BuildICMPError(dst, orig, routerIP, ICMPTimeExceeded, 0, 0)
	}
}
