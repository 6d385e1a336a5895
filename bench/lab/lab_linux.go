package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Interface names inside the lab's namespaces.
const (
	bridgeName   = "br0"  // switch: the LAN bridge
	hostIf       = "eth0" // host: its LAN interface
	ispDownIf    = "down" // ISP: towards the router (veth, ipip or TUN)
	ispLANIf     = "lan"  // LAN-segment modem: its LAN port
	ispInetIf    = "inet" // ISP: towards the internet
	ispUnderlay  = "ul"   // ISP: underlay of an ipip uplink
	switchRouter = "router"
)

// defaultRoute4 is 0.0.0.0/0.
var defaultRoute4 = netip.MustParsePrefix("0.0.0.0/0")

// testHookBuilt, when set by a test, runs after the lab is built and makes
// Up fail with its error.
var testHookBuilt func(*Lab) error

// Up builds the lab described by cfg. On error it removes everything it made
// and returns the error; it never deletes a namespace it did not create.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := describe(cfg)
	b := &builder{l: l, h: map[*NS]*netlink.Handle{}}
	err = b.build(ctx)
	b.closeHandles()
	if err == nil && testHookBuilt != nil {
		err = testHookBuilt(l)
	}
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// builder holds the netlink handles used while building a lab.
type builder struct {
	l *Lab
	h map[*NS]*netlink.Handle
}

func (b *builder) closeHandles() {
	for _, h := range b.h {
		h.Close()
	}
}

