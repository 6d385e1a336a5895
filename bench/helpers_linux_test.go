package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/uplinks/nftguard"
)

// Kernel ids wanflow uses by default (see docs/architecture.md).
const (
	rulePrioLo, rulePrioHi = 7690, 7999
	tableLo, tableHi       = 7700, 7799
	routeProto             = 167
)

// kstate counts what wanflow owns in the router namespace.
type kstate struct {
	rules, dupRules   int
	routes, dupRoutes int
	tun               int
	nftTables         int
	holds             int // nftguard's hold table (a planned restart)
}

func (k kstate) total() int { return k.rules + k.routes + k.tun + k.nftTables + k.holds }

func (k kstate) String() string {
	return fmt.Sprintf("rules=%d (dup %d) routes=%d (dup %d) tun=%d nft_tables=%d holds=%d", k.rules, k.dupRules, k.routes, k.dupRoutes, k.tun, k.nftTables, k.holds)
}

func kernelState(t *testing.T, l *lab.Lab) kstate {
	t.Helper()
	h, err := l.Router.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var k kstate
	rules, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	seenRule := map[string]bool{}
	for _, r := range rules {
		if r.Priority < rulePrioLo || r.Priority > rulePrioHi {
			continue
		}
		k.rules++
		key := fmt.Sprintf("%d/%d/%v/%s", r.Priority, r.Table, r.Src, r.IifName)
		if seenRule[key] {
			k.dupRules++
		}
		seenRule[key] = true
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	seenRoute := map[string]bool{}
	for _, r := range routes {
		if (r.Table < tableLo || r.Table > tableHi) && r.Protocol != routeProto {
			continue
		}
		k.routes++
		key := fmt.Sprintf("%d/%v/%v/%d", r.Table, r.Dst, r.Gw, r.LinkIndex)
		if seenRoute[key] {
			k.dupRoutes++
		}
		seenRoute[key] = true
	}
	if _, err := h.LinkByName("wf0"); err == nil {
		k.tun = 1
	}
	f, err := os.Open(l.Router.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		switch tb.Name {
		case "wanflow":
			k.nftTables++
		case "wanflow" + nftguard.HoldSuffix:
			k.holds++
		}
	}
	return k
}

// traceProbe sends one UDP datagram with the given TTL from ns to dst (a
// closed port) and returns the source, type and code of the ICMP error that
// answers it.
func traceProbe(ns *lab.NS, dst netip.Addr, ttl int) (from netip.Addr, typ, code uint8, err error) {
	var icmp net.PacketConn
	var udp *net.UDPConn
	err = ns.Do(func() error {
		var err error
		if icmp, err = net.ListenPacket("ip4:icmp", "0.0.0.0"); err != nil {
			return err
		}
		udp, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(33434+ttl))))
		return err
	})
	if icmp != nil {
		defer icmp.Close()
	}
	if udp != nil {
		defer udp.Close()
	}
	if err != nil {
		return
	}
	if err = ipv4.NewConn(udp).SetTTL(ttl); err != nil {
		return
	}
	sport := uint16(udp.LocalAddr().(*net.UDPAddr).Port)
	deadline := time.Now().Add(3 * time.Second)
	buf := make([]byte, 1500)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if _, err = udp.Write([]byte("wanflow-trace")); err != nil {
			return
		}
		icmp.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, addr, rerr := icmp.ReadFrom(buf)
			if rerr != nil {
				break // timeout: send again
			}
			m := buf[:n]
			// ICMP header (8) + quoted IPv4 header + UDP ports.
			if len(m) < 8+20+4 || (m[0] != 3 && m[0] != 11) {
				continue
			}
			ihl := int(m[8]&0xf) * 4
			if len(m) < 8+ihl+4 || m[8+9] != unix.IPPROTO_UDP {
				continue
			}
			if binary.BigEndian.Uint16(m[8+ihl:]) != sport {
				continue
			}
			a, _ := netip.AddrFromSlice(addr.(*net.IPAddr).IP.To4())
			return a, m[0], m[1], nil
		}
	}
	return netip.Addr{}, 0, 0, errors.New("no ICMP answer")
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// echoCapture counts the ICMP echo requests seen on one interface of a lab
// namespace, by source address: a packet socket sees what passes through,
// forwarded traffic included.
type echoCapture struct {
	mu    sync.Mutex
	bySrc map[netip.Addr]int
	conn  *packet.Conn
	done  chan struct{}
}

func captureEchoRequests(t *testing.T, ns *lab.NS, ifname string) *echoCapture {
	t.Helper()
	c := &echoCapture{bySrc: map[netip.Addr]int{}, done: make(chan struct{})}
	c.conn = listenIP(t, ns, ifname)
	go func() {
		defer close(c.done)
		buf := make([]byte, 2048)
		for {
			n, _, err := c.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			b := buf[:n]
			if n < 28 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_ICMP {
				continue
			}
			ihl := int(b[0]&0xf) * 4
			if n < ihl+8 || b[ihl] != 8 { // echo request
				continue
			}
			src, _ := netip.AddrFromSlice(b[12:16])
			c.mu.Lock()
			c.bySrc[src]++
			c.mu.Unlock()
		}
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *echoCapture) stop() {
	c.conn.Close()
	<-c.done
}

func (c *echoCapture) count(src netip.Addr) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySrc[src]
}

// listenIP opens an AF_PACKET socket for the IPv4 packets of ifname in ns.
func listenIP(t *testing.T, ns *lab.NS, ifname string) *packet.Conn {
	t.Helper()
	var c *packet.Conn
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c, err = packet.Listen(ifi, packet.Datagram, unix.ETH_P_IP, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}
