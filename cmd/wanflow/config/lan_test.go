package config

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// lanServices sets every key of lan.dhcp and lan.dns.
const lanServices = `lan:
  interface: lan0
  prefixes: [10.77.0.0/24]
  domain: home.arpa
  dhcp:
    range: 10.77.0.100-10.77.0.199
    lease_time: 1h
    lease_file: /var/lib/wanflow/leases
    router: 10.77.0.1
    dns: [10.77.0.1, 10.77.0.2]
    reservations:
      - { mac: "AA:BB:CC:00:00:01", addr: 10.77.0.50, hostname: Printer }
      - mac: aa-bb-cc-00-00-02
        addr: 10.77.0.150
      - { mac: aabb.cc00.0003, addr: 10.77.0.51, hostname: nas-1 }
  dns:
    listen: [10.77.0.1, "10.77.0.1:5353"]
    cache_size: 0
    hedge_after: 50ms
    timeout: 2s
    serve_stale: 0s
    rate_limit: 0
    allow: [10.77.0.0/24, 10.78.0.0/16]
uplinks:
  - { name: adsl, interface: eth0, dns: [192.168.1.1] }
  - { name: lte, interface: usb0, tier: 2 }
`

func mac(s string) MAC {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return MAC{m}
}

func TestParseLANServices(t *testing.T) {
	c := mustParse(t, lanServices)
	if c.LAN.Domain != "home.arpa" {
		t.Errorf("Domain = %q", c.LAN.Domain)
	}
	h := c.LAN.DHCP
	wantRes := []Reservation{
		{MAC: mac("aa:bb:cc:00:00:01"), Addr: addr("10.77.0.50"), Hostname: "Printer"},
		{MAC: mac("aa:bb:cc:00:00:02"), Addr: addr("10.77.0.150")},
		{MAC: mac("aa:bb:cc:00:00:03"), Addr: addr("10.77.0.51"), Hostname: "nas-1"},
	}
	if h == nil || h.Router != addr("10.77.0.1") || !reflect.DeepEqual(h.DNS, []Addr{addr("10.77.0.1"), addr("10.77.0.2")}) ||
		time.Duration(h.LeaseTime) != time.Hour || h.LeaseFile != "/var/lib/wanflow/leases" || !reflect.DeepEqual(h.Reservations, wantRes) {
		t.Errorf("DHCP = %+v", h)
	}
	if got := h.Reservations[0].MAC.String(); got != "aa:bb:cc:00:00:01" {
		t.Errorf("MAC.String() = %q", got)
	}
	d := c.LAN.DNS
	wantDNS := &DNS{
		Listen:     []DNSAddr{{netip.MustParseAddrPort("10.77.0.1:53")}, {netip.MustParseAddrPort("10.77.0.1:5353")}},
		HedgeAfter: Duration(50 * time.Millisecond),
		Timeout:    Duration(2 * time.Second),
		Allow:      []Prefix{{netip.MustParsePrefix("10.77.0.0/24")}, {netip.MustParsePrefix("10.78.0.0/16")}},
	}
	if !reflect.DeepEqual(d, wantDNS) {
		t.Errorf("DNS = %+v\nwant %+v", d, wantDNS)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("Warnings = %q", c.Warnings)
	}
	plan := c.Plan()
	for _, want := range []string{
		"  domain home.arpa\n",
		"  dhcp range 10.77.0.100-10.77.0.199, lease 1h0m0s, leases in /var/lib/wanflow/leases (100 addresses in the pool)\n",
		"      options: subnet mask 255.255.255.0, router 10.77.0.1, dns 10.77.0.1, 10.77.0.2, domain home.arpa\n",
		"      reserved aa:bb:cc:00:00:01 -> 10.77.0.50 Printer.home.arpa (outside the pool)\n",
		"      reserved aa:bb:cc:00:00:02 -> 10.77.0.150 (in the pool, never given to another client)\n",
		"  dns forwarder on 10.77.0.1:53, 10.77.0.1:5353 (udp and tcp), answering clients in 10.77.0.0/24, 10.78.0.0/16\n",
		"      upstreams: the uplinks' DNS servers, each queried through its own uplink, in tier order: adsl (tier 1) 192.168.1.1, lte (tier 2) <learned>; a down uplink's servers are skipped\n",
		"      hedging: the next upstream is asked after 50ms without an answer; timeout 2s\n",
		"      cache: off\n",
		"      rate limit: off\n",
		"      local names: <DHCP client host name>.home.arpa\n",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("Plan() lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("plan:\n%s", plan)
	}
}

func TestLANServiceDefaults(t *testing.T) {
	c := mustParse(t, "lan:\n  interface: lan0\n  dhcp: {range: 10.77.0.100-10.77.0.199}\n  dns: {listen: [10.77.0.1:53]}\nuplinks: [{name: a, interface: eth0}]\n")
	if c.LAN.Domain != "lan" {
		t.Errorf("Domain = %q, want lan", c.LAN.Domain)
	}
	if h := c.LAN.DHCP; h.Router.IsValid() || h.DNS != nil || h.Reservations != nil {
		t.Errorf("DHCP = %+v, want router, dns and reservations unset", h)
	}
	want := &DNS{
		Listen:     []DNSAddr{{netip.MustParseAddrPort("10.77.0.1:53")}},
		CacheSize:  10000,
		HedgeAfter: Duration(200 * time.Millisecond),
		Timeout:    Duration(1500 * time.Millisecond),
		ServeStale: Duration(time.Hour),
		RateLimit:  200,
	}
	if !reflect.DeepEqual(c.LAN.DNS, want) {
		t.Errorf("DNS = %+v\nwant %+v", c.LAN.DNS, want)
	}
	plan := c.Plan()
	for _, want := range []string{
		"      options: subnet mask <mask of lan0's prefix>, router <lan0 address>, dns <lan0 address>, domain lan\n",
		"answering clients in the prefixes of lan0's addresses\n",
		"      hedging: the next upstream is asked after 200ms without an answer; timeout 1.5s\n",
		"      cache 10000 answers, TTLs honoured; stale answers served up to 1h0m0s past their TTL when no upstream answers\n",
		"      rate limit 200 queries/s per client\n",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("Plan() lacks %q:\n%s", want, plan)
		}
	}
	// allow defaults to lan.prefixes.
	c = mustParse(t, "lan:\n  interface: lan0\n  prefixes: [10.77.0.0/24]\n  dns: {listen: [10.77.0.1], serve_stale: 0s}\nuplinks: [{name: a, interface: eth0}]\n")
	if got := joinStrings(c.LAN.DNS.Allow); got != "10.77.0.0/24" {
		t.Errorf("Allow = %s, want lan.prefixes", got)
	}
	if !strings.Contains(c.Plan(), "      cache 10000 answers, TTLs honoured, no stale answers\n") {
		t.Errorf("Plan() without serve_stale:\n%s", c.Plan())
	}
}