func (b *builder) build(ctx context.Context) error {
	l := b.l
	for _, ns := range l.all {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := createNS(ns); err != nil {
			return err
		}
		l.mu.Lock()
		l.made = append(l.made, ns)
		l.mu.Unlock()
		h, err := ns.Handle()
		if err != nil {
			return err
		}
		b.h[ns] = h
		if err := b.baseSysctls(ns); err != nil {
			return err
		}
		if err := setUp(h, "lo"); err != nil {
			return fmt.Errorf("lab: %s: %w", ns.Name, err)
		}
	}
	steps := []func() error{b.buildSwitch, b.buildRouterLAN, b.buildHosts, b.buildInternet}
	for i := range l.Cfg.Uplinks {
		steps = append(steps, func() error { return b.buildUplink(i) })
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// baseSysctls sets the per-namespace sysctls before any link exists there,
// so that every link inherits the "default" values.
func (b *builder) baseSysctls(ns *NS) error {
	l := b.l
	set := [][2]string{
		{"net/ipv4/conf/all/rp_filter", "0"},
		{"net/ipv4/conf/default/rp_filter", "0"},
		{"net/ipv4/conf/lo/rp_filter", "0"},
	}
	switch {
	case ns == l.Router:
		set = append(set,
			[2]string{"net/ipv4/ip_forward", "1"},
			[2]string{"net/ipv4/conf/all/send_redirects", "0"},
			[2]string{"net/ipv4/conf/default/send_redirects", "0"})
	case ns == l.Switch:
		// Bridged frames must not traverse netfilter (if br_netfilter is
		// there at all).
		for _, k := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
			if err := ns.WriteSysctl("net/bridge/"+k, "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	case ns == l.Internet:
	default:
		isISP := false
		for _, isp := range l.ISPs {
			isISP = isISP || isp == ns
		}
		if isISP {
			set = append(set,
				[2]string{"net/ipv4/ip_forward", "1"},
				[2]string{"net/ipv4/conf/all/send_redirects", "0"},
				[2]string{"net/ipv4/conf/default/send_redirects", "0"})
		} else { // LAN host
			set = append(set,
				[2]string{"net/ipv4/conf/all/accept_redirects", "0"},
				[2]string{"net/ipv4/conf/default/accept_redirects", "0"})
		}
	}
	for _, kv := range set {
		if err := ns.WriteSysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) buildSwitch() error {
	h := b.h[b.l.Switch]
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("lab: add bridge %s in %s: %w", bridgeName, b.l.Switch.Name, err)
	}
	return setUp(h, bridgeName)
}

// lanPort connects name in ns to the LAN bridge through switch port port.
func (b *builder) lanPort(ns *NS, name, port string) error {
	if err := vethPair(b.h[ns], ns, name, b.l.Switch, port); err != nil {
		return err
	}
	sh := b.h[b.l.Switch]
	p, err := sh.LinkByName(port)
	if err != nil {
		return fmt.Errorf("lab: switch port %s: %w", port, err)
	}
	br, err := sh.LinkByName(bridgeName)
	if err != nil {
		return fmt.Errorf("lab: bridge: %w", err)
	}
	if err := sh.LinkSetMaster(p, br); err != nil {
		return fmt.Errorf("lab: attach %s to %s: %w", port, bridgeName, err)
	}
	return setUp(sh, port)
}

func (b *builder) buildRouterLAN() error {
	l := b.l
	h := b.h[l.Router]
	if err := b.lanPort(l.Router, l.RouterLAN, switchRouter); err != nil {
		return err
	}
	if err := addAddr(h, l.RouterLAN, l.RouterLANAddr, netip.Prefix{}); err != nil {
		return err
	}
	return setUp(h, l.RouterLAN)
}

func (b *builder) buildHosts() error {
	l := b.l
	for k, ns := range l.Hosts {
		h := b.h[ns]
		if err := b.lanPort(ns, hostIf, fmt.Sprintf("h%d", k+1)); err != nil {
			return err
		}
		if err := addAddr(h, hostIf, netip.PrefixFrom(l.HostAddrs[k], 24), netip.Prefix{}); err != nil {
			return err
		}
		if k == 0 {
			for _, a := range l.HostExtraAddrs {
				if err := addAddr(h, hostIf, netip.PrefixFrom(a, 24), netip.Prefix{}); err != nil {
					return err
				}
			}
		}
		if err := setUp(h, hostIf); err != nil {
			return err
		}
		if err := replaceRoute(h, hostIf, defaultRoute4, l.RouterLANAddr.Addr()); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) buildInternet() error {
	l := b.l
	h := b.h[l.Internet]
	for _, a := range append(append([]netip.Addr(nil), l.Servers...), l.ProbeTargets...) {
		if err := addAddr(h, "lo", netip.PrefixFrom(a, 32), netip.Prefix{}); err != nil {
			return err
		}
	}
	return nil
}

// ispInternet connects ISP i to the internet and routes back.
func (b *builder) ispInternet(i int, back netip.Prefix) error {
	l := b.l
	isp, ih := l.ISPs[i], b.h[l.ISPs[i]]
	nh := b.h[l.Internet]
	inetPeer := fmt.Sprintf("isp%d", i+1)
	ispAddr, inetAddr := v4(198, 18, i+1, 1), v4(198, 18, i+1, 2)
	if err := vethPair(ih, isp, ispInetIf, l.Internet, inetPeer); err != nil {
		return err
	}
	if err := addAddr(ih, ispInetIf, netip.PrefixFrom(ispAddr, 24), netip.Prefix{}); err != nil {
		return err
	}
	if err := addAddr(nh, inetPeer, netip.PrefixFrom(inetAddr, 24), netip.Prefix{}); err != nil {
		return err
	}
	if err := setUp(ih, ispInetIf); err != nil {
		return err
	}
	if err := setUp(nh, inetPeer); err != nil {
		return err
	}
	if err := replaceRoute(ih, ispInetIf, defaultRoute4, inetAddr); err != nil {
		return err
	}
	return replaceRoute(nh, inetPeer, back, ispAddr)
}

func (b *builder) buildUplink(i int) error {
	l := b.l
	spec := l.Cfg.Uplinks[i]
	info := l.Uplinks[i]
	isp := l.ISPs[i]
	rh, ih := b.h[l.Router], b.h[isp]
	switch spec.Kind {
	case KindVeth:
		if err := vethPair(rh, l.Router, info.Interface, isp, ispDownIf); err != nil {
			return err
		}
		if err := setMTU(rh, info.Interface, spec.MTU); err != nil {
			return err
		}
		if err := setMTU(ih, ispDownIf, spec.MTU); err != nil {
			return err
		}
		if err := addAddr(rh, info.Interface, info.Prefix, netip.Prefix{}); err != nil {
			return err
		}
		if err := addAddr(ih, ispDownIf, netip.PrefixFrom(info.Gateway, 24), netip.Prefix{}); err != nil {
			return err
		}
		if err := setUp(rh, info.Interface); err != nil {
			return err
		}
		if err := setUp(ih, ispDownIf); err != nil {
			return err
		}
		if spec.GRO {
			if err := l.Router.SetGRO(info.Interface, true); err != nil {
				return err
			}
			if err := isp.SetGRO(ispDownIf, true); err != nil {
				return err
			}
		}
		if err := b.ispInternet(i, netip.PrefixFrom(info.Addr, 24).Masked()); err != nil {
			return err
		}
		return b.delay(i, ispDownIf)

	case KindLANSegment:
		if err := b.lanPort(isp, ispLANIf, fmt.Sprintf("isp%d", i+1)); err != nil {
			return err
		}
		if err := addAddr(ih, ispLANIf, netip.PrefixFrom(ModemAddr, 24), netip.Prefix{}); err != nil {
			return err
		}
		if err := setUp(ih, ispLANIf); err != nil {
			return err
		}
		if spec.GRO {
			if err := l.Router.SetGRO(l.RouterLAN, true); err != nil {
				return err
			}
			if err := isp.SetGRO(ispLANIf, true); err != nil {
				return err
			}
		}
		if err := b.ispInternet(i, LANPrefix); err != nil {
			return err
		}
		return b.delay(i, ispLANIf)

	case KindL3:
		tunnel, err := b.l3ISP(i)
		if err != nil {
			return err
		}
		l.Uplinks[i].Tunnel = tunnel
		if err := l.attachL3Router(rh, i); err != nil {
			return err
		}
		if err := b.ispInternet(i, netip.PrefixFrom(info.Addr, 24).Masked()); err != nil {
			return err
		}
		if tunnel == "tun" {
			return nil // the pipe delays
		}
		return b.delay(i, ispDownIf)
	}
	return fmt.Errorf("lab: uplink %d: unknown kind %v", i+1, spec.Kind)
}

// underlay addresses of ipip uplink i: router and ISP ends of a /30.
func underlayAddrs(i int) (router, isp netip.Addr) {
	return v4(172, 30, i+1, 2), v4(172, 30, i+1, 1)
}

// l3ISP builds the ISP end of L3 uplink i (an ipip tunnel with its underlay
// veth, or a TUN pipe when the kernel has no ipip) and returns which.
func (b *builder) l3ISP(i int) (string, error) {
	l := b.l
	spec := l.Cfg.Uplinks[i]
	info := l.Uplinks[i]
	isp, rh, ih := l.ISPs[i], b.h[l.Router], b.h[l.ISPs[i]]
	tunnel := "tun"
	if !spec.ForceTUN {
		ok, err := ipipSupported(rh)
		if err != nil {
			return "", err
		}
		if ok {
			tunnel = "ipip"
		}
	}
	if tunnel == "tun" {
		p, err := newTUNPipe(isp, ispDownIf, spec.Delay)
		if err != nil {
			return "", err
		}
		l.pipes[i] = p
	} else {
		ra, ia := underlayAddrs(i)
		ul := fmt.Sprintf("ul%d", i+1)
		if err := vethPair(rh, l.Router, ul, isp, ispUnderlay); err != nil {
			return "", err
		}
		if spec.MTU > 1480 {
			if err := setMTU(rh, ul, spec.MTU+20); err != nil {
				return "", err
			}
			if err := setMTU(ih, ispUnderlay, spec.MTU+20); err != nil {
				return "", err
			}
		}
		if err := addAddr(rh, ul, netip.PrefixFrom(ra, 30), netip.Prefix{}); err != nil {
			return "", err
		}
		if err := addAddr(ih, ispUnderlay, netip.PrefixFrom(ia, 30), netip.Prefix{}); err != nil {
			return "", err
		}
		if err := setUp(rh, ul); err != nil {
			return "", err
		}
		if err := setUp(ih, ispUnderlay); err != nil {
			return "", err
		}
		if spec.GRO {
			if err := l.Router.SetGRO(ul, true); err != nil {
				return "", err
			}
			if err := isp.SetGRO(ispUnderlay, true); err != nil {
				return "", err
			}
		}
		t := &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: ispDownIf}, Local: ia.AsSlice(), Remote: ra.AsSlice(), Ttl: 64}
		if err := ih.LinkAdd(t); err != nil {
			return "", fmt.Errorf("lab: add ipip %s in %s: %w", ispDownIf, isp.Name, err)
		}
	}
	if err := setMTU(ih, ispDownIf, spec.MTU); err != nil {
		return "", err
	}
	if err := addAddr(ih, ispDownIf, netip.PrefixFrom(info.Peer, 32), netip.PrefixFrom(info.Addr, 32)); err != nil {
		return "", err
	}
	if err := setUp(ih, ispDownIf); err != nil {
		return "", err
	}
	if spec.GRO {
		if err := isp.SetGRO(ispDownIf, true); err != nil {
			return "", err
		}
	}
	return tunnel, nil
}

// ipipSupported reports whether the kernel can create ipip devices, by
// creating and deleting a probe device in the namespace of h (never in the
// caller's namespace).
func ipipSupported(h *netlink.Handle) (bool, error) {
	t := &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: "wfipipprobe"}, Local: net.IPv4(127, 0, 0, 2), Remote: net.IPv4(127, 0, 0, 3)}
	err := h.LinkAdd(t)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lab: probe ipip: %w", err)
	}
	if err := h.LinkDel(t); err != nil {
		return false, fmt.Errorf("lab: delete ipip probe: %w", err)
	}
	return true, nil
}

