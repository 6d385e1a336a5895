package steer

import (
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestConfigDefaults(t *testing.T) {
	got, err := Config{LANInterface: "lan0"}.withDefaults(true)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{LANInterface: "lan0", TUN: "wf0", Table: 7700, Priority: 7690, Protocol: 167}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("withDefaults = %+v, want %+v", got, want)
	}
}

func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no LAN", Config{}},
		{"LAN is TUN", Config{LANInterface: "wf0"}},
		{"long name", Config{LANInterface: "a-very-long-interface"}},
		{"table main", Config{LANInterface: "lan0", Table: 254}},
		{"negative table", Config{LANInterface: "lan0", Table: -1}},
		{"priority too high", Config{LANInterface: "lan0", Priority: 32700}},
		{"protocol 256", Config{LANInterface: "lan0", Protocol: 256}},
		{"fallback is the TUN's table", Config{LANInterface: "lan0", Fallback: []int{7700}}},
		{"fallback main", Config{LANInterface: "lan0", Fallback: []int{254}}},
		{"fallback twice", Config{LANInterface: "lan0", Fallback: []int{7701, 7701}}},
		{"too many fallbacks", Config{LANInterface: "lan0", Fallback: make([]int, MaxFallback+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.cfg.withDefaults(true); err == nil {
				t.Errorf("withDefaults(%+v) = nil error, want one", tc.cfg)
			}
		})
	}
	if _, err := (Config{}).withDefaults(false); err != nil {
		t.Errorf("withDefaults(false) of the zero Config: %v, want nil (Remove needs no LAN)", err)
	}
}

func TestDesired(t *testing.T) {
	cfg, err := Config{LANInterface: "lan0"}.withDefaults(true)
	if err != nil {
		t.Fatal(err)
	}
	wantRules := []ruleSpec{
		{Priority: 7690, Table: 254, SuppressPrefixlen: 0},
		{Priority: 7700, Table: 7700, IifName: "lan0", SuppressPrefixlen: -1},
	}
	if got := desiredRules(cfg); !reflect.DeepEqual(got, wantRules) {
		t.Errorf("desiredRules = %v, want %v", got, wantRules)
	}
	wantRoutes := []routeSpec{{Table: 7700, Dst: netip.MustParsePrefix("0.0.0.0/0"), LinkIndex: 9, Scope: scopeLink}}
	if got := desiredRoutes(cfg, 9); !reflect.DeepEqual(got, wantRoutes) {
		t.Errorf("desiredRoutes = %v, want %v", got, wantRoutes)
	}
	cfg.Fallback = []int{7702, 7701}
	cfg.LookupMark = DefaultLookupMark
	wantRules = []ruleSpec{
		wantRules[0],
		{Priority: 7695, Table: 7700, Mark: DefaultLookupMark, SuppressPrefixlen: -1},
		wantRules[1],
		{Priority: 7710, Table: 7702, IifName: "lan0", SuppressPrefixlen: -1},
		{Priority: 7711, Table: 7701, IifName: "lan0", SuppressPrefixlen: -1},
	}
	if got := desiredRules(cfg); !reflect.DeepEqual(got, wantRules) {
		t.Errorf("desiredRules with fallback = %v, want %v", got, wantRules)
	}
	for _, r := range desiredRules(cfg) {
		nr := r.netlinkRule(cfg.Protocol)
		if !ownsRule(cfg, nr) {
			t.Errorf("desired rule %v is not owned", r)
		}
		// What the kernel reports back has Src etc. in the same form.
		if back, ok := ruleSpecOf(*nr); !ok || back != r {
			t.Errorf("ruleSpecOf(netlinkRule(%v)) = %v, %v", r, back, ok)
		}
	}
	for _, r := range desiredRoutes(cfg, 9) {
		nr := r.netlinkRoute(cfg.Protocol)
		if !ownsRoute(cfg, nr) {
			t.Errorf("desired route %v is not owned", r)
		}
		if back, ok := routeSpecOf(*nr); !ok || back != r {
			t.Errorf("routeSpecOf(netlinkRoute(%v)) = %v, %v", r, back, ok)
		}
	}
}

