package control

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// IANA protocol numbers of the protocols a flow can have.
const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
)

// Parameter names of FlowQuery and ExplainQuery, in the order messages list
// them.
var (
	flowParams    = []string{"uplink", "host", "remote", "proto", "port", "sort", "limit"}
	explainParams = []string{"proto", "src", "dst"}
	eventsParams  = []string{"since", "follow"}
)

// maxUplinkName bounds FlowQuery.Uplink; uplink names in the config are
// much shorter.
const maxUplinkName = 64

// ParseFlowQuery parses and checks the URL parameters of a FlowQuery
// (uplink, host, remote, proto, port, sort, limit). An absent or empty
// parameter selects any; limit 0 means DefaultFlowLimit. Unknown or
// repeated parameters, addresses that are not IPv4, ports outside
// 1..65535, an unknown proto or sort, and a limit outside 0..MaxFlowLimit
// are errors naming the parameter.
func ParseFlowQuery(v url.Values) (FlowFilter, error) {
	p, err := singleValues(v, flowParams)
	if err != nil {
		return FlowFilter{}, err
	}
	f := FlowFilter{Limit: DefaultFlowLimit}
	if s := p["uplink"]; s != "" {
		if !validUplinkName(s) {
			return FlowFilter{}, fmt.Errorf("uplink %q: not an uplink name (up to %d letters, digits, '_', '-', '.')", clip(s), maxUplinkName)
		}
		f.Uplink = s
	}
	for _, name := range []string{"host", "remote"} {
		s := p[name]
		if s == "" {
			continue
		}
		a, err := parseIPv4(name, s)
		if err != nil {
			return FlowFilter{}, err
		}
		if name == "host" {
			f.Host = a
		} else {
			f.Remote = a
		}
	}
	if s := p["proto"]; s != "" {
		if f.Proto, err = parseProto(s); err != nil {
			return FlowFilter{}, err
		}
	}
	if s := p["port"]; s != "" {
		if f.Port, err = parsePort("port", s); err != nil {
			return FlowFilter{}, err
		}
	}
	switch s := p["sort"]; s {
	case "", "bytes", "packets", "age":
		f.Sort = s
	default:
		return FlowFilter{}, fmt.Errorf("sort %q: want bytes, packets or age", clip(s))
	}
	if s := p["limit"]; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return FlowFilter{}, fmt.Errorf("limit %q: not a number", clip(s))
		}
		if n < 0 || n > MaxFlowLimit {
			return FlowFilter{}, fmt.Errorf("limit %d: out of range 0..%d (0 means %d)", n, MaxFlowLimit, DefaultFlowLimit)
		}
		if n > 0 {
			f.Limit = n
		}
	}
	return f, nil
}

// Values returns q as the URL parameters ParseFlowQuery reads, leaving out
// the zero fields.
func (q FlowQuery) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("uplink", q.Uplink)
	set("host", q.Host)
	set("remote", q.Remote)
	set("proto", q.Proto)
	if q.Port != 0 {
		v.Set("port", strconv.FormatUint(uint64(q.Port), 10))
	}
	set("sort", q.Sort)
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// flowQueryOf returns the FlowQuery that ParseFlowQuery turns into f.
func flowQueryOf(f FlowFilter) FlowQuery {
	q := FlowQuery{Uplink: f.Uplink, Proto: protoName(f.Proto), Port: f.Port, Sort: f.Sort, Limit: f.Limit}
	if f.Host.IsValid() {
		q.Host = f.Host.String()
	}
	if f.Remote.IsValid() {
		q.Remote = f.Remote.String()
	}
	return q
}

// ParseExplainQuery parses and checks the URL parameters of an
// ExplainQuery (proto, src, dst; all required). For TCP and UDP, src and
// dst are IPv4 address:port with ports 1..65535. For ICMP echo, src is an
// IPv4 address, optionally with :id, the echo identifier (0 when absent),
// and dst an IPv4 address without a port. Unknown or repeated parameters
// are errors.
func ParseExplainQuery(v url.Values) (FlowKey, error) {
	p, err := singleValues(v, explainParams)
	if err != nil {
		return FlowKey{}, err
	}
	for _, name := range explainParams {
		if p[name] == "" {
			return FlowKey{}, fmt.Errorf("missing parameter %q (explain needs proto, src and dst)", name)
		}
	}
	return parseExplain(p["proto"], p["src"], p["dst"])
}

// ParseExplainArgs parses the command-line form of an ExplainQuery,
// `<proto> <src>[:port] <dst>[:port]`, checks it as ParseExplainQuery does
// and returns it normalised: proto in lower case, addresses and ports in
// canonical form, an ICMP src without ":0".
func ParseExplainArgs(args []string) (ExplainQuery, error) {
	if len(args) != 3 {
		return ExplainQuery{}, fmt.Errorf("want 3 arguments, <proto> <src>[:port] <dst>[:port], got %d", len(args))
	}
	k, err := parseExplain(args[0], args[1], args[2])
	if err != nil {
		return ExplainQuery{}, err
	}
	return explainQueryOf(k), nil
}

