package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wanflow/wanflow/uplinks/policy"
)

// valueError is a bad scalar value; it carries the value's line so that the
// message is useful even when the type is decoded by yaml.v3 directly.
type valueError struct {
	line int
	msg  string
}

func (e *valueError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

func badValue(n *yaml.Node, format string, args ...any) error {
	return &valueError{line: n.Line, msg: fmt.Sprintf(format, args...)}
}

// scalar returns the text of a non-null scalar node, or an error naming
// what was wanted instead.
func scalar(n *yaml.Node, want string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", badValue(n, "want %s, got %s", want, describe(n))
	}
	if n.Tag == "!!null" {
		return "", badValue(n, "want %s, got no value", want)
	}
	return n.Value, nil
}

// describe names a node's kind for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "no value"
		}
		return strconv.Quote(n.Value)
	}
	return "an unknown node"
}

// Duration is a time.Duration written the Go way: "500ms", "1s", "2h4m".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	s, err := scalar(n, `a duration like "500ms" or "2h4m"`)
	if err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return badValue(n, `want a duration like "500ms" or "2h4m", got %q`, s)
	}
	if v < 0 {
		return badValue(n, "must not be negative, got %s", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats d like time.Duration.String.
func (d Duration) String() string { return time.Duration(d).String() }

// Addr is an IP address ("192.168.1.1").
type Addr struct{ netip.Addr }

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
func (a *Addr) UnmarshalYAML(n *yaml.Node) error {
	s, err := scalar(n, "an IP address")
	if err != nil {
		return err
	}
	v, err := netip.ParseAddr(s)
	if err != nil {
		return badValue(n, "want an IP address, got %q", s)
	}
	a.Addr = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (a Addr) MarshalYAML() (any, error) { return a.String(), nil }

// Prefix is an IP network in CIDR notation ("10.77.0.0/24").
type Prefix struct{ netip.Prefix }

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	s, err := scalar(n, "a CIDR prefix")
	if err != nil {
		return err
	}
	v, err := netip.ParsePrefix(s)
	if err != nil {
		return badValue(n, "want a CIDR prefix like 10.77.0.0/24, got %q", s)
	}
	p.Prefix = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (p Prefix) MarshalYAML() (any, error) { return p.String(), nil }

// AddrPort is an IP address and a port ("10.77.0.1:53", "[::1]:9469").
type AddrPort struct{ netip.AddrPort }

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
func (a *AddrPort) UnmarshalYAML(n *yaml.Node) error {
	s, err := scalar(n, "an address:port")
	if err != nil {
		return err
	}
	v, err := netip.ParseAddrPort(s)
	if err != nil {
		return badValue(n, "want address:port like 10.77.0.1:53, got %q", s)
	}
	a.AddrPort = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (a AddrPort) MarshalYAML() (any, error) { return a.String(), nil }

// PortRange is an inclusive range of ports written "20000-32767", or a
// single port written "5060" or 5060.
type PortRange struct {
	Lo, Hi uint16 // first and last port, Lo <= Hi
}

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
func (r *PortRange) UnmarshalYAML(n *yaml.Node) error {
	s, err := scalar(n, `a port or port range like "20000-32767"`)
	if err != nil {
		return err
	}
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || l == 0 {
		return badValue(n, `want a port 1..65535 or a range like "20000-32767", got %q`, s)
	}
	if l > h {
		return badValue(n, "port range %q is reversed (want low-high)", s)
	}
	*r = PortRange{uint16(l), uint16(h)}
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (r PortRange) MarshalYAML() (any, error) { return r.String(), nil }

// String returns "lo-hi", or "lo" for a single port.
func (r PortRange) String() string { return policy.PortRange(r).String() }

// Len returns the number of ports in r.
func (r PortRange) Len() int { return int(r.Hi) - int(r.Lo) + 1 }

// Contains reports whether port p is in r.
func (r PortRange) Contains(p uint16) bool { return r.Lo <= p && p <= r.Hi }

// AddrRange is an inclusive range of IPv4 addresses written
// "10.77.0.100-10.77.0.199".
type AddrRange struct {
	First, Last netip.Addr // IPv4, First <= Last
}

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
func (r *AddrRange) UnmarshalYAML(n *yaml.Node) error {
	const want = `want an address range like "10.77.0.100-10.77.0.199"`
	s, err := scalar(n, want)
	if err != nil {
		return err
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return badValue(n, "%s, got %q", want, s)
	}
	first, err1 := netip.ParseAddr(strings.TrimSpace(a))
	last, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || !first.Is4() || !last.Is4() {
		return badValue(n, "%s (IPv4), got %q", want, s)
	}
	if last.Less(first) {
		return badValue(n, "address range %q is reversed (want first-last)", s)
	}
	*r = AddrRange{first, last}
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (r AddrRange) MarshalYAML() (any, error) { return r.String(), nil }

// String returns "first-last".
func (r AddrRange) String() string { return r.First.String() + "-" + r.Last.String() }

// Contains reports whether a is in r.
func (r AddrRange) Contains(a netip.Addr) bool {
	return a.Is4() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// Proto is an IP protocol: "tcp", "udp", "icmp", "any" (0) or a number
// 0..255.
type Proto uint8

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
func (p *Proto) UnmarshalYAML(n *yaml.Node) error {
	s, err := scalar(n, "a protocol (tcp, udp, icmp, any or 0..255)")
	if err != nil {
		return err
	}
	switch strings.ToLower(s) {
	case "any":
		*p = 0
	case "icmp":
		*p = Proto(policy.ProtoICMP)
	case "tcp":
		*p = Proto(policy.ProtoTCP)
	case "udp":
		*p = Proto(policy.ProtoUDP)
	default:
		v, err := strconv.ParseUint(s, 10, 8)
		if err != nil {
			return badValue(n, "want a protocol (tcp, udp, icmp, any or 0..255), got %q", s)
		}
		*p = Proto(v)
	}
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (p Proto) MarshalYAML() (any, error) { return p.String(), nil }

// String returns "tcp", "udp", "icmp", "any" or the protocol number.
func (p Proto) String() string { return policy.ProtoName(uint8(p)) }
