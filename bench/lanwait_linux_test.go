package bench

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// TestStartWaitsForLANAddress: at boot wanflow may start before the
// network configuration has set the LAN address; it waits for it instead
// of failing (and hitting systemd's start limit), then routes.
func TestStartWaitsForLANAddress(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}}})
	h, err := l.Router.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(l.RouterLAN)
	if err != nil {
		t.Fatal(err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: l.RouterLANAddr.Addr().AsSlice(), Mask: net.CIDRMask(l.RouterLANAddr.Bits(), 32)}}
	if err := h.AddrDel(link, addr); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(time.Second)
		if err := h.AddrAdd(link, addr); err != nil {
			t.Error(err)
		}
	}()
	start := time.Now()
	r, err := labrouter.Start(l, wanflowBin, t.TempDir(), labrouter.ConfigYAML(l, labrouter.Options{}), nil, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	t.Logf("running %v after start, the LAN address added after 1 s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(r.Log(), "waiting for the LAN interface's IPv4 address") {
		t.Errorf("no wait logged:\n%s", r.Log())
	}
	flows := run(t, l.Hosts[0], labclient.Config{TCPFlows: 10, UDPFlows: 10, Messages: 2})
	checkSticky(t, flows)
}
