package config

import (
	"fmt"
	"net"
	"sort"
	"strings"
)

// Plan returns the human-readable plan that `wanflow check` prints: the TUN
// device, the steering rules with their priorities, each uplink's table,
// rule and route, the nftables table and its rules, the NAT port range,
// workers, flow capacity and timeouts, and the policy. Addresses learned at
// run time are shown as <...>. Commands are given in ip(8)/nft(8) syntax
// for reading; wanflow installs the same objects over netlink.
func (c *Config) Plan() string {
	var b strings.Builder
	pf := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	k := c.Kernel
	d := c.Dataplane
	proto := k.RouteProtocol

	pf("wanflow plan for %s\n", c.name)

	pf("\nLAN\n")
	pf("  interface %s\n", c.LAN.Interface)
	if len(c.LAN.Prefixes) > 0 {
		pf("  LAN prefixes %s\n", joinStrings(c.LAN.Prefixes))
	} else {
		pf("  LAN prefixes: those of %s's addresses\n", c.LAN.Interface)
	}
	pf("  domain %s\n", c.LAN.Domain)
	if h := c.LAN.DHCP; h != nil {
		c.planDHCP(&b, h)
	}
	if s := c.LAN.DNS; s != nil {
		c.planDNS(&b, s)
	}

	pf("\nTUN\n")
	pf("  device %s, mtu %d\n", d.TUN, d.MTU)
	pf("  ip route replace default dev %s table %d proto %d\n", d.TUN, k.LANTable(), proto)

	pf("\nSteering rules\n")
	pf("  ip rule add priority %d lookup main suppress_prefixlength 0 protocol %d\n", k.SuppressRulePriority(), proto)
	pf("  ip rule add priority %d fwmark 0x77f10000 lookup %d protocol %d   (for the notrack chain's lookup)\n", k.LookupRulePriority(), k.LANTable(), proto)
	pf("  ip rule add priority %d iif %s lookup %d protocol %d\n", k.LANRulePriority(), c.LAN.Interface, k.LANTable(), proto)
	pf("  fail-open after a crash (they match nothing while %s exists):\n", d.TUN)
	for j, i := range c.FallbackOrder() {
		pf("  ip rule add priority %d iif %s lookup %d protocol %d   (%s)\n", k.FallbackRulePriority(j), c.LAN.Interface, k.UplinkTable(i), proto, c.Uplinks[i].Name)
	}

	pf("\nUplinks\n")
	for i, u := range c.Uplinks {
		addr := "<" + u.Interface + " address>"
		pf("  [%d] %s: interface %s, tier %d, weight %d, table %d\n", i, u.Name, u.Interface, u.Tier, u.Weight, k.UplinkTable(i))
		if u.Interface == c.LAN.Interface {
			pf("      on the LAN segment: the uplink address is the router's LAN address\n")
		}
		pf("      ip rule add priority %d from %s lookup %d protocol %d\n", k.UplinkRulePriority(i), addr, k.UplinkTable(i), proto)
		if u.Gateway.IsValid() {
			pf("      ip route replace default via %v dev %s onlink table %d proto %d\n", u.Gateway, u.Interface, k.UplinkTable(i), proto)
		} else {
			pf("      ip route replace default [via <gateway learned on %s> onlink] dev %s table %d proto %d\n", u.Interface, u.Interface, k.UplinkTable(i), proto)
		}
		pf("      ip route replace <%s subnet> dev %s scope link src %s table %d proto %d\n", u.Interface, u.Interface, addr, k.UplinkTable(i), proto)
		var extra []string
		switch {
		case len(u.DNS) > 0:
			extra = append(extra, "dns "+joinStrings(u.DNS))
		case u.ResolvFile != "":
			extra = append(extra, "dns from the nameserver lines of "+u.ResolvFile)
		default:
			extra = append(extra, "dns learned")
		}
		if u.MTU != 0 {
			extra = append(extra, fmt.Sprintf("mtu %d", u.MTU))
		}
		pf("      %s\n", strings.Join(extra, ", "))
		planProbes(&b, &u.Probes)
		pf("      on failure: %s (udp covers icmp)\n", u.OnFailure)
		planHooks(&b, &u)
	}

	pf("\nnftables\n")
	pf("  table ip %s {\n", k.NFTTable)
	var addrs []string
	for _, u := range c.Uplinks {
		addrs = append(addrs, "<"+u.Interface+" address>")
	}
	pf("    set uplink_addrs { type ipv4_addr; elements = { %s } }\n", strings.Join(addrs, ", "))
	pf("    chain prerouting { type filter hook prerouting priority raw; policy accept;\n")
	for _, proto := range []string{"tcp", "udp"} {
		pf("      ip daddr @uplink_addrs %s dport %v fib saddr . mark 0x77f10000 oifname %s counter drop\n", proto, d.NATPorts, d.TUN)
	}
	pf("    }\n")
	var ifaces []string
	for _, u := range c.Uplinks {
		ifaces = append(ifaces, u.Interface)
	}
	lan := "<" + c.LAN.Interface + " prefixes>"
	if len(c.LAN.Prefixes) > 0 {
		var ps []string
		for _, p := range c.LAN.Prefixes {
			ps = append(ps, p.String())
		}
		lan = strings.Join(ps, ", ")
	}
	pf("    set uplink_ifaces { type ifname; elements = { %s } }\n", strings.Join(ifaces, ", "))
	pf("    chain postrouting { type nat hook postrouting priority srcnat;   (fail-open: only what the kernel forwards when %s is gone)\n", d.TUN)
	pf("      oifname @uplink_ifaces ip saddr { %s } masquerade\n    }\n", lan)
	pf("    chain notrack { type filter hook prerouting priority -450;   (wanflow's own traffic stays out of conntrack)\n")
	pf("      iifname %s notrack; LAN packets whose lookup (mark 0x77f10000) answers %s: notrack\n    }\n  }\n", d.TUN, d.TUN)

	pf("\nDataplane\n")
	if d.Workers == 0 {
		pf("  workers: GOMAXPROCS at start\n")
	} else {
		pf("  workers: %d\n", d.Workers)
	}
	pf("  NAT ports %v (%d ports), kept clear of net.ipv4.ip_local_port_range (checked at start)\n", d.NATPorts, d.NATPorts.Len())
	t := d.Flows.Timeouts
	perHost := "no per-host limit"
	if d.Flows.PerHost > 0 {
		perHost = fmt.Sprintf("at most %d per LAN host", d.Flows.PerHost)
	}
	pf("  flows: capacity %d, %s; timeouts udp %v, tcp_established %v, tcp_transitory %v, icmp %v\n",
		d.Flows.Capacity, perHost, t.UDP, t.TCPEstablished, t.TCPTransitory, t.ICMP)

	pf("\nPolicy\n")
	pf("  affinity %s\n", c.Balance.Affinity)
	if c.Balance.Preempt {
		pf("  preempt: when a preferred uplink returns, flows on less preferred uplinks move back to it (udp re-pinned, tcp reset)\n")
	} else {
		pf("  no preempt: when a preferred uplink returns, only new flows use it; existing flows stay where they are\n")
	}
	tiers := map[int][]int{}
	var order []int
	for i, u := range c.Uplinks {
		if _, ok := tiers[u.Tier]; !ok {
			order = append(order, u.Tier)
		}
		tiers[u.Tier] = append(tiers[u.Tier], i)
	}
	sort.Ints(order)
	for n, tier := range order {
		var sum uint32
		for _, i := range tiers[tier] {
			sum += c.Uplinks[i].Weight
		}
		var parts []string
		for _, i := range tiers[tier] {
			u := c.Uplinks[i]
			parts = append(parts, fmt.Sprintf("%s weight %d (%.1f%%)", u.Name, u.Weight, 100*float64(u.Weight)/float64(sum)))
		}
		when := "while up"
		if n > 0 {
			when = "only while every lower tier is down"
		}
		pf("  tier %d (%s): %s\n", tier, when, strings.Join(parts, ", "))
	}
	if len(c.Rules) == 0 {
		pf("  rules: none (every flow may use every uplink)\n")
	} else {
		pf("  rules (first match wins; no match: every uplink):\n")
		for i, r := range c.PolicyRules() {
			pf("    %d %s: %s -> %s\n", i, r.Name, ruleMatch(c.Rules[i]), strings.Join(r.Uplinks, ", "))
		}
	}

	pf("\nControl\n")
	pf("  socket %s, metrics %v, event ring %d\n", c.Control.Socket, c.Control.Metrics, c.Control.Events)

	if len(c.Warnings) > 0 {
		pf("\nWarnings\n")
		for _, w := range c.Warnings {
			pf("  %s\n", w)
		}
	}
	return b.String()
}

