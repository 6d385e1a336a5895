package lab_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
)

// connmarkState counts ConnmarkBaseline's kernel objects in the router
// namespace: fwmark rules, routes in its tables, its nftables table, and
// the nexthops of the main table's default route.
func connmarkState(t *testing.T, l *lab.Lab) (rules, routes, nft, nexthops int) {
	t.Helper()
	h, err := l.Router.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rs, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Priority >= lab.ConnmarkRulePriority && r.Priority < lab.ConnmarkRulePriority+len(l.Uplinks) {
			rules++
		}
	}
	for i := range l.Uplinks {
		rt, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: lab.ConnmarkTableBase + i}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		routes += len(rt)
	}
	main, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range main {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			nexthops += max(1, len(r.MultiPath))
		}
	}
	if err := l.Router.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		for _, tb := range tables {
			if tb.Name == lab.ConnmarkTable {
				nft++
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return rules, routes, nft, nexthops
}

// TestConnmarkBaseline: connections stay on the uplink of their first reply
// while the multipath route loses a nexthop and gets new weights
// (SetMultipathWeights, run twice each), new connections avoid a removed
// nexthop, and undo removes everything.
func TestConnmarkBaseline(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}, {}}})
	undo, err := l.ConnmarkBaseline(lab.BaselineMultipathL4, []int{1, 1, 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { undo() })
	if rules, routes, nft, nh := connmarkState(t, l); rules != 3 || routes != 9 || nft != 1 || nh != 3 {
		t.Errorf("installed: %d rules, %d routes, %d nftables tables, %d nexthops; want 3, 9 (LAN, subnet, default per uplink), 1, 3", rules, routes, nft, nh)
	}

	// Long flows across a nexthop removal and a weight change.
	done := make(chan []labclient.Flow)
	go func() {
		flows, _ := labclient.Run(context.Background(), l.Hosts[0], labclient.Config{TCPFlows: 60, UDPFlows: 60, Messages: 15, Interval: 100 * time.Millisecond, Concurrency: 120})
		done <- flows
	}()
	time.Sleep(400 * time.Millisecond)
	for range 2 {
		if err := l.SetMultipathWeights([]int{1, 0, 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, nh := connmarkState(t, l); nh != 2 {
		t.Errorf("%d nexthops after removing one, want 2", nh)
	}
	time.Sleep(400 * time.Millisecond)
	for range 2 {
		if err := l.SetMultipathWeights([]int{5, 1, 1}); err != nil {
			t.Fatal(err)
		}
	}
	flows := <-done
	s := labclient.Summarize(flows)
	if s.Failed != 0 || s.Moved != 0 || len(s.PerAddr) != 3 {
		t.Errorf("long flows: %v; want none failed or moved, all three uplinks used", s)
	}

	// New flows never take a removed nexthop. They go to the second echo
	// port: a 5-tuple of the long flows above (the kernel reuses source
	// ports) would find its conntrack entry, mark and all, and rightly keep
	// its uplink.
	if err := l.SetMultipathWeights([]int{1, 0, 1}); err != nil {
		t.Fatal(err)
	}
	var alt []netip.AddrPort
	for _, s := range l.Servers {
		alt = append(alt, netip.AddrPortFrom(s, lab.AltEchoPort))
	}
	flows, err = labclient.Run(context.Background(), l.Hosts[0], labclient.Config{UDPFlows: 200, Targets: alt})
	if err != nil {
		t.Fatal(err)
	}
	if s := labclient.Summarize(flows); s.Failed != 0 || s.PerAddr[l.Uplinks[1].Addr] != 0 {
		t.Errorf("new flows with up2's nexthop removed: %v", s)
	}
	if err := l.SetMultipathWeights([]int{0, 0, 0}); err == nil {
		t.Error("SetMultipathWeights with every weight 0: no error")
	}

	for range 2 {
		if err := undo(); err != nil {
			t.Fatal(err)
		}
	}
	if rules, routes, nft, nh := connmarkState(t, l); rules+routes+nft+nh != 0 {
		t.Errorf("after undo: %d rules, %d routes, %d nftables tables, %d nexthops; want none", rules, routes, nft, nh)
	}
}

// TestAddHostAddrs: host 1 gets every free LAN address and flows from each
// of them cross the kernel baseline.
func TestAddHostAddrs(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{ExtraHostAddrs: 150})
	free := l.FreeLANAddrs()
	if len(free) != 101 { // 10.77.0.2-.9, .11-.99, .250-.253
		t.Fatalf("%d free LAN addresses, want 101: %v", len(free), free)
	}
	used := append([]netip.Addr{lab.RouterLANAddr.Addr(), lab.ModemAddr}, l.HostAddrs...)
	for _, a := range free {
		if slices.Contains(used, a) || slices.Contains(l.HostExtraAddrs, a) || !lab.LANPrefix.Contains(a) {
			t.Errorf("free address %v is in use or outside the LAN", a)
		}
	}
	for range 2 {
		if err := l.AddHostAddrs(0, free); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.AddHostAddrs(0, []netip.Addr{netip.MustParseAddr("10.78.0.1")}); err == nil {
		t.Error("an address outside the LAN: no error")
	}
	labtest.Baseline(t, l, lab.BaselineMultipathL4, nil)
	flows, err := labclient.Run(context.Background(), l.Hosts[0], labclient.Config{UDPFlows: len(free), Sources: free})
	if err != nil {
		t.Fatal(err)
	}
	if s := labclient.Summarize(flows); s.Failed != 0 {
		t.Errorf("flows from the added addresses: %v", s)
	}
	for i, f := range flows {
		if f.Local.Addr() != free[i] {
			t.Errorf("flow %d from %v, want %v", i, f.Local.Addr(), free[i])
		}
	}
}
