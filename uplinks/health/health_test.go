package health

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/bpf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseKind(t *testing.T) {
	for in, want := range map[string]Kind{"icmp": KindICMP, "ICMP": KindICMP, "dns": KindDNS, "http": KindHTTP, "https": KindHTTP} {
		got, err := ParseKind(in)
		if err != nil || got != want {
			t.Errorf("ParseKind(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseKind("tcp"); err == nil {
		t.Error("ParseKind(tcp): no error")
	}
	for _, k := range []Kind{KindICMP, KindDNS, KindHTTP} {
		if got, err := ParseKind(k.String()); err != nil || got != k {
			t.Errorf("ParseKind(%v.String()) = %v, %v", k, got, err)
		}
	}
}

func TestParseTarget(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		in   string
		want Target
		str  string
	}{
		{"1.1.1.1", Target{Kind: KindICMP, Addr: ap("1.1.1.1:0")}, "icmp:1.1.1.1"},
		{"icmp:8.8.8.8", Target{Kind: KindICMP, Addr: ap("8.8.8.8:0")}, "icmp:8.8.8.8"},
		{"dns:9.9.9.9", Target{Kind: KindDNS, Addr: ap("9.9.9.9:53"), Name: "."}, "dns:9.9.9.9:53"},
		{"dns:9.9.9.9:5353", Target{Kind: KindDNS, Addr: ap("9.9.9.9:5353"), Name: "."}, "dns:9.9.9.9:5353"},
		{"http://1.1.1.1/", Target{Kind: KindHTTP, Addr: ap("1.1.1.1:80"), URL: "http://1.1.1.1/"}, "http://1.1.1.1/"},
		{"https://1.1.1.1/x", Target{Kind: KindHTTP, Addr: ap("1.1.1.1:443"), URL: "https://1.1.1.1/x"}, "https://1.1.1.1/x"},
		{"http://1.1.1.1:8080/", Target{Kind: KindHTTP, Addr: ap("1.1.1.1:8080"), URL: "http://1.1.1.1:8080/"}, "http://1.1.1.1:8080/"},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseTarget(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if got.String() != tt.str {
			t.Errorf("ParseTarget(%q).String() = %q, want %q", tt.in, got.String(), tt.str)
		}
	}
	for _, bad := range []string{"", "example.com", "dns:x", "http://example.com/", "ftp://1.1.1.1/", "::1", "224.0.0.1", "0.0.0.0", "icmp:2001:db8::1"} {
		if got, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) = %+v, want an error", bad, got)
		}
	}
	// A named host needs the address to connect to.
	tg, err := Target{Kind: KindHTTP, URL: "https://example.com/", Addr: ap("192.0.2.1:0")}.normalize()
	if err != nil || tg.Addr != ap("192.0.2.1:443") || tg.String() != "https://example.com/ @192.0.2.1:443" {
		t.Errorf("named https target = %+v (%q), %v", tg, tg.String(), err)
	}
}