// Values returns q as the URL parameters ParseExplainQuery reads, leaving
// out the empty fields.
func (q ExplainQuery) Values() url.Values {
	v := url.Values{}
	for _, kv := range [][2]string{{"proto", q.Proto}, {"src", q.Src}, {"dst", q.Dst}} {
		if kv[1] != "" {
			v.Set(kv[0], kv[1])
		}
	}
	return v
}

// explainQueryOf returns k as the normalised ExplainQuery that parses back
// to k.
func explainQueryOf(k FlowKey) ExplainQuery {
	q := ExplainQuery{Proto: protoName(k.Proto), Src: k.Src.String(), Dst: k.Dst.String()}
	if k.Proto == protoICMP {
		if k.Src.Port() == 0 {
			q.Src = k.Src.Addr().String()
		}
		q.Dst = k.Dst.Addr().String()
	}
	return q
}

// parseExplain checks the three parts of an ExplainQuery.
func parseExplain(proto, src, dst string) (FlowKey, error) {
	p, err := parseProto(proto)
	if err != nil {
		return FlowKey{}, err
	}
	k := FlowKey{Proto: p}
	if k.Src, err = parseEndpoint("src", src, p); err != nil {
		return FlowKey{}, err
	}
	if k.Dst, err = parseEndpoint("dst", dst, p); err != nil {
		return FlowKey{}, err
	}
	return k, nil
}

// parseEndpoint parses one end of a flow: address:port for TCP and UDP,
// for ICMP an address with an optional :id (src) or an address alone
// (dst).
func parseEndpoint(param, s string, proto uint8) (netip.AddrPort, error) {
	name := protoName(proto)
	if proto == protoICMP {
		if a, err := netip.ParseAddr(s); err == nil {
			if !a.Is4() {
				return netip.AddrPort{}, notIPv4(param, s)
			}
			return netip.AddrPortFrom(a, 0), nil
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%s %q: not an IPv4 address", param, clip(s))
		}
		if !ap.Addr().Is4() {
			return netip.AddrPort{}, notIPv4(param, s)
		}
		if param == "dst" {
			return netip.AddrPort{}, fmt.Errorf("%s %q: an icmp destination is an address without a port", param, clip(s))
		}
		return ap, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		if _, aerr := netip.ParseAddr(s); aerr == nil {
			return netip.AddrPort{}, fmt.Errorf("%s %q: %s needs address:port", param, clip(s), name)
		}
		return netip.AddrPort{}, fmt.Errorf("%s %q: not an IPv4 address:port", param, clip(s))
	}
	if !ap.Addr().Is4() {
		return netip.AddrPort{}, notIPv4(param, s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%s %q: port 0 is not a port (1..65535)", param, clip(s))
	}
	return ap, nil
}

// parseProto maps a protocol name (any case) to its number.
func parseProto(s string) (uint8, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return protoTCP, nil
	case "udp":
		return protoUDP, nil
	case "icmp":
		return protoICMP, nil
	}
	return 0, fmt.Errorf("proto %q: want tcp, udp or icmp", clip(s))
}

// protoName is the inverse of parseProto; "" for 0 and unknown numbers.
func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMP:
		return "icmp"
	}
	return ""
}

// parseIPv4 parses an IPv4 address in dotted-decimal form.
func parseIPv4(param, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, notIPv4(param, s)
	}
	return a, nil
}

func notIPv4(param, s string) error {
	return fmt.Errorf("%s %q: not an IPv4 address (wanflow routes IPv4 only)", param, clip(s))
}

// parsePort parses a port number, 1..65535.
func parsePort(param, s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s %q: not a port number (1..65535)", param, clip(s))
	}
	return uint16(n), nil
}

// validUplinkName reports whether s could be an uplink's name: the config
// allows fewer characters, but the Backend is the judge of which names
// exist.
func validUplinkName(s string) bool {
	if len(s) == 0 || len(s) > maxUplinkName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// singleValues checks that v holds only the parameters in known, each at
// most once, and returns their values; an absent parameter is "".
func singleValues(v url.Values, known []string) (map[string]string, error) {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same message for the same request
	out := make(map[string]string, len(v))
	for _, k := range keys {
		if !slices.Contains(known, k) {
			if len(known) == 0 {
				return nil, fmt.Errorf("unknown parameter %q (this request takes none)", clip(k))
			}
			return nil, fmt.Errorf("unknown parameter %q (want %s)", clip(k), strings.Join(known, ", "))
		}
		switch vs := v[k]; len(vs) {
		case 0:
		case 1:
			out[k] = vs[0]
		default:
			return nil, fmt.Errorf("parameter %q given %d times, want at most once", k, len(vs))
		}
	}
	return out, nil
}

// maxEcho bounds how much of a client's input an error message repeats.
const maxEcho = 64

// clip shortens s for an error message; %q then escapes what is left.
func clip(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return s[:maxEcho] + "..."
}
