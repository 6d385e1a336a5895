package nftguard

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/wanflow/wanflow/bench/lab/nstest"
)

// TestHold: while the hold lasts the kernel forwards nothing from the LAN
// out of an uplink (the fail-open masquerade never sees it); when its
// timeout passes, with no process acting, forwarding resumes by itself;
// Unhold ends it at once and removes the table; the guard table is not
// touched.
func TestHold(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	lanNS, r, i := nstest.New(t), nstest.New(t), nstest.New(t)
	nstest.Veth(t, r.Handle(), "lan0", "10.77.0.1/24", lanNS.Handle(), lanNS.NsHandle(), "eth0", "10.77.0.10/24")
	nstest.Veth(t, r.Handle(), "up1", "100.64.1.2/24", i.Handle(), i.NsHandle(), "isp1", "100.64.1.1/24")
	gw := &netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: net.IPv4(10, 77, 0, 1)}
	if err := lanNS.Handle().RouteAdd(gw); err != nil {
		t.Fatal(err)
	}
	if err := r.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
		t.Fatal(err)
	}
	conn := connIn(t, r.NsHandle())
	// The guard of a daemon that is gone: its TUN does not exist, so it
	// leaves replies to NAT ports to the kernel.
	if err := Apply(conn, Config{LANPrefixes: []netip.Prefix{lanNet}, Interfaces: []string{"up1"}, TUN: "wf0", LookupMark: 0x77f10000}, []netip.Addr{a1}); err != nil {
		t.Fatal(err)
	}
	guard := dump(t, conn)

	udpEchoServer(t, i)
	// answered sends one datagram from a new LAN port and waits 300 ms.
	port := 41000
	answered := func() bool {
		port++
		var ok bool
		lanNS.Do(func() error {
			c, err := net.DialUDP("udp4", &net.UDPAddr{Port: port}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("100.64.1.1:7")))
			if err != nil {
				return err
			}
			defer c.Close()
			c.Write([]byte("x"))
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, err = c.Read(make([]byte, 8))
			ok = err == nil
			return nil
		})
		return ok
	}
	if !answered() {
		t.Fatal("no answer before the hold: the lab does not forward")
	}

	for _, bad := range []HoldConfig{
		{LAN: []string{"lan0"}, Uplinks: []string{"up1"}, Addrs: []netip.Addr{a1}, Timeout: time.Second},
		{LAN: []string{"lan0"}, Uplinks: []string{"up1"}},
		{LAN: []string{"lan0"}, Timeout: time.Second},
		{LAN: []string{"a/very/long/interface"}, Uplinks: []string{"up1"}, Timeout: time.Second},
	} {
		if err := Hold(conn, bad); err == nil {
			t.Errorf("Hold(%+v) = nil, want an error", bad)
		}
	}
	const hold = 2 * time.Second
	start := time.Now()
	// A reply to a NAT port from the internet side: the kernel answers
	// (RST) unless something drops it.
	natReply := func() error {
		return i.Do(func() error {
			c, err := net.DialTimeout("tcp4", "100.64.1.2:25000", 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := natReply(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("reply to a NAT port before the hold: %v, want refused (no TUN: the guard leaves it to the kernel)", err)
	}
	if err := Hold(conn, HoldConfig{LAN: []string{"lan0"}, Uplinks: []string{"up1", "up2"},
		Addrs: []netip.Addr{a1}, Ports: [2]uint16{20000, 32767}, Timeout: hold}); err != nil {
		t.Fatal(err)
	}
	if on, left, err := Holding(conn, ""); err != nil || !on || left <= 0 || left > hold {
		t.Fatalf("Holding = %v, %v, %v; want true, (0, %v]", on, left, err, hold)
	}
	if answered() {
		t.Fatal("answered during the hold")
	}
	if err := natReply(); err == nil || errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("reply to a NAT port during the hold: %v, want a timeout (kept from the kernel)", err)
	}
	// Forwarding resumes when the element times out, with nothing done.
	for !answered() {
		if time.Since(start) > hold+3*time.Second {
			t.Fatalf("still held %v after a %v hold", time.Since(start), hold)
		}
	}
	resumed := time.Since(start)
	if resumed < hold-100*time.Millisecond {
		t.Fatalf("forwarding resumed after %v, before the %v hold ended", resumed, hold)
	}
	t.Logf("a %v hold ended by itself: forwarding resumed after %v", hold, resumed.Round(time.Millisecond))
	if on, _, err := Holding(conn, ""); err != nil || on {
		t.Errorf("Holding after the timeout = %v, %v; want false", on, err)
	}
	if err := natReply(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("reply to a NAT port after the hold: %v, want refused (the kernel's again)", err)
	}

	// Unhold ends a hold at once and leaves the guard table as it was.
	if err := Hold(conn, HoldConfig{LAN: []string{"lan0"}, Uplinks: []string{"up1"}, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if answered() {
		t.Fatal("answered during the second hold")
	}
	for range 2 {
		if err := Unhold(conn, ""); err != nil {
			t.Fatal(err)
		}
	}
	if !answered() {
		t.Fatal("no answer after Unhold")
	}
	if got := dump(t, conn); !slices.Equal(got, guard) {
		t.Errorf("after Unhold the tables are\n%v\nwant\n%v", got, guard)
	}
}
