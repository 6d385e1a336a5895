package packet

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestDecodeGolden(t *testing.T) {
	// The IPv4 header checksum example of Wikipedia's "Internet checksum"
	// article (UDP 192.168.0.1 -> 192.168.0.199), followed by 8 bytes of UDP
	// header and 87 bytes of payload.
	hdr := "45000073000040004011b861c0a80001c0a800c7"
	udp := "a5d50035005f0000" // sport 42453, dport 53, len 95, no checksum
	b := unhex(t, hdr+udp+repeatHex("00", 87))
	p := decode(t, b, KindUDP)
	want := Parsed{
		Kind: KindUDP, IPHLen: 20, TotalLen: 0x73, Proto: 17, TTL: 64, DF: true,
		Src: [4]byte{192, 168, 0, 1}, Dst: [4]byte{192, 168, 0, 199},
		SrcPort: 42453, DstPort: 53, L4Off: 20,
	}
	if p != want {
		t.Errorf("Decode:\n got %+v\nwant %+v", p, want)
	}
	if got := p.SrcAddrPort().String(); got != "192.168.0.1:42453" {
		t.Errorf("SrcAddrPort = %s", got)
	}
	if got := p.DstAddrPort().String(); got != "192.168.0.199:53" {
		t.Errorf("DstAddrPort = %s", got)
	}
}

func repeatHex(s string, n int) string {
	out := make([]byte, 0, len(s)*n)
	for range n {
		out = append(out, s...)
	}
	return string(out)
}