func TestOwnership(t *testing.T) {
	cfg, _ := Config{LANInterface: "lan0"}.withDefaults(true)
	rule := func(prio int, proto uint8) *netlink.Rule {
		r := netlink.NewRule()
		r.Priority, r.Protocol, r.Table = prio, proto, 7700
		return r
	}
	for _, tc := range []struct {
		r    *netlink.Rule
		want bool
	}{
		{rule(7690, 167), true},
		{rule(7799, 167), true},
		{rule(7800, 167), false}, // package uplinks
		{rule(7689, 167), false},
		{rule(7700, 3), false}, // someone else's, in our range
	} {
		if got := ownsRule(cfg, tc.r); got != tc.want {
			t.Errorf("ownsRule(prio %d proto %d) = %v, want %v", tc.r.Priority, tc.r.Protocol, got, tc.want)
		}
	}
	if ownsRoute(cfg, &netlink.Route{Table: 7700, Protocol: 4}) {
		t.Error("owns a static route in its table")
	}
	if ownsRoute(cfg, &netlink.Route{Table: 7701, Protocol: 167}) {
		t.Error("owns a route of an uplink table")
	}
}

func TestSpecOfRejectsForeignShapes(t *testing.T) {
	r := netlink.NewRule()
	mask := uint32(0xff)
	r.Priority, r.Table, r.Mark, r.Mask = 7700, 7700, 1, &mask
	if _, ok := ruleSpecOf(*r); ok {
		t.Error("ruleSpecOf accepted a fwmark rule with a partial mask")
	}
	_, dst, _ := net.ParseCIDR("0.0.0.0/0")
	rt := netlink.Route{Table: 7700, Dst: dst, LinkIndex: 3, Gw: net.IPv4(10, 0, 0, 1), Type: rtnUnicast}
	if _, ok := routeSpecOf(rt); ok {
		t.Error("routeSpecOf accepted a route with a gateway")
	}
	rt = netlink.Route{Table: 7700, Dst: dst, LinkIndex: 3, Type: rtnUnicast, Priority: 10}
	if _, ok := routeSpecOf(rt); ok {
		t.Error("routeSpecOf accepted a route with a metric")
	}
}

func TestRPFilterPlan(t *testing.T) {
	for _, tc := range []struct {
		name string
		all  int
		devs map[string]int
		want []sysctlWrite
	}{
		{
			name: "all off, tun already off",
			all:  0,
			devs: map[string]int{"default": 0, "lan0": 1, "wf0": 0},
			want: nil,
		},
		{
			name: "all off, tun inherited strict",
			all:  0,
			devs: map[string]int{"default": 1, "lan0": 1, "wf0": 1},
			want: []sysctlWrite{{"wf0", 0}},
		},
		{
			name: "all strict moves to every other device",
			all:  1,
			devs: map[string]int{"default": 0, "lan0": 0, "eth1": 2, "lo": 0, "wf0": 1, "all": 1},
			want: []sysctlWrite{{"wf0", 0}, {"default", 1}, {"lan0", 1}, {"lo", 1}, {"all", 0}},
		},
		{
			name: "all loose beats strict devices",
			all:  2,
			devs: map[string]int{"default": 1, "eth0": 1, "wf0": 0},
			want: []sysctlWrite{{"default", 2}, {"eth0", 2}, {"all", 0}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rpFilterPlan(tc.all, tc.devs, "wf0")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rpFilterPlan(%d, %v) = %v, want %v", tc.all, tc.devs, got, tc.want)
			}
			// The effective value max(all, dev) of every other device is unchanged.
			after := map[string]int{"all": tc.all}
			for k, v := range tc.devs {
				after[k] = v
			}
			for _, w := range got {
				after[w.Dev] = w.Value
			}
			for dev, v := range tc.devs {
				if dev == "wf0" || dev == "all" {
					continue
				}
				if before, now := max(tc.all, v), max(after["all"], after[dev]); before != now {
					t.Errorf("effective rp_filter of %s: %d before, %d after", dev, before, now)
				}
			}
			if eff := max(after["all"], after["wf0"]); eff != 0 {
				t.Errorf("effective rp_filter of wf0 = %d, want 0", eff)
			}
		})
	}
}
