package packet

import (
	"encoding/binary"
	"testing"
)

// partialTCP returns a TCP packet as a TSO sender hands it over: the
// checksum field holds the pseudo-header sum only.
func partialTCP(src, dst [4]byte, sport, dport uint16, payload int) ([]byte, VirtioNetHdr) {
	b := buildTCP(src, dst, tcpSeg{sport: sport, dport: dport, seq: 7, flags: TCPFlagACK, payload: make([]byte, payload)}, ipOpts{id: 1})
	l4 := b[20:]
	binary.BigEndian.PutUint16(l4[tcpCsumOff:], PseudoHeaderSum(protoTCP, src, dst, uint16(len(l4))))
	return b, VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: tcpCsumOff}
}

func TestRewritePartial(t *testing.T) {
	b, _ := partialTCP(lanHost, server, 40000, 443, 3000)
	var p Parsed
	p.Decode(b)
	if p.Kind != KindTCP {
		t.Fatalf("kind %v (%v)", p.Kind, p.Drop)
	}
	RewriteSrcPartial(b, &p, uplink1, 20001)
	l4 := b[20:]
	want := PseudoHeaderSum(protoTCP, uplink1, server, uint16(len(l4)))
	if got := binary.BigEndian.Uint16(l4[tcpCsumOff:]); got != want {
		t.Fatalf("partial after SNAT %#04x, want %#04x", got, want)
	}
	if !IPHeaderChecksumValid(b) || binary.BigEndian.Uint16(l4) != 20001 {
		t.Fatal("IP header checksum or port wrong after SNAT")
	}
	RewriteDstPartial(b, &p, lanHost, 40001)
	want = PseudoHeaderSum(protoTCP, uplink1, lanHost, uint16(len(l4)))
	if got := binary.BigEndian.Uint16(l4[tcpCsumOff:]); got != want {
		t.Fatalf("partial after DNAT %#04x, want %#04x", got, want)
	}
	if a := testing.AllocsPerRun(100, func() { RewriteSrcPartial(b, &p, uplink2, 20002) }); a != 0 {
		t.Errorf("RewriteSrcPartial: %v allocs", a)
	}
}

func TestCompleteChecksum(t *testing.T) {
	b, h := partialTCP(lanHost, server, 40000, 443, 1000)
	if !CompleteChecksum(b, h) {
		t.Fatal("CompleteChecksum refused a good packet")
	}
	var p Parsed
	p.Decode(b)
	if !L4ChecksumValid(b, &p) {
		t.Fatal("checksum not valid after CompleteChecksum")
	}
	if CompleteChecksum(b[:10], h) {
		t.Fatal("CompleteChecksum accepted a truncated packet")
	}
}
