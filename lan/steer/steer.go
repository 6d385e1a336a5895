package steer

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Defaults used for the zero value of the corresponding Config field; they
// match the kernel ids of the design (contracts: "Kernel ids").
const (
	DefaultTUN      = "wf0"
	DefaultTable    = 7700
	DefaultPriority = 7690
	DefaultProtocol = 167
)

// PrioritySpan is the number of rule priorities, starting at
// Config.Priority, that steer owns. Package uplinks owns the priorities
// after them.
const PrioritySpan = 110

// FallbackOffset is the distance from Config.Priority to the first
// fallback rule; MaxFallback bounds Config.Fallback so that every fallback
// rule stays in steer's priority range.
const (
	FallbackOffset = 20
	MaxFallback    = PrioritySpan - FallbackOffset
)

// LookupOffset is the distance from Config.Priority to the rule of
// Config.LookupMark; DefaultLookupMark is the mark the daemon uses.
const (
	LookupOffset      = 5
	DefaultLookupMark = 0x77f10000
)

// Config describes the steering to install.
type Config struct {
	// LANInterface is the LAN device whose forwarded traffic goes to the
	// TUN device ("iif" of the steering rule). Required. The device need
	// not exist: a rule with an absent iif simply matches nothing.
	LANInterface string
	// TUN is the name of wanflow's TUN device; "" means DefaultTUN. It
	// must exist when Apply runs.
	TUN string
	// Table is the routing table holding "default dev TUN"; 0 means
	// DefaultTable.
	Table int
	// Priority is the base rule priority; 0 means DefaultPriority. Steer
	// uses Priority and Priority+10 and owns
	// [Priority, Priority+PrioritySpan).
	Priority int
	// Protocol is the route and rule protocol that marks wanflow's
	// objects; 0 means DefaultProtocol.
	Protocol int
	// Fallback are the routing tables LAN traffic falls through to when
	// Table has no route, most preferred first: the uplinks' own tables
	// (package uplinks), which exist only while their uplink is available.
	// Each gets the rule "iif <LANInterface> lookup <table>" at priority
	// Priority+FallbackOffset+j. The kernel deletes Table's route with the
	// TUN device, so after a crash these rules carry LAN traffic over the
	// live uplinks by kernel forwarding (fail-open; package
	// uplinks/nftguard masquerades it); while the TUN device exists they
	// match nothing. At most MaxFallback tables.
	Fallback []int
	// LookupMark, if not 0, adds the rule "fwmark <LookupMark> lookup
	// <Table>" at priority Priority+LookupOffset, after the main table's
	// specific routes: a FIB lookup made with this mark (package
	// uplinks/nftguard's notrack chain, from the prerouting hook, where
	// the "iif" rule cannot match) goes where LAN traffic goes. No packet
	// carries the mark on its way.
	LookupMark uint32
	// NetNS, if non-nil, is the network namespace the handle given to New
	// operates in; sysctls are then written from a thread inside it. Nil
	// means the calling thread's namespace, which is what the daemon uses.
	NetNS *netns.NsHandle
}

// withDefaults returns c with zero fields replaced by their defaults, or an
// error naming the first invalid field. LANInterface is required only if
// needLAN is set: removal does not need it.
func (c Config) withDefaults(needLAN bool) (Config, error) {
	if c.TUN == "" {
		c.TUN = DefaultTUN
	}
	if c.Table == 0 {
		c.Table = DefaultTable
	}
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.Protocol == 0 {
		c.Protocol = DefaultProtocol
	}
	switch {
	case needLAN && c.LANInterface == "":
		return c, errors.New("steer: config: LANInterface is required")
	case len(c.LANInterface) >= 16 || len(c.TUN) >= 16:
		return c, fmt.Errorf("steer: config: interface names %q, %q: longer than 15 bytes", c.LANInterface, c.TUN)
	case c.LANInterface == c.TUN:
		return c, fmt.Errorf("steer: config: LAN interface and TUN are both %q", c.TUN)
	case c.Table < 1 || c.Table >= 253 && c.Table <= 255:
		return c, fmt.Errorf("steer: config: table %d: reserved or out of range", c.Table)
	case c.Priority < 1 || c.Priority+PrioritySpan > 32765:
		return c, fmt.Errorf("steer: config: priority %d: out of range 1-%d", c.Priority, 32765-PrioritySpan)
	case c.Protocol < 1 || c.Protocol > 255:
		return c, fmt.Errorf("steer: config: protocol %d: out of range 1-255", c.Protocol)
	case len(c.Fallback) > MaxFallback:
		return c, fmt.Errorf("steer: config: %d fallback tables, at most %d", len(c.Fallback), MaxFallback)
	}
	for i, t := range c.Fallback {
		switch {
		case t < 1 || t >= 253 && t <= 255 || t == c.Table:
			return c, fmt.Errorf("steer: config: fallback table %d: reserved, out of range or the TUN's table", t)
		case slices.Contains(c.Fallback[:i], t):
			return c, fmt.Errorf("steer: config: fallback table %d listed twice", t)
		}
	}
	return c, nil
}

