package nftguard

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
)

// Defaults for the zero value of the corresponding Config field.
const (
	DefaultTable  = "wanflow"
	DefaultPortLo = 20000
	DefaultPortHi = 32767
)

// Names of the objects inside the table.
const (
	// SetName is the set of uplink addresses.
	SetName = "uplink_addrs"
	// ChainName is the base chain, hooked at prerouting, priority raw.
	ChainName = "prerouting"
	// IfaceSetName is the set of uplink interface names (fail-open).
	IfaceSetName = "uplink_ifaces"
	// NATChainName is the fail-open chain: type nat, hooked at
	// postrouting, priority srcnat.
	NATChainName = "postrouting"
	// NotrackChainName is the chain that keeps the LAN<->TUN traffic out
	// of conntrack: type filter, hooked at prerouting, priority
	// NotrackPriority.
	NotrackChainName = "notrack"
	// NotrackPriority is before conntrack's defragmentation (-400): an
	// untracked fragment is not reassembled by the kernel either.
	NotrackPriority = -450
)

// rulesetVersion is part of the rule comments: a wanflow that builds the
// table differently bumps it, so Apply rebuilds an older table.
const rulesetVersion = "v3"

// Config describes the table.
type Config struct {
	// Table is the name of the table (family ip); "" means DefaultTable.
	Table string
	// Ports is the NAT port range, inclusive; {0, 0} means
	// DefaultPortLo-DefaultPortHi.
	Ports [2]uint16
	// LANPrefixes are the LAN's IPv4 prefixes. If there is at least one,
	// the table also gets the fail-open chain, which masquerades what the
	// kernel forwards from these prefixes out of an interface in
	// Interfaces (see the package documentation); none means no such
	// chain and no interface set.
	LANPrefixes []netip.Prefix
	// Interfaces are the names of the uplinks' interfaces, the elements of
	// the set IfaceSetName. Like the addresses, they can change without
	// rebuilding the table. Unused without LANPrefixes.
	Interfaces []string
	// TUN is the name of wanflow's TUN device and LookupMark a firewall
	// mark whose policy rule (lan/steer) looks up the TUN's table. With
	// both set (and LANPrefixes), the notrack chain exempts from conntrack
	// the packets that enter from the TUN and the LAN packets that the
	// TUN's table routes into it: see the package documentation.
	TUN        string
	LookupMark uint32
}

func (c Config) withDefaults() (Config, error) {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.Ports == [2]uint16{} {
		c.Ports = [2]uint16{DefaultPortLo, DefaultPortHi}
	}
	switch {
	case len(c.Table) > 255:
		return c, fmt.Errorf("nftguard: table name longer than 255 bytes")
	case c.Ports[0] == 0 || c.Ports[0] > c.Ports[1]:
		return c, fmt.Errorf("nftguard: bad port range %d-%d", c.Ports[0], c.Ports[1])
	}
	var lan []netip.Prefix
	for _, p := range c.LANPrefixes {
		q := p
		if p.Addr().Is4In6() {
			q = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if !q.IsValid() || !q.Addr().Is4() {
			return c, fmt.Errorf("nftguard: LAN prefix %v is not IPv4", p)
		}
		lan = append(lan, q.Masked())
	}
	slices.SortFunc(lan, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	c.LANPrefixes = slices.Compact(lan)
	var ifs []string
	for _, name := range c.Interfaces {
		if name == "" || len(name) >= ifNameSize || strings.ContainsRune(name, 0) {
			return c, fmt.Errorf("nftguard: bad interface name %q", name)
		}
		ifs = append(ifs, name)
	}
	c.Interfaces = sortedNames(ifs)
	if len(c.TUN) >= ifNameSize || strings.ContainsRune(c.TUN, 0) {
		return c, fmt.Errorf("nftguard: bad TUN name %q", c.TUN)
	}
	return c, nil
}

// ifNameSize is IFNAMSIZ: an interface name as nftables compares it, NUL
// padded.
const ifNameSize = 16

// failOpen reports whether cfg (defaults applied) has the fail-open chain.
func (c Config) failOpen() bool { return len(c.LANPrefixes) > 0 }

// notrack reports whether cfg (defaults applied) has the notrack chain.
func (c Config) notrack() bool { return c.failOpen() && c.TUN != "" && c.LookupMark != 0 }

// elements returns addrs sorted and deduplicated, or an error if one is not
// an IPv4 address.
func elements(addrs []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if !a.Is4() {
			return nil, fmt.Errorf("nftguard: address %v is not IPv4", a)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// notrackComments are the comments of the notrack chain's rules for cfg
// (defaults applied): the TUN rule, then one per LAN prefix.
func notrackComments(cfg Config) []string {
	out := []string{fmt.Sprintf("wanflow %s: untracked: from TUN %s", rulesetVersion, cfg.TUN)}
	for _, p := range cfg.LANPrefixes {
		out = append(out, fmt.Sprintf("wanflow %s: untracked: from %v routed into TUN %s (lookup mark %#x)",
			rulesetVersion, p, cfg.TUN, cfg.LookupMark))
	}
	return out
}

// ruleComment is the comment of the prerouting rule for proto ("tcp" or
// "udp"); it identifies the rule Apply builds for cfg.
func ruleComment(cfg Config, proto string) string {
	c := fmt.Sprintf("wanflow %s: drop kernel copy of NAT replies, %s dport %d-%d",
		rulesetVersion, proto, cfg.Ports[0], cfg.Ports[1])
	if cfg.notrack() {
		c += fmt.Sprintf(", while TUN %s routes (lookup mark %#x)", cfg.TUN, cfg.LookupMark)
	}
	return c
}

// masqComment is the comment of the fail-open rule for the LAN prefix src;
// it names everything the rule depends on, so Apply rebuilds the table
// when one changes. The destination exclusions (all LAN prefixes) enter as
// a short fingerprint.
func masqComment(cfg Config, src netip.Prefix) string {
	h := fnv.New32a()
	for _, p := range cfg.LANPrefixes {
		fmt.Fprintf(h, "%v,", p)
	}
	return fmt.Sprintf("wanflow %s: fail-open masquerade from %v (lan %08x)", rulesetVersion, src, h.Sum32())
}