// attachL3Router creates and configures the router end of L3 uplink i; it
// is used by Up and when SetUplinkCarrier brings the link back.
func (l *Lab) attachL3Router(rh *netlink.Handle, i int) error {
	spec, info := l.Cfg.Uplinks[i], l.Uplinks[i]
	if info.Tunnel == "tun" {
		if err := l.pipes[i].attachRouter(l.Router, info.Interface); err != nil {
			return err
		}
	} else {
		ra, ia := underlayAddrs(i)
		t := &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: info.Interface}, Local: ra.AsSlice(), Remote: ia.AsSlice(), Ttl: 64}
		if err := rh.LinkAdd(t); err != nil {
			return fmt.Errorf("lab: add ipip %s in %s: %w", info.Interface, l.Router.Name, err)
		}
	}
	if err := setMTU(rh, info.Interface, spec.MTU); err != nil {
		return err
	}
	if err := addAddr(rh, info.Interface, info.Prefix, netip.PrefixFrom(info.Peer, 32)); err != nil {
		return err
	}
	if err := setUp(rh, info.Interface); err != nil {
		return err
	}
	if spec.GRO {
		return l.Router.SetGRO(info.Interface, true)
	}
	return nil
}

// Names and ids of the delay detour inside an ISP namespace.
const (
	detourIn    = "dly0" // forwarded packets are routed into this TUN device
	detourOut   = "dly1" // and come back out of this one after the delay
	detourTable = 7000   // routing table holding "default dev dly0"
	detourMTU   = 65000
)