// planDHCP writes the DHCP server's pool, lease, options and reservations.
func (c *Config) planDHCP(b *strings.Builder, h *DHCP) {
	lan := c.LAN.Interface
	fmt.Fprintf(b, "  dhcp range %v, lease %v, leases in %s (%d addresses in the pool)\n", h.Range, h.LeaseTime, h.LeaseFile, h.Range.size())
	mask := "<mask of " + lan + "'s prefix>"
	if p, ok := prefixOf(h.Range.First, c.LAN.Prefixes); ok {
		mask = net.IP(net.CIDRMask(p.Bits(), 32)).String()
	}
	router := "<" + lan + " address>"
	if h.Router.IsValid() {
		router = h.Router.String()
	}
	dns := "<" + lan + " address>"
	if len(h.DNS) > 0 {
		dns = joinStrings(h.DNS)
	}
	fmt.Fprintf(b, "      options: subnet mask %s, router %s, dns %s, domain %s\n", mask, router, dns, c.LAN.Domain)
	for _, r := range h.Reservations {
		name := ""
		if r.Hostname != "" {
			name = " " + r.Hostname + "." + c.LAN.Domain
		}
		where := "outside the pool"
		if h.Range.Contains(r.Addr.Addr) {
			where = "in the pool, never given to another client"
		}
		fmt.Fprintf(b, "      reserved %v -> %v%s (%s)\n", r.MAC, r.Addr, name, where)
	}
}

