package packet

import (
	"testing"
	"time"
)

// TestZeroAlloc asserts that the per-packet functions never allocate.
func TestZeroAlloc(t *testing.T) {
	syn := buildTCP(lanHost, server, tcpSeg{sport: 40000, dport: 443, flags: TCPFlagSYN, opts: []byte{2, 4, 5, 0xb4}}, ipOpts{})
	inner := buildUDP(uplink1, server, 20002, 33434, []byte("probe"), true, ipOpts{ttl: 1})
	te := buildICMP(isp1, uplink1, ICMPTimeExceeded, 0, 0, inner, ipOpts{})
	unreach := buildICMP(lanHost, server, ICMPDestUnreach, 3, 0, buildUDP(server, lanHost, 9000, 5353, nil, true, ipOpts{}), ipOpts{})
	d := buildUDP(lanHost, server, 40000, 9000, payloadN(3000), true, ipOpts{id: 5})
	fs := fragments(t, d, 1500)
	var fps [3]Parsed
	for i, f := range fs {
		fps[i].Decode(f)
	}
	gso := superTCP(server, uplink1, payloadN(64000), TCPFlagACK)
	gh := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1448}
	out, sizes := makeBufs(64, 1600, 16)
	r := NewReassembler(8, 65535, time.Second)
	dst := make([]byte, 1500)
	var p Parsed

	tests := []struct {
		name string
		f    func()
	}{
		{"Decode", func() { p.Decode(syn) }},
		{"RewriteSrc", func() { p.Decode(syn); RewriteSrc(syn, &p, uplink1, 20000) }},
		{"RewriteDst", func() { p.Decode(syn); RewriteDst(syn, &p, server, 443) }},
		{"ClampMSS", func() { p.Decode(syn); ClampMSS(syn, &p, 1400) }},
		{"DecTTL", func() { DecTTL(syn) }},
		{"RewriteICMPErrorIn", func() { p.Decode(te); RewriteICMPErrorIn(te, &p, lanHost, 40000) }},
		{"RewriteICMPErrorOut", func() { p.Decode(unreach); RewriteICMPErrorOut(unreach, &p, uplink1, 20000) }},
		{"BuildICMPError", func() { BuildICMPError(dst, d, routerIP, ICMPTimeExceeded, 0, 0) }},
		{"BuildTCPReset", func() { p.Decode(syn); BuildTCPReset(dst, &p, syn) }},
		{"Fragment", func() { Fragment(d, 1500, out, sizes, 16) }},
		{"Reassembler.Add", func() {
			for i, f := range fs {
				q := fps[i]
				r.Add(f, &q, 0)
			}
		}},
		{"GSOSplit", func() { GSOSplit(gso, gh, out, sizes, 16) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f() // warm up (the Reassembler allocates a slot buffer on first use)
			if n := testing.AllocsPerRun(100, tt.f); n != 0 {
				t.Errorf("%s allocates %v times per run", tt.name, n)
			}
		})
	}
	if s := r.Stats(); s.Completed != 101+1 {
		t.Errorf("reassembler completed %d datagrams", s.Completed)
	}
}
