package uplinks

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Defaults used for the zero value of the corresponding Config field; they
// match the kernel ids of the design.
const (
	DefaultTableBase = 7700
	DefaultPriority  = 7690
	DefaultProtocol  = 167
)

// MaxUplinks bounds Spec.Index: the rules of all uplinks fit in
// 10*MaxUplinks priorities, 7800-7999 with the defaults.
const MaxUplinks = 20

// RuleOffset is the distance from Config.Priority to the first uplink rule.
// The priorities below it belong to package lan/steer.
const RuleOffset = 110

// Spec is one configured uplink.
type Spec struct {
	// Index is the uplink's 0-based position in the configuration, in
	// [0, MaxUplinks). Its table is TableBase+1+Index and its rule priority
	// Priority+RuleOffset+10*Index.
	Index int
	// Name is the uplink's configured name, reported back in Status.
	Name string
	// Interface is the device carrying the uplink. It may be the LAN
	// interface (a modem on the LAN segment); it may be absent for a while
	// (a PPP device).
	Interface string
	// Gateway is the next hop. The zero Addr means none configured: the
	// main table's default route through Interface supplies it if there is
	// one, else the uplink is an L3 device routed with "default dev".
	Gateway netip.Addr
	// MTU caps the uplink's MTU below the device's; 0 means the device MTU.
	MTU int
}

// Config is the set of uplinks and the kernel ids the Manager uses.
type Config struct {
	// Uplinks are the configured uplinks; their Index values are distinct.
	Uplinks []Spec
	// TableBase is the table below the first uplink table; 0 means
	// DefaultTableBase. (TableBase itself is lan/steer's table.)
	TableBase int
	// Priority is wanflow's base rule priority; 0 means DefaultPriority.
	Priority int
	// Protocol marks wanflow's routes and rules; 0 means DefaultProtocol.
	Protocol int
	// NetNS, if non-nil, is the network namespace of the handle given to
	// NewManager; Run opens its netlink subscriptions there. Nil means the
	// calling process's namespace, which is what the daemon uses.
	NetNS *netns.NsHandle
}

// Status is one uplink's kernel-observed state.
//
// Available iff the link exists, is up with carrier (OperUp, or IFF_UP with
// IFF_RUNNING or IFF_LOWER_UP for devices without operational state such as
// ipip or ppp, which report OperUnknown), and has an IPv4 address.
type Status struct {
	Index     int
	Name      string
	Interface string
	// Ifindex is the device's index, 0 if it does not exist.
	Ifindex int
	// Addr is the primary IPv4 address of global scope, Prefix that address
	// with its prefix length; both invalid if there is none.
	Addr   netip.Addr
	Prefix netip.Prefix
	// MTU is min(Spec.MTU, device MTU), ignoring whichever is unknown or 0.
	MTU int
	// HasMAC reports an Ethernet-like device (ARP, a MAC header); false for
	// PPP, TUN and IP tunnels.
	HasMAC bool
	// Carrier is the "up with carrier" part of Available.
	Carrier   bool
	Available bool
	// Gateway is Spec.Gateway, else the gateway learnt from the main
	// table; invalid for "default dev".
	Gateway netip.Addr
}

// Manager reconciles the uplinks' routing tables and rules and watches the
// kernel for changes to them.
type Manager struct {
	h   *netlink.Handle
	cfg Config
	log *slog.Logger

	// Tunables, fixed after NewManager.
	debounce    time.Duration // delay from a netlink event to the reconcile
	resyncEvery time.Duration // periodic reconcile, for anything missed
	retryAfter  time.Duration // reconcile again this soon after an error

	mu sync.Mutex // serialises Reconcile and Remove
}

// NewManager returns a Manager that acts through h, which must not be nil
// (the daemon passes netlink.NewHandle(), tests a handle from
// netlink.NewHandleAt). log may be nil. NewManager touches no kernel state;
// the configuration is checked by Reconcile and Run.
func NewManager(h *netlink.Handle, cfg Config, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Uplinks = append([]Spec(nil), cfg.Uplinks...)
	return &Manager{
		h:           h,
		cfg:         cfg,
		log:         log,
		debounce:    20 * time.Millisecond,
		resyncEvery: 30 * time.Second,
		retryAfter:  time.Second,
	}
}