// planDNS writes the DNS forwarder's settings.
func (c *Config) planDNS(b *strings.Builder, s *DNS) {
	allow := joinStrings(s.Allow)
	if len(s.Allow) == 0 {
		allow = "the prefixes of " + c.LAN.Interface + "'s addresses"
	}
	fmt.Fprintf(b, "  dns forwarder on %s (udp and tcp), answering clients in %s\n", joinStrings(s.Listen), allow)
	up := make([]int, len(c.Uplinks))
	for i := range up {
		up[i] = i
	}
	sort.SliceStable(up, func(i, j int) bool { return c.Uplinks[up[i]].Tier < c.Uplinks[up[j]].Tier })
	var servers []string
	for _, i := range up {
		u := c.Uplinks[i]
		switch {
		case len(u.DNS) > 0:
			servers = append(servers, fmt.Sprintf("%s (tier %d) %s", u.Name, u.Tier, joinStrings(u.DNS)))
		case u.ResolvFile != "":
			servers = append(servers, fmt.Sprintf("%s (tier %d) <from %s>", u.Name, u.Tier, u.ResolvFile))
		default:
			servers = append(servers, fmt.Sprintf("%s (tier %d) <learned>", u.Name, u.Tier))
		}
	}
	fmt.Fprintf(b, "      upstreams: the uplinks' DNS servers, each queried through its own uplink, in tier order: %s; a down uplink's servers are skipped\n",
		strings.Join(servers, ", "))
	fmt.Fprintf(b, "      hedging: the next upstream is asked after %v without an answer; timeout %v\n", s.HedgeAfter, s.Timeout)
	switch {
	case s.CacheSize == 0:
		fmt.Fprintf(b, "      cache: off\n")
	case s.ServeStale == 0:
		fmt.Fprintf(b, "      cache %d answers, TTLs honoured, no stale answers\n", s.CacheSize)
	default:
		fmt.Fprintf(b, "      cache %d answers, TTLs honoured; stale answers served up to %v past their TTL when no upstream answers\n", s.CacheSize, s.ServeStale)
	}
	if s.RateLimit == 0 {
		fmt.Fprintf(b, "      rate limit: off\n")
	} else {
		fmt.Fprintf(b, "      rate limit %d queries/s per client\n", s.RateLimit)
	}
	if c.LAN.DHCP != nil {
		fmt.Fprintf(b, "      local names: <DHCP client host name>.%s\n", c.LAN.Domain)
	}
}

