package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
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

// DNSAddr is an address and port the DNS forwarder listens on, written
// "10.77.0.1:53" or "10.77.0.1" (port 53).
type DNSAddr struct{ netip.AddrPort }

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
func (a *DNSAddr) UnmarshalYAML(n *yaml.Node) error {
	const want = "an address like 10.77.0.1 or address:port like 10.77.0.1:53"
	s, err := scalar(n, want)
	if err != nil {
		return err
	}
	if v, err := netip.ParseAddr(s); err == nil {
		a.AddrPort = netip.AddrPortFrom(v, 53)
		return nil
	}
	v, err := netip.ParseAddrPort(s)
	if err != nil {
		return badValue(n, "want %s, got %q", want, s)
	}
	a.AddrPort = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (a DNSAddr) MarshalYAML() (any, error) { return a.String(), nil }

// MAC is a unicast Ethernet (EUI-48) address, written "aa:bb:cc:dd:ee:ff"
// (also "aa-bb-cc-dd-ee-ff" or "aabb.ccdd.eeff", either case). String
// returns the lower-case colon form.
type MAC struct{ net.HardwareAddr }

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
func (m *MAC) UnmarshalYAML(n *yaml.Node) error {
	const want = `a MAC address like "aa:bb:cc:dd:ee:ff"`
	s, err := scalar(n, want)
	if err != nil {
		return err
	}
	v, err := net.ParseMAC(s)
	if err != nil || len(v) != 6 {
		return badValue(n, "want %s, got %q", want, s)
	}
	switch {
	case v[0]&1 != 0:
		return badValue(n, "%v is a multicast or broadcast MAC address; want a unicast one", v)
	case [6]byte(v) == [6]byte{}:
		return badValue(n, "want a MAC address other than 00:00:00:00:00:00")
	}
	m.HardwareAddr = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (m MAC) MarshalYAML() (any, error) { return m.String(), nil }

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

// size returns the number of addresses in r.
func (r AddrRange) size() uint64 {
	f, l := r.First.As4(), r.Last.As4()
	u := func(a [4]byte) uint64 { return uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3]) }
	return u(l) - u(f) + 1
}

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

// Kinds of probe targets (ProbeTarget.Kind).
const (
	// ProbeICMP is an ICMP echo request to ProbeTarget.Addr.
	ProbeICMP = "icmp"
	// ProbeDNS is a DNS query to ProbeTarget.Addr, or to the uplink's own
	// DNS servers when ProbeTarget.UplinkDNS is set.
	ProbeDNS = "dns"
	// ProbeHTTP is an HTTP or HTTPS GET of ProbeTarget.URL.
	ProbeHTTP = "http"
)

// ProbeTarget is one health probe target, written:
//
//	1.1.1.1, icmp:1.1.1.1           ICMP echo
//	dns                             a DNS query to the uplink's own DNS servers
//	dns:9.9.9.9, dns:9.9.9.9:5353   a DNS query to that server (port 53 by default)
//	http://1.1.1.1/, https://host/  an HTTP(S) GET; a host name is resolved through the uplink
type ProbeTarget struct {
	// Kind is ProbeICMP, ProbeDNS or ProbeHTTP.
	Kind string
	// Addr is the address probed: for ProbeICMP the address with port 0;
	// for ProbeDNS the server and port, zero when UplinkDNS; for ProbeHTTP
	// the URL's IP literal and port (80 or 443 unless given), zero when the
	// URL names a host.
	Addr netip.AddrPort
	// URL is the URL of a ProbeHTTP target, as written; "" otherwise.
	URL string
	// UplinkDNS is set for the target "dns": query the uplink's DNS
	// servers (Uplink.DNS, else those learned from Uplink.ResolvFile).
	UplinkDNS bool
}

const probeTargetSyntax = "a probe target (ADDR, icmp:ADDR, dns, dns:ADDR[:PORT], http://... or https://...)"

