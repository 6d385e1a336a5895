package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sync"
	"time"
)

// UplinkKind says how an uplink is wired between the router and its ISP.
type UplinkKind uint8

const (
	// KindVeth is an Ethernet uplink: a veth pair, router side up<i> with
	// 100.64.<i>.2/24, gateway 100.64.<i>.1 in the ISP namespace.
	KindVeth UplinkKind = iota
	// KindLANSegment is an "ADSL modem" on the LAN segment at 10.77.0.254:
	// the router reaches it through lan0 with its LAN address 10.77.0.1.
	KindLANSegment
	// KindL3 is a point-to-point link without MAC addresses, like PPP: a
	// tunnel device up<i> with 100.64.<i>.2/32 peer 100.64.<i>.1. It is an
	// ipip tunnel over an underlay veth when the kernel has ipip, otherwise a
	// TUN device pair whose packets this process copies (UplinkInfo.Tunnel).
	KindL3
)

// String returns the kind's name as used in logs.
func (k UplinkKind) String() string {
	switch k {
	case KindVeth:
		return "veth"
	case KindLANSegment:
		return "lan-segment"
	case KindL3:
		return "l3"
	}
	return fmt.Sprintf("UplinkKind(%d)", uint8(k))
}

// UplinkSpec describes one uplink of the lab.
type UplinkSpec struct {
	// Kind is how the uplink is wired (default KindVeth).
	Kind UplinkKind
	// GRO enables generic receive offload on both ends of the uplink's link
	// (the veth pair; for KindL3 also the tunnel devices), set with the
	// SIOCETHTOOL ioctl and read back.
	GRO bool
	// MTU of the uplink link on both sides; 0 keeps the default. Not
	// supported for KindLANSegment (it would change the LAN's MTU).
	MTU int
	// Delay is added one way in each direction by the ISP (so the round trip
	// grows by 2*Delay), without netem: this process holds the packets (a
	// TUN detour in the ISP namespace, or the pipe of a TUN-based L3
	// uplink), so it lasts only while the process runs and caps the ISP's
	// throughput at what one goroutine per direction can copy.
	Delay time.Duration
	// ForceTUN makes a KindL3 uplink use the TUN pipe even when the kernel
	// has ipip.
	ForceTUN bool
}

// Config describes the lab to build. The zero value builds one host and two
// veth uplinks.
type Config struct {
	// Prefix is prepended to every namespace name. The default is
	// "wf<pid>-" for the first lab of a process and "wf<pid>n<k>-" for the
	// k-th, so labs of parallel tests never collide and no default prefix is
	// a prefix of another.
	Prefix string
	// Uplinks lists the uplinks, uplink i+1 is Uplinks[i]. Empty means two
	// veth uplinks. At most one may be KindLANSegment.
	Uplinks []UplinkSpec
	// Hosts is the number of LAN host namespaces (default 1, at most 90).
	Hosts int
	// ExtraHostAddrs adds 10.77.0.100, .101, ... to host 1, for tests that
	// need many LAN source addresses (at most 150).
	ExtraHostAddrs int
}

// NS is a named network namespace of the lab, bind-mounted at Path
// (/run/netns/Name) so that `ip netns exec Name` works too.
type NS struct {
	// Name is the namespace's name under /run/netns.
	Name string
	// Path is the namespace's bind mount.
	Path string
}

// UplinkInfo describes one built uplink as the router sees it.
type UplinkInfo struct {
	// Name is the uplink's name, "up<i>" (1-based) for every kind; use it as
	// the uplink name in a wanflow config.
	Name string
	// Interface is the router's interface for the uplink: "up<i>", or "lan0"
	// for KindLANSegment.
	Interface string
	// Addr is the router's address on the uplink (the NAT source address).
	Addr netip.Addr
	// Prefix is Addr with its prefix length as configured on Interface.
	Prefix netip.Prefix
	// Gateway is the next hop; invalid for KindL3 (point-to-point).
	Gateway netip.Addr
	// Peer is the far end of a KindL3 link (100.64.<i>.1); invalid otherwise.
	Peer netip.Addr
	// ISPDNS is the address of the ISP's DNS server (started by
	// StartServers).
	ISPDNS netip.Addr
	// Kind is how the uplink is wired.
	Kind UplinkKind
	// Tunnel is "ipip" or "tun" for KindL3, empty otherwise.
	Tunnel string
	// MTU is the configured MTU of Interface, 0 when left at the default.
	MTU int
}