// lanHead is a valid start of a file whose lan mapping is open: cases add
// lan keys from line 5.
const lanHead = `uplinks: [{name: a, interface: eth0}]
lan:
  interface: lan0
  prefixes: [10.77.0.0/24]
`

func TestGoodLANServices(t *testing.T) {
	for _, src := range []string{
		"  domain: a\n",
		"  domain: my-home.example.org\n",
		"  domain: " + strings.Repeat("a", 63) + "\n",
		"  domain: " + strings.Repeat("abcdefg.", 31) + "abcde\n", // 253 characters
		"  dhcp:\n    range: 10.77.0.100-10.77.0.199\n    dns: [1.1.1.1]\n    reservations:\n      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.100}\n      - {mac: \"02:00:00:00:00:02\", addr: 10.77.0.199, hostname: " + strings.Repeat("x", 63) + "}\n",
		"  dhcp:\n    range: 10.77.0.100-10.77.0.199\n    dns: [10.77.0.2]\n    reservations:\n",
		"  dns:\n    listen: [10.77.0.1]\n    cache_size: 1000000\n    hedge_after: 10ms\n    timeout: 30s\n    serve_stale: 168h\n    rate_limit: 1000000\n",
		"  dns:\n    listen: [10.77.0.1]\n    hedge_after: 5s\n    timeout: 5001ms\n",
		"  dns: {listen: [127.0.0.1, 10.77.0.1:53, 10.77.0.2:53]}\n",
	} {
		c, err := Parse([]byte(lanHead+src), "test.yaml")
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
		} else if len(c.Warnings) != 0 {
			t.Errorf("Parse(%q): Warnings = %q", src, c.Warnings)
		}
	}
}

