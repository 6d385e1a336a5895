package dhcp

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strings"
	"time"
)

// DefaultLeaseTime is the lease time used when Config.LeaseTime is zero.
const DefaultLeaseTime = 12 * time.Hour

// Limits enforced by New and Reconfigure.
const (
	// MinLeaseTime is the shortest accepted lease time: shorter leases make
	// clients renew more often than a LAN needs and only add load.
	MinLeaseTime = 10 * time.Second
	// MaxPoolSize is the largest accepted pool (RangeEnd-RangeStart+1). It
	// bounds the lease table and the cost of searching a free address.
	MaxPoolSize = 1 << 16
)

// Reservation binds a client's hardware address to a fixed address and,
// optionally, a host name. A client whose chaddr is MAC always gets Addr
// (RFC 2131 section 4.3.1: "an address already bound to the client"), never
// a pool address, and no other client ever gets Addr.
type Reservation struct {
	// MAC is the client hardware address (chaddr). Required.
	MAC net.HardwareAddr
	// Addr is the reserved address. It must lie inside Config.Subnet and
	// may lie inside or outside the pool; inside the pool it is never handed
	// to another client.
	Addr netip.Addr
	// Hostname, if set, is a single DNS label. It overrides the name the
	// client sends (option 12) and is answered by Lookup even while the
	// client has no lease.
	Hostname string
}

// Config is the configuration of a Server. New and Reconfigure copy it; the
// caller may reuse it afterwards.
type Config struct {
	// Interface is the LAN interface to serve on. Required.
	Interface string
	// ServerAddr is the router's address on the LAN. It is the server
	// identifier (option 54) and the default router and DNS server.
	// Required; it must lie inside Subnet.
	ServerAddr netip.Addr
	// Subnet is the LAN prefix: the subnet mask option (1) and the
	// broadcast address option (28) derive from it; the pool and the
	// reservations must lie inside it.
	Subnet netip.Prefix
	// RangeStart and RangeEnd delimit the dynamic pool, both inclusive. At
	// most MaxPoolSize addresses; ServerAddr and reserved addresses inside
	// the range are skipped.
	RangeStart, RangeEnd netip.Addr
	// LeaseTime is the lease time (option 51); zero means DefaultLeaseTime.
	LeaseTime time.Duration
	// Router is the default router (option 3); the zero Addr means
	// ServerAddr.
	Router netip.Addr
	// DNS lists the DNS servers (option 6); empty means [ServerAddr].
	DNS []netip.Addr
	// Domain is the domain name (option 15) and the domain under which
	// clients are known by name (host.Domain). Optional.
	Domain string
	// Reservations are the static leases, at most one per MAC and per
	// address.
	Reservations []Reservation
	// LeaseFile is the file leases are persisted to (format in the
	// package documentation); "" keeps leases in memory only.
	LeaseFile string
	// Logger receives the server's log lines; nil means slog.Default().
	Logger *slog.Logger
}

