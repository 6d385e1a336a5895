package lab

import (
	"errors"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// KernelBaseline configures the router namespace the way the reference
// setup did without wanflow, for comparison benchmarks and lab tests: one
// multipath default route in the main table ("nexthop via <gw> dev <if>
// weight <w>" per uplink; L3 uplinks without gateway), nftables masquerade
// per uplink interface (table ip labbaseline), and
// net.ipv4.fib_multipath_hash_policy 0 (BaselineMultipathL3) or 1
// (BaselineMultipathL4). With more than one nexthop, a tc BPF filter on the
// router's LAN ingress clears each packet's hash (see clearhash_linux.go), so
// that, as behind a real NIC, the L4 policy hashes the 5-tuple and not the
// LAN host's socket.
//
// weights has one entry per uplink (nil: all 1); an uplink with weight 0 is
// left out. undo removes the route and the table, flushes conntrack and
// restores the hash policy. Do not run it while wanflow runs in the router
// namespace.
func (l *Lab) KernelBaseline(mode BaselineMode, weights []int) (undo func() error, err error) {
	var policy string
	switch mode {
	case BaselineMultipathL3:
		policy = "0"
	case BaselineMultipathL4:
		policy = "1"
	case BaselineConnmark:
		return l.ConnmarkBaseline(BaselineMultipathL4, weights)
	default:
		return nil, fmt.Errorf("lab: kernel baseline mode %v not implemented", mode)
	}
	if weights == nil {
		weights = make([]int, len(l.Uplinks))
		for i := range weights {
			weights[i] = 1
		}
	}
	if len(weights) != len(l.Uplinks) {
		return nil, fmt.Errorf("lab: %d baseline weights for %d uplinks", len(weights), len(l.Uplinks))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("lab: closed")
	}

	h, err := l.Router.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	route := &netlink.Route{Dst: ipNet(defaultRoute4), Protocol: unix.RTPROT_STATIC}
	var ifaces []string
	for i, w := range weights {
		if w < 0 || w > 256 {
			return nil, fmt.Errorf("lab: baseline weight %d of uplink %d outside 0..256", w, i)
		}
		if w == 0 {
			continue
		}
		u := l.Uplinks[i]
		lk, err := h.LinkByName(u.Interface)
		if err != nil {
			return nil, fmt.Errorf("lab: baseline: uplink %d interface %s: %w", i, u.Interface, err)
		}
		nh := &netlink.NexthopInfo{LinkIndex: lk.Attrs().Index, Hops: w - 1}
		if u.Gateway.IsValid() {
			nh.Gw = u.Gateway.AsSlice()
		}
		route.MultiPath = append(route.MultiPath, nh)
		ifaces = append(ifaces, u.Interface)
	}
	if len(route.MultiPath) == 0 {
		return nil, errors.New("lab: baseline: every weight is 0")
	}

	oldPolicy, err := l.Router.ReadSysctl("net/ipv4/fib_multipath_hash_policy")
	if err != nil {
		return nil, err
	}
	undo = func() error {
		var errs []error
		if err := l.Router.Do(func() error {
			err := netlink.RouteDel(&netlink.Route{Dst: ipNet(defaultRoute4), Protocol: unix.RTPROT_STATIC})
			if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("lab: baseline: delete default route: %w", err)
			}
			netlink.ConntrackTableFlush(netlink.ConntrackTable) // best effort: forget masqueraded flows
			return detachClearHash(l.RouterLAN)
		}); err != nil {
			errs = append(errs, err)
		}
		if err := l.deleteNFTTable(BaselineTable); err != nil {
			errs = append(errs, fmt.Errorf("lab: baseline: delete nftables table: %w", err))
		}
		if err := l.Router.WriteSysctl("net/ipv4/fib_multipath_hash_policy", oldPolicy); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}

	if err := l.Router.WriteSysctl("net/ipv4/fib_multipath_hash_policy", policy); err != nil {
		return nil, err
	}
	if len(route.MultiPath) > 1 {
		if err := l.Router.Do(func() error { return attachClearHash(l.RouterLAN) }); err != nil {
			return nil, errors.Join(err, undo())
		}
	}
	if err := h.RouteReplace(route); err != nil {
		return nil, errors.Join(fmt.Errorf("lab: baseline: multipath default route: %w", err), undo())
	}
	if err := l.nft(func(c *nftables.Conn) error { return addMasquerade(c, ifaces, l.RouterLAN) }); err != nil {
		return nil, errors.Join(fmt.Errorf("lab: baseline: nftables: %w", err), undo())
	}
	return undo, nil
}

// nft runs fn with an nftables connection whose socket lives in the router
// namespace.
func (l *Lab) nft(fn func(*nftables.Conn) error) error {
	var c *nftables.Conn
	if err := l.Router.Do(func() error {
		var err error
		c, err = nftables.New(nftables.AsLasting())
		return err
	}); err != nil {
		return err
	}
	defer c.CloseLasting()
	return fn(c)
}

// ifnameData is an interface name as nftables compares it (IFNAMSIZ bytes,
// NUL padded).
func ifnameData(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// addMasquerade creates table ip labbaseline with a nat postrouting chain
// masquerading everything leaving through ifaces (through lanIf, a
// LAN-segment uplink, only traffic leaving the LAN prefix).
func addMasquerade(c *nftables.Conn, ifaces []string, lanIf string) error {
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: BaselineTable})
	ch := c.AddChain(&nftables.Chain{
		Name:     "postrouting",
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	})
	lanNet := LANPrefix.Addr().As4()
	mask := net.CIDRMask(LANPrefix.Bits(), 32)
	for _, ifname := range ifaces {
		exprs := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameData(ifname)},
		}
		if ifname == lanIf {
			exprs = append(exprs,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: lanNet[:]},
			)
		}
		exprs = append(exprs, &expr.Masq{})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	return c.Flush()
}

// deleteNFTTable deletes the router's IPv4 nftables table name, if it
// exists.
func (l *Lab) deleteNFTTable(name string) error {
	return l.nft(func(c *nftables.Conn) error {
		t, err := c.ListTableOfFamily(name, nftables.TableFamilyIPv4)
		if err != nil {
			return nil // not there
		}
		c.DelTable(t)
		return c.Flush()
	})
}