// planProbes writes an uplink's probe settings.
func planProbes(b *strings.Builder, p *Probes) {
	if !p.Probing() {
		b.WriteString("      probes: none (targets: []); health is carrier and address only\n")
		return
	}
	fmt.Fprintf(b, "      probes %s (%d of %d must answer) every %v, timeout %v, down after %d, up after %d, initially %s\n",
		joinStrings(p.Targets), p.MinOK, len(p.Targets), p.Interval, p.Timeout, p.DownAfter, p.UpAfter, p.Initial)
	if !p.DegradeChecks() {
		b.WriteString("      degraded: off (no latency_max or loss_max)\n")
		return
	}
	var when []string
	if p.LatencyMax > 0 {
		when = append(when, "latency over "+p.LatencyMax.String())
	}
	if p.LossMax > 0 {
		when = append(when, fmt.Sprintf("loss over %v of %d rounds", p.LossMax, p.LossWindow))
	}
	what := map[string]string{
		DegradedKeep:   "keeps its weight",
		DegradedWeight: "carries half its weight",
		DegradedDown:   "counts as down",
	}[p.Degraded]
	fmt.Fprintf(b, "      degraded after %d rounds with %s, recovers after %d: %s (%s)\n",
		p.DegradedAfter, strings.Join(when, " or "), p.RecoverAfter, p.Degraded, what)
}

// planHooks writes an uplink's hooks.
func planHooks(b *strings.Builder, u *Uplink) {
	if u.OnDown == "" && u.OnUp == "" && u.WhileDown == "" {
		return
	}
	if u.OnDown != "" {
		fmt.Fprintf(b, "      on down: %q\n", u.OnDown)
	}
	if u.WhileDown != "" {
		fmt.Fprintf(b, "      while down: %q, every %v\n", u.WhileDown, u.Retry)
	}
	if u.OnUp != "" {
		fmt.Fprintf(b, "      on up: %q\n", u.OnUp)
	}
	how := "without a shell (split into words, no expansion)"
	if u.HookShell {
		how = "with /bin/sh -c"
	}
	fmt.Fprintf(b, "      hooks run %s, timeout %v\n", how, u.HookTimeout)
}

func ruleMatch(r Rule) string {
	var parts []string
	if len(r.Src) > 0 {
		parts = append(parts, "src "+joinStrings(r.Src))
	}
	if len(r.Dst) > 0 {
		parts = append(parts, "dst "+joinStrings(r.Dst))
	}
	if r.Proto != 0 {
		parts = append(parts, "proto "+r.Proto.String())
	}
	if len(r.DstPorts) > 0 {
		parts = append(parts, "dst_ports "+joinStrings(r.DstPorts))
	}
	if len(parts) == 0 {
		return "any flow"
	}
	return strings.Join(parts, " ")
}

func joinStrings[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}