// normalize validates cfg and returns a deep copy with defaults filled in,
// or an error naming the first invalid field.
func (cfg Config) normalize() (Config, error) {
	c := cfg
	if c.Interface == "" {
		return c, errors.New("dhcp: config: Interface is required")
	}
	if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() {
		return c, fmt.Errorf("dhcp: config: Subnet %v is not an IPv4 prefix", c.Subnet)
	}
	if c.Subnet.Bits() > 30 {
		return c, fmt.Errorf("dhcp: config: Subnet %v is too small (at most /30)", c.Subnet)
	}
	c.Subnet = c.Subnet.Masked()
	if err := checkHost(c, "ServerAddr", c.ServerAddr); err != nil {
		return c, err
	}
	if err := checkHost(c, "RangeStart", c.RangeStart); err != nil {
		return c, err
	}
	if err := checkHost(c, "RangeEnd", c.RangeEnd); err != nil {
		return c, err
	}
	if c.RangeEnd.Less(c.RangeStart) {
		return c, fmt.Errorf("dhcp: config: RangeEnd %v is before RangeStart %v", c.RangeEnd, c.RangeStart)
	}
	if n := addrToU32(c.RangeEnd) - addrToU32(c.RangeStart) + 1; n > MaxPoolSize {
		return c, fmt.Errorf("dhcp: config: pool %v-%v has %d addresses, more than %d", c.RangeStart, c.RangeEnd, n, MaxPoolSize)
	}
	switch {
	case c.LeaseTime == 0:
		c.LeaseTime = DefaultLeaseTime
	case c.LeaseTime < MinLeaseTime:
		return c, fmt.Errorf("dhcp: config: LeaseTime %v is shorter than %v", c.LeaseTime, MinLeaseTime)
	case c.LeaseTime/time.Second > math.MaxUint32-1:
		return c, fmt.Errorf("dhcp: config: LeaseTime %v does not fit option 51", c.LeaseTime)
	}
	c.LeaseTime = c.LeaseTime.Truncate(time.Second)
	if !c.Router.IsValid() {
		c.Router = c.ServerAddr
	} else if !c.Router.Is4() {
		return c, fmt.Errorf("dhcp: config: Router %v is not an IPv4 address", c.Router)
	}
	if len(c.DNS) == 0 {
		c.DNS = []netip.Addr{c.ServerAddr}
	} else {
		c.DNS = append([]netip.Addr(nil), c.DNS...)
		for _, a := range c.DNS {
			if !a.Is4() {
				return c, fmt.Errorf("dhcp: config: DNS server %v is not an IPv4 address", a)
			}
		}
	}
	c.Domain = strings.TrimSuffix(c.Domain, ".")
	if c.Domain != "" && !validDomain(c.Domain) {
		return c, fmt.Errorf("dhcp: config: Domain %q is not a valid domain name", c.Domain)
	}
	c.Reservations = make([]Reservation, len(cfg.Reservations))
	macs := make(map[string]bool, len(cfg.Reservations))
	addrs := make(map[netip.Addr]bool, len(cfg.Reservations))
	names := make(map[string]bool, len(cfg.Reservations))
	for i, r := range cfg.Reservations {
		if len(r.MAC) == 0 || len(r.MAC) > 16 {
			return c, fmt.Errorf("dhcp: config: reservation %d: MAC %q must have 1 to 16 bytes", i, r.MAC)
		}
		if err := checkHost(c, fmt.Sprintf("reservation %v Addr", r.MAC), r.Addr); err != nil {
			return c, err
		}
		if r.Addr == c.ServerAddr {
			return c, fmt.Errorf("dhcp: config: reservation %v: Addr %v is the ServerAddr", r.MAC, r.Addr)
		}
		if macs[string(r.MAC)] {
			return c, fmt.Errorf("dhcp: config: reservation %v: duplicate MAC", r.MAC)
		}
		if addrs[r.Addr] {
			return c, fmt.Errorf("dhcp: config: reservation %v: duplicate Addr %v", r.MAC, r.Addr)
		}
		if r.Hostname != "" {
			if !validLabel(r.Hostname) {
				return c, fmt.Errorf("dhcp: config: reservation %v: Hostname %q is not a single DNS label", r.MAC, r.Hostname)
			}
			if names[strings.ToLower(r.Hostname)] {
				return c, fmt.Errorf("dhcp: config: reservation %v: duplicate Hostname %q", r.MAC, r.Hostname)
			}
			names[strings.ToLower(r.Hostname)] = true
		}
		macs[string(r.MAC)], addrs[r.Addr] = true, true
		c.Reservations[i] = Reservation{MAC: bytes.Clone(r.MAC), Addr: r.Addr, Hostname: r.Hostname}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// checkHost reports an error unless a is an IPv4 host address of c.Subnet
// (neither its network nor its broadcast address).
func checkHost(c Config, field string, a netip.Addr) error {
	if !a.Is4() {
		return fmt.Errorf("dhcp: config: %s %v is not an IPv4 address", field, a)
	}
	if !c.Subnet.Contains(a) {
		return fmt.Errorf("dhcp: config: %s %v is outside Subnet %v", field, a, c.Subnet)
	}
	if a == c.Subnet.Addr() || a == broadcastOf(c.Subnet) {
		return fmt.Errorf("dhcp: config: %s %v is the network or broadcast address of %v", field, a, c.Subnet)
	}
	return nil
}

// broadcastOf returns the directed broadcast address of the IPv4 prefix p.
func broadcastOf(p netip.Prefix) netip.Addr {
	return u32ToAddr(addrToU32(p.Masked().Addr()) | (1<<(32-p.Bits()) - 1))
}

// maskOf returns the subnet mask of the IPv4 prefix p.
func maskOf(p netip.Prefix) net.IPMask {
	return net.CIDRMask(p.Bits(), 32)
}

func addrToU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32ToAddr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// validLabel reports whether s is a DNS label usable as a host name (RFC
// 1123 section 2.1): 1 to 63 letters, digits and hyphens, not starting or
// ending with a hyphen.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validDomain reports whether s is a dot-separated sequence of valid labels
// of at most 253 characters.
func validDomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !validLabel(l) {
			return false
		}
	}
	return true
}

// clientHostname turns the host name option (12) a client sent into the
// name it is known by: the first label, if it is a valid label; "" if not.
// Invalid names are dropped rather than repaired, as dnsmasq does, so that
// the lease file and DNS never carry client-controlled odd bytes.
func clientHostname(opt []byte) string {
	s := string(opt)
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimRight(s, "\x00")
	if !validLabel(s) {
		return ""
	}
	return s
}
