package steer

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/wanflow/wanflow/bench/lab/nstest"
)

// newNS creates an anonymous network namespace that lives until the test
// ends, and returns it with a netlink handle inside it. The host namespace
// is never entered or changed.
func newNS(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	n := nstest.New(t)
	return n.NsHandle(), n.Handle()
}

// dump renders every IPv4 rule and every IPv4 route of every table in the
// handle's namespace, sorted, one object a line.
func dump(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	var out []string
	rules, err := listRules(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		out = append(out, fmt.Sprintf("rule %5d from=%v iif=%q table=%d suppress=%d proto=%d",
			r.Priority, r.Src, r.IifName, r.Table, r.SuppressPrefixlen, r.Protocol))
	}
	routes, err := listRoutes(h, 0) // 0 with RT_FILTER_TABLE: every table
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		dev := fmt.Sprint(r.LinkIndex)
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		out = append(out, fmt.Sprintf("route table=%d %v gw=%v dev=%s src=%v scope=%d proto=%d metric=%d",
			r.Table, r.Dst, r.Gw, dev, r.Src, r.Scope, r.Protocol, r.Priority))
	}
	slices.Sort(out)
	return out
}

// owned returns the lines of dump that are wanflow's (protocol 167).
func owned(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasSuffix(l, " proto=167") || strings.Contains(l, " proto=167 ") {
			out = append(out, l)
		}
	}
	return out
}

// setup builds a namespace with lan0 (veth to lanp) and the TUN wf0.
func setup(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	ns, h := newNS(t)
	lan := nstest.AddVeth(t, h, "lan0", "lanp")
	addr, _ := netlink.ParseAddr("10.77.0.1/24")
	if err := h.AddrAdd(lan, addr); err != nil {
		t.Fatal(err)
	}
	nstest.OpenTUN(t, ns, "wf0")
	return ns, h
}

