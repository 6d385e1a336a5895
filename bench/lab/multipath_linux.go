package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// This file holds what the stickiness benchmark needs beyond KernelBaseline:
// changing the baseline's multipath route in place (the reference setup's
// route checker dropping and re-adding a nexthop, or new weights), and the
// reference setup's connmark variant.

// multipathDefault returns the main table's multipath default route with
// one nexthop per positive weight, as KernelBaseline installs it, and the
// interfaces of those nexthops. h lives in the router namespace.
func (l *Lab) multipathDefault(h *netlink.Handle, weights []int) (*netlink.Route, []string, error) {
	if len(weights) != len(l.Uplinks) {
		return nil, nil, fmt.Errorf("lab: %d multipath weights for %d uplinks", len(weights), len(l.Uplinks))
	}
	route := &netlink.Route{Dst: ipNet(defaultRoute4), Protocol: unix.RTPROT_STATIC}
	var ifaces []string
	for i, w := range weights {
		if w < 0 || w > 256 {
			return nil, nil, fmt.Errorf("lab: multipath weight %d of uplink %d outside 0..256", w, i)
		}
		if w == 0 {
			continue
		}
		u := l.Uplinks[i]
		lk, err := h.LinkByName(u.Interface)
		if err != nil {
			return nil, nil, fmt.Errorf("lab: multipath: uplink %d interface %s: %w", i, u.Interface, err)
		}
		nh := &netlink.NexthopInfo{LinkIndex: lk.Attrs().Index, Hops: w - 1}
		if u.Gateway.IsValid() {
			nh.Gw = u.Gateway.AsSlice()
		}
		route.MultiPath = append(route.MultiPath, nh)
		ifaces = append(ifaces, u.Interface)
	}
	if len(route.MultiPath) == 0 {
		return nil, nil, errors.New("lab: multipath: every weight is 0")
	}
	return route, ifaces, nil
}

// SetMultipathWeights replaces the multipath default route that
// KernelBaseline or ConnmarkBaseline installed in the router namespace with
// one weighted by weights (one entry per uplink). An uplink with weight 0 is
// left out of the route: that is what the reference setup's route checker
// does to a dead uplink's nexthop, and setting its weight again is how it
// puts it back. At least one weight must be positive. Conntrack entries, the
// masquerade table and the hash policy stay as they are, so established
// connections meet the new route as they would on the reference box.
//
// Like KernelBaseline, it must not be used while wanflow runs in the router
// namespace.
func (l *Lab) SetMultipathWeights(weights []int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab: closed")
	}
	h, err := l.Router.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	route, _, err := l.multipathDefault(h, weights)
	if err != nil {
		return err
	}
	if err := h.RouteReplace(route); err != nil {
		return fmt.Errorf("lab: replace multipath default route with weights %v: %w", weights, err)
	}
	return nil
}

// ConnmarkBaseline configures the router namespace like the reference
// setup's connection-tracking scripts (route.sh and iptables.save, after
// Will Cooke's): KernelBaseline(hash, weights) — the multipath default route
// in the main table, masquerade, the hash policy — and in addition, per
// uplink i, a routing table ConnmarkTableBase+i holding the LAN, the
// uplink's own subnet and a default route through that uplink only, a rule
// "fwmark i+1 lookup ConnmarkTableBase+i", and nftables (table ip
// labconnmark, prerouting at mangle priority): restore each packet's mark
// from its connection's mark; a packet still unmarked that arrives on
// uplink i's interface (the first reply of a connection the multipath route
// sent there) gets mark i+1, saved to the connection. A connection's first
// packets thus follow the multipath route, and once its first reply has come
// back, every later packet follows that uplink's own table whatever the
// multipath route does. hash must be BaselineMultipathL3 or
// BaselineMultipathL4 (the policy for connections not yet marked).
//
// undo removes all of it, the KernelBaseline part included. Like
// KernelBaseline, it must not be used while wanflow runs in the router
// namespace.
func (l *Lab) ConnmarkBaseline(hash BaselineMode, weights []int) (undo func() error, err error) {
	if hash != BaselineMultipathL3 && hash != BaselineMultipathL4 {
		return nil, fmt.Errorf("lab: connmark baseline: hash mode %v, want %v or %v", hash, BaselineMultipathL3, BaselineMultipathL4)
	}
	if len(l.Uplinks) > 254 {
		return nil, fmt.Errorf("lab: connmark baseline: %d uplinks", len(l.Uplinks))
	}
	undoBase, err := l.KernelBaseline(hash, weights)
	if err != nil {
		return nil, err
	}
	undo = func() error {
		return errors.Join(l.removeConnmark(), undoBase())
	}
	if err := l.addConnmark(); err != nil {
		return nil, errors.Join(err, undo())
	}
	return undo, nil
}