// hostName matches a DNS host name: dot-separated labels of letters,
// digits, '-' and '_', not starting or ending with '-'.
var hostName = regexp.MustCompile(`^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$`)

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
// Address families and unicast-ness are checked by Parse.
func (t *ProbeTarget) UnmarshalYAML(n *yaml.Node) error {
	s, err := scalar(n, probeTargetSyntax)
	if err != nil {
		return err
	}
	kind, rest, _ := strings.Cut(s, ":")
	switch strings.ToLower(kind) {
	case "http", "https":
		u, err := url.Parse(s)
		if err != nil || !strings.HasPrefix(rest, "//") || u.Host == "" || u.Hostname() == "" {
			return badValue(n, "want a URL like http://1.1.1.1/ or https://example.com/, got %q", s)
		}
		var port uint64 = 80
		if strings.EqualFold(kind, "https") {
			port = 443
		}
		if p := u.Port(); p != "" {
			port, err = strconv.ParseUint(p, 10, 16)
			if err != nil || port == 0 {
				return badValue(n, "want a port 1..65535 in %q", s)
			}
		}
		*t = ProbeTarget{Kind: ProbeHTTP, URL: s}
		host := u.Hostname()
		if a, err := netip.ParseAddr(host); err == nil {
			t.Addr = netip.AddrPortFrom(a, uint16(port))
		} else if len(host) > 253 || !hostName.MatchString(host) || allDigits(lastLabel(host)) {
			return badValue(n, "want an IPv4 address or a host name in %q, got %q", s, host)
		}
		return nil
	case "dns":
		if s == "dns" {
			*t = ProbeTarget{Kind: ProbeDNS, UplinkDNS: true}
			return nil
		}
		if kind != "dns" {
			break
		}
		if ap, err := netip.ParseAddrPort(rest); err == nil && ap.Port() != 0 {
			*t = ProbeTarget{Kind: ProbeDNS, Addr: ap}
			return nil
		}
		if a, err := netip.ParseAddr(rest); err == nil {
			*t = ProbeTarget{Kind: ProbeDNS, Addr: netip.AddrPortFrom(a, 53)}
			return nil
		}
		return badValue(n, "want dns, dns:ADDR or dns:ADDR:PORT (port 1..65535), got %q", s)
	case "icmp":
		if kind != "icmp" {
			break
		}
		a, err := netip.ParseAddr(rest)
		if err != nil {
			return badValue(n, "want icmp:ADDR, got %q", s)
		}
		*t = ProbeTarget{Kind: ProbeICMP, Addr: netip.AddrPortFrom(a, 0)}
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return badValue(n, "want %s, got %q", probeTargetSyntax, s)
	}
	*t = ProbeTarget{Kind: ProbeICMP, Addr: netip.AddrPortFrom(a, 0)}
	return nil
}

func lastLabel(host string) string {
	host = strings.TrimSuffix(host, ".")
	return host[strings.LastIndexByte(host, '.')+1:]
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// MarshalYAML implements yaml.Marshaler.
func (t ProbeTarget) MarshalYAML() (any, error) { return t.String(), nil }

// String returns the target in its canonical written form: "icmp:1.1.1.1",
// "dns", "dns:9.9.9.9" (":PORT" unless 53) or the URL.
func (t ProbeTarget) String() string {
	switch t.Kind {
	case ProbeICMP:
		return "icmp:" + t.Addr.Addr().String()
	case ProbeDNS:
		switch {
		case t.UplinkDNS:
			return "dns"
		case t.Addr.Port() == 53:
			return "dns:" + t.Addr.Addr().String()
		}
		return "dns:" + t.Addr.String()
	case ProbeHTTP:
		return t.URL
	}
	return "<none>"
}

// Fraction is a share 0..1, written as a percentage ("20%") or a fraction
// (0.2).
type Fraction float64

// UnmarshalYAML implements yaml.Unmarshaler; bad values carry their line.
func (f *Fraction) UnmarshalYAML(n *yaml.Node) error {
	const want = `want a percentage like "20%" or a fraction 0..1 like 0.2`
	s, err := scalar(n, want)
	if err != nil {
		return err
	}
	num, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if pct {
		v /= 100
	}
	if err != nil || !(v >= 0 && v <= 1) { // also rejects NaN
		return badValue(n, "%s, got %q", want, s)
	}
	*f = Fraction(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (f Fraction) MarshalYAML() (any, error) { return f.String(), nil }

// String returns f as a percentage, e.g. "20%".
func (f Fraction) String() string {
	return strconv.FormatFloat(float64(f)*100, 'f', -1, 64) + "%"
}