func TestApplyIdempotent(t *testing.T) {
	ns, h := setup(t)
	before := dump(t, h)
	s := New(h, Config{LANInterface: "lan0", NetNS: &ns})
	if err := s.Apply(); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	first := dump(t, h)
	if err := s.Apply(); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	second := dump(t, h)
	if !reflect.DeepEqual(first, second) {
		t.Errorf("second Apply changed the kernel state:\nfirst:\n%s\nsecond:\n%s",
			strings.Join(first, "\n"), strings.Join(second, "\n"))
	}
	want := []string{
		`route table=7700 0.0.0.0/0 gw=<nil> dev=wf0 src=<nil> scope=253 proto=167 metric=0`,
		`rule  7690 from=<nil> iif="" table=254 suppress=0 proto=167`,
		`rule  7700 from=<nil> iif="lan0" table=7700 suppress=-1 proto=167`,
	}
	if got := owned(second); !reflect.DeepEqual(got, want) {
		t.Errorf("wanflow objects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Everything that was there before is still there.
	for _, l := range before {
		if !slices.Contains(second, l) {
			t.Errorf("Apply removed %q", l)
		}
	}
	tun, err := h.LinkByName("wf0")
	if err != nil {
		t.Fatal(err)
	}
	if tun.Attrs().Flags&net.FlagUp == 0 {
		t.Error("wf0 is not up after Apply")
	}
	t.Logf("after Apply:\n%s", strings.Join(second, "\n"))
}

func TestApplyPrunesLeftoversOnly(t *testing.T) {
	ns, h := setup(t)
	lan, _ := h.LinkByName("lan0")
	tun, _ := h.LinkByName("wf0")
	if err := h.LinkSetUp(tun); err != nil {
		t.Fatal(err)
	}
	// A previous wanflow (killed with SIGKILL) steered another LAN device
	// and had one more route.
	old := ruleSpec{Priority: 7700, Table: 7700, IifName: "oldlan", SuppressPrefixlen: -1}
	mustRuleAdd(t, h, old.netlinkRule(167))
	dup := ruleSpec{Priority: 7690, Table: 254, SuppressPrefixlen: 0}
	mustRuleAdd(t, h, dup.netlinkRule(167)) // already the desired one
	oldRoute := routeSpec{Table: 7700, Dst: netip.MustParsePrefix("10.9.0.0/16"), LinkIndex: tun.Attrs().Index, Scope: scopeLink}
	if err := h.RouteReplace(oldRoute.netlinkRoute(167)); err != nil {
		t.Fatal(err)
	}
	// Not wanflow's: other protocol in wanflow's range and table, other
	// priorities, other tables.
	foreign := []ruleSpec{
		{Priority: 7695, Table: 100, SuppressPrefixlen: -1},                // protocol boot, in range
		{Priority: 1000, Table: 7700, SuppressPrefixlen: -1},               // protocol 167, out of range
		{Priority: 7700, Table: 7700, IifName: "x", SuppressPrefixlen: -1}, // protocol static
	}
	mustRuleAdd(t, h, foreign[0].netlinkRule(3))
	mustRuleAdd(t, h, foreign[1].netlinkRule(167))
	mustRuleAdd(t, h, foreign[2].netlinkRule(4))
	staticRoute := routeSpec{Table: 7700, Dst: netip.MustParsePrefix("10.8.0.0/16"), LinkIndex: lan.Attrs().Index, Scope: scopeLink}
	if err := h.RouteReplace(staticRoute.netlinkRoute(4)); err != nil {
		t.Fatal(err)
	}
	otherTable := routeSpec{Table: 7711, Dst: netip.MustParsePrefix("0.0.0.0/0"), LinkIndex: lan.Attrs().Index, Scope: scopeLink}
	if err := h.RouteReplace(otherTable.netlinkRoute(167)); err != nil {
		t.Fatal(err)
	}
	before := dump(t, h)

	s := New(h, Config{LANInterface: "lan0", NetNS: &ns})
	for i := range 2 {
		if err := s.Apply(); err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
	}
	after := dump(t, h)
	gone := []string{
		`rule  7700 from=<nil> iif="oldlan" table=7700 suppress=-1 proto=167`,
		`route table=7700 10.9.0.0/16 gw=<nil> dev=wf0 src=<nil> scope=253 proto=167 metric=0`,
	}
	for _, l := range before {
		if slices.Contains(gone, l) {
			if slices.Contains(after, l) {
				t.Errorf("leftover not pruned: %s", l)
			}
			continue
		}
		if !slices.Contains(after, l) {
			t.Errorf("Apply removed a foreign object: %s", l)
		}
	}
	n := 0
	for _, l := range after {
		if strings.HasPrefix(l, "rule  7690 ") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d rules at 7690, want exactly 1:\n%s", n, strings.Join(after, "\n"))
	}
}

func TestRemove(t *testing.T) {
	ns, h := setup(t)
	before := dump(t, h)
	s := New(h, Config{LANInterface: "lan0", NetNS: &ns})
	if err := s.Remove(); err != nil {
		t.Fatalf("Remove with nothing installed: %v", err)
	}
	if err := s.Apply(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.Remove(); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	after := dump(t, h)
	if got := owned(after); len(got) != 0 {
		t.Errorf("left after Remove:\n%s", strings.Join(got, "\n"))
	}
	if !reflect.DeepEqual(before, after) {
		t.Errorf("state after Apply+Remove differs from before:\nbefore:\n%s\nafter:\n%s",
			strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
}

func TestApplyFollowsTUNAndLAN(t *testing.T) {
	ns, h := setup(t)
	if err := New(h, Config{LANInterface: "lan0", NetNS: &ns}).Apply(); err != nil {
		t.Fatal(err)
	}
	// The dataplane restarts: wf0 is deleted and created again (new index),
	// and the LAN device was renamed in the configuration.
	tun, _ := h.LinkByName("wf0")
	if err := h.LinkDel(tun); err != nil {
		t.Fatal(err)
	}
	nstest.OpenTUN(t, ns, "wf0")
	nstest.AddVeth(t, h, "lan1", "lan1p")
	s := New(h, Config{LANInterface: "lan1", NetNS: &ns})
	for range 2 {
		if err := s.Apply(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		`route table=7700 0.0.0.0/0 gw=<nil> dev=wf0 src=<nil> scope=253 proto=167 metric=0`,
		`rule  7690 from=<nil> iif="" table=254 suppress=0 proto=167`,
		`rule  7700 from=<nil> iif="lan1" table=7700 suppress=-1 proto=167`,
	}
	if got := owned(dump(t, h)); !reflect.DeepEqual(got, want) {
		t.Errorf("wanflow objects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestApplyNeedsTUN(t *testing.T) {
	ns, h := newNS(t)
	nstest.AddVeth(t, h, "lan0", "lanp")
	err := New(h, Config{LANInterface: "lan0", NetNS: &ns}).Apply()
	var nf netlink.LinkNotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("Apply without wf0 = %v, want a LinkNotFoundError", err)
	}
	if got := owned(dump(t, h)); len(got) != 0 {
		t.Errorf("Apply without TUN installed:\n%s", strings.Join(got, "\n"))
	}
}

func TestSysctls(t *testing.T) {
	hostAll, hostErr := readSysctl(filepath.Join(procConf, "all", "rp_filter"))
	ns, h := newNS(t)
	nstest.AddVeth(t, h, "lan0", "lanp")
	set := map[string]int{"all": 1, "default": 0, "lan0": 0, "lanp": 2, "lo": 0}
	err := InNetNS(ns, func() error {
		for _, dev := range []string{"default", "lan0", "lanp", "lo", "all"} {
			if err := writeSysctl(filepath.Join(procConf, dev, "rp_filter"), set[dev]); err != nil {
				return err
			}
		}
		return writeSysctl("/proc/sys/net/ipv4/ip_forward", 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	nstest.OpenTUN(t, ns, "wf0") // inherits default=0; make it 1 to see Apply lower it
	if err := InNetNS(ns, func() error {
		return writeSysctl(filepath.Join(procConf, "wf0", "rp_filter"), 1)
	}); err != nil {
		t.Fatal(err)
	}

	s := New(h, Config{LANInterface: "lan0", NetNS: &ns})
	for range 2 {
		if err := s.Apply(); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{"all": 0, "default": 1, "lan0": 1, "lanp": 2, "lo": 1, "wf0": 0}
	got := make(map[string]int)
	var fwd int
	err = InNetNS(ns, func() error {
		for dev := range want {
			v, err := readSysctl(filepath.Join(procConf, dev, "rp_filter"))
			if err != nil {
				return err
			}
			got[dev] = v
		}
		var err error
		fwd, err = readSysctl("/proc/sys/net/ipv4/ip_forward")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rp_filter after Apply = %v, want %v", got, want)
	}
	if fwd != 1 {
		t.Errorf("ip_forward = %d, want 1", fwd)
	}
	if hostErr == nil {
		if v, err := readSysctl(filepath.Join(procConf, "all", "rp_filter")); err != nil || v != hostAll {
			t.Errorf("host all.rp_filter = %d, %v; was %d before the test", v, err, hostAll)
		}
	}
}

func mustRuleAdd(t *testing.T, h *netlink.Handle, r *netlink.Rule) {
	t.Helper()
	if err := h.RuleAdd(r); err != nil {
		t.Fatalf("add rule %v: %v", r, err)
	}
}

// TestFallback checks the fail-open path: while the TUN device exists LAN
// traffic is routed into it; once it is gone (a crashed daemon) the lookup
// falls through the empty TUN table to the first fallback table that has a
// route, and Remove deletes the fallback rules.
func TestFallback(t *testing.T) {
	ns, h := setup(t)
	up1 := nstest.AddVeth(t, h, "up1", "isp1")
	addr, _ := netlink.ParseAddr("100.64.1.2/24")
	if err := h.AddrAdd(up1, addr); err != nil {
		t.Fatal(err)
	}
	// Table 7702 (an unavailable uplink) is empty; 7701 has a route.
	gw := net.IPv4(100, 64, 1, 1).To4()
	if err := h.RouteAdd(&netlink.Route{Table: 7701, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: gw, LinkIndex: up1.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	s := New(h, Config{LANInterface: "lan0", NetNS: &ns, Fallback: []int{7702, 7701}, LookupMark: DefaultLookupMark})
	for range 2 {
		if err := s.Apply(); err != nil {
			t.Fatal(err)
		}
	}
	got := owned(dump(t, h))
	for _, want := range []string{
		`rule  7695 from=<nil> iif="" table=7700 suppress=-1 proto=167`,
		`rule  7710 from=<nil> iif="lan0" table=7702 suppress=-1 proto=167`,
		`rule  7711 from=<nil> iif="lan0" table=7701 suppress=-1 proto=167`,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %s in:\n%s", want, strings.Join(got, "\n"))
		}
	}
	lookup := func() (string, error) {
		rs, err := h.RouteGetWithOptions(net.IPv4(203, 0, 113, 10), &netlink.RouteGetOptions{Iif: "lan0", SrcAddr: net.IPv4(10, 77, 0, 10)})
		if err != nil {
			return "", err
		}
		l, err := h.LinkByIndex(rs[0].LinkIndex)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("dev %s via %v", l.Attrs().Name, rs[0].Gw), nil
	}
	if got, err := lookup(); err != nil || got != "dev wf0 via <nil>" {
		t.Errorf("with the TUN: %q, %v; want dev wf0", got, err)
	}
	// A reload reorders the fallback rules in place: no duplicates, no
	// other rule touched.
	before := owned(dump(t, h))
	if err := s.SetFallback([]int{7701, 7702}); err != nil {
		t.Fatal(err)
	}
	after := owned(dump(t, h))
	for _, want := range []string{
		`rule  7710 from=<nil> iif="lan0" table=7701 suppress=-1 proto=167`,
		`rule  7711 from=<nil> iif="lan0" table=7702 suppress=-1 proto=167`,
	} {
		if !slices.Contains(after, want) {
			t.Errorf("after SetFallback missing %s in:\n%s", want, strings.Join(after, "\n"))
		}
	}
	if len(after) != len(before) {
		t.Errorf("SetFallback: %d objects, before %d", len(after), len(before))
	}
	if err := s.SetFallback([]int{7700}); err == nil {
		t.Error("SetFallback with the TUN's table succeeded")
	}
	if err := s.SetFallback([]int{7702, 7701}); err != nil {
		t.Fatal(err)
	}
	if got := owned(dump(t, h)); !slices.Equal(got, before) {
		t.Errorf("SetFallback back: \n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(before, "\n"))
	}
	// The router's own view with the lookup mark (nftguard's fib check).
	marked := func(dst net.IP) string {
		rs, err := h.RouteGetWithOptions(dst, &netlink.RouteGetOptions{Mark: DefaultLookupMark})
		if err != nil {
			return err.Error()
		}
		l, _ := h.LinkByIndex(rs[0].LinkIndex)
		return l.Attrs().Name
	}
	if got := marked(net.IPv4(203, 0, 113, 10)); got != "wf0" {
		t.Errorf("lookup with mark %#x: dev %s, want wf0", DefaultLookupMark, got)
	}
	if got := marked(net.IPv4(10, 77, 0, 10)); got != "lan0" {
		t.Errorf("lookup of a LAN address with mark %#x: dev %s, want lan0 (main table first)", DefaultLookupMark, got)
	}
	tun, err := h.LinkByName("wf0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(tun); err != nil {
		t.Fatal(err)
	}
	if got, err := lookup(); err != nil || got != "dev up1 via 100.64.1.1" {
		t.Errorf("without the TUN: %q, %v; want dev up1 via 100.64.1.1 (fall through to table 7701)", got, err)
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := owned(dump(t, h)); len(got) != 0 {
		t.Errorf("left after Remove:\n%s", strings.Join(got, "\n"))
	}
	if got, err := lookup(); err == nil {
		t.Errorf("after Remove LAN traffic still routed: %s", got)
	}
}