// connmarkRule returns the fwmark rule of uplink i.
func connmarkRule(i int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = unix.AF_INET
	r.Priority = ConnmarkRulePriority + i
	r.Mark = uint32(i + 1)
	r.Table = ConnmarkTableBase + i
	return r
}

// addConnmark installs the per-uplink tables, the fwmark rules and the
// nftables marking of ConnmarkBaseline.
func (l *Lab) addConnmark() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab: closed")
	}
	h, err := l.Router.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	lan, err := h.LinkByName(l.RouterLAN)
	if err != nil {
		return fmt.Errorf("lab: connmark: link %s: %w", l.RouterLAN, err)
	}
	for i, u := range l.Uplinks {
		table := ConnmarkTableBase + i
		lk, err := h.LinkByName(u.Interface)
		if err != nil {
			return fmt.Errorf("lab: connmark: uplink %d interface %s: %w", i, u.Interface, err)
		}
		routes := []*netlink.Route{
			{LinkIndex: lan.Attrs().Index, Dst: ipNet(LANPrefix), Scope: netlink.SCOPE_LINK, Table: table, Protocol: unix.RTPROT_STATIC},
		}
		if sub := u.Prefix.Masked(); sub.Bits() < 32 && sub != LANPrefix {
			routes = append(routes, &netlink.Route{LinkIndex: lk.Attrs().Index, Dst: ipNet(sub), Scope: netlink.SCOPE_LINK, Table: table, Protocol: unix.RTPROT_STATIC})
		}
		if u.Peer.IsValid() {
			routes = append(routes, &netlink.Route{LinkIndex: lk.Attrs().Index, Dst: ipNet(netip.PrefixFrom(u.Peer, 32)), Scope: netlink.SCOPE_LINK, Table: table, Protocol: unix.RTPROT_STATIC})
		}
		def := &netlink.Route{LinkIndex: lk.Attrs().Index, Dst: ipNet(defaultRoute4), Table: table, Protocol: unix.RTPROT_STATIC}
		if u.Gateway.IsValid() {
			def.Gw = u.Gateway.AsSlice()
		} else {
			def.Scope = netlink.SCOPE_LINK
		}
		routes = append(routes, def)
		for _, r := range routes {
			if err := h.RouteReplace(r); err != nil {
				return fmt.Errorf("lab: connmark: route %v table %d: %w", r.Dst, table, err)
			}
		}
		if err := h.RuleAdd(connmarkRule(i)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("lab: connmark: rule fwmark %d: %w", i+1, err)
		}
	}
	return l.nft(func(c *nftables.Conn) error { return addConnmarkTable(c, l) })
}

// addConnmarkTable creates table ip labconnmark (see ConnmarkBaseline).
func addConnmarkTable(c *nftables.Conn, l *Lab) error {
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: ConnmarkTable})
	ch := c.AddChain(&nftables.Chain{
		Name:     "prerouting",
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityMangle,
	})
	// meta mark set ct mark
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}})
	lanNet := LANPrefix.Addr().As4()
	mask := net.CIDRMask(LANPrefix.Bits(), 32)
	for i, u := range l.Uplinks {
		// iifname <if> [ip saddr != LAN] meta mark 0 meta mark set i+1 ct mark set meta mark
		exprs := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameData(u.Interface)},
		}
		if u.Interface == l.RouterLAN {
			// A modem on the LAN segment: only what comes from beyond it.
			exprs = append(exprs,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: lanNet[:]},
			)
		}
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Immediate{Register: 1, Data: nativeU32(uint32(i + 1))},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
			&expr.Ct{Key: expr.CtKeyMARK, SourceRegister: true, Register: 1},
		)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	return c.Flush()
}

// nativeU32 is v in host byte order, as nftables compares marks.
func nativeU32(v uint32) []byte {
	return binary.NativeEndian.AppendUint32(nil, v)
}

// removeConnmark deletes what addConnmark installed, tolerating what is
// already gone.
func (l *Lab) removeConnmark() error {
	var errs []error
	if err := l.Router.Do(func() error {
		for i := range l.Uplinks {
			err := netlink.RuleDel(connmarkRule(i))
			if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("lab: connmark: delete rule fwmark %d: %w", i+1, err))
			}
			table := ConnmarkTableBase + i
			routes, err := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
			if err != nil {
				errs = append(errs, fmt.Errorf("lab: connmark: list table %d: %w", table, err))
				continue
			}
			for _, r := range routes {
				if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("lab: connmark: delete route %v table %d: %w", r.Dst, table, err))
				}
			}
		}
		return nil
	}); err != nil {
		errs = append(errs, err)
	}
	if err := l.deleteNFTTable(ConnmarkTable); err != nil {
		errs = append(errs, fmt.Errorf("lab: connmark: delete nftables table: %w", err))
	}
	return errors.Join(errs...)
}