// delay adds the uplink's one-way delay to every packet ISP i forwards, in
// both directions, without netem: policy rules send what arrives on the
// ISP's interfaces (other than to the ISP itself) into TUN device dly0; this
// process holds it for the delay, restores the TTL the detour cost and
// writes it to dly1, from where the main table forwards it on. If the
// process dies, the detour's route vanishes and the ISP forwards without
// delay.
func (b *builder) delay(i int, inIfs ...string) error {
	l := b.l
	d := l.Cfg.Uplinks[i].Delay
	if d <= 0 {
		return nil
	}
	isp, h := l.ISPs[i], b.h[l.ISPs[i]]
	p, err := newTUNPipe(isp, detourIn, d)
	if err != nil {
		return err
	}
	p.fixTTL = true
	l.detours[i] = p
	if err := p.attachRouter(isp, detourOut); err != nil {
		return err
	}
	for _, name := range []string{detourIn, detourOut} {
		if err := isp.WriteSysctl("net/ipv6/conf/"+name+"/disable_ipv6", "1"); err != nil {
			return err
		}
		if err := setMTU(h, name, detourMTU); err != nil {
			return err
		}
		if err := setUp(h, name); err != nil {
			return err
		}
	}
	in, err := h.LinkByName(detourIn)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", detourIn, err)
	}
	if err := h.RouteReplace(&netlink.Route{LinkIndex: in.Attrs().Index, Dst: ipNet(defaultRoute4), Table: detourTable}); err != nil {
		return fmt.Errorf("lab: detour route in %s: %w", isp.Name, err)
	}
	rule := netlink.NewRule()
	rule.Family, rule.Priority, rule.IifName, rule.Table = unix.AF_INET, 100, detourOut, unix.RT_TABLE_MAIN
	if err := h.RuleAdd(rule); err != nil {
		return fmt.Errorf("lab: detour rule %v in %s: %w", rule, isp.Name, err)
	}
	for _, name := range append(inIfs, ispInetIf) {
		rule := netlink.NewRule()
		rule.Family, rule.Priority, rule.IifName, rule.Table = unix.AF_INET, 110, name, detourTable
		if err := h.RuleAdd(rule); err != nil {
			return fmt.Errorf("lab: detour rule %v in %s: %w", rule, isp.Name, err)
		}
	}
	return nil
}