func TestBadLANServices(t *testing.T) {
	dhcp := "  dhcp:\n    range: 10.77.0.100-10.77.0.199\n"                        // lines 5-6
	res := dhcp + "    reservations:\n"                                            // line 7
	ok1 := "      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.50, hostname: a}\n" // line 8
	dns := "  dns:\n    listen: [10.77.0.1]\n"                                     // lines 5-6
	tests := []struct {
		name string
		src  string
		want string // the whole first problem
	}{
		{"domain empty", "  domain: ''\n", "test.yaml: line 5: lan.domain: required (a DNS name like lan or home.arpa)"},
		{"domain upper case", "  domain: Home\n", `test.yaml: line 5: lan.domain: want a DNS name of lower-case labels [a-z0-9-] (not starting or ending with -, at most 63 each, 253 in all, no trailing dot), got "Home"`},
		{"domain trailing dot", "  domain: lan.\n", `test.yaml: line 5: lan.domain: want a DNS name`},
		{"domain empty label", "  domain: a..b\n", `test.yaml: line 5: lan.domain: want a DNS name`},
		{"domain hyphen", "  domain: -lan\n", `test.yaml: line 5: lan.domain: want a DNS name`},
		{"domain underscore", "  domain: my_lan\n", `test.yaml: line 5: lan.domain: want a DNS name`},
		{"domain label too long", "  domain: " + strings.Repeat("a", 64) + "\n", `test.yaml: line 5: lan.domain: want a DNS name`},
		{"domain too long", "  domain: " + strings.Repeat("abcdefg.", 31) + "abcdef\n", `test.yaml: line 5: lan.domain: want a DNS name`},
		{"domain not a string", "  domain: [lan]\n", "test.yaml: line 5: lan.domain: want a string, got a list"},

		{"router not an address", dhcp + "    router: gw\n", `test.yaml: line 7: lan.dhcp.router: want an IP address, got "gw"`},
		{"router ipv6", dhcp + "    router: 'fe80::1'\n", "test.yaml: line 7: lan.dhcp.router: want an IPv4 address, got fe80::1"},
		{"router outside prefixes", dhcp + "    router: 10.78.0.1\n", "test.yaml: line 7: lan.dhcp.router: 10.78.0.1 is outside lan.prefixes: clients could not reach it"},
		{"router in range", dhcp + "    router: 10.77.0.150\n", "test.yaml: line 6: lan.dhcp.range: range 10.77.0.100-10.77.0.199 includes 10.77.0.150 (lan.dhcp.router), which no client may get"},
		{"dhcp dns not a list", dhcp + "    dns: 10.77.0.1\n", `test.yaml: line 7: lan.dhcp.dns: want a list, got "10.77.0.1"`},
		{"dhcp dns multicast", dhcp + "    dns: [224.0.0.1]\n", "test.yaml: line 7: lan.dhcp.dns[0]: want a unicast IPv4 address, got 224.0.0.1"},
		{"dhcp dns twice", dhcp + "    dns:\n      - 10.77.0.1\n      - 10.77.0.1\n", "test.yaml: line 9: lan.dhcp.dns[1]: 10.77.0.1 listed twice (first at line 8)"},
		{"range includes dns listen", "  dns: {listen: [10.77.0.120]}\n  dhcp:\n    range: 10.77.0.100-10.77.0.199\n", "test.yaml: line 7: lan.dhcp.range: range 10.77.0.100-10.77.0.199 includes 10.77.0.120 (lan.dns.listen[0]), which no client may get"},
		{"reservations not a list", dhcp + "    reservations: {mac: \"02:00:00:00:00:01\"}\n", "test.yaml: line 7: lan.dhcp.reservations: want a list, got a mapping"},
		{"reservation not a mapping", res + "      - 02:00:00:00:00:01\n", `test.yaml: line 8: lan.dhcp.reservations[0]: want a mapping, got "02:00:00:00:00:01"`},
		{"reservation unknown key", res + "      - {mac: \"02:00:00:00:00:01\", ip: 10.77.0.50}\n", "test.yaml: line 8: lan.dhcp.reservations[0].ip: unknown key (want one of: mac, addr, hostname)"},
		{"mac missing", res + ok1 + "      - addr: 10.77.0.51\n", "test.yaml: line 9: lan.dhcp.reservations[1].mac: required"},
		{"mac bad", res + "      - {mac: \"aa:bb:cc\", addr: 10.77.0.50}\n", `test.yaml: line 8: lan.dhcp.reservations[0].mac: want a MAC address like "aa:bb:cc:dd:ee:ff", got "aa:bb:cc"`},
		{"mac eui-64", res + "      - {mac: \"02:00:00:00:00:00:00:01\", addr: 10.77.0.50}\n", `test.yaml: line 8: lan.dhcp.reservations[0].mac: want a MAC address like "aa:bb:cc:dd:ee:ff", got "02:00:00:00:00:00:00:01"`},
		{"mac multicast", res + "      - {mac: \"01:00:5e:00:00:01\", addr: 10.77.0.50}\n", "test.yaml: line 8: lan.dhcp.reservations[0].mac: 01:00:5e:00:00:01 is a multicast or broadcast MAC address; want a unicast one"},
		{"mac broadcast", res + "      - {mac: \"ff:ff:ff:ff:ff:ff\", addr: 10.77.0.50}\n", "test.yaml: line 8: lan.dhcp.reservations[0].mac: ff:ff:ff:ff:ff:ff is a multicast or broadcast MAC address"},
		{"mac zero", res + "      - {mac: \"00:00:00:00:00:00\", addr: 10.77.0.50}\n", "test.yaml: line 8: lan.dhcp.reservations[0].mac: want a MAC address other than 00:00:00:00:00:00"},
		{"mac empty", res + "      - {mac: , addr: 10.77.0.50}\n", `test.yaml: line 8: lan.dhcp.reservations[0].mac: want a MAC address like "aa:bb:cc:dd:ee:ff", got no value`},
		{"mac twice", res + ok1 + "      - mac: 02-00-00-00-00-01\n        addr: 10.77.0.51\n", "test.yaml: line 9: lan.dhcp.reservations[1].mac: MAC 02:00:00:00:00:01 reserved twice (first at line 8)"},
		{"mac twice case", res + "      - {mac: \"aa:bb:cc:dd:ee:f0\", addr: 10.77.0.50}\n      - {mac: \"AA:BB:CC:DD:EE:F0\", addr: 10.77.0.51}\n", "test.yaml: line 9: lan.dhcp.reservations[1].mac: MAC aa:bb:cc:dd:ee:f0 reserved twice (first at line 8)"},
		{"addr missing", res + "      - mac: \"02:00:00:00:00:01\"\n        hostname: x\n", "test.yaml: line 8: lan.dhcp.reservations[0].addr: required"},
		{"addr bad", res + "      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.256}\n", `test.yaml: line 8: lan.dhcp.reservations[0].addr: want an IP address, got "10.77.0.256"`},
		{"addr ipv6", res + "      - {mac: \"02:00:00:00:00:01\", addr: '::1'}\n", "test.yaml: line 8: lan.dhcp.reservations[0].addr: want an IPv4 address, got ::1"},
		{"addr outside prefixes", res + "      - {mac: \"02:00:00:00:00:01\", addr: 10.78.0.50}\n", "test.yaml: line 8: lan.dhcp.reservations[0].addr: 10.78.0.50 is outside lan.prefixes"},
		{"addr network", res + "      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.0}\n", "test.yaml: line 8: lan.dhcp.reservations[0].addr: 10.77.0.0 is the network or broadcast address of 10.77.0.0/24"},
		{"addr broadcast", res + "      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.255}\n", "test.yaml: line 8: lan.dhcp.reservations[0].addr: 10.77.0.255 is the network or broadcast address of 10.77.0.0/24"},
		{"addr twice", res + ok1 + "      - mac: \"02:00:00:00:00:02\"\n        addr: 10.77.0.50\n", "test.yaml: line 10: lan.dhcp.reservations[1].addr: 10.77.0.50 reserved twice (first at line 8)"},
		{"addr is the router", "  dns: {listen: [10.77.0.1:53]}\n" + res + "      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.1}\n", "test.yaml: line 9: lan.dhcp.reservations[0].addr: 10.77.0.1 is the address of lan.dns.listen[0], which no client may get"},
		{"hostname bad", res + "      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.50, hostname: my_printer}\n", `test.yaml: line 8: lan.dhcp.reservations[0].hostname: want a host name [A-Za-z0-9-]{1,63}, not starting or ending with -, got "my_printer"`},
		{"hostname dotted", res + "      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.50, hostname: printer.lan}\n", `test.yaml: line 8: lan.dhcp.reservations[0].hostname: want a host name`},
		{"hostname hyphen", res + "      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.50, hostname: printer-}\n", `test.yaml: line 8: lan.dhcp.reservations[0].hostname: want a host name`},
		{"hostname empty", res + "      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.50, hostname: ''}\n", `test.yaml: line 8: lan.dhcp.reservations[0].hostname: want a host name`},
		{"hostname too long", res + "      - {mac: \"02:00:00:00:00:01\", addr: 10.77.0.50, hostname: " + strings.Repeat("x", 64) + "}\n", `test.yaml: line 8: lan.dhcp.reservations[0].hostname: want a host name`},
		{"hostname twice", res + ok1 + "      - mac: \"02:00:00:00:00:02\"\n        addr: 10.77.0.51\n        hostname: A\n", `test.yaml: line 11: lan.dhcp.reservations[1].hostname: host name "A" reserved twice (first at line 8)`},

		{"listen ipv6", "  dns: {listen: ['[::1]:53']}\n", "test.yaml: line 5: lan.dns.listen[0]: want an IPv4 address:port, got [::1]:53"},
		{"listen unspecified", "  dns: {listen: [0.0.0.0]}\n", "test.yaml: line 5: lan.dns.listen[0]: want a unicast IPv4 address, got 0.0.0.0"},
		{"listen port 0", "  dns: {listen: [10.77.0.1:0]}\n", "test.yaml: line 5: lan.dns.listen[0]: port must not be 0"},
		{"listen empty", "  dns: {listen: []}\n", "test.yaml: line 5: lan.dns.listen: required"},
		{"listen missing", "  dns: {cache_size: 10}\n", "test.yaml: line 5: lan.dns.listen: required"},
		{"listen twice", "  dns:\n    listen:\n      - 10.77.0.1\n      - 10.77.0.1:53\n", "test.yaml: line 8: lan.dns.listen[1]: 10.77.0.1:53 listed twice (first at line 7)"},
		{"cache_size negative", dns + "    cache_size: -1\n", "test.yaml: line 7: lan.dns.cache_size: must be 0..1000000, got -1"},
		{"cache_size too big", dns + "    cache_size: 1000001\n", "test.yaml: line 7: lan.dns.cache_size: must be 0..1000000, got 1000001"},
		{"cache_size not a number", dns + "    cache_size: big\n", `test.yaml: line 7: lan.dns.cache_size: want an integer, got "big"`},
		{"hedge_after too short", dns + "    hedge_after: 5ms\n", "test.yaml: line 7: lan.dns.hedge_after: must be 10ms..5s, got 5ms"},
		{"hedge_after too long", dns + "    hedge_after: 6s\n    timeout: 10s\n", "test.yaml: line 7: lan.dns.hedge_after: must be 10ms..5s, got 6s"},
		{"hedge_after not a duration", dns + "    hedge_after: 200\n", `test.yaml: line 7: lan.dns.hedge_after: want a duration like "500ms" or "2h4m", got "200"`},
		{"hedge_after not below timeout", dns + "    hedge_after: 1s\n    timeout: 1s\n", "test.yaml: line 7: lan.dns.hedge_after: hedge_after 1s must be less than timeout 1s, or no query is ever hedged"},
		{"timeout below default hedge", dns + "    timeout: 200ms\n", "test.yaml: line 7: lan.dns.timeout: hedge_after 200ms must be less than timeout 200ms, or no query is ever hedged"},
		{"timeout too short", dns + "    timeout: 50ms\n", "test.yaml: line 7: lan.dns.timeout: must be 100ms..30s, got 50ms"},
		{"timeout too long", dns + "    timeout: 31s\n", "test.yaml: line 7: lan.dns.timeout: must be 100ms..30s, got 31s"},
		{"serve_stale too long", dns + "    serve_stale: 169h\n", "test.yaml: line 7: lan.dns.serve_stale: must be 0s..168h0m0s, got 169h0m0s"},
		{"serve_stale negative", dns + "    serve_stale: -1s\n", "test.yaml: line 7: lan.dns.serve_stale: must not be negative, got -1s"},
		{"rate_limit negative", dns + "    rate_limit: -1\n", "test.yaml: line 7: lan.dns.rate_limit: must be 0..1000000, got -1"},
		{"rate_limit too big", dns + "    rate_limit: 1000001\n", "test.yaml: line 7: lan.dns.rate_limit: must be 0..1000000, got 1000001"},
		{"allow empty", dns + "    allow: []\n", "test.yaml: line 7: lan.dns.allow: at least one prefix (leave the key out for the default: lan.prefixes)"},
		{"allow host bits", dns + "    allow:\n      - 10.77.0.1/24\n", "test.yaml: line 8: lan.dns.allow[0]: 10.77.0.1/24 is not a network address (did you mean 10.77.0.0/24?)"},
		{"allow ipv6", dns + "    allow: ['fd00::/8']\n", "test.yaml: line 7: lan.dns.allow[0]: want an IPv4 prefix, got fd00::/8"},
		{"allow bad", dns + "    allow: [lan]\n", `test.yaml: line 7: lan.dns.allow[0]: want a CIDR prefix like 10.77.0.0/24, got "lan"`},
		{"dns unknown key", dns + "    upstreams: [1.1.1.1]\n", "test.yaml: line 7: lan.dns.upstreams: unknown key (want one of: listen, cache_size, hedge_after, timeout, serve_stale, rate_limit, allow)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(lanHead+tt.src), "test.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error %q", c.LAN, tt.want)
			}
			first := strings.SplitN(err.Error(), "\n", 2)[0]
			if !strings.HasPrefix(first, tt.want) {
				t.Errorf("Parse error\n got %q\nwant %q\n(all: %v)", first, tt.want, err)
			}
		})
	}
}