// Lab is a built lab. Its fields are set by Up and must not be changed.
type Lab struct {
	// Cfg is the configuration with defaults filled in.
	Cfg Config
	// Switch holds the LAN bridge br0.
	Switch *NS
	// Hosts are the LAN hosts; host k (0-based) has eth0 = HostAddrs[k]/24
	// and a default route via 10.77.0.1.
	Hosts []*NS
	// Router is where the wanflow daemon runs.
	Router *NS
	// ISPs holds one namespace per uplink, ISPs[i] for Uplinks[i].
	ISPs []*NS
	// Internet holds the servers.
	Internet *NS
	// RouterLAN is the router's LAN interface, "lan0".
	RouterLAN string
	// RouterLANAddr is the router's LAN address, 10.77.0.1/24.
	RouterLANAddr netip.Prefix
	// HostAddrs are the primary addresses of Hosts, index for index.
	HostAddrs []netip.Addr
	// HostExtraAddrs are the extra addresses of host 1 (Config.ExtraHostAddrs).
	HostExtraAddrs []netip.Addr
	// Uplinks describes the uplinks, Uplinks[i] for Cfg.Uplinks[i].
	Uplinks []UplinkInfo
	// Servers are the internet's server addresses, 203.0.113.10 ... .29.
	Servers []netip.Addr
	// ProbeTargets are extra internet addresses that answer ping (1.1.1.1,
	// 8.8.8.8), so that a default probe configuration works in the lab.
	ProbeTargets []netip.Addr

	mu      sync.Mutex // serializes Close, carrier/internet changes, StartServers
	closed  bool       // Close has run
	all     []*NS      // every namespace of the lab, in creation order
	made    []*NS      // the namespaces this lab created (Close deletes only these)
	pipes   []*tunPipe // per uplink: the TUN pipe of a TUN-based L3 uplink, else nil; set during Up only
	detours []*tunPipe // per uplink: the delay detour inside the ISP, else nil; set during Up only
	servers *serverSet // started by StartServers
}

// Server ports of StartServers: TCP and UDP echo on both.
const (
	// EchoPort is the echo servers' main port (RFC 862's port 7).
	EchoPort = 7
	// AltEchoPort is the echo servers' second port.
	AltEchoPort = 9000
)

// Fixed parts of the address plan.
var (
	// LANPrefix is the LAN, 10.77.0.0/24.
	LANPrefix = netip.MustParsePrefix("10.77.0.0/24")
	// RouterLANAddr is the router's lan0 address, 10.77.0.1/24.
	RouterLANAddr = netip.MustParsePrefix("10.77.0.1/24")
	// ModemAddr is the LAN-segment modem, 10.77.0.254.
	ModemAddr = netip.MustParseAddr("10.77.0.254")
)

// ErrNotSupported is returned on systems without network namespaces.
var ErrNotSupported = errors.New("lab: network namespaces are only supported on linux")

const (
	maxUplinks = 32
	maxHosts   = 90
	maxExtra   = 150
	numServers = 20
)

var (
	prefixMu   sync.Mutex
	prefixNext int
)

// defaultPrefix returns a process-unique namespace prefix.
func defaultPrefix() string {
	prefixMu.Lock()
	defer prefixMu.Unlock()
	k := prefixNext
	prefixNext++
	if k == 0 {
		return fmt.Sprintf("wf%d-", os.Getpid())
	}
	return fmt.Sprintf("wf%dn%d-", os.Getpid(), k)
}

// defaultPrefixRE matches the namespaces made with a default prefix,
// wf<pid>- or wf<pid>n<k>-, and captures the pid.
var defaultPrefixRE = regexp.MustCompile(`^(wf([0-9]+)(?:n[0-9]+)?-)`)

