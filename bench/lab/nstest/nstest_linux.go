package nstest

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/uplinks/netnsrun"
)

// NS is a network namespace created for one test, with a netlink handle
// inside it. Both are closed (and a named namespace is deleted) when the
// test ends.
type NS struct {
	ns netns.NsHandle
	h  *netlink.Handle
}

// New creates an anonymous network namespace with lo up that lives until
// the test ends. It skips the test unless it runs as root.
func New(t testing.TB) *NS {
	t.Helper()
	return create(t, "")
}

// NewNamed creates the named network namespace /run/netns/name (so that
// `ip netns exec` can enter it), with lo up; it is deleted when the test
// ends. It skips the test unless it runs as root.
func NewNamed(t testing.TB, name string) *NS {
	t.Helper()
	return create(t, name)
}

func create(t testing.TB, name string) *NS {
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
		var ns netns.NsHandle
		if name == "" {
			ns, err = netns.New() // unshare: this thread is now inside ns
		} else {
			ns, err = netns.NewNamed(name) // this thread is now inside ns
		}
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
		if name != "" {
			t.Fatalf("create netns %s: %v", name, r.err)
		}
		t.Fatalf("new netns: %v", r.err)
	}
	t.Cleanup(func() {
		r.ns.Close()
		if name == "" {
			return
		}
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
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
	return &NS{ns: r.ns, h: h}
}

// NsHandle returns the namespace's file descriptor handle.
func (n *NS) NsHandle() netns.NsHandle { return n.ns }

// Handle returns the netlink handle inside the namespace.
func (n *NS) Handle() *netlink.Handle { return n.h }

// Do runs fn on a locked OS thread inside the namespace (see Do).
func (n *NS) Do(fn func() error) error { return Do(n.ns, fn) }

// Do runs fn on a locked OS thread inside ns; sockets fn opens stay in ns.
// If the thread cannot return to its original namespace it stays locked and
// dies with its goroutine, so no goroutine ever runs in a foreign namespace
// by accident.
func Do(ns netns.NsHandle, fn func() error) error {
	return netnsrun.Do(ns, fn)
}

// AddVeth creates the veth pair name<->peer inside the handle's namespace,
// sets both ends up and returns the link name.
func AddVeth(t testing.TB, h *netlink.Handle, name, peer string) netlink.Link {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	for _, n := range []string{peer, name} {
		if err := h.LinkSetUp(Link(t, h, n)); err != nil {
			t.Fatalf("set %s up: %v", n, err)
		}
	}
	return Link(t, h, name)
}

// Veth creates the veth pair name (in h's namespace, with address cidr)
// and peer (in peerNS, whose handle is peerH, with address peerCIDR) and
// sets both ends up.
func Veth(t testing.TB, h *netlink.Handle, name, cidr string, peerH *netlink.Handle, peerNS netns.NsHandle, peer, peerCIDR string) {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer, PeerNamespace: netlink.NsFd(peerNS)}); err != nil {
		t.Fatalf("add veth %s-%s: %v", name, peer, err)
	}
	for _, x := range []struct {
		h          *netlink.Handle
		name, cidr string
	}{{h, name, cidr}, {peerH, peer, peerCIDR}} {
		l := Link(t, x.h, x.name)
		a, err := netlink.ParseAddr(x.cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.h.AddrAdd(l, a); err != nil {
			t.Fatalf("address %s on %s: %v", x.cidr, x.name, err)
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", x.name, err)
		}
	}
}

// Link returns the link name in the handle's namespace, failing the test
// if there is none.
func Link(t testing.TB, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

// OpenTUN creates the L3 TUN device name (no MAC, like ppp0) inside ns and
// returns its file; the device has carrier while the file is open and
// vanishes when it is closed (at the latest when the test ends), as a PPP
// device does when pppd exits.
func OpenTUN(t testing.TB, ns netns.NsHandle, name string) *os.File {
	t.Helper()
	var f *os.File
	err := Do(ns, func() error {
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