// Steering installs and removes the LAN steering of one Config.
type Steering struct {
	h   *netlink.Handle
	cfg Config

	mu      sync.Mutex // serialises Apply, SetFallback and Remove
	applied bool       // Apply succeeded since the last Remove
}

// New returns a Steering that acts through h, which must not be nil; the
// daemon passes a handle of its own namespace (netlink.NewHandle()), tests
// one from netlink.NewHandleAt. New touches no kernel state.
func New(h *netlink.Handle, cfg Config) *Steering {
	return &Steering{h: h, cfg: cfg}
}

// ruleSpec is the part of a policy rule that steer sets; two rules with the
// same ruleSpec (and the same protocol) are the same rule.
type ruleSpec struct {
	Priority          int
	Table             int
	Src               netip.Prefix // invalid = from all
	IifName           string
	Mark              uint32 // 0 = none; else matched with mask 0xffffffff
	SuppressPrefixlen int    // -1 = none
}

func (r ruleSpec) String() string {
	from := "all"
	if r.Src.IsValid() {
		from = r.Src.String()
	}
	s := fmt.Sprintf("%d: from %s", r.Priority, from)
	if r.IifName != "" {
		s += " iif " + r.IifName
	}
	if r.Mark != 0 {
		s += fmt.Sprintf(" fwmark %#x", r.Mark)
	}
	s += fmt.Sprintf(" lookup %d", r.Table)
	if r.SuppressPrefixlen >= 0 {
		s += fmt.Sprintf(" suppress_prefixlength %d", r.SuppressPrefixlen)
	}
	return s
}

// netlinkRule returns r as a netlink rule tagged with proto.
func (r ruleSpec) netlinkRule(proto int) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = afInet
	nr.Priority = r.Priority
	nr.Table = r.Table
	nr.IifName = r.IifName
	nr.SuppressPrefixlen = r.SuppressPrefixlen
	nr.Protocol = uint8(proto)
	if r.Mark != 0 {
		nr.Mark = r.Mark
		mask := uint32(0xffffffff)
		nr.Mask = &mask
	}
	if r.Src.IsValid() {
		nr.Src = ipNet(r.Src)
	}
	return nr
}

// ruleSpecOf returns the ruleSpec of a kernel rule; ok is false when the
// rule uses a selector or action steer never sets, so it cannot equal a
// desired rule.
func ruleSpecOf(r netlink.Rule) (spec ruleSpec, ok bool) {
	if r.Mask != nil && (*r.Mask != 0xffffffff || r.Mark == 0) {
		return ruleSpec{}, false
	}
	if r.Dst != nil || r.Tos != 0 || r.TunID != 0 ||
		r.Goto >= 0 || r.Flow >= 0 || r.OifName != "" || r.Invert || r.IPProto != 0 ||
		r.Dport != nil || r.Sport != nil || r.UIDRange != nil || r.SuppressIfgroup >= 0 {
		return ruleSpec{}, false
	}
	spec = ruleSpec{
		Priority:          r.Priority,
		Table:             r.Table,
		IifName:           r.IifName,
		Mark:              r.Mark,
		SuppressPrefixlen: r.SuppressPrefixlen,
	}
	if r.Src != nil {
		p, ok := prefixOf(r.Src)
		if !ok {
			return ruleSpec{}, false
		}
		spec.Src = p
	}
	return spec, true
}

// routeSpec is the part of a route that steer sets; two routes with the same
// routeSpec (and the same protocol) are the same route.
type routeSpec struct {
	Table     int
	Dst       netip.Prefix
	LinkIndex int
	Scope     netlink.Scope
}

func (r routeSpec) String() string {
	return fmt.Sprintf("%v dev #%d scope %v table %d", r.Dst, r.LinkIndex, r.Scope, r.Table)
}

// netlinkRoute returns r as a netlink route tagged with proto.
func (r routeSpec) netlinkRoute(proto int) *netlink.Route {
	return &netlink.Route{
		Family:    afInet,
		Table:     r.Table,
		Dst:       ipNet(r.Dst),
		LinkIndex: r.LinkIndex,
		Scope:     r.Scope,
		Protocol:  netlink.RouteProtocol(proto),
		Type:      rtnUnicast,
	}
}