// withDefaults returns c with zero fields replaced by their defaults, or an
// error naming the first invalid field.
func (c Config) withDefaults() (Config, error) {
	if c.TableBase == 0 {
		c.TableBase = DefaultTableBase
	}
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.Protocol == 0 {
		c.Protocol = DefaultProtocol
	}
	switch {
	case c.TableBase < 1 || c.TableBase+MaxUplinks > 1<<31-1 ||
		c.TableBase < 255 && c.TableBase+MaxUplinks >= 253:
		return c, fmt.Errorf("uplinks: config: table base %d: tables %d-%d reserved or out of range",
			c.TableBase, c.TableBase+1, c.TableBase+MaxUplinks)
	case c.Priority < 1 || c.Priority+RuleOffset+10*MaxUplinks > 32765:
		return c, fmt.Errorf("uplinks: config: priority %d: out of range 1-%d",
			c.Priority, 32765-RuleOffset-10*MaxUplinks)
	case c.Protocol < 1 || c.Protocol > 255:
		return c, fmt.Errorf("uplinks: config: protocol %d: out of range 1-255", c.Protocol)
	}
	seen := make(map[int]bool)
	for i := range c.Uplinks {
		s := &c.Uplinks[i]
		s.Gateway = s.Gateway.Unmap()
		switch {
		case s.Index < 0 || s.Index >= MaxUplinks:
			return c, fmt.Errorf("uplinks: config: uplink %q: index %d out of range 0-%d", s.Name, s.Index, MaxUplinks-1)
		case seen[s.Index]:
			return c, fmt.Errorf("uplinks: config: uplink %q: index %d used twice", s.Name, s.Index)
		case s.Interface == "" || len(s.Interface) > 15:
			return c, fmt.Errorf("uplinks: config: uplink %q: bad interface name %q", s.Name, s.Interface)
		case s.Gateway.IsValid() && !s.Gateway.Is4():
			return c, fmt.Errorf("uplinks: config: uplink %q: gateway %v is not IPv4", s.Name, s.Gateway)
		case s.MTU < 0 || s.MTU > 0 && s.MTU < 68:
			return c, fmt.Errorf("uplinks: config: uplink %q: MTU %d out of range", s.Name, s.MTU)
		}
		seen[s.Index] = true
	}
	return c, nil
}

// table returns the routing table of the uplink with index i under c
// (defaults applied).
func (c Config) table(i int) int { return c.TableBase + 1 + i }

// rulePriority returns the rule priority of the uplink with index i.
func (c Config) rulePriority(i int) int { return c.Priority + RuleOffset + 10*i }

// ownsRule reports whether a kernel rule belongs to the Manager under c.
func (c Config) ownsRule(r *netlink.Rule) bool {
	lo := c.Priority + RuleOffset
	return int(r.Protocol) == c.Protocol && r.Priority >= lo && r.Priority < lo+10*MaxUplinks
}

// ownsRoute reports whether a kernel route belongs to the Manager under c.
func (c Config) ownsRoute(r *netlink.Route) bool {
	return int(r.Protocol) == c.Protocol && r.Table > c.TableBase && r.Table <= c.TableBase+MaxUplinks
}

// linkState is what Reconcile reads from the kernel about one uplink's
// device: the input of statusOf.
type linkState struct {
	Exists    bool
	Index     int
	MTU       int
	OperState netlink.LinkOperState
	RawFlags  uint32 // IFF_* including IFF_LOWER_UP
	HasMAC    bool
	Addrs     []ifAddr   // IPv4 addresses, in kernel order
	LearntGW  netip.Addr // main table default gateway through the device
}

// ifAddr is one IPv4 address of a device.
type ifAddr struct {
	Prefix    netip.Prefix // local address and prefix length
	Peer      netip.Prefix // point-to-point peer, invalid if none
	Secondary bool
	Scope     int // RT_SCOPE_*; 0 is universe (global)
}

// Flag bits of struct ifinfomsg.ifi_flags, spelled out so this file builds
// on every GOOS.
const (
	iffUp      = 0x1
	iffRunning = 0x40
	iffLowerUp = 0x10000
)

// observed is an uplink's Status plus what desired needs beyond it.
type observed struct {
	Status
	subnet   netip.Prefix // connected subnet to route, invalid if none
	routeMTU int          // MTU metric for the routes, 0 for none
}