func TestDecodeKinds(t *testing.T) {
	syn := buildTCP(lanHost, server, tcpSeg{sport: 40000, dport: 7, seq: 1, flags: TCPFlagSYN,
		opts: []byte{2, 4, 5, 0xb4}}, ipOpts{id: 1})
	udp := buildUDP(lanHost, server, 5353, 9000, []byte("x"), true, ipOpts{})
	echo := buildICMP(lanHost, server, ICMPEchoRequest, 0, 0x12340001, []byte("p"), ipOpts{})
	reply := buildICMP(server, uplink1, ICMPEchoReply, 0, 0x4e230001, []byte("p"), ipOpts{})
	innerUDP := buildUDP(uplink1, server, 20002, 33434, nil, true, ipOpts{ttl: 1})
	te := buildICMP(isp1, uplink1, ICMPTimeExceeded, 0, 0, innerUDP, ipOpts{})
	innerEcho := buildICMP(uplink1, server, ICMPEchoRequest, 0, 0x4e230001, nil, ipOpts{ttl: 1})
	teEcho := buildICMP(isp1, uplink1, ICMPTimeExceeded, 0, 0, innerEcho, ipOpts{})
	innerErr := buildICMP(uplink1, server, ICMPDestUnreach, 3, 0, innerUDP, ipOpts{})
	errAboutErr := buildICMP(isp1, uplink1, ICMPTimeExceeded, 0, 0, innerErr, ipOpts{})
	redirect := buildICMP(isp1, uplink1, 5, 1, 0, innerUDP, ipOpts{})
	gre := buildIPv4(47, lanHost, server, ipOpts{}, []byte{0, 0, 8, 0})
	firstFrag := buildIPv4(17, lanHost, server, ipOpts{id: 9, flags: header.IPv4FlagMoreFragments}, udp[20:28])
	laterFrag := buildIPv4(17, lanHost, server, ipOpts{id: 9, fragOff: 1480}, []byte("tail"))
	tinyTCP := buildIPv4(6, lanHost, server, ipOpts{id: 9, flags: header.IPv4FlagMoreFragments}, syn[20:36])
	tcpAt8 := buildIPv4(6, lanHost, server, ipOpts{id: 9, fragOff: 8}, syn[20:40])
	tinyUDP := buildIPv4(17, lanHost, server, ipOpts{id: 9, flags: header.IPv4FlagMoreFragments}, udp[20:24])

	badSum := clone(udp)
	badSum[10] ^= 1
	padded := append(clone(udp), 0, 0, 0, 0, 0, 0)
	badVer := clone(udp)
	badVer[0] = 0x65
	badIHL := clone(udp)
	badIHL[0] = 0x44
	longTL := clone(udp)
	longTL[3]++
	shortTCP := buildIPv4(6, lanHost, server, ipOpts{}, syn[20:30])
	badOff := clone(syn)
	badOff[20+12] = 0x40
	bigOff := clone(syn)
	bigOff[20+12] = 0xf0
	badULen := clone(udp)
	badULen[20+5] = 99
	shortICMP := buildIPv4(1, lanHost, server, ipOpts{}, []byte{8, 0, 0, 0})

	tests := []struct {
		name string
		b    []byte
		kind Kind
		drop DropReason
	}{
		{"tcp syn", syn, KindTCP, DropNone},
		{"udp", udp, KindUDP, DropNone},
		{"udp with link padding", padded, KindUDP, DropNone},
		{"echo request", echo, KindICMPEcho, DropNone},
		{"echo reply", reply, KindICMPEcho, DropNone},
		{"time exceeded", te, KindICMPError, DropNone},
		{"time exceeded echo", teEcho, KindICMPError, DropNone},
		{"error about error", errAboutErr, KindICMPError, DropNone},
		{"redirect", redirect, KindOther, DropNone},
		{"gre", gre, KindOther, DropNone},
		{"first fragment", firstFrag, KindFragment, DropNone},
		{"later fragment", laterFrag, KindFragment, DropNone},
		{"empty", nil, KindInvalid, DropTooShort},
		{"19 bytes", udp[:19], KindInvalid, DropTooShort},
		{"bad version", badVer, KindInvalid, DropBadVersion},
		{"bad ihl", badIHL, KindInvalid, DropBadIHL},
		{"total length beyond", longTL, KindInvalid, DropBadTotalLen},
		{"truncated", udp[:len(udp)-1], KindInvalid, DropBadTotalLen},
		{"bad checksum", badSum, KindInvalid, DropBadChecksum},
		{"short tcp", shortTCP, KindInvalid, DropTruncatedL4},
		{"tcp offset 4", badOff, KindInvalid, DropBadTCPOffset},
		{"tcp offset beyond", bigOff, KindInvalid, DropBadTCPOffset},
		{"udp length", badULen, KindInvalid, DropBadUDPLength},
		{"short icmp", shortICMP, KindInvalid, DropTruncatedL4},
		{"tiny tcp first fragment", tinyTCP, KindInvalid, DropTinyFragment},
		{"tiny udp first fragment", tinyUDP, KindInvalid, DropTinyFragment},
		{"tcp fragment at 8", tcpAt8, KindInvalid, DropTinyFragment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			p.Decode(tt.b)
			if p.Kind != tt.kind || p.Drop != tt.drop {
				t.Errorf("got %v/%v, want %v/%v", p.Kind, p.Drop, tt.kind, tt.drop)
			}
		})
	}

	t.Run("fields", func(t *testing.T) {
		p := decode(t, padded, KindUDP)
		if p.TotalLen != len(udp) {
			t.Errorf("padded TotalLen = %d, want %d", p.TotalLen, len(udp))
		}
		p = decode(t, syn, KindTCP)
		if p.TCPFlags != TCPFlagSYN || !p.IsTCPSyn() || p.SrcPort != 40000 || p.DstPort != 7 || !p.HasPorts() {
			t.Errorf("syn: %+v", p)
		}
		p = decode(t, echo, KindICMPEcho)
		if p.SrcPort != 0x1234 || p.DstPort != 0x1234 || p.ICMPType != ICMPEchoRequest {
			t.Errorf("echo: %+v", p)
		}
		p = decode(t, firstFrag, KindFragment)
		if !p.MF || p.FragOff != 0 || !p.HasPorts() || p.SrcPort != 5353 || p.DstPort != 9000 || p.ID != 9 {
			t.Errorf("first fragment: %+v", p)
		}
		p = decode(t, laterFrag, KindFragment)
		if p.MF || p.FragOff != 1480 || p.HasPorts() || p.SrcPort != 0 {
			t.Errorf("later fragment: %+v", p)
		}
		p = decode(t, te, KindICMPError)
		want := InnerHeader{Proto: 17, Src: uplink1, Dst: server, SrcPort: 20002, DstPort: 33434,
			Off: 28, L4Off: 48, Valid: true}
		if p.Inner != want || p.HasPorts() {
			t.Errorf("inner = %+v, want %+v", p.Inner, want)
		}
		p = decode(t, teEcho, KindICMPError)
		if !p.Inner.Valid || p.Inner.SrcPort != 0x4e23 || p.Inner.DstPort != 0x4e23 {
			t.Errorf("inner echo = %+v", p.Inner)
		}
		p = decode(t, errAboutErr, KindICMPError)
		if p.Inner.Valid {
			t.Errorf("error about an error: inner valid")
		}
		short := buildICMP(isp1, uplink1, ICMPTimeExceeded, 0, 0, innerUDP[:27], ipOpts{})
		p = decode(t, short, KindICMPError)
		if p.Inner.Valid {
			t.Errorf("7-byte quote: inner valid")
		}
	})
}

func TestStrings(t *testing.T) {
	for k := KindInvalid; k <= KindOther+1; k++ {
		if k.String() == "" {
			t.Errorf("Kind(%d) has no name", k)
		}
	}
	if KindICMPError.String() != "icmp-error" || Kind(200).String() != "unknown" {
		t.Errorf("Kind names: %v %v", KindICMPError, Kind(200))
	}
	for d := DropNone; d <= DropTinyFragment; d++ {
		if d.String() == "unknown" {
			t.Errorf("DropReason(%d) has no name", d)
		}
	}
	if DropBadChecksum.String() != "bad_checksum" || DropReason(200).String() != "unknown" {
		t.Errorf("DropReason names")
	}
}