// TestDHCPRangeGateway checks that the pool may not hand out the address of
// a modem on the LAN segment.
func TestDHCPRangeGateway(t *testing.T) {
	src := "lan:\n  interface: eth0\n  dhcp: {range: 192.168.1.1-192.168.1.99}\n  dns: {listen: [192.168.1.5]}\nuplinks:\n  - {name: adsl, interface: eth0, gateway: 192.168.1.1}\n"
	_, err := Parse([]byte(src), "t")
	if want := "t: line 3: lan.dhcp.range: range 192.168.1.1-192.168.1.99 includes 192.168.1.1 (uplinks[0].gateway), which no client may get\n" +
		"t: line 3: lan.dhcp.range: range 192.168.1.1-192.168.1.99 includes 192.168.1.5 (lan.dns.listen[0]), which no client may get"; err == nil || err.Error() != want {
		t.Errorf("Parse: %v\nwant %s", err, want)
	}
	src = "lan:\n  interface: eth0\n  dhcp:\n    range: 192.168.1.100-192.168.1.199\n    reservations: [{mac: \"02:00:00:00:00:01\", addr: 192.168.1.1}]\n  dns: {listen: [192.168.1.5]}\nuplinks:\n  - {name: adsl, interface: eth0, gateway: 192.168.1.1}\n"
	_, err = Parse([]byte(src), "t")
	if want := "t: line 5: lan.dhcp.reservations[0].addr: 192.168.1.1 is the address of uplinks[0].gateway, which no client may get"; err == nil || err.Error() != want {
		t.Errorf("Parse: %v\nwant %s", err, want)
	}
}