// vethPair creates veth a in nsA (through hA, whose sockets live in nsA)
// with its peer b in nsB.
func vethPair(hA *netlink.Handle, nsA *NS, a string, nsB *NS, b string) error {
	fd, err := netns.GetFromPath(nsB.Path)
	if err != nil {
		return fmt.Errorf("lab: open namespace %s: %w", nsB.Name, err)
	}
	defer fd.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b, PeerNamespace: netlink.NsFd(fd)}
	if err := hA.LinkAdd(v); err != nil {
		return fmt.Errorf("lab: add veth %s/%s - %s/%s: %w", nsA.Name, a, nsB.Name, b, err)
	}
	return nil
}

func setUp(h *netlink.Handle, name string) error {
	lk, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", name, err)
	}
	if err := h.LinkSetUp(lk); err != nil {
		return fmt.Errorf("lab: set %s up: %w", name, err)
	}
	return nil
}

func setMTU(h *netlink.Handle, name string, mtu int) error {
	if mtu == 0 {
		return nil
	}
	lk, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", name, err)
	}
	if err := h.LinkSetMTU(lk, mtu); err != nil {
		return fmt.Errorf("lab: set %s mtu %d: %w", name, mtu, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// addAddr adds (replaces) address p on name, with a point-to-point peer when
// peer is valid.
func addAddr(h *netlink.Handle, name string, p, peer netip.Prefix) error {
	lk, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", name, err)
	}
	a := &netlink.Addr{IPNet: ipNet(p)}
	if peer.IsValid() {
		a.Peer = ipNet(peer)
	}
	if err := h.AddrReplace(lk, a); err != nil {
		return fmt.Errorf("lab: add address %v to %s: %w", p, name, err)
	}
	return nil
}

// replaceRoute installs dst via gw on name in the main table.
func replaceRoute(h *netlink.Handle, name string, dst netip.Prefix, gw netip.Addr) error {
	lk, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", name, err)
	}
	r := &netlink.Route{LinkIndex: lk.Attrs().Index, Dst: ipNet(dst), Gw: gw.AsSlice()}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("lab: route %v via %v dev %s: %w", dst, gw, name, err)
	}
	return nil
}