// statusOf derives an uplink's Status from its Spec and device state.
func statusOf(s Spec, ls linkState) observed {
	o := observed{Status: Status{
		Index:     s.Index,
		Name:      s.Name,
		Interface: s.Interface,
		Gateway:   s.Gateway,
		MTU:       s.MTU,
	}}
	if !ls.Exists {
		return o
	}
	o.Ifindex = ls.Index
	o.HasMAC = ls.HasMAC
	if ls.MTU > 0 && (s.MTU == 0 || ls.MTU < s.MTU) {
		o.MTU = ls.MTU
	}
	if o.MTU < ls.MTU {
		o.routeMTU = o.MTU
	}
	o.Carrier = ls.OperState == netlink.OperUp ||
		ls.OperState == netlink.OperUnknown && ls.RawFlags&iffUp != 0 && ls.RawFlags&(iffRunning|iffLowerUp) != 0
	if a, ok := primaryAddr(ls.Addrs); ok {
		o.Addr = a.Prefix.Addr()
		o.Prefix = a.Prefix
		switch {
		case a.Peer.IsValid():
			o.subnet = a.Peer.Masked()
		case a.Prefix.Bits() < 32:
			o.subnet = a.Prefix.Masked()
		}
	}
	if !o.Gateway.IsValid() {
		o.Gateway = ls.LearntGW
	}
	o.Available = o.Carrier && o.Addr.IsValid()
	return o
}

// primaryAddr returns the first primary address of global scope, else the
// first address of global scope.
func primaryAddr(addrs []ifAddr) (ifAddr, bool) {
	for _, a := range addrs {
		if a.Scope == 0 && !a.Secondary {
			return a, true
		}
	}
	for _, a := range addrs {
		if a.Scope == 0 {
			return a, true
		}
	}
	return ifAddr{}, false
}

// ruleSpec is the part of a policy rule the Manager sets; two rules with the
// same ruleSpec (and protocol) are the same rule.
type ruleSpec struct {
	Priority int
	Table    int
	Src      netip.Prefix
}

func (r ruleSpec) String() string {
	return fmt.Sprintf("%d: from %v lookup %d", r.Priority, r.Src, r.Table)
}

// netlinkRule returns r as a netlink rule tagged with proto.
func (r ruleSpec) netlinkRule(proto int) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = afInet
	nr.Priority = r.Priority
	nr.Table = r.Table
	nr.Src = ipNet(r.Src)
	nr.Protocol = uint8(proto)
	return nr
}

// ruleSpecOf returns the ruleSpec of a kernel rule; ok is false when the
// rule has a selector or action the Manager never sets.
func ruleSpecOf(r netlink.Rule) (ruleSpec, bool) {
	if r.Src == nil || r.Dst != nil || r.IifName != "" || r.OifName != "" || r.Mark != 0 || r.Mask != nil ||
		r.Tos != 0 || r.TunID != 0 || r.Goto >= 0 || r.Flow >= 0 || r.Invert || r.IPProto != 0 ||
		r.Dport != nil || r.Sport != nil || r.UIDRange != nil || r.SuppressIfgroup >= 0 || r.SuppressPrefixlen >= 0 {
		return ruleSpec{}, false
	}
	src, ok := prefixOf(r.Src)
	if !ok {
		return ruleSpec{}, false
	}
	return ruleSpec{Priority: r.Priority, Table: r.Table, Src: src}, true
}

// routeSpec is the part of a route the Manager sets; two routes with the
// same routeSpec (and protocol) are the same route.
type routeSpec struct {
	Table     int
	Dst       netip.Prefix
	Gw        netip.Addr // invalid: none
	LinkIndex int
	Src       netip.Addr // preferred source, invalid: none
	Scope     netlink.Scope
	OnLink    bool
	MTU       int // 0: none
}

func (r routeSpec) String() string {
	s := fmt.Sprintf("%v", r.Dst)
	if r.Gw.IsValid() {
		s += fmt.Sprintf(" via %v", r.Gw)
	}
	s += fmt.Sprintf(" dev #%d", r.LinkIndex)
	if r.Src.IsValid() {
		s += fmt.Sprintf(" src %v", r.Src)
	}
	if r.OnLink {
		s += " onlink"
	}
	if r.MTU != 0 {
		s += fmt.Sprintf(" mtu %d", r.MTU)
	}
	return s + fmt.Sprintf(" scope %d table %d", r.Scope, r.Table)
}

// Constants of rtnetlink, spelled out so this file builds on every GOOS.
const (
	afInet                      = 2   // AF_INET
	rtnUnicast                  = 1   // RTN_UNICAST
	rtTableMain                 = 254 // RT_TABLE_MAIN
	scopeUniverse netlink.Scope = 0
	scopeLink     netlink.Scope = 253
	rtnhFOnlink                 = 0x4 // RTNH_F_ONLINK
)