// validPrefix reports whether p is usable as a namespace name prefix.
func validPrefix(p string) error {
	if p == "" {
		return errors.New("lab: empty namespace prefix")
	}
	if len(p) > 64 {
		return fmt.Errorf("lab: namespace prefix %q longer than 64 bytes", p)
	}
	for _, c := range p {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("lab: namespace prefix %q: only letters, digits, '-', '_' and '.' allowed", p)
		}
	}
	return nil
}

// withDefaults validates cfg and fills in its defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = defaultPrefix()
	}
	if err := validPrefix(cfg.Prefix); err != nil {
		return cfg, err
	}
	if len(cfg.Uplinks) == 0 {
		cfg.Uplinks = []UplinkSpec{{}, {}}
	} else {
		cfg.Uplinks = append([]UplinkSpec(nil), cfg.Uplinks...)
	}
	if len(cfg.Uplinks) > maxUplinks {
		return cfg, fmt.Errorf("lab: %d uplinks, at most %d", len(cfg.Uplinks), maxUplinks)
	}
	lanSeg := 0
	for i, u := range cfg.Uplinks {
		switch u.Kind {
		case KindVeth, KindL3:
		case KindLANSegment:
			lanSeg++
			if u.MTU != 0 {
				return cfg, fmt.Errorf("lab: uplink %d: MTU is not supported for %v uplinks", i+1, u.Kind)
			}
		default:
			return cfg, fmt.Errorf("lab: uplink %d: unknown kind %v", i+1, u.Kind)
		}
		if u.MTU != 0 && (u.MTU < 576 || u.MTU > 9000) {
			return cfg, fmt.Errorf("lab: uplink %d: MTU %d outside 576..9000", i+1, u.MTU)
		}
		if u.Delay < 0 || u.Delay > 10*time.Second {
			return cfg, fmt.Errorf("lab: uplink %d: delay %v outside 0..10s", i+1, u.Delay)
		}
	}
	if lanSeg > 1 {
		return cfg, fmt.Errorf("lab: %d LAN-segment uplinks, at most one (the modem is 10.77.0.254)", lanSeg)
	}
	if cfg.Hosts == 0 {
		cfg.Hosts = 1
	}
	if cfg.Hosts < 0 || cfg.Hosts > maxHosts {
		return cfg, fmt.Errorf("lab: %d hosts, want 1..%d", cfg.Hosts, maxHosts)
	}
	if cfg.ExtraHostAddrs < 0 || cfg.ExtraHostAddrs > maxExtra {
		return cfg, fmt.Errorf("lab: %d extra host addresses, want 0..%d", cfg.ExtraHostAddrs, maxExtra)
	}
	return cfg, nil
}

// v4 returns the IPv4 address a.b.c.d.
func v4(a, b, c, d int) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a), byte(b), byte(c), byte(d)})
}

// HostAddr returns the primary address of LAN host k (0-based): 10.77.0.10+k.
func HostAddr(k int) netip.Addr { return v4(10, 77, 0, 10+k) }

// ServerAddr returns internet server k (0-based): 203.0.113.10+k.
func ServerAddr(k int) netip.Addr { return v4(203, 0, 113, 10+k) }

// UplinkAddr returns the router's address on veth or L3 uplink i (0-based
// index, so uplink i+1): 100.64.<i+1>.2.
func UplinkAddr(i int) netip.Addr { return v4(100, 64, i+1, 2) }

// UplinkGateway returns the ISP's address on veth or L3 uplink i (0-based):
// 100.64.<i+1>.1.
func UplinkGateway(i int) netip.Addr { return v4(100, 64, i+1, 1) }