// Close stops the lab's servers and packet pumps, kills every process still
// inside one of its namespaces and deletes the namespaces it created.
// Idempotent; safe to call on a partly built lab.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	srv, pipes, made := l.servers, append(l.pipes, l.detours...), l.made
	l.servers, l.pipes, l.detours, l.made = nil, nil, nil, nil
	l.mu.Unlock()

	if srv != nil {
		srv.close()
	}
	for _, p := range pipes {
		if p != nil {
			p.close()
		}
	}
	paths := make([]string, 0, len(made))
	for _, ns := range made {
		paths = append(paths, ns.Path)
	}
	return removeNamespaces(paths)
}

// SetUplinkCarrier makes uplink i (0-based index into Uplinks) lose or
// regain its link as the router sees it:
//   - KindVeth: the ISP end of the veth goes down/up, so the router's up<i>
//     loses carrier (no LOWER_UP, operstate down) and regains it.
//   - KindL3: the router's up<i> disappears and reappears with its address
//     (a new ifindex), the way a PPP device does on hangup and redial.
//   - KindLANSegment: the router's lan0 carries the LAN too, so it keeps its
//     carrier; the modem's LAN port goes down instead (the gateway stops
//     answering ARP).
func (l *Lab) SetUplinkCarrier(i int, up bool) error {
	info, _, err := l.uplink(i)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab: closed")
	}
	switch info.Kind {
	case KindVeth, KindLANSegment:
		name := ispDownIf
		if info.Kind == KindLANSegment {
			name = ispLANIf
		}
		return l.ISPs[i].Do(func() error {
			lk, err := netlink.LinkByName(name)
			if err != nil {
				return fmt.Errorf("lab: link %s: %w", name, err)
			}
			if up {
				err = netlink.LinkSetUp(lk)
			} else {
				err = netlink.LinkSetDown(lk)
			}
			if err != nil {
				return fmt.Errorf("lab: uplink %d carrier %v: %w", i, up, err)
			}
			return nil
		})
	case KindL3:
		rh, err := l.Router.Handle()
		if err != nil {
			return err
		}
		defer rh.Close()
		lk, lerr := rh.LinkByName(info.Interface)
		exists := lerr == nil
		switch {
		case up && !exists:
			return l.attachL3Router(rh, i)
		case !up && exists:
			if info.Tunnel == "tun" {
				l.pipes[i].detachRouter()
				return nil
			}
			if err := rh.LinkDel(lk); err != nil {
				return fmt.Errorf("lab: delete %s: %w", info.Interface, err)
			}
		}
		return nil
	}
	return fmt.Errorf("lab: uplink %d: unknown kind %v", i, info.Kind)
}

// SetISPInternet makes ISP i's (0-based) internet side die (up=false) or
// come back while the router's link to the ISP stays up: both the ISP's
// default route and the internet's route back to the uplink become
// blackhole routes, so traffic through the ISP is silently dropped. The
// ISP's own DNS server still answers.
func (l *Lab) SetISPInternet(i int, up bool) error {
	info, _, err := l.uplink(i)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab: closed")
	}
	back := netip.PrefixFrom(info.Addr, 24).Masked()
	if info.Kind == KindLANSegment {
		back = LANPrefix
	}
	set := func(ns *NS, ifname string, dst netip.Prefix, gw netip.Addr) error {
		return ns.Do(func() error {
			r := &netlink.Route{Dst: ipNet(dst), Type: unix.RTN_BLACKHOLE}
			if up {
				lk, err := netlink.LinkByName(ifname)
				if err != nil {
					return fmt.Errorf("lab: link %s: %w", ifname, err)
				}
				r = &netlink.Route{LinkIndex: lk.Attrs().Index, Dst: ipNet(dst), Gw: gw.AsSlice()}
			}
			if err := netlink.RouteReplace(r); err != nil {
				return fmt.Errorf("lab: ISP %d internet %v: route %v: %w", i, up, dst, err)
			}
			return nil
		})
	}
	if err := set(l.ISPs[i], ispInetIf, defaultRoute4, v4(198, 18, i+1, 2)); err != nil {
		return err
	}
	return set(l.Internet, fmt.Sprintf("isp%d", i+1), back, v4(198, 18, i+1, 1))
}