// netlinkRoute returns r as a netlink route tagged with proto.
func (r routeSpec) netlinkRoute(proto int) *netlink.Route {
	nr := &netlink.Route{
		Family:    afInet,
		Table:     r.Table,
		Dst:       ipNet(r.Dst),
		LinkIndex: r.LinkIndex,
		Scope:     r.Scope,
		Protocol:  netlink.RouteProtocol(proto),
		Type:      rtnUnicast,
		MTU:       r.MTU,
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.OnLink {
		nr.Flags = rtnhFOnlink
	}
	return nr
}

// routeSpecOf returns the routeSpec of a kernel route; ok is false when the
// route has an attribute the Manager never sets.
func routeSpecOf(r netlink.Route) (routeSpec, bool) {
	if len(r.MultiPath) > 0 || r.Priority != 0 || r.Tos != 0 || r.Type != rtnUnicast ||
		r.Encap != nil || r.Via != nil || r.NewDst != nil || r.MTULock {
		return routeSpec{}, false
	}
	spec := routeSpec{
		Table:     r.Table,
		Dst:       netip.PrefixFrom(netip.IPv4Unspecified(), 0),
		LinkIndex: r.LinkIndex,
		Scope:     r.Scope,
		OnLink:    r.Flags&rtnhFOnlink != 0,
		MTU:       r.MTU,
	}
	var ok bool
	if r.Dst != nil {
		if spec.Dst, ok = prefixOf(r.Dst); !ok {
			return routeSpec{}, false
		}
	}
	if r.Gw != nil {
		if spec.Gw, ok = addrOf(r.Gw); !ok {
			return routeSpec{}, false
		}
	}
	if r.Src != nil {
		if spec.Src, ok = addrOf(r.Src); !ok {
			return routeSpec{}, false
		}
	}
	return spec, true
}

// desired returns the routes and rules the observed uplinks need under cfg
// (defaults applied): nothing for an uplink that is not Available.
func desired(cfg Config, obs []observed) ([]routeSpec, []ruleSpec) {
	var routes []routeSpec
	var rules []ruleSpec
	for _, o := range obs {
		if !o.Available {
			continue
		}
		table := cfg.table(o.Index)
		def := routeSpec{
			Table:     table,
			Dst:       netip.PrefixFrom(netip.IPv4Unspecified(), 0),
			LinkIndex: o.Ifindex,
			Scope:     scopeLink,
			MTU:       o.routeMTU,
		}
		if o.Gateway.IsValid() {
			def.Gw, def.Scope, def.OnLink = o.Gateway, scopeUniverse, true
		}
		routes = append(routes, def)
		if o.subnet.IsValid() {
			routes = append(routes, routeSpec{
				Table:     table,
				Dst:       o.subnet,
				LinkIndex: o.Ifindex,
				Src:       o.Addr,
				Scope:     scopeLink,
				MTU:       o.routeMTU,
			})
		}
		rules = append(rules, ruleSpec{
			Priority: cfg.rulePriority(o.Index),
			Table:    table,
			Src:      netip.PrefixFrom(o.Addr, 32),
		})
	}
	return routes, rules
}

// learntGateway returns the gateway of the lowest-metric default route
// through device ifindex among routes (the main table), or the zero Addr.
func learntGateway(routes []netlink.Route, ifindex int) netip.Addr {
	var gw netip.Addr
	best := -1
	consider := func(linkIndex int, ip net.IP, metric int) {
		a, ok := addrOf(ip)
		if ok && linkIndex == ifindex && (best < 0 || metric < best) {
			gw, best = a, metric
		}
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.Gw != nil {
			consider(r.LinkIndex, r.Gw, r.Priority)
		}
		for _, nh := range r.MultiPath {
			if nh.Gw != nil {
				consider(nh.LinkIndex, nh.Gw, r.Priority)
			}
		}
	}
	return gw
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// prefixOf converts n to a masked IPv4 prefix; ok is false for anything
// else.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := addrOf(n.IP)
	ones, bits := n.Mask.Size()
	if !ok || bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}

// prefixWithAddr converts n to an IPv4 prefix keeping the host bits.
func prefixWithAddr(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := addrOf(n.IP)
	ones, bits := n.Mask.Size()
	if !ok || bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

// addrOf converts ip to an IPv4 address; ok is false for anything else.
func addrOf(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	return a, a.Is4()
}

var errNoHandle = errors.New("uplinks: nil netlink handle")
