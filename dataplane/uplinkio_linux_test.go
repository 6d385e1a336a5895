package dataplane

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"

	pt "github.com/wanflow/wanflow/dataplane/packet/packettest"
)

// TestReplyFilter runs the uplink sockets' BPF program in x/net/bpf's VM:
// only what the dataplane may have a flow for passes; the router's own
// ICMP stays with the kernel.
func TestReplyFilter(t *testing.T) {
	me := upAddr[0]
	tcp := pt.TCP(pt.IP{Src: server, Dst: me}, 443, 20001, 1, 1, 0x10, 0, nil)
	echoReply := func(id uint16) []byte { return pt.ICMPEcho(pt.IP{Src: server, Dst: me}, true, id, 1, []byte("x")) }
	inner := pt.UDP(pt.IP{Src: me, Dst: server}, 20005, 53, nil)
	frag := pt.UDP(pt.IP{Src: server, Dst: me}, 53, 40000, make([]byte, 64))
	binary.BigEndian.PutUint16(frag[6:], 0x0010) // fragment offset 16, not first
	ipv6 := append([]byte{0x60}, make([]byte, 60)...)
	cases := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"tcp to a NAT port", tcp, true},
		{"tcp to another address", pt.TCP(pt.IP{Src: server, Dst: upAddr[1]}, 443, 20001, 1, 1, 0x10, 0, nil), false},
		{"tcp below the NAT ports", pt.TCP(pt.IP{Src: server, Dst: me}, 443, 19999, 1, 1, 0x10, 0, nil), false},
		{"udp at the top NAT port", pt.UDP(pt.IP{Src: server, Dst: me}, 53, 32767, nil), true},
		{"udp above the NAT ports", pt.UDP(pt.IP{Src: server, Dst: me}, 53, 32768, nil), false},
		{"echo reply to a NAT identifier", echoReply(20000), true},
		{"echo reply to a probe's identifier", echoReply(100), false},
		{"echo request to the router", pt.ICMPEcho(pt.IP{Src: server, Dst: me}, false, 20000, 1, nil), false},
		{"destination unreachable", pt.ICMPError(pt.IP{Src: server, Dst: me}, 3, 4, 1400, inner), true},
		{"time exceeded", pt.ICMPError(pt.IP{Src: server, Dst: me}, 11, 0, 0, inner), true},
		{"redirect", pt.ICMPError(pt.IP{Src: server, Dst: me}, 5, 1, 0, inner), false},
		{"non-first fragment", frag, true},
		{"ipv6", ipv6, false},
	}
	for _, l := range []uint32{0, 14} {
		raw, err := replyFilter(me, natPorts, l)
		if err != nil {
			t.Fatal(err)
		}
		ins := make([]bpf.Instruction, len(raw))
		for i, r := range raw {
			ins[i] = r.Disassemble()
		}
		vm, err := bpf.NewVM(ins)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			frame := append(make([]byte, l), c.pkt...)
			n, err := vm.Run(frame)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got := n > 0; got != c.want {
				t.Errorf("link header %d, %s: accepted %v, want %v", l, c.name, got, c.want)
			}
		}
	}
}
