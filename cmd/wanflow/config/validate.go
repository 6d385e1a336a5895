package config

import (
	"github.com/wanflow/wanflow/uplinks/hooks"

	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wanflow/wanflow/uplinks/policy"
)

// validator checks a decoded Config, reporting each problem at the line of
// the setting it concerns (or, for a setting left at its default, of the
// nearest enclosing setting present in the file).
type validator struct {
	c     *Config
	lines map[string]int
	probs []Problem
	warns []Problem
}

// line returns the line of path, or of its nearest ancestor in the file.
func (v *validator) line(path string) int {
	for {
		if l, ok := v.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return v.lines[""]
		}
		path = path[:i]
	}
}

// present reports whether path was given in the file.
func (v *validator) present(path string) bool {
	_, ok := v.lines[path]
	return ok
}

func (v *validator) errorf(path, format string, args ...any) {
	v.probs = append(v.probs, Problem{Line: v.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(path, format string, args ...any) {
	v.warns = append(v.warns, Problem{Line: v.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) intRange(path string, got, lo, hi int) {
	if got < lo || got > hi {
		v.errorf(path, "must be %d..%d, got %d", lo, hi, got)
	}
}

func (v *validator) durRange(path string, got Duration, lo, hi time.Duration) {
	if time.Duration(got) < lo || time.Duration(got) > hi {
		v.errorf(path, "must be %v..%v, got %v", lo, hi, got)
	}
}

var (
	uplinkName = regexp.MustCompile(`^[a-z0-9_-]{1,15}$`)
	ruleName   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)
	nftName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,63}$`)
)

// ifname checks a Linux interface name: 1..15 bytes (IFNAMSIZ-1), no '/',
// ':' or white space, not "." or "..".
func (v *validator) ifname(path, s string) {
	switch {
	case s == "":
		v.errorf(path, "required")
	case len(s) > 15:
		v.errorf(path, "interface name %q longer than 15 bytes", s)
	case s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\r\v\f"):
		v.errorf(path, "invalid interface name %q", s)
	}
}

// unicast4 checks that a is a usable IPv4 unicast address.
func (v *validator) unicast4(path string, a netip.Addr) {
	switch {
	case !a.Is4():
		v.errorf(path, "want an IPv4 address, got %v", a)
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		v.errorf(path, "want a unicast IPv4 address, got %v", a)
	}
}

// prefix4 checks an IPv4 network prefix written with its network address.
func (v *validator) prefix4(path string, p Prefix) {
	switch {
	case !p.Addr().Is4():
		v.errorf(path, "want an IPv4 prefix, got %v", p)
	case p.Masked() != p.Prefix:
		v.errorf(path, "%v is not a network address (did you mean %v?)", p, p.Masked())
	}
}

func (v *validator) validate() {
	c := v.c
	v.validateLAN()
	v.validateUplinks()
	v.validateRules()
	v.validateProbes("probes", &c.Probes, false)
	v.validateControl()
	v.validateDataplane()
	v.validateKernel()
	if len(v.probs) == 0 {
		// Cannot fail after the checks above; kept as the last word on
		// what the policy accepts.
		if _, err := c.Policy(); err != nil {
			v.errorf("rules", "%v", err)
		}
	}
}

func (v *validator) validateLAN() {
	l := &v.c.LAN
	v.ifname("lan.interface", l.Interface)
	for i, p := range l.Prefixes {
		v.prefix4(fmt.Sprintf("lan.prefixes[%d]", i), p)
	}
	switch {
	case l.Domain == "":
		v.errorf("lan.domain", "required (a DNS name like lan or home.arpa)")
	case len(l.Domain) > 253 || !domainName.MatchString(l.Domain):
		v.errorf("lan.domain", "want a DNS name of lower-case labels [a-z0-9-] (not starting or ending with -, at most 63 each, 253 in all, no trailing dot), got %q", l.Domain)
	}
	if d := l.DNS; d != nil {
		v.validateDNS(d)
	}
	if d := l.DHCP; d != nil {
		v.validateDHCP(d)
	}
}

var (
	// domainName matches a DNS name of lower-case labels.
	domainName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	// dhcpHostname matches a DHCP client's host name: one DNS label.
	dhcpHostname = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// routerAddrs returns the addresses the configuration says are the
// router's or an uplink gateway's on the LAN segment, each with the path
// that says so; no DHCP client may get them.
func (v *validator) routerAddrs() map[netip.Addr]string {
	l := &v.c.LAN
	m := map[netip.Addr]string{}
	for i, u := range v.c.Uplinks {
		if u.Interface != "" && u.Interface == l.Interface && u.Gateway.IsValid() {
			m[u.Gateway.Addr] = fmt.Sprintf("uplinks[%d].gateway", i)
		}
	}
	if l.DHCP != nil && l.DHCP.Router.IsValid() {
		m[l.DHCP.Router.Addr] = "lan.dhcp.router"
	}
	if l.DNS != nil {
		for i := len(l.DNS.Listen) - 1; i >= 0; i-- { // the first path wins
			m[l.DNS.Listen[i].Addr()] = fmt.Sprintf("lan.dns.listen[%d]", i)
		}
	}
	return m
}

func (v *validator) validateDHCP(d *DHCP) {
	l := &v.c.LAN
	if !v.present("lan.dhcp.range") {
		v.errorf("lan.dhcp.range", "required")
	} else {
		v.dhcpRange(d.Range)
	}
	v.durRange("lan.dhcp.lease_time", d.LeaseTime, time.Minute, 365*24*time.Hour)
	if !filepath.IsAbs(d.LeaseFile) {
		v.errorf("lan.dhcp.lease_file", "want an absolute path, got %q", d.LeaseFile)
	}
	if v.present("lan.dhcp.router") {
		v.unicast4("lan.dhcp.router", d.Router.Addr)
		if d.Router.Is4() && len(l.Prefixes) > 0 && !inPrefixes(d.Router.Addr, l.Prefixes) {
			v.errorf("lan.dhcp.router", "%v is outside lan.prefixes: clients could not reach it", d.Router)
		}
	}
	seen := map[netip.Addr]int{}
	for i, a := range d.DNS {
		p := fmt.Sprintf("lan.dhcp.dns[%d]", i)
		v.unicast4(p, a.Addr)
		if j, dup := seen[a.Addr]; dup {
			v.errorf(p, "%v listed twice (first at line %d)", a, v.line(fmt.Sprintf("lan.dhcp.dns[%d]", j)))
		} else {
			seen[a.Addr] = i
		}
	}
	if len(d.DNS) == 0 && l.DNS == nil {
		v.warnf("lan.dhcp", "clients are told to use the router as DNS server (lan.dhcp.dns not set) but lan.dns is not set: nothing answers them")
	}
	router := v.routerAddrs()
	if d.Range.First.IsValid() {
		for _, a := range slices.SortedFunc(maps.Keys(router), netip.Addr.Compare) {
			if d.Range.Contains(a) {
				v.errorf("lan.dhcp.range", "range %v includes %v (%s), which no client may get", d.Range, a, router[a])
			}
		}
	}
	macs := map[string]int{}
	addrs := map[netip.Addr]int{}
	names := map[string]int{}
	for i, r := range d.Reservations {
		p := fmt.Sprintf("lan.dhcp.reservations[%d]", i)
		first := func(j int, key string) int { return v.line(fmt.Sprintf("lan.dhcp.reservations[%d].%s", j, key)) }
		if !v.present(p + ".mac") {
			v.errorf(p+".mac", "required")
		} else if j, dup := macs[r.MAC.String()]; dup {
			v.errorf(p+".mac", "MAC %v reserved twice (first at line %d)", r.MAC, first(j, "mac"))
		} else {
			macs[r.MAC.String()] = i
		}
		switch {
		case !v.present(p + ".addr"):
			v.errorf(p+".addr", "required")
		case !r.Addr.Is4() || r.Addr.IsUnspecified() || r.Addr.IsMulticast() || r.Addr.Addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			v.unicast4(p+".addr", r.Addr.Addr)
		default:
			if j, dup := addrs[r.Addr.Addr]; dup {
				v.errorf(p+".addr", "%v reserved twice (first at line %d)", r.Addr, first(j, "addr"))
			} else {
				addrs[r.Addr.Addr] = i
			}
			if len(l.Prefixes) > 0 {
				if q, ok := prefixOf(r.Addr.Addr, l.Prefixes); !ok {
					v.errorf(p+".addr", "%v is outside lan.prefixes", r.Addr)
				} else if q.Bits() < 31 && (r.Addr.Addr == q.Addr() || r.Addr.Addr == lastAddr(q)) {
					v.errorf(p+".addr", "%v is the network or broadcast address of %v", r.Addr, q)
				}
			}
			if what, ok := router[r.Addr.Addr]; ok {
				v.errorf(p+".addr", "%v is the address of %s, which no client may get", r.Addr, what)
			}
		}
		if v.present(p + ".hostname") {
			key := strings.ToLower(r.Hostname)
			if !dhcpHostname.MatchString(r.Hostname) {
				v.errorf(p+".hostname", "want a host name [A-Za-z0-9-]{1,63}, not starting or ending with -, got %q", r.Hostname)
			} else if j, dup := names[key]; dup {
				v.errorf(p+".hostname", "host name %q reserved twice (first at line %d)", r.Hostname, first(j, "hostname"))
			} else {
				names[key] = i
			}
		}
	}
}

func (v *validator) validateDNS(d *DNS) {
	if len(d.Listen) == 0 {
		v.errorf("lan.dns.listen", "required")
	}
	seen := map[netip.AddrPort]int{}
	for i, a := range d.Listen {
		p := fmt.Sprintf("lan.dns.listen[%d]", i)
		switch {
		case !a.Addr().Is4():
			v.errorf(p, "want an IPv4 address:port, got %v", a)
		case a.Port() == 0:
			v.errorf(p, "port must not be 0")
		default:
			v.unicast4(p, a.Addr())
		}
		if j, dup := seen[a.AddrPort]; dup {
			v.errorf(p, "%v listed twice (first at line %d)", a, v.line(fmt.Sprintf("lan.dns.listen[%d]", j)))
		} else {
			seen[a.AddrPort] = i
		}
	}
	v.intRange("lan.dns.cache_size", d.CacheSize, 0, 1000000)
	v.durRange("lan.dns.hedge_after", d.HedgeAfter, 10*time.Millisecond, 5*time.Second)
	v.durRange("lan.dns.timeout", d.Timeout, 100*time.Millisecond, 30*time.Second)
	if d.HedgeAfter >= d.Timeout && time.Duration(d.Timeout) >= 100*time.Millisecond {
		p := "lan.dns.hedge_after"
		if !v.present(p) {
			p = "lan.dns.timeout"
		}
		v.errorf(p, "hedge_after %v must be less than timeout %v, or no query is ever hedged", d.HedgeAfter, d.Timeout)
	}
	v.durRange("lan.dns.serve_stale", d.ServeStale, 0, 7*24*time.Hour)
	v.intRange("lan.dns.rate_limit", d.RateLimit, 0, 1000000)
	if v.present("lan.dns.allow") {
		if len(d.Allow) == 0 {
			v.errorf("lan.dns.allow", "at least one prefix (leave the key out for the default: lan.prefixes)")
		}
		for i, p := range d.Allow {
			v.prefix4(fmt.Sprintf("lan.dns.allow[%d]", i), p)
		}
	} else {
		d.Allow = slices.Clone(v.c.LAN.Prefixes)
	}
}

func (v *validator) dhcpRange(r AddrRange) {
	const path = "lan.dhcp.range"
	v.unicast4(path, r.First)
	v.unicast4(path, r.Last)
	if len(v.c.LAN.Prefixes) == 0 {
		return
	}
	for _, p := range v.c.LAN.Prefixes {
		p := p.Masked()
		if !p.Contains(r.First) || !p.Contains(r.Last) {
			continue
		}
		if p.Bits() < 31 && (r.First == p.Addr() || r.Last == lastAddr(p)) {
			v.errorf(path, "range %v includes the network or broadcast address of %v", r, p)
		}
		return
	}
	v.errorf(path, "range %v is not inside one of lan.prefixes", r)
}

// lastAddr returns the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func (v *validator) validateUplinks() {
	c := v.c
	switch n := len(c.Uplinks); {
	case n == 0:
		v.errorf("uplinks", "at least one uplink is required")
		return
	case n > MaxUplinks:
		v.errorf("uplinks", "%d uplinks, at most %d", n, MaxUplinks)
	}
	names := map[string]int{}  // name -> index
	ifaces := map[string]int{} // interface -> index
	for i := range c.Uplinks {
		u := &c.Uplinks[i]
		p := fmt.Sprintf("uplinks[%d]", i)
		if !v.present(p + ".name") {
			v.errorf(p+".name", "required")
		} else if !uplinkName.MatchString(u.Name) {
			v.errorf(p+".name", "want [a-z0-9_-]{1,15}, got %q", u.Name)
		} else if j, dup := names[u.Name]; dup {
			v.errorf(p+".name", "duplicate uplink name %q (first at line %d)", u.Name, c.Uplinks[j].line)
		} else {
			names[u.Name] = i
		}
		v.ifname(p+".interface", u.Interface)
		if j, dup := ifaces[u.Interface]; dup && u.Interface != "" {
			v.errorf(p+".interface", "interface %s already used by uplink %s (line %d); two uplinks may not share an interface",
				u.Interface, c.Uplinks[j].Name, c.Uplinks[j].line)
		} else {
			ifaces[u.Interface] = i
		}
		if u.Interface == c.Dataplane.TUN {
			v.errorf(p+".interface", "interface %s is the TUN device (dataplane.tun)", u.Interface)
		}
		if u.Gateway.IsValid() {
			v.unicast4(p+".gateway", u.Gateway.Addr)
		}
		if u.Interface != "" && u.Interface == c.LAN.Interface {
			// A modem on the LAN segment: nothing else can tell which
			// neighbour is the uplink's next hop.
			if !u.Gateway.IsValid() {
				v.errorf(p+".gateway", "required when the uplink shares the LAN interface %s", u.Interface)
			} else if len(c.LAN.Prefixes) > 0 && !inPrefixes(u.Gateway.Addr, c.LAN.Prefixes) {
				v.errorf(p+".gateway", "%v is on the LAN interface but outside lan.prefixes", u.Gateway)
			}
		}
		v.intRange(p+".tier", u.Tier, 1, 9)
		v.intRange(p+".weight", int(u.Weight), 1, 1000)
		for j, a := range u.DNS {
			v.unicast4(fmt.Sprintf("%s.dns[%d]", p, j), a.Addr)
		}
		if u.MTU != 0 {
			v.intRange(p+".mtu", u.MTU, 576, 65535)
		}
		if v.present(p + ".resolv_file") {
			switch {
			case !filepath.IsAbs(u.ResolvFile):
				v.errorf(p+".resolv_file", "want an absolute path, got %q", u.ResolvFile)
			case len(u.DNS) > 0:
				v.warnf(p+".resolv_file", "not read: %s.dns is set", p)
			}
		}
		for _, x := range []struct{ key, val string }{{"tcp", u.OnFailure.TCP}, {"udp", u.OnFailure.UDP}} {
			if !isFailureAction(x.val) {
				v.errorf(p+".on_failure."+x.key, "want reset, migrate or keep, got %q", x.val)
			}
		}
		v.command(p+".on_down", u.OnDown, u.HookShell)
		v.command(p+".on_up", u.OnUp, u.HookShell)
		v.command(p+".while_down", u.WhileDown, u.HookShell)
		v.durRange(p+".retry", u.Retry, time.Second, 24*time.Hour)
		if v.present(p+".retry") && u.WhileDown == "" {
			v.errorf(p+".retry", "needs while_down (the command it re-runs)")
		}
		v.durRange(p+".hook_timeout", u.HookTimeout, time.Second, time.Hour)
		v.inheritProbes(p+".probes", &u.Probes)
		v.validateProbes(p+".probes", &u.Probes, true)
	}
}

// command checks a hook command line. Without a shell it must split into
// words exactly as the daemon's hook runner splits it (hooks.Split: like a
// POSIX shell, without any expansion; shell syntax is refused rather than
// passed on literally).
func (v *validator) command(path, cmd string, shell bool) {
	if !v.present(path) {
		return
	}
	if strings.IndexByte(cmd, 0) >= 0 {
		v.errorf(path, "contains a NUL byte")
		return
	}
	if shell {
		if strings.TrimSpace(cmd) == "" {
			v.errorf(path, "empty command")
		}
		return
	}
	words, err := hooks.Split(cmd)
	switch {
	case err != nil:
		v.errorf(path, "%v (hook_shell is false: the command runs without a shell; quote the character or set hook_shell: true)", err)
	case len(words) == 0 || words[0] == "":
		v.errorf(path, "empty command")
	}
}

// prefixOf returns the (masked) prefix of ps that contains a.
func prefixOf(a netip.Addr, ps []Prefix) (netip.Prefix, bool) {
	for _, p := range ps {
		if p.Contains(a) {
			return p.Masked(), true
		}
	}
	return netip.Prefix{}, false
}

func inPrefixes(a netip.Addr, ps []Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// inheritProbes fills the probe settings an uplink does not give from the
// global probes block. A targets key given with no value is absent.
func (v *validator) inheritProbes(path string, p *Probes) {
	g := reflect.ValueOf(&v.c.Probes).Elem()
	u := reflect.ValueOf(p).Elem()
	keys, index := yamlFields(g.Type())
	for _, k := range keys {
		if !v.present(path+"."+k) || k == "targets" && p.Targets == nil {
			u.Field(index[k]).Set(g.Field(index[k]))
		}
	}
	p.Targets = slices.Clone(p.Targets)
}

// validateProbes checks a probes block; with onlyGiven, only the settings
// written in the file at path (the rest were inherited and checked once),
// and how they combine with the inherited ones.
func (v *validator) validateProbes(path string, p *Probes, onlyGiven bool) {
	given := func(key string) bool { return v.present(path + "." + key) }
	check := func(key string) bool { return !onlyGiven || given(key) }
	if check("targets") {
		seen := map[string]int{}
		for i, t := range p.Targets {
			tp := fmt.Sprintf("%s.targets[%d]", path, i)
			if t.Addr.Addr().IsValid() {
				v.unicast4(tp, t.Addr.Addr())
				if t.Addr.Addr().IsLoopback() {
					v.errorf(tp, "%v is a loopback address: the router itself would answer", t.Addr.Addr())
				}
			}
			if j, dup := seen[t.String()]; dup {
				v.errorf(tp, "target %s listed twice (first at line %d)", t, v.line(fmt.Sprintf("%s.targets[%d]", path, j)))
			} else {
				seen[t.String()] = i
			}
		}
	}
	if check("min_ok") || check("targets") {
		mp := path + ".min_ok"
		if !given("min_ok") && given("targets") {
			mp = path + ".targets"
		}
		switch n := len(p.Targets); {
		case p.MinOK < 1:
			if !onlyGiven || given("min_ok") { // else reported under probes
				v.errorf(mp, "must be at least 1, got %d", p.MinOK)
			}
		case n > 0 && p.MinOK > n:
			v.errorf(mp, "min_ok %d is more than the %d targets", p.MinOK, n)
		}
	}
	if check("interval") {
		v.durRange(path+".interval", p.Interval, 50*time.Millisecond, time.Minute)
	}
	if check("timeout") {
		v.durRange(path+".timeout", p.Timeout, 10*time.Millisecond, 30*time.Second)
	}
	for _, x := range []struct {
		key string
		val int
		max int
	}{
		{"down_after", p.DownAfter, 100},
		{"up_after", p.UpAfter, 100},
		{"loss_window", p.LossWindow, 1000},
		{"degraded_after", p.DegradedAfter, 100},
		{"recover_after", p.RecoverAfter, 100},
	} {
		if check(x.key) {
			v.intRange(path+"."+x.key, x.val, 1, x.max)
		}
	}
	if check("latency_max") && p.LatencyMax != 0 {
		v.durRange(path+".latency_max", p.LatencyMax, time.Millisecond, 30*time.Second)
	}
	if check("degraded") && p.Degraded != DegradedKeep && p.Degraded != DegradedWeight && p.Degraded != DegradedDown {
		v.errorf(path+".degraded", "want keep, weight or down, got %q", p.Degraded)
	}
	if check("initial") && p.Initial != InitialUp && p.Initial != InitialDown {
		v.errorf(path+".initial", "want up or down, got %q", p.Initial)
	}
}

func (v *validator) validateRules() {
	c := v.c
	names := map[string]int{}
	known := map[string]bool{}
	for _, u := range c.Uplinks {
		known[u.Name] = true
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		p := fmt.Sprintf("rules[%d]", i)
		if v.present(p + ".name") {
			if !ruleName.MatchString(r.Name) {
				v.errorf(p+".name", "want [A-Za-z0-9_.-]{1,32}, got %q", r.Name)
			} else if j, dup := names[r.Name]; dup {
				v.errorf(p+".name", "duplicate rule name %q (first at line %d)", r.Name, c.Rules[j].line)
			} else {
				names[r.Name] = i
			}
		}
		for j, x := range r.Src {
			v.prefix4(fmt.Sprintf("%s.src[%d]", p, j), x)
		}
		for j, x := range r.Dst {
			v.prefix4(fmt.Sprintf("%s.dst[%d]", p, j), x)
		}
		if len(r.DstPorts) > 0 && r.Proto != 0 && r.Proto != Proto(policy.ProtoTCP) && r.Proto != Proto(policy.ProtoUDP) {
			v.errorf(p+".dst_ports", "need proto tcp, udp or any, got %v", r.Proto)
		}
		if len(r.Uplinks) == 0 {
			v.errorf(p+".uplinks", "at least one uplink is required")
		}
		seen := map[string]bool{}
		for j, n := range r.Uplinks {
			q := fmt.Sprintf("%s.uplinks[%d]", p, j)
			switch {
			case !known[n]:
				v.errorf(q, "unknown uplink %q", n)
			case seen[n]:
				v.errorf(q, "uplink %q listed twice", n)
			}
			seen[n] = true
		}
	}
}

func (v *validator) validateControl() {
	c := &v.c.Control
	if !filepath.IsAbs(c.Socket) {
		v.errorf("control.socket", "want an absolute path, got %q", c.Socket)
	}
	if c.Metrics.Port() == 0 {
		v.errorf("control.metrics", "port must not be 0")
	}
	v.intRange("control.events", c.Events, 16, 1000000)
}

func (v *validator) validateDataplane() {
	c := v.c
	d := &c.Dataplane
	v.ifname("dataplane.tun", d.TUN)
	if d.TUN != "" && d.TUN == c.LAN.Interface {
		v.errorf("dataplane.tun", "TUN device %s is the LAN interface", d.TUN)
	}
	v.intRange("dataplane.mtu", d.MTU, 576, 65535)
	v.intRange("dataplane.workers", d.Workers, 0, 64)

	// NAT ports: replies to them on uplink addresses are taken by the
	// dataplane and dropped for the kernel, so they must stay clear of
	// well-known ports and of wanflow's own listeners.
	np := d.NATPorts
	switch {
	case np.Lo < 1024:
		v.errorf("dataplane.nat_ports", "range %v includes well-known ports; want ports >= 1024", np)
	case np.Len() < 1024:
		v.errorf("dataplane.nat_ports", "range %v has %d ports; want at least 1024", np, np.Len())
	case d.Workers > 0 && np.Len() < 64*d.Workers:
		v.errorf("dataplane.nat_ports", "range %v has %d ports for %d workers; want at least 64 per worker", np, np.Len(), d.Workers)
	}
	listeners := map[string]uint16{"control.metrics": c.Control.Metrics.Port()}
	if c.LAN.DNS != nil {
		for i, a := range c.LAN.DNS.Listen {
			listeners[fmt.Sprintf("lan.dns.listen[%d]", i)] = a.Port()
		}
	}
	for _, path := range slices.Sorted(maps.Keys(listeners)) {
		port := listeners[path]
		switch {
		case !np.Contains(port):
		case v.present("dataplane.nat_ports"):
			v.errorf("dataplane.nat_ports", "range %v includes port %d of %s", np, port, path)
		default:
			v.errorf(path, "port %d is in the NAT port range %v (dataplane.nat_ports)", port, np)
		}
	}

	v.durRange("dataplane.restart_hold", d.RestartHold, time.Second, 10*time.Minute)
	v.intRange("dataplane.flows.capacity", d.Flows.Capacity, 1024, 1<<26)
	v.intRange("dataplane.flows.per_host", d.Flows.PerHost, 0, 1<<26)
	t := &d.Flows.Timeouts
	for _, x := range []struct {
		key  string
		val  Duration
		min  time.Duration
		rule string
	}{
		{"udp", t.UDP, 2 * time.Minute, "RFC 4787 REQ-5"},
		{"tcp_established", t.TCPEstablished, 2*time.Hour + 4*time.Minute, "RFC 5382 REQ-5"},
		{"tcp_transitory", t.TCPTransitory, 4 * time.Minute, "RFC 5382 REQ-5"},
		{"icmp", t.ICMP, 60 * time.Second, "RFC 5508 REQ-1"},
	} {
		p := "dataplane.flows.timeouts." + x.key
		v.durRange(p, x.val, time.Second, 7*24*time.Hour)
		if time.Duration(x.val) >= time.Second && time.Duration(x.val) < x.min {
			v.warnf(p, "%v is below the %v that %s requires; flows idle longer will lose their mapping", x.val, x.min, x.rule)
		}
	}
}

func (v *validator) validateKernel() {
	c := v.c
	k := &c.Kernel
	n := min(len(c.Uplinks), MaxUplinks) // more is reported once, under uplinks
	const maxTable = 1<<31 - 1           // netlink table ids are u32; Go ints are 32 bits on linux/arm
	if k.TableBase < 1 || k.TableBase > maxTable-1-MaxUplinks {
		v.errorf("kernel.table_base", "must be 1..%d, got %d", maxTable-1-MaxUplinks, k.TableBase)
	} else if last := k.UplinkTable(n - 1); k.TableBase <= 255 && last >= 253 {
		// 253 default, 254 main, 255 local (rtnetlink.h).
		v.errorf("kernel.table_base", "tables %d-%d include the kernel's tables 253-255 (default, main, local)", k.TableBase, last)
	}
	last := k.UplinkRulePriority(max(n-1, 0))
	if k.RulePriority < 1 || last > 32765 {
		// 0 is the local rule, 32766 main and 32767 default.
		v.errorf("kernel.rule_priority", "rule priorities %d-%d must lie in 1..32765", k.RulePriority, last)
	}
	if k.RouteProtocol < 5 || k.RouteProtocol > 255 {
		v.errorf("kernel.route_protocol", "must be 5..255 (0..4 are the kernel's), got %d", k.RouteProtocol)
	}
	if !nftName.MatchString(k.NFTTable) {
		v.errorf("kernel.nft_table", "want [A-Za-z_][A-Za-z0-9_-]{0,63}, got %q", k.NFTTable)
	}
}

// itoa is strconv.Itoa, shorter in format strings.
func itoa(i int) string { return strconv.Itoa(i) }
