package uplinks

import (
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vishvananda/netlink"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
	def  = pfx("0.0.0.0/0")
)

func TestConfigDefaults(t *testing.T) {
	got, err := Config{Uplinks: []Spec{{Index: 0, Name: "a", Interface: "eth0"}}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.TableBase != 7700 || got.Priority != 7690 || got.Protocol != 167 {
		t.Errorf("defaults = %d/%d/%d, want 7700/7690/167", got.TableBase, got.Priority, got.Protocol)
	}
	if got.table(0) != 7701 || got.table(3) != 7704 {
		t.Errorf("tables = %d, %d; want 7701, 7704", got.table(0), got.table(3))
	}
	if got.rulePriority(0) != 7800 || got.rulePriority(19) != 7990 {
		t.Errorf("priorities = %d, %d; want 7800, 7990", got.rulePriority(0), got.rulePriority(19))
	}
}

func TestConfigInvalid(t *testing.T) {
	up := func(i int, ifname string) Spec { return Spec{Index: i, Name: "u", Interface: ifname} }
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"index too big", Config{Uplinks: []Spec{up(MaxUplinks, "eth0")}}},
		{"negative index", Config{Uplinks: []Spec{up(-1, "eth0")}}},
		{"index twice", Config{Uplinks: []Spec{up(1, "eth0"), up(1, "eth1")}}},
		{"no interface", Config{Uplinks: []Spec{up(0, "")}}},
		{"IPv6 gateway", Config{Uplinks: []Spec{{Interface: "eth0", Gateway: addr("fe80::1")}}}},
		{"MTU 10", Config{Uplinks: []Spec{{Interface: "eth0", MTU: 10}}}},
		{"tables hit main", Config{TableBase: 240}},
		{"priority", Config{Priority: 32600}},
		{"protocol", Config{Protocol: 300}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.cfg.withDefaults(); err == nil {
				t.Errorf("withDefaults(%+v) = nil error, want one", tc.cfg)
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	const (
		upLower = iffUp | iffLowerUp
		upRun   = iffUp | iffRunning | iffLowerUp
	)
	eth := Spec{Index: 0, Name: "adsl", Interface: "eth0", Gateway: addr("192.168.1.1")}
	ppp := Spec{Index: 2, Name: "3g", Interface: "ppp0"}
	global := []ifAddr{{Prefix: pfx("192.168.1.10/24")}}
	for _, tc := range []struct {
		name string
		spec Spec
		ls   linkState
		want observed
	}{
		{
			name: "absent device",
			spec: ppp,
			want: observed{Status: Status{Index: 2, Name: "3g", Interface: "ppp0"}},
		},
		{
			name: "ethernet up",
			spec: eth,
			ls:   linkState{Exists: true, Index: 4, MTU: 1500, OperState: netlink.OperUp, RawFlags: upRun, HasMAC: true, Addrs: global},
			want: observed{
				Status: Status{Name: "adsl", Interface: "eth0", Ifindex: 4, Addr: addr("192.168.1.10"),
					Prefix: pfx("192.168.1.10/24"), MTU: 1500, HasMAC: true, Carrier: true, Available: true,
					Gateway: addr("192.168.1.1")},
				subnet: pfx("192.168.1.0/24"),
			},
		},
		{
			name: "ethernet without carrier",
			spec: eth,
			ls:   linkState{Exists: true, Index: 4, MTU: 1500, OperState: netlink.OperLowerLayerDown, RawFlags: iffUp, HasMAC: true, Addrs: global},
			want: observed{
				Status: Status{Name: "adsl", Interface: "eth0", Ifindex: 4, Addr: addr("192.168.1.10"),
					Prefix: pfx("192.168.1.10/24"), MTU: 1500, HasMAC: true, Gateway: addr("192.168.1.1")},
				subnet: pfx("192.168.1.0/24"),
			},
		},
		{
			name: "up with carrier, no address",
			spec: eth,
			ls:   linkState{Exists: true, Index: 4, MTU: 1500, OperState: netlink.OperUp, RawFlags: upRun, HasMAC: true},
			want: observed{Status: Status{Name: "adsl", Interface: "eth0", Ifindex: 4, MTU: 1500, HasMAC: true,
				Carrier: true, Gateway: addr("192.168.1.1")}},
		},
		{
			name: "ppp: unknown oper state, lower up, peer address, capped MTU",
			spec: Spec{Index: 2, Name: "3g", Interface: "ppp0", MTU: 1400},
			ls: linkState{Exists: true, Index: 9, MTU: 1500, OperState: netlink.OperUnknown, RawFlags: upLower,
				Addrs: []ifAddr{{Prefix: pfx("100.64.3.2/32"), Peer: pfx("100.64.3.1/32")}}},
			want: observed{
				Status: Status{Index: 2, Name: "3g", Interface: "ppp0", Ifindex: 9, Addr: addr("100.64.3.2"),
					Prefix: pfx("100.64.3.2/32"), MTU: 1400, Carrier: true, Available: true},
				subnet:   pfx("100.64.3.1/32"),
				routeMTU: 1400,
			},
		},
		{
			name: "unknown oper state, admin down",
			spec: ppp,
			ls: linkState{Exists: true, Index: 9, MTU: 1500, OperState: netlink.OperUnknown, RawFlags: iffRunning,
				Addrs: []ifAddr{{Prefix: pfx("100.64.3.2/32")}}},
			want: observed{Status: Status{Index: 2, Name: "3g", Interface: "ppp0", Ifindex: 9, Addr: addr("100.64.3.2"),
				Prefix: pfx("100.64.3.2/32"), MTU: 1500}},
		},
		{
			name: "unknown oper state, up without lower up or running",
			spec: ppp,
			ls: linkState{Exists: true, Index: 9, MTU: 1500, OperState: netlink.OperUnknown, RawFlags: iffUp,
				Addrs: []ifAddr{{Prefix: pfx("100.64.3.2/32")}}},
			want: observed{Status: Status{Index: 2, Name: "3g", Interface: "ppp0", Ifindex: 9, Addr: addr("100.64.3.2"),
				Prefix: pfx("100.64.3.2/32"), MTU: 1500}},
		},
		{
			name: "primary global address, learnt gateway, spec MTU above link MTU",
			spec: Spec{Index: 1, Name: "4g", Interface: "usb0", MTU: 9000},
			ls: linkState{Exists: true, Index: 5, MTU: 1500, OperState: netlink.OperUp, RawFlags: upRun, HasMAC: true,
				LearntGW: addr("192.168.8.1"),
				Addrs: []ifAddr{
					{Prefix: pfx("169.254.1.1/16"), Scope: 253},
					{Prefix: pfx("192.168.8.50/24"), Secondary: true},
					{Prefix: pfx("192.168.8.100/24")},
				}},
			want: observed{
				Status: Status{Index: 1, Name: "4g", Interface: "usb0", Ifindex: 5, Addr: addr("192.168.8.100"),
					Prefix: pfx("192.168.8.100/24"), MTU: 1500, HasMAC: true, Carrier: true, Available: true,
					Gateway: addr("192.168.8.1")},
				subnet: pfx("192.168.8.0/24"),
			},
		},
		{
			name: "configured gateway beats learnt one; /32 without peer has no subnet",
			spec: eth,
			ls: linkState{Exists: true, Index: 4, MTU: 1500, OperState: netlink.OperUp, RawFlags: upRun, HasMAC: true,
				LearntGW: addr("192.168.1.254"), Addrs: []ifAddr{{Prefix: pfx("192.168.1.10/32")}}},
			want: observed{Status: Status{Name: "adsl", Interface: "eth0", Ifindex: 4, Addr: addr("192.168.1.10"),
				Prefix: pfx("192.168.1.10/32"), MTU: 1500, HasMAC: true, Carrier: true, Available: true,
				Gateway: addr("192.168.1.1")}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusOf(tc.spec, tc.ls); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("statusOf:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDesired(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	obs := []observed{
		{ // Ethernet uplink with gateway.
			Status: Status{Index: 0, Ifindex: 4, Addr: addr("100.64.1.2"), Available: true, Gateway: addr("100.64.1.1")},
			subnet: pfx("100.64.1.0/24"),
		},
		{ // Down: nothing.
			Status: Status{Index: 1, Ifindex: 5, Addr: addr("100.64.2.2"), Gateway: addr("100.64.2.1")},
			subnet: pfx("100.64.2.0/24"),
		},
		{ // L3 device without gateway, peer address, MTU cap.
			Status:   Status{Index: 2, Ifindex: 9, Addr: addr("100.64.3.2"), Available: true},
			subnet:   pfx("100.64.3.1/32"),
			routeMTU: 1400,
		},
		{ // LAN-segment modem: the LAN device and address.
			Status: Status{Index: 3, Ifindex: 2, Addr: addr("10.77.0.1"), Available: true, Gateway: addr("10.77.0.254")},
			subnet: pfx("10.77.0.0/24"),
		},
	}
	routes, rules := desired(cfg, obs)
	wantRoutes := []routeSpec{
		{Table: 7701, Dst: def, Gw: addr("100.64.1.1"), LinkIndex: 4, Scope: scopeUniverse, OnLink: true},
		{Table: 7701, Dst: pfx("100.64.1.0/24"), LinkIndex: 4, Src: addr("100.64.1.2"), Scope: scopeLink},
		{Table: 7703, Dst: def, LinkIndex: 9, Scope: scopeLink, MTU: 1400},
		{Table: 7703, Dst: pfx("100.64.3.1/32"), LinkIndex: 9, Src: addr("100.64.3.2"), Scope: scopeLink, MTU: 1400},
		{Table: 7704, Dst: def, Gw: addr("10.77.0.254"), LinkIndex: 2, Scope: scopeUniverse, OnLink: true},
		{Table: 7704, Dst: pfx("10.77.0.0/24"), LinkIndex: 2, Src: addr("10.77.0.1"), Scope: scopeLink},
	}
	wantRules := []ruleSpec{
		{Priority: 7800, Table: 7701, Src: pfx("100.64.1.2/32")},
		{Priority: 7820, Table: 7703, Src: pfx("100.64.3.2/32")},
		{Priority: 7830, Table: 7704, Src: pfx("10.77.0.1/32")},
	}
	if !reflect.DeepEqual(routes, wantRoutes) {
		t.Errorf("routes:\n got %v\nwant %v", routes, wantRoutes)
	}
	if !reflect.DeepEqual(rules, wantRules) {
		t.Errorf("rules:\n got %v\nwant %v", rules, wantRules)
	}
	// What is installed is owned, and reads back as the same spec.
	for _, r := range routes {
		nr := r.netlinkRoute(cfg.Protocol)
		if !cfg.ownsRoute(nr) {
			t.Errorf("route %v not owned", r)
		}
		if back, ok := routeSpecOf(*nr); !ok || back != r {
			t.Errorf("routeSpecOf(netlinkRoute(%v)) = %v, %v", r, back, ok)
		}
	}
	for _, r := range rules {
		nr := r.netlinkRule(cfg.Protocol)
		if !cfg.ownsRule(nr) {
			t.Errorf("rule %v not owned", r)
		}
		if back, ok := ruleSpecOf(*nr); !ok || back != r {
			t.Errorf("ruleSpecOf(netlinkRule(%v)) = %v, %v", r, back, ok)
		}
	}
}

func TestOwnership(t *testing.T) {
	cfg, _ := Config{}.withDefaults()
	rule := func(prio int, proto uint8) *netlink.Rule {
		r := netlink.NewRule()
		r.Priority, r.Protocol = prio, proto
		return r
	}
	for _, tc := range []struct {
		r    *netlink.Rule
		want bool
	}{
		{rule(7800, 167), true},
		{rule(7999, 167), true},
		{rule(7799, 167), false}, // lan/steer's
		{rule(8000, 167), false},
		{rule(7810, 3), false},
	} {
		if got := cfg.ownsRule(tc.r); got != tc.want {
			t.Errorf("ownsRule(prio %d proto %d) = %v, want %v", tc.r.Priority, tc.r.Protocol, got, tc.want)
		}
	}
	for _, tc := range []struct {
		table, proto int
		want         bool
	}{
		{7700, 167, false}, // lan/steer's table
		{7701, 167, true},
		{7720, 167, true},
		{7721, 167, false},
		{7701, 4, false},
		{254, 167, false},
	} {
		r := &netlink.Route{Table: tc.table, Protocol: netlink.RouteProtocol(tc.proto)}
		if got := cfg.ownsRoute(r); got != tc.want {
			t.Errorf("ownsRoute(table %d proto %d) = %v, want %v", tc.table, tc.proto, got, tc.want)
		}
	}
}

func TestLearntGateway(t *testing.T) {
	_, defNet, _ := net.ParseCIDR("0.0.0.0/0")
	_, other, _ := net.ParseCIDR("10.0.0.0/8")
	routes := []netlink.Route{
		{Dst: other, LinkIndex: 5, Gw: net.IPv4(192, 168, 8, 2)},                 // not a default route
		{Dst: defNet, LinkIndex: 5, Gw: net.IPv4(192, 168, 8, 3), Priority: 600}, // worse metric
		{Dst: defNet, LinkIndex: 5, Gw: net.IPv4(192, 168, 8, 1), Priority: 100},
		{Dst: defNet, LinkIndex: 6, Gw: net.IPv4(192, 168, 9, 1)},
		{Dst: defNet, MultiPath: []*netlink.NexthopInfo{{LinkIndex: 7, Gw: net.IPv4(192, 168, 10, 1)}}},
	}
	for ifindex, want := range map[int]netip.Addr{
		5: addr("192.168.8.1"),
		6: addr("192.168.9.1"),
		7: addr("192.168.10.1"),
		8: {},
	} {
		if got := learntGateway(routes, ifindex); got != want {
			t.Errorf("learntGateway(%d) = %v, want %v", ifindex, got, want)
		}
	}
}

func TestSpecOfRejectsForeignShapes(t *testing.T) {
	r := netlink.NewRule()
	r.Priority, r.Table = 7800, 7701
	if _, ok := ruleSpecOf(*r); ok {
		t.Error("ruleSpecOf accepted a rule without source")
	}
	r.Src = ipNet(pfx("100.64.1.2/32"))
	r.IifName = "lan0"
	if _, ok := ruleSpecOf(*r); ok {
		t.Error("ruleSpecOf accepted an iif rule")
	}
	_, defNet, _ := net.ParseCIDR("0.0.0.0/0")
	if _, ok := routeSpecOf(netlink.Route{Table: 7701, Dst: defNet, LinkIndex: 3, Type: rtnUnicast, Priority: 5}); ok {
		t.Error("routeSpecOf accepted a route with a metric")
	}
	if _, ok := routeSpecOf(netlink.Route{Table: 7701, Dst: defNet, LinkIndex: 3, Type: 7 /* blackhole */}); ok {
		t.Error("routeSpecOf accepted a blackhole route")
	}
}