// describe fills in everything about the lab that follows from cfg alone.
func describe(cfg Config) *Lab {
	l := &Lab{
		Cfg:           cfg,
		RouterLAN:     "lan0",
		RouterLANAddr: RouterLANAddr,
		ProbeTargets:  []netip.Addr{v4(1, 1, 1, 1), v4(8, 8, 8, 8)},
	}
	mk := func(name string) *NS {
		ns := &NS{Name: cfg.Prefix + name, Path: "/run/netns/" + cfg.Prefix + name}
		l.all = append(l.all, ns)
		return ns
	}
	l.Switch = mk("switch")
	l.Router = mk("router")
	l.Internet = mk("inet")
	for i := range cfg.Uplinks {
		l.ISPs = append(l.ISPs, mk(fmt.Sprintf("isp%d", i+1)))
	}
	for k := 0; k < cfg.Hosts; k++ {
		l.Hosts = append(l.Hosts, mk(fmt.Sprintf("h%d", k+1)))
		l.HostAddrs = append(l.HostAddrs, HostAddr(k))
	}
	for k := 0; k < cfg.ExtraHostAddrs; k++ {
		l.HostExtraAddrs = append(l.HostExtraAddrs, v4(10, 77, 0, 100+k))
	}
	for k := 0; k < numServers; k++ {
		l.Servers = append(l.Servers, ServerAddr(k))
	}
	for i, u := range cfg.Uplinks {
		info := UplinkInfo{Name: fmt.Sprintf("up%d", i+1), Kind: u.Kind, MTU: u.MTU}
		switch u.Kind {
		case KindVeth:
			info.Interface = info.Name
			info.Addr = UplinkAddr(i)
			info.Prefix = netip.PrefixFrom(info.Addr, 24)
			info.Gateway = UplinkGateway(i)
			info.ISPDNS = info.Gateway
		case KindLANSegment:
			info.Interface = l.RouterLAN
			info.Addr = RouterLANAddr.Addr()
			info.Prefix = RouterLANAddr
			info.Gateway = ModemAddr
			info.ISPDNS = ModemAddr
		case KindL3:
			info.Interface = info.Name
			info.Addr = UplinkAddr(i)
			info.Prefix = netip.PrefixFrom(info.Addr, 32)
			info.Peer = UplinkGateway(i)
			info.ISPDNS = info.Peer
		}
		l.Uplinks = append(l.Uplinks, info)
	}
	l.pipes = make([]*tunPipe, len(cfg.Uplinks))
	l.detours = make([]*tunPipe, len(cfg.Uplinks))
	return l
}

// Namespaces returns every namespace of the lab: switch, router, internet,
// ISPs, hosts.
func (l *Lab) Namespaces() []*NS {
	return append([]*NS(nil), l.all...)
}

// uplink returns uplink i or an error naming the valid range.
func (l *Lab) uplink(i int) (UplinkInfo, UplinkSpec, error) {
	if i < 0 || i >= len(l.Uplinks) {
		return UplinkInfo{}, UplinkSpec{}, fmt.Errorf("lab: uplink index %d out of range [0,%d)", i, len(l.Uplinks))
	}
	return l.Uplinks[i], l.Cfg.Uplinks[i], nil
}

// BaselineMode selects how KernelBaseline spreads flows over the uplinks.
type BaselineMode uint8

const (
	// BaselineMultipathL3 is a weighted multipath default route with
	// fib_multipath_hash_policy 0 (source and destination address).
	BaselineMultipathL3 BaselineMode = iota
	// BaselineMultipathL4 is the same route with fib_multipath_hash_policy 1
	// (5-tuple).
	BaselineMultipathL4
	// BaselineConnmark is the reference setup's connmark variant: the L4
	// multipath route picks a new connection's uplink, conntrack marks the
	// connection by it, and per-uplink tables chosen by the mark keep the
	// connection there (ConnmarkBaseline).
	BaselineConnmark
)

// BaselineTable is the nftables table (family ip) that KernelBaseline
// installs in the router namespace.
const BaselineTable = "labbaseline"

// String returns the mode's name.
func (m BaselineMode) String() string {
	switch m {
	case BaselineMultipathL3:
		return "multipath-l3"
	case BaselineMultipathL4:
		return "multipath-l4"
	case BaselineConnmark:
		return "connmark"
	}
	return fmt.Sprintf("BaselineMode(%d)", uint8(m))
}