func TestConfigDefaults(t *testing.T) {
	p, err := NewProber("adsl", Config{Targets: []Target{{Kind: KindICMP, Addr: netip.MustParseAddrPort("1.1.1.1:0")}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Config()
	if c.MinOK != 1 || c.Interval != 200*time.Millisecond || c.Timeout != 400*time.Millisecond || c.DownAfter != 3 || c.UpAfter != 5 ||
		c.LossWindow != 20 || c.DegradedAfter != 3 || c.RecoverAfter != 5 || c.Initial != StateDown {
		t.Errorf("defaults: %+v", c)
	}
	if p.State() != StateDown {
		t.Errorf("State() = %v, want down", p.State())
	}
	if id := p.EchoID(); id < 100 || id >= 1000 {
		t.Errorf("EchoID() = %d, want in [100, 1000)", id)
	}
	if a, b := echoIDFor("adsl"), echoIDFor("4g"); a == b {
		t.Logf("echo ids of adsl and 4g collide (%d): allowed, but unlucky", a)
	}
	st := p.Stats()
	if len(st.Targets) != 1 || st.Targets[0].Err != "not probed yet" || len(st.History) != 0 {
		t.Errorf("initial Stats = %+v", st)
	}
}

func TestConfigErrors(t *testing.T) {
	one := []Target{{Kind: KindICMP, Addr: netip.MustParseAddrPort("1.1.1.1:0")}}
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no targets"},
		{Config{Targets: one, MinOK: 2}, "min_ok 2: want 1..1"},
		{Config{Targets: one, Interval: time.Millisecond}, "interval 1ms"},
		{Config{Targets: one, DownAfter: -1}, ""}, // negative counts take the default
		{Config{Targets: one, LossMax: 1}, "loss_max 1"},
		{Config{Targets: one, LatencyMax: -1}, "latency_max"},
		{Config{Targets: one, Initial: 7}, "initial"},
		{Config{Targets: one, EchoID: 1024}, "echo id 1024"},
		{Config{Targets: []Target{{Kind: KindICMP, Addr: netip.MustParseAddrPort("1.1.1.1:7")}}}, "targets[0]"},
		{Config{Targets: []Target{{Kind: KindHTTP, URL: "http://example.com/"}}}, "give the address"},
	}
	for _, tt := range tests {
		_, err := NewProber("u", tt.cfg, nil)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("NewProber(%+v): %v", tt.cfg, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("NewProber(%+v) error = %v, want it to contain %q", tt.cfg, err, tt.want)
		}
	}
}

// ipv4 builds an IPv4 header (protocol ICMP) in front of payload.
func ipv4(src, dst string, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = 64
	h[9] = 1
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], checksum(h))
	return append(h, payload...)
}

// icmpMessage builds an ICMP message with a valid checksum.
func icmpMessage(typ, code uint8, rest []byte) []byte {
	b := append([]byte{typ, code, 0, 0}, rest...)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func echoReply(id, seq uint16, token [8]byte) []byte {
	req := marshalEcho(id, seq, token)
	return icmpMessage(icmpEchoReply, 0, req[4:])
}

func TestMarshalEcho(t *testing.T) {
	got := hex.EncodeToString(marshalEcho(101, 7, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}))
	// type 8, code 0, checksum, id 0x0065, seq 7, token, "wanflow!".
	want := "0800" + "1e27" + "0065" + "0007" + "0102030405060708" + "77616e666c6f7721"
	if got != want {
		t.Errorf("marshalEcho = %s\n              want %s", got, want)
	}
}

