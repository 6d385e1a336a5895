package uplinks

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Helpers for the root tests: every one of them acts inside a namespace the
// test created, never in the host namespace.

// inNS runs fn on a locked OS thread inside ns; a thread that cannot get
// back to its namespace dies with its goroutine instead of being reused.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- err
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// newNS creates an anonymous network namespace that lives until the test
// ends, and returns it with a netlink handle inside it.
func newNS(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	type result struct {
		ns  netns.NsHandle
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.New() // unshare: this thread is now inside ns
		if err != nil {
			res <- result{err: err} // thread state unknown: let it die locked
			return
		}
		if err := netns.Set(orig); err != nil {
			ns.Close()
			res <- result{err: err}
			return
		}
		runtime.UnlockOSThread()
		res <- result{ns: ns}
	}()
	r := <-res
	if r.err != nil {
		t.Fatalf("new netns: %v", r.err)
	}
	t.Cleanup(func() { r.ns.Close() })
	h, err := netlink.NewHandleAt(r.ns)
	if err != nil {
		t.Fatalf("netlink handle in netns: %v", err)
	}
	t.Cleanup(h.Close)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return r.ns, h
}

// addVeth creates the veth pair name<->peer, sets both ends up and gives
// name the address cidr (if not "").
func addVeth(t *testing.T, h *netlink.Handle, name, peer, cidr string) netlink.Link {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	for _, n := range []string{peer, name} {
		setUp(t, h, n, true)
	}
	l := link(t, h, name)
	if cidr != "" {
		addAddr(t, h, name, cidr, "")
	}
	return l
}

func link(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

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
func openTUN(t *testing.T, ns netns.NsHandle, name string) *os.File {
	t.Helper()
	var f *os.File
	err := inNS(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun")
		return nil
	})
	if err != nil {
		t.Fatalf("create TUN %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

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
