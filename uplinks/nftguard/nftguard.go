package nftguard

import (
	"fmt"
	"net/netip"
	"slices"
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
)

// rulesetVersion is part of the rule comments: a wanflow that builds the
// table differently bumps it, so Apply rebuilds an older table.
const rulesetVersion = "v1"

// Config describes the table.
type Config struct {
	// Table is the name of the table (family ip); "" means DefaultTable.
	Table string
	// Ports is the NAT port range, inclusive; {0, 0} means
	// DefaultPortLo-DefaultPortHi.
	Ports [2]uint16
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
	return c, nil
}

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

// ruleComment is the comment of the rule for proto ("tcp" or "udp"); it
// identifies the rule Apply builds for cfg.
func ruleComment(cfg Config, proto string) string {
	return fmt.Sprintf("wanflow %s: drop kernel copy of NAT replies, %s dport %d-%d",
		rulesetVersion, proto, cfg.Ports[0], cfg.Ports[1])
}
