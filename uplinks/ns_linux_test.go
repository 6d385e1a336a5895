package uplinks

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/bench/lab/nstest"
)

// Helpers for the root tests: every one of them acts inside a namespace the
// test created, never in the host namespace.

// newNS creates an anonymous network namespace that lives until the test
// ends, and returns it with a netlink handle inside it.
func newNS(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	n := nstest.New(t)
	return n.NsHandle(), n.Handle()
}

// addVeth creates the veth pair name<->peer, sets both ends up and gives
// name the address cidr (if not "").
func addVeth(t *testing.T, h *netlink.Handle, name, peer, cidr string) netlink.Link {
	t.Helper()
	l := nstest.AddVeth(t, h, name, peer)
	if cidr != "" {
		addAddr(t, h, name, cidr, "")
	}
	return l
}

var link = nstest.Link

func setUp(t *testing.T, h *netlink.Handle, name string, up bool) {
	t.Helper()
	l := link(t, h, name)
	var err error
	if up {
		err = h.LinkSetUp(l)
	} else {
		err = h.LinkSetDown(l)
	}
	if err != nil {
		t.Fatalf("set %s up=%v: %v", name, up, err)
	}
}

// addAddr adds cidr (with point-to-point peer, if not "") to device name.
func addAddr(t *testing.T, h *netlink.Handle, name, cidr, peer string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if peer != "" {
		p, err := netlink.ParseAddr(peer)
		if err != nil {
			t.Fatal(err)
		}
		a.Peer = p.IPNet
	}
	if err := h.AddrAdd(link(t, h, name), a); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, name, err)
	}
}

// delAddr deletes cidr (with point-to-point peer, if not "") from device
// name.
func delAddr(t *testing.T, h *netlink.Handle, name, cidr, peer string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if peer != "" {
		p, err := netlink.ParseAddr(peer)
		if err != nil {
			t.Fatal(err)
		}
		a.Peer = p.IPNet
	}
	if err := h.AddrDel(link(t, h, name), a); err != nil {
		t.Fatalf("delete %s from %s: %v", cidr, name, err)
	}
}

// openTUN creates the L3 TUN device name (no MAC, like ppp0) inside ns and
// returns its file; the device has carrier while the file is open and
// vanishes when it is closed, as a PPP device does when pppd exits.
var openTUN = nstest.OpenTUN

// dump renders every IPv4 rule and every IPv4 route of every table in the
// handle's namespace, sorted, one object a line, devices by name.
func dump(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	var out []string
	rules, err := listRules(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		out = append(out, fmt.Sprintf("rule %5d from=%v iif=%q table=%d proto=%d",
			r.Priority, r.Src, r.IifName, r.Table, r.Protocol))
	}
	routes, err := listRoutes(h, unix.RT_TABLE_UNSPEC)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		dev := fmt.Sprint(r.LinkIndex)
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		s := fmt.Sprintf("route table=%d %v", r.Table, r.Dst)
		if r.Gw != nil {
			s += fmt.Sprintf(" via %v", r.Gw)
		}
		s += " dev " + dev
		if r.Src != nil {
			s += fmt.Sprintf(" src %v", r.Src)
		}
		if r.Flags&rtnhFOnlink != 0 {
			s += " onlink"
		}
		if r.MTU != 0 {
			s += fmt.Sprintf(" mtu %d", r.MTU)
		}
		out = append(out, s+fmt.Sprintf(" scope=%d proto=%d", r.Scope, r.Protocol))
	}
	slices.Sort(out)
	return out
}

// owned returns the lines of a dump that carry wanflow's protocol 167.
func owned(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasSuffix(l, " proto=167") {
			out = append(out, l)
		}
	}
	return out
}

func diffLines(a, b []string) string {
	var sb strings.Builder
	for _, l := range a {
		if !slices.Contains(b, l) {
			sb.WriteString("- " + l + "\n")
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			sb.WriteString("+ " + l + "\n")
		}
	}
	return sb.String()
}
