package nftguard

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestConfig(t *testing.T) {
	got, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Config{Table: "wanflow", Ports: [2]uint16{20000, 32767}}); got != want {
		t.Errorf("withDefaults = %+v, want %+v", got, want)
	}
	for _, bad := range []Config{
		{Ports: [2]uint16{0, 100}},
		{Ports: [2]uint16{30000, 20000}},
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
	if got, want := ruleComment(cfg, "udp"), "wanflow v1: drop kernel copy of NAT replies, udp dport 20000-32767"; got != want {
		t.Errorf("ruleComment = %q, want %q", got, want)
	}
	other := cfg
	other.Ports[1] = 30000
	if ruleComment(cfg, "tcp") == ruleComment(other, "tcp") {
		t.Error("the comment does not depend on the port range")
	}
}