// rtnUnicast is RTN_UNICAST, spelled out so this file builds on every GOOS.
const rtnUnicast = 1

// routeSpecOf returns the routeSpec of a kernel route; ok is false when the
// route has an attribute steer never sets.
func routeSpecOf(r netlink.Route) (spec routeSpec, ok bool) {
	if r.Gw != nil || len(r.MultiPath) > 0 || r.Src != nil || r.Priority != 0 || r.Tos != 0 ||
		r.Type != rtnUnicast || r.Encap != nil || r.Via != nil || r.NewDst != nil || r.MTU != 0 {
		return routeSpec{}, false
	}
	dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	if r.Dst != nil {
		p, ok := prefixOf(r.Dst)
		if !ok {
			return routeSpec{}, false
		}
		dst = p
	}
	return routeSpec{Table: r.Table, Dst: dst, LinkIndex: r.LinkIndex, Scope: r.Scope}, true
}

// desiredRules returns the rules of cfg (defaults applied), in priority order.
func desiredRules(cfg Config) []ruleSpec {
	rules := []ruleSpec{{Priority: cfg.Priority, Table: rtTableMain, SuppressPrefixlen: 0}}
	if cfg.LookupMark != 0 {
		rules = append(rules, ruleSpec{Priority: cfg.Priority + LookupOffset, Table: cfg.Table, Mark: cfg.LookupMark, SuppressPrefixlen: -1})
	}
	rules = append(rules, ruleSpec{Priority: cfg.Priority + 10, Table: cfg.Table, IifName: cfg.LANInterface, SuppressPrefixlen: -1})
	for j, t := range cfg.Fallback {
		rules = append(rules, ruleSpec{Priority: cfg.Priority + FallbackOffset + j, Table: t, IifName: cfg.LANInterface, SuppressPrefixlen: -1})
	}
	return rules
}

// rtTableMain is RT_TABLE_MAIN.
const rtTableMain = 254

// scopeLink is RT_SCOPE_LINK, as iproute2 sets for a route without gateway.
const scopeLink netlink.Scope = 253

// desiredRoutes returns the routes of cfg (defaults applied) for a TUN
// device with index tunIndex.
func desiredRoutes(cfg Config, tunIndex int) []routeSpec {
	return []routeSpec{{
		Table:     cfg.Table,
		Dst:       netip.PrefixFrom(netip.IPv4Unspecified(), 0),
		LinkIndex: tunIndex,
		Scope:     scopeLink,
	}}
}

// ownsRule reports whether a kernel rule belongs to steer under cfg.
func ownsRule(cfg Config, r *netlink.Rule) bool {
	return r.Protocol == uint8(cfg.Protocol) &&
		r.Priority >= cfg.Priority && r.Priority < cfg.Priority+PrioritySpan
}

// ownsRoute reports whether a kernel route belongs to steer under cfg.
func ownsRoute(cfg Config, r *netlink.Route) bool {
	return r.Table == cfg.Table && int(r.Protocol) == cfg.Protocol
}

// sysctlWrite is one value to write below /proc/sys/net/ipv4/conf.
type sysctlWrite struct {
	Dev   string // "all", "default" or a device name
	Value int
}

// rpFilterPlan returns, in the order they must be applied, the rp_filter
// writes that give tun an effective rp_filter of 0 without changing the
// effective value of any other device: the kernel's effective value is
// max(all, dev). devs holds the current value of "default" and of every
// device (entries "all" and tun are ignored if present). Raising the other
// devices happens before lowering "all", so no device is ever less filtered
// than before; "default" comes first so devices created meanwhile inherit it.
func rpFilterPlan(all int, devs map[string]int, tun string) []sysctlWrite {
	var plan []sysctlWrite
	if v, ok := devs[tun]; !ok || v != 0 {
		plan = append(plan, sysctlWrite{Dev: tun, Value: 0})
	}
	if all == 0 {
		return plan
	}
	names := make([]string, 0, len(devs))
	for name := range devs {
		if name != "all" && name != tun {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "default") != (names[j] == "default") {
			return names[i] == "default"
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		if devs[name] < all {
			plan = append(plan, sysctlWrite{Dev: name, Value: all})
		}
	}
	return append(plan, sysctlWrite{Dev: "all", Value: 0})
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// prefixOf converts n to a masked IPv4 prefix; ok is false for anything
// else.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if !a.Is4() || bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}

// afInet is AF_INET (netlink.FAMILY_V4), spelled out so this file builds on
// every GOOS.
const afInet = 2