func TestParseICMPAndFilter(t *testing.T) {
	const id = 123
	tok := [8]byte{9, 9, 9, 9, 9, 9, 9, 9}
	req := marshalEcho(id, 42, tok)
	quoted := ipv4("100.64.1.2", "192.0.2.1", req)[:28] // RFC 792: header + 8 bytes
	unreach := icmpMessage(icmpUnreachable, 0, append([]byte{0, 0, 0, 0}, quoted...))
	timeEx := icmpMessage(icmpTimeExceeded, 0, append([]byte{0, 0, 0, 0}, ipv4("100.64.1.2", "192.0.2.1", req)...))
	otherQuoted := ipv4("100.64.1.2", "192.0.2.1", marshalEcho(id+1, 42, tok))[:28]
	withOptions := func(b []byte) []byte { // IHL 6: one word of options (NOP NOP NOP EOL)
		h := append([]byte{}, b[:20]...)
		h[0] = 0x46
		binary.BigEndian.PutUint16(h[2:], uint16(len(b)+4))
		h = append(h, 1, 1, 1, 0)
		return append(h, b[20:]...)
	}
	fragmented := func(b []byte) []byte {
		b = append([]byte{}, b...)
		binary.BigEndian.PutUint16(b[6:], 0x2000) // more fragments
		return b
	}

	tests := []struct {
		name   string
		pkt    []byte
		parse  bool // parseICMP accepts it
		filter bool // the BPF program keeps it
		want   icmpMsg
	}{
		{"echo reply", ipv4("192.0.2.1", "100.64.1.2", echoReply(id, 42, tok)), true, true,
			icmpMsg{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("100.64.1.2"), Type: 0, Seq: 42, Target: netip.MustParseAddr("192.0.2.1"), Token: tok}},
		{"echo reply with IP options", withOptions(ipv4("192.0.2.1", "100.64.1.2", echoReply(id, 42, tok))), true, true,
			icmpMsg{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("100.64.1.2"), Type: 0, Seq: 42, Target: netip.MustParseAddr("192.0.2.1"), Token: tok}},
		{"echo reply, other id (the NAT's)", ipv4("192.0.2.1", "100.64.1.2", echoReply(2000, 42, tok)), false, false, icmpMsg{}},
		{"echo request", ipv4("192.0.2.1", "100.64.1.2", req), false, false, icmpMsg{}},
		{"net unreachable quoting the probe", ipv4("100.64.1.1", "100.64.1.2", unreach), true, true,
			icmpMsg{Src: netip.MustParseAddr("100.64.1.1"), Dst: netip.MustParseAddr("100.64.1.2"), Type: 3, Seq: 42, Target: netip.MustParseAddr("192.0.2.1")}},
		{"time exceeded quoting the whole probe", ipv4("198.18.1.2", "100.64.1.2", timeEx), true, true,
			icmpMsg{Src: netip.MustParseAddr("198.18.1.2"), Dst: netip.MustParseAddr("100.64.1.2"), Type: 11, Seq: 42, Target: netip.MustParseAddr("192.0.2.1")}},
		{"unreachable quoting another id", ipv4("100.64.1.1", "100.64.1.2", icmpMessage(3, 1, append([]byte{0, 0, 0, 0}, otherQuoted...))), false, false, icmpMsg{}},
		{"unreachable quoting UDP", ipv4("100.64.1.1", "100.64.1.2", icmpMessage(3, 3, append([]byte{0, 0, 0, 0}, func() []byte {
			q := append([]byte{}, quoted...)
			q[9] = 17
			return q
		}()...))), false, false, icmpMsg{}},
		{"bad checksum", func() []byte {
			b := ipv4("192.0.2.1", "100.64.1.2", echoReply(id, 42, tok))
			b[len(b)-1] ^= 0xff
			return b
		}(), false, true, icmpMsg{}},
		{"first fragment of a reply", fragmented(ipv4("192.0.2.1", "100.64.1.2", echoReply(id, 42, tok))), false, true, icmpMsg{}},
		{"truncated", ipv4("192.0.2.1", "100.64.1.2", echoReply(id, 42, tok))[:30], false, true, icmpMsg{}},
	}
	vm, err := bpf.NewVM(icmpFilter(id))
	if err != nil {
		t.Fatalf("filter does not assemble: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseICMP(tt.pkt, id)
			if ok != tt.parse || ok && got != tt.want {
				t.Errorf("parseICMP = %+v, %v; want %+v, %v", got, ok, tt.want, tt.parse)
			}
			n, err := vm.Run(tt.pkt)
			if err != nil {
				t.Fatalf("filter: %v", err)
			}
			if kept := n > 0; kept != tt.filter {
				t.Errorf("filter keeps it = %v, want %v", kept, tt.filter)
			}
			if ok && n == 0 {
				t.Error("filter drops a packet parseICMP accepts")
			}
		})
	}
}

// FuzzParseICMP checks that parseICMP never panics, that what it accepts
// the BPF filter keeps, and that an accepted message is self-consistent.
func FuzzParseICMP(f *testing.F) {
	tok := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	f.Add(ipv4("192.0.2.1", "100.64.1.2", echoReply(7, 1, tok)))
	f.Add(ipv4("100.64.1.1", "100.64.1.2", icmpMessage(3, 0, append([]byte{0, 0, 0, 0}, ipv4("100.64.1.2", "192.0.2.1", marshalEcho(7, 1, tok))[:28]...))))
	f.Add([]byte{0x45})
	vm, err := bpf.NewVM(icmpFilter(7))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := parseICMP(b, 7)
		if !ok {
			return
		}
		if n, err := vm.Run(b); err != nil || n == 0 {
			t.Errorf("parseICMP accepts %x, the filter drops it (%v)", b, err)
		}
		if m.Type != icmpEchoReply && m.Type != icmpUnreachable && m.Type != icmpTimeExceeded {
			t.Errorf("accepted type %d", m.Type)
		}
		if m.Type == icmpEchoReply && m.Target != m.Src {
			t.Errorf("echo reply target %v != source %v", m.Target, m.Src)
		}
	})
}
