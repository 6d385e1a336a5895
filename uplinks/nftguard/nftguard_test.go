package nftguard

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	got, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Config{Table: "wanflow", Ports: [2]uint16{20000, 32767}}); !reflect.DeepEqual(got, want) {
		t.Errorf("withDefaults = %+v, want %+v", got, want)
	}
	p := netip.MustParsePrefix
	got, err = Config{
		LANPrefixes: []netip.Prefix{p("10.77.0.9/24"), p("::ffff:10.1.0.0/112"), p("10.77.0.0/24")},
		Interfaces:  []string{"up2", "up1", "up2"},
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{p("10.1.0.0/16"), p("10.77.0.0/24")}; !reflect.DeepEqual(got.LANPrefixes, want) {
		t.Errorf("LANPrefixes = %v, want %v", got.LANPrefixes, want)
	}
	if want := []string{"up1", "up2"}; !reflect.DeepEqual(got.Interfaces, want) {
		t.Errorf("Interfaces = %v, want %v", got.Interfaces, want)
	}
	for _, bad := range []Config{
		{Ports: [2]uint16{0, 100}},
		{Ports: [2]uint16{30000, 20000}},
		{LANPrefixes: []netip.Prefix{p("2001:db8::/64")}},
		{LANPrefixes: []netip.Prefix{{}}},
		{Interfaces: []string{""}},
		{Interfaces: []string{"a-very-long-name0"}},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("withDefaults(%+v) = nil error, want one", bad)
		}
	}
}

func TestElements(t *testing.T) {
	a := netip.MustParseAddr
	got, err := elements([]netip.Addr{a("100.64.2.2"), a("::ffff:10.77.0.1"), a("100.64.1.2"), a("100.64.2.2")})
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Addr{a("10.77.0.1"), a("100.64.1.2"), a("100.64.2.2")}; !reflect.DeepEqual(got, want) {
		t.Errorf("elements = %v, want %v", got, want)
	}
	if got, err := elements(nil); err != nil || len(got) != 0 {
		t.Errorf("elements(nil) = %v, %v; want empty", got, err)
	}
	for _, bad := range []netip.Addr{{}, a("2001:db8::1")} {
		if _, err := elements([]netip.Addr{bad}); err == nil {
			t.Errorf("elements(%v) = nil error, want one", bad)
		}
	}
}

func TestRuleComment(t *testing.T) {
	cfg := Config{Table: "wanflow", Ports: [2]uint16{20000, 32767}}
	if got, want := ruleComment(cfg, "udp"), "wanflow v3: drop kernel copy of NAT replies, udp dport 20000-32767"; got != want {
		t.Errorf("ruleComment = %q, want %q", got, want)
	}
	other := cfg
	other.Ports[1] = 30000
	if ruleComment(cfg, "tcp") == ruleComment(other, "tcp") {
		t.Error("the comment does not depend on the port range")
	}
}

func TestMasqComment(t *testing.T) {
	p := netip.MustParsePrefix
	cfg, err := Config{LANPrefixes: []netip.Prefix{p("10.77.0.0/24"), p("192.168.5.0/24")}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	got := masqComment(cfg, cfg.LANPrefixes[1])
	if want := "wanflow v3: fail-open masquerade from 192.168.5.0/24 (lan "; !strings.HasPrefix(got, want) || !strings.HasSuffix(got, ")") {
		t.Errorf("masqComment = %q, want %q<fingerprint>)", got, want)
	}
	// Another LAN prefix changes the comment (the destination exclusions),
	// so Apply rebuilds the chain.
	other, _ := Config{LANPrefixes: []netip.Prefix{p("192.168.5.0/24")}}.withDefaults()
	if b := masqComment(other, other.LANPrefixes[0]); got == b {
		t.Errorf("comment %q does not depend on the other LAN prefixes", got)
	}
}