func TestDHCPWithoutDNSWarns(t *testing.T) {
	c := mustParse(t, lanHead+"  dhcp:\n    range: 10.77.0.100-10.77.0.199\n")
	want := "test.yaml: line 5: lan.dhcp: clients are told to use the router as DNS server (lan.dhcp.dns not set) but lan.dns is not set: nothing answers them"
	if len(c.Warnings) != 1 || c.Warnings[0] != want {
		t.Errorf("Warnings = %q, want %q", c.Warnings, want)
	}
	if c := mustParse(t, lanHead+"  dhcp:\n    range: 10.77.0.100-10.77.0.199\n    dns: [1.1.1.1]\n"); len(c.Warnings) != 0 {
		t.Errorf("with lan.dhcp.dns: Warnings = %q", c.Warnings)
	}
}

// TestLANTypesAlone checks that MAC and DNSAddr keep their line when
// decoded by yaml.v3 itself.
func TestLANTypesAlone(t *testing.T) {
	var v struct {
		M MAC     `yaml:"m"`
		L DNSAddr `yaml:"l"`
	}
	if err := yaml.Unmarshal([]byte("m: 02:00:00:AB:CD:EF\nl: 10.77.0.1\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.M.String() != "02:00:00:ab:cd:ef" || v.L.String() != "10.77.0.1:53" {
		t.Errorf("decoded %v %v", v.M, v.L)
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "m: 02:00:00:ab:cd:ef\nl: 10.77.0.1:53\n" {
		t.Errorf("Marshal = %q, %v", out, err)
	}
	for _, src := range []string{"\n\nm: x\n", "\n\nm: 01:00:00:00:00:00\n", "\n\nm: [a]\n", "\n\nl: 10.77.0.1:99999\n", "\n\nl: a:b\n"} {
		err := yaml.Unmarshal([]byte(src), &v)
		if err == nil || !strings.Contains(err.Error(), "line 3: ") {
			t.Errorf("Unmarshal(%q) = %v, want an error at line 3", src, err)
		}
	}
}
