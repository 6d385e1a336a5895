package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wanflow/wanflow/uplinks/policy"
)

// Limits of the configuration.
const (
	// MaxUplinks is the largest number of uplinks a configuration may have:
	// wanflow's rule priority range (310 priorities, a step of 10 per
	// uplink after the LAN's) holds 20, as uplinks.MaxUplinks says.
	MaxUplinks = 20
	// MaxFileSize is the largest configuration file Load and Parse accept.
	MaxFileSize = 1 << 20
	// MaxProblems is the most problems an Error lists; a last one says how
	// many more were found.
	MaxProblems = 50
)

// Config is a whole wanflow configuration with defaults applied.
type Config struct {
	// LAN is the LAN side; its interface is required.
	LAN LAN `yaml:"lan"`
	// Uplinks are 1..MaxUplinks uplinks; the index is the uplink id.
	Uplinks []Uplink `yaml:"uplinks"`
	// Balance configures the weighted choice.
	Balance Balance `yaml:"balance"`
	// Rules restrict uplinks per flow; the first match wins.
	Rules []Rule `yaml:"rules"`
	// Probes is the global health probe configuration, the defaults of
	// every uplink's.
	Probes Probes `yaml:"probes"`
	// Control configures the control socket, metrics and event ring.
	Control Control `yaml:"control"`
	// Dataplane configures the userspace packet path.
	Dataplane Dataplane `yaml:"dataplane"`
	// Kernel holds the ids of kernel objects wanflow owns.
	Kernel Kernel `yaml:"kernel"`

	// Warnings lists problems that are not errors, formatted like errors
	// ("wanflow.yaml: line 40: dataplane.flows.timeouts.udp: ..."), e.g. NAT
	// timeouts below what RFC 4787 and RFC 5382 require.
	Warnings []string `yaml:"-"`

	name string // file name for messages and the plan
}

// LAN is the router's LAN side.
type LAN struct {
	// Interface is the LAN interface; required.
	Interface string `yaml:"interface"`
	// Prefixes are the LAN's IPv4 prefixes; a gateway on the LAN segment
	// must lie inside them. Steering into wanflow is by interface: all
	// traffic arriving on Interface for a destination outside the main
	// table's specific routes. Empty means the prefixes of the interface's
	// addresses.
	Prefixes []Prefix `yaml:"prefixes"`
	// Domain is the LAN's DNS domain, default "lan": DHCP option 15, and
	// the forwarder answers the names host.<Domain> of DHCP clients
	// locally. Lower-case labels [a-z0-9-] (not starting or ending with
	// '-'), at most 253 characters, no trailing dot.
	Domain string `yaml:"domain"`
	// DHCP configures the DHCP server on Interface; nil means none.
	DHCP *DHCP `yaml:"dhcp"`
	// DNS configures the DNS forwarder; nil means none.
	DNS *DNS `yaml:"dns"`
}

// DHCP is the LAN DHCP server's configuration.
type DHCP struct {
	// Range is the pool of addresses handed out; required. It never
	// includes the router's addresses (Router, the DNS listen addresses)
	// or the gateway of an uplink on the LAN interface.
	Range AddrRange `yaml:"range"`
	// LeaseTime defaults to 12h.
	LeaseTime Duration `yaml:"lease_time"`
	// LeaseFile is where leases persist; defaults to
	// /var/lib/wanflow/dhcp.leases.
	LeaseFile string `yaml:"lease_file"`
	// Router is the router option (3) sent to clients; invalid (zero)
	// means the router's own LAN address, learned at run time. IPv4
	// unicast, inside LAN.Prefixes when those are given.
	Router Addr `yaml:"router"`
	// DNS are the DNS servers (option 6) sent to clients; empty means the
	// router's own LAN address. IPv4 unicast, each once.
	DNS []Addr `yaml:"dns"`
	// Reservations are static leases by MAC address. A reserved address
	// may lie inside or outside Range; one inside is never given to
	// another client.
	Reservations []Reservation `yaml:"reservations"`
}

func (d *DHCP) setDefaults() {
	d.LeaseTime = Duration(12 * time.Hour)
	d.LeaseFile = "/var/lib/wanflow/dhcp.leases"
}

// Reservation is a static DHCP lease: the client with MAC always gets Addr.
type Reservation struct {
	// MAC is the client's Ethernet address (6 bytes, unicast); required,
	// unique among reservations.
	MAC MAC `yaml:"mac"`
	// Addr is the reserved IPv4 address; required, unique among
	// reservations, inside LAN.Prefixes when those are given, not a
	// router address (DNS listen address).
	Addr Addr `yaml:"addr"`
	// Hostname is the client's name, [A-Za-z0-9-]{1,63} not starting or
	// ending with '-', unique (case-insensitive); "" means the name the
	// client sends, if any. The forwarder answers Hostname.<LAN.Domain>.
	Hostname string `yaml:"hostname"`
}

// DNS is the LAN DNS forwarder's configuration. Its upstreams are the
// uplinks' DNS servers (Uplink.DNS, else learned), each queried through its
// own uplink, in tier order.
type DNS struct {
	// Listen are the addresses the forwarder serves over UDP and TCP;
	// required, IPv4, e.g. 10.77.0.1:53 (written 10.77.0.1, the port
	// defaults to 53).
	Listen []DNSAddr `yaml:"listen"`
	// CacheSize is the number of cached answers, 0..1000000, default
	// 10000; 0 disables the cache (and so ServeStale).
	CacheSize int `yaml:"cache_size"`
	// HedgeAfter is how long an upstream may take before the next one is
	// asked too (the first answer wins), 10ms..5s, default 200ms; less
	// than Timeout.
	HedgeAfter Duration `yaml:"hedge_after"`
	// Timeout is how long a query waits for any upstream answer,
	// 100ms..30s, default 1.5s; then it is answered from stale cache
	// (ServeStale) or with SERVFAIL.
	Timeout Duration `yaml:"timeout"`
	// ServeStale is how long past their TTL cached answers may still be
	// served when no upstream answers, 0..168h, default 1h; 0 disables.
	ServeStale Duration `yaml:"serve_stale"`
	// RateLimit is the queries per second answered per client address,
	// 0..1000000, default 200; 0 means no limit.
	RateLimit int `yaml:"rate_limit"`
	// Allow are the client prefixes the forwarder answers. After Parse it
	// is LAN.Prefixes when not given; empty then means the prefixes of the
	// LAN interface's addresses, at run time.
	Allow []Prefix `yaml:"allow"`
}

func (d *DNS) setDefaults() {
	d.CacheSize = 10000
	d.HedgeAfter = Duration(200 * time.Millisecond)
	d.Timeout = Duration(1500 * time.Millisecond)
	d.ServeStale = Duration(time.Hour)
	d.RateLimit = 200
}

// Uplink is one internet uplink. Its index in Config.Uplinks is its uplink
// id: routing table Kernel.UplinkTable(i), rule priority
// Kernel.UplinkRulePriority(i).
type Uplink struct {
	// Name is unique, [a-z0-9_-]{1,15}.
	Name string `yaml:"name"`
	// Interface is the uplink's network interface. It may be the LAN
	// interface (a modem on the LAN segment); two uplinks may not share one.
	Interface string `yaml:"interface"`
	// Gateway is the next hop; invalid (zero) means learned at run time
	// (DHCP) or none (a point-to-point device such as ppp0). Required when
	// Interface is the LAN interface.
	Gateway Addr `yaml:"gateway"`
	// Tier is 1..9, default 1: a higher tier carries new flows only while
	// every lower tier is down.
	Tier int `yaml:"tier"`
	// Weight is 1..1000, default 1: the uplink's share within its tier.
	Weight uint32 `yaml:"weight"`
	// DNS are the uplink's DNS servers; empty means learned at run time.
	DNS []Addr `yaml:"dns"`
	// MTU overrides the interface's MTU for MSS clamping and PMTU; 0 means
	// the interface's.
	MTU int `yaml:"mtu"`
	// ResolvFile is a resolv.conf-style file written by the uplink's DHCP
	// or PPP client (e.g. /run/ppp0.resolv, or /etc/ppp/resolv.conf with
	// pppd's usepeerdns); its nameserver lines are the uplink's DNS servers
	// when DNS is empty. "" means none. An absolute path.
	ResolvFile string `yaml:"resolv_file"`
	// OnFailure says what happens to the flows pinned to the uplink when it
	// goes down (or is degraded with Probes.Degraded "down").
	OnFailure FailureActions `yaml:"on_failure"`
	// OnDown is a command run once when the uplink goes down, e.g.
	// "logger -t wanflow adsl down". See HookShell for how it is run.
	OnDown string `yaml:"on_down"`
	// OnUp is a command run once when the uplink comes back up.
	OnUp string `yaml:"on_up"`
	// WhileDown is a command run when the uplink goes down and re-run every
	// Retry while it stays down, e.g. "pon 3g" to redial a 3G dongle; an
	// uplink not available at start is down from the start.
	WhileDown string `yaml:"while_down"`
	// Retry is the period of WhileDown, 1s..24h, default 30s.
	Retry Duration `yaml:"retry"`
	// HookTimeout bounds each run of a hook, 1s..1h, default 60s.
	HookTimeout Duration `yaml:"hook_timeout"`
	// HookShell runs hooks with /bin/sh -c; false (default) splits the
	// command line into words like a POSIX shell without any expansion
	// (quotes and backslashes only) and execs them directly.
	HookShell bool `yaml:"hook_shell"`
	// Probes is the uplink's effective probe configuration: the keys given
	// under the uplink's probes: override the global Config.Probes.
	Probes Probes `yaml:"probes"`

	line int
}

func (u *Uplink) setDefaults() {
	u.Tier, u.Weight = 1, 1
	u.OnFailure = FailureActions{TCP: FailureReset, UDP: FailureMigrate}
	u.Retry = Duration(30 * time.Second)
	u.HookTimeout = Duration(time.Minute)
}

func (u *Uplink) setLine(l int) { u.line = l }

// Line returns the configuration line the uplink was defined on.
func (u *Uplink) Line() int { return u.line }

// Failure actions (FailureActions.TCP and FailureActions.UDP).
const (
	// FailureReset ends the flow: for TCP a RST is sent to the LAN host;
	// a UDP or ICMP flow is forgotten and its next packet placed again.
	FailureReset = "reset"
	// FailureMigrate re-pins the flow to a live uplink with a new NAT
	// mapping.
	FailureMigrate = "migrate"
	// FailureKeep leaves the flow pinned to the uplink.
	FailureKeep = "keep"
)

// FailureActions say what happens to the flows pinned to an uplink when it
// goes down. Written as one action for both ("on_failure: reset") or as a
// mapping ("on_failure: {tcp: reset, udp: migrate}"); each is reset,
// migrate or keep.
type FailureActions struct {
	// TCP is the action for TCP flows, default FailureReset.
	TCP string `yaml:"tcp"`
	// UDP is the action for UDP and ICMP flows, default FailureMigrate.
	UDP string `yaml:"udp"`
}

// setScalar sets both actions from the one-action form.
func (f *FailureActions) setScalar(n *yaml.Node) error {
	const want = "reset, migrate or keep (or a mapping {tcp: ..., udp: ...})"
	s, err := scalar(n, want)
	if err != nil {
		return err
	}
	if !isFailureAction(s) {
		return badValue(n, "want %s, got %q", want, s)
	}
	f.TCP, f.UDP = s, s
	return nil
}

func isFailureAction(s string) bool {
	return s == FailureReset || s == FailureMigrate || s == FailureKeep
}

// String returns "tcp A, udp B".
func (f FailureActions) String() string { return "tcp " + f.TCP + ", udp " + f.UDP }

// Balance configures the weighted choice among uplinks.
type Balance struct {
	// Affinity picks the flow fields that pin a choice: flow (default),
	// src-dst or src.
	Affinity policy.Affinity `yaml:"affinity"`
	// Preempt moves flows back when a preferred uplink returns: flows on
	// less preferred uplinks that the policy would now place on it are
	// moved (UDP and ICMP re-pinned, TCP reset). False (default): existing
	// flows stay where they are; only new flows prefer the returning
	// uplink.
	Preempt bool `yaml:"preempt"`
}

// Rule restricts the uplinks of matching new flows; the first matching rule
// wins and empty fields match anything.
type Rule struct {
	// Name labels the rule in the plan and in explanations; optional,
	// unique when given.
	Name string `yaml:"name"`
	// Src and Dst are IPv4 network prefixes; a flow's address must lie in
	// one of them.
	Src []Prefix `yaml:"src"`
	Dst []Prefix `yaml:"dst"`
	// Proto is the IP protocol; any (0) by default.
	Proto Proto `yaml:"proto"`
	// DstPorts are destination ports and ranges; they need proto tcp, udp
	// or any, and match only TCP and UDP flows.
	DstPorts []PortRange `yaml:"dst_ports"`
	// Uplinks names the allowed uplinks; required.
	Uplinks []string `yaml:"uplinks"`

	line int
}

func (r *Rule) setLine(l int) { r.line = l }

// Line returns the configuration line the rule was defined on.
func (r *Rule) Line() int { return r.line }

// What a degraded uplink does (Probes.Degraded).
const (
	// DegradedKeep keeps the uplink's weight: degraded is only reported.
	DegradedKeep = "keep"
	// DegradedWeight makes the uplink carry half its weight of new flows.
	DegradedWeight = "weight"
	// DegradedDown counts the uplink as down (OnFailure applies).
	DegradedDown = "down"
)

// Initial states of an uplink before its first probe round (Probes.Initial).
const (
	// InitialUp: the uplink carries flows as soon as it has carrier and an
	// address; a dead ISP is found within DownAfter × Interval.
	InitialUp = "up"
	// InitialDown: the uplink carries flows only after UpAfter good rounds.
	InitialDown = "down"
)

// Probes configures the health probes sent through each uplink. An uplink
// is down while its device lacks carrier or an IPv4 address; otherwise its
// state follows the probe rounds: one round every Interval sends one probe
// to each target, and succeeds when at least MinOK answer within Timeout.
type Probes struct {
	// Targets default to 1.1.1.1 and 8.8.8.8 (ICMP echo). Empty (written
	// "targets: []") disables probing: the uplink's health is then its
	// carrier and address only.
	Targets []ProbeTarget `yaml:"targets"`
	// MinOK targets of a round must answer for the round to succeed,
	// 1..len(Targets), default 1.
	MinOK int `yaml:"min_ok"`
	// Interval between rounds, default 200ms.
	Interval Duration `yaml:"interval"`
	// Timeout of one probe, default 400ms.
	Timeout Duration `yaml:"timeout"`
	// DownAfter consecutive failed rounds mark the uplink down, default 3.
	DownAfter int `yaml:"down_after"`
	// UpAfter consecutive successful rounds mark it up again, default 5.
	UpAfter int `yaml:"up_after"`
	// LatencyMax: a round whose answers (the MinOK fastest) take longer is
	// slow; 0 (default) turns the latency check off.
	LatencyMax Duration `yaml:"latency_max"`
	// LossMax: a round after which more than this share of the probes
	// sent in the last LossWindow rounds went unanswered is lossy; 0
	// (default) turns the loss check off.
	LossMax Fraction `yaml:"loss_max"`
	// LossWindow is the number of rounds the loss is measured over,
	// default 20.
	LossWindow int `yaml:"loss_window"`
	// DegradedAfter consecutive slow or lossy rounds mark an up uplink
	// degraded, default 3.
	DegradedAfter int `yaml:"degraded_after"`
	// RecoverAfter consecutive rounds neither slow nor lossy end the
	// degraded state, default 5.
	RecoverAfter int `yaml:"recover_after"`
	// Degraded is what a degraded uplink does: DegradedKeep (default),
	// DegradedWeight or DegradedDown.
	Degraded string `yaml:"degraded"`
	// Initial is the state before the first probe round: InitialUp
	// (default) or InitialDown.
	Initial string `yaml:"initial"`
}

// Probing reports whether probes are sent (Targets is not empty).
func (p *Probes) Probing() bool { return len(p.Targets) > 0 }

// DegradeChecks reports whether a latency or loss threshold is set.
func (p *Probes) DegradeChecks() bool { return p.LatencyMax > 0 || p.LossMax > 0 }

// Control configures the control socket, metrics and event ring.
type Control struct {
	// Socket is the root-only unix socket of the control API, default
	// /run/wanflow/wanflow.sock.
	Socket string `yaml:"socket"`
	// Metrics is the Prometheus listen address, default 127.0.0.1:9469.
	Metrics AddrPort `yaml:"metrics"`
	// Events is the size of the in-memory ring of uplink events (state
	// changes with their cause and timing), 16..1000000, default 1024.
	Events int `yaml:"events"`
}

// Dataplane configures the userspace packet path.
type Dataplane struct {
	// TUN is the TUN device name, default wf0.
	TUN string `yaml:"tun"`
	// MTU is the TUN MTU, default 1500.
	MTU int `yaml:"mtu"`
	// Workers is the number of packet workers; 0 (default) means GOMAXPROCS.
	Workers int `yaml:"workers"`
	// NATPorts is the source port range of translated flows, default
	// 20000-32767; it must not overlap the kernel's ip_local_port_range
	// (checked at start).
	NATPorts PortRange `yaml:"nat_ports"`
	// Flows sizes the flow table.
	Flows Flows `yaml:"flows"`
	// RestartHold is how long LAN traffic is held (dropped, not forwarded
	// by the kernel) after a SIGTERM hands the flow table over to the next
	// start, default 10s; if no wanflow starts within it, the fail-open
	// fallback takes over.
	RestartHold Duration `yaml:"restart_hold"`
}

// Flows sizes the flow table and its idle timeouts.
type Flows struct {
	// Capacity is the flow table size, default 262144.
	Capacity int `yaml:"capacity"`
	// PerHost is the most flows one LAN address may have at once, default
	// 16384; 0: no limit.
	PerHost int `yaml:"per_host"`
	// Timeouts are the idle timeouts per kind of flow.
	Timeouts Timeouts `yaml:"timeouts"`
}

// Timeouts are the flows' idle timeouts. Values below the RFC minimums are
// allowed with a warning.
type Timeouts struct {
	// UDP defaults to 5m (RFC 4787 REQ-5: at least 2m).
	UDP Duration `yaml:"udp"`
	// TCPEstablished defaults to 2h4m (RFC 5382 REQ-5: at least 2h4m).
	TCPEstablished Duration `yaml:"tcp_established"`
	// TCPTransitory defaults to 4m (RFC 5382 REQ-5: at least 4m).
	TCPTransitory Duration `yaml:"tcp_transitory"`
	// ICMP defaults to 60s (RFC 5508 REQ-1: at least 60s).
	ICMP Duration `yaml:"icmp"`
}

// Kernel holds the ids of the kernel objects wanflow owns.
type Kernel struct {
	// TableBase is the LAN steering table, default 7700; uplink i uses
	// TableBase+1+i.
	TableBase int `yaml:"table_base"`
	// RulePriority is the base of wanflow's rule priorities, default 7690:
	// see SuppressRulePriority, LANRulePriority, UplinkRulePriority.
	RulePriority int `yaml:"rule_priority"`
	// RouteProtocol marks every route and rule wanflow installs, default 167.
	RouteProtocol int `yaml:"route_protocol"`
	// NFTTable is the name of wanflow's nftables table (family ip), default
	// wanflow.
	NFTTable string `yaml:"nft_table"`
}

// LANTable returns the LAN steering table id.
func (k Kernel) LANTable() int { return k.TableBase }

// UplinkTable returns the routing table id of uplink i (0-based).
func (k Kernel) UplinkTable(i int) int { return k.TableBase + 1 + i }

// SuppressRulePriority returns the priority of the rule
// "lookup main suppress_prefixlength 0", which keeps LAN and connected
// destinations in the main table.
func (k Kernel) SuppressRulePriority() int { return k.RulePriority }

// LANRulePriority returns the priority of "iif <lan> lookup <LANTable>".
func (k Kernel) LANRulePriority() int { return k.RulePriority + 10 }

// LookupRulePriority is the priority of the rule that lets the fail-open
// notrack chain look up where a LAN packet goes (lan/steer's LookupOffset).
func (k Kernel) LookupRulePriority() int { return k.RulePriority + 5 }

// FallbackRulePriority is the priority of the j-th fail-open fallback
// rule (lan/steer's FallbackOffset).
func (k Kernel) FallbackRulePriority(j int) int { return k.RulePriority + 20 + j }

// FallbackOrder returns the uplink indexes in the order LAN traffic falls
// back to their tables when wanflow is gone (fail-open): lower tier first,
// then higher weight, then configuration order.
func (c *Config) FallbackOrder() []int {
	idx := make([]int, len(c.Uplinks))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ua, ub := c.Uplinks[a], c.Uplinks[b]
		if ua.Tier != ub.Tier {
			return ua.Tier - ub.Tier
		}
		return cmp.Compare(ub.Weight, ua.Weight)
	})
	return idx
}

// UplinkRulePriority returns the priority of uplink i's
// "from <uplink address> lookup <UplinkTable(i)>".
func (k Kernel) UplinkRulePriority(i int) int { return k.RulePriority + 110 + 10*i }

// Default returns the defaults of every optional setting. It is not a valid
// configuration by itself: the LAN interface and the uplinks are required.
func Default() *Config {
	return &Config{
		LAN:     LAN{Domain: "lan"},
		Balance: Balance{Affinity: policy.AffinityFlow},
		Probes: Probes{
			Targets: []ProbeTarget{
				{Kind: ProbeICMP, Addr: netip.MustParseAddrPort("1.1.1.1:0")},
				{Kind: ProbeICMP, Addr: netip.MustParseAddrPort("8.8.8.8:0")},
			},
			MinOK:         1,
			Interval:      Duration(200 * time.Millisecond),
			Timeout:       Duration(400 * time.Millisecond),
			DownAfter:     3,
			UpAfter:       5,
			LossWindow:    20,
			DegradedAfter: 3,
			RecoverAfter:  5,
			Degraded:      DegradedKeep,
			Initial:       InitialUp,
		},
		Control: Control{
			Socket:  "/run/wanflow/wanflow.sock",
			Metrics: AddrPort{netip.MustParseAddrPort("127.0.0.1:9469")},
			Events:  1024,
		},
		Dataplane: Dataplane{
			TUN:         "wf0",
			MTU:         1500,
			NATPorts:    PortRange{20000, 32767},
			RestartHold: Duration(10 * time.Second),
			Flows: Flows{
				Capacity: 262144,
				PerHost:  16384,
				Timeouts: Timeouts{
					UDP:            Duration(5 * time.Minute),
					TCPEstablished: Duration(2*time.Hour + 4*time.Minute),
					TCPTransitory:  Duration(4 * time.Minute),
					ICMP:           Duration(60 * time.Second),
				},
			},
		},
		Kernel: Kernel{TableBase: 7700, RulePriority: 7690, RouteProtocol: 167, NFTTable: "wanflow"},
	}
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Line is the 1-based line of the offending key or value; 0 if unknown.
	Line int
	// Path names the setting, e.g. "uplinks[1].weight"; "" for the file.
	Path string
	// Msg says what is wrong.
	Msg string
}

func (p Problem) format(name string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(": ")
	if p.Line > 0 {
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem Parse found, in line order.
type Error struct {
	// Name is the file name given to Parse.
	Name string
	// Problems are sorted by line.
	Problems []Problem
}

// Error returns one "<name>: line N: path: message" line per problem.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.format(e.Name)
	}
	return strings.Join(lines, "\n")
}

// Load reads and parses the configuration file at path; see Parse.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	c, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil {
		if w := secretsWarning(path, fi.Mode(), c); w != "" {
			c.Warnings = append(c.Warnings, w)
		}
	}
	return c, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse decodes and validates a configuration; name labels messages. On
// failure the error is an *Error listing every problem found (decoding stops
// before validation if the file cannot be decoded).
func Parse(data []byte, name string) (*Config, error) {
	fail := func(p ...Problem) (*Config, error) {
		slices.SortStableFunc(p, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
		if len(p) > MaxProblems {
			more := len(p) - MaxProblems
			p = append(p[:MaxProblems:MaxProblems], Problem{Msg: fmt.Sprintf("%d more problems not shown", more)})
		}
		return nil, &Error{Name: name, Problems: p}
	}
	if len(data) > MaxFileSize {
		return fail(Problem{Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)})
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return fail(Problem{Msg: "empty configuration"})
		}
		return fail(yamlProblem(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fail(Problem{Line: extra.Line, Msg: "more than one YAML document"})
	} else if !errors.Is(err, io.EOF) {
		return fail(yamlProblem(err))
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return fail(Problem{Msg: "empty configuration"})
		}
		doc = doc.Content[0]
	}
	if isNull(doc) {
		return fail(Problem{Line: doc.Line, Msg: "empty configuration"})
	}

	c := Default()
	c.name = name
	d := &decoder{lines: map[string]int{}}
	d.decode(doc, reflect.ValueOf(c).Elem(), "")
	if len(d.probs) > 0 {
		return fail(d.probs...)
	}
	v := &validator{c: c, lines: d.lines}
	v.validate()
	if len(v.probs) > 0 {
		return fail(v.probs...)
	}
	slices.SortStableFunc(v.warns, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
	for _, w := range v.warns {
		c.Warnings = append(c.Warnings, w.format(name))
	}
	return c, nil
}

// yamlProblem turns a yaml.v3 syntax error ("yaml: line 3: found character
// that cannot start any token") into a Problem.
func yamlProblem(err error) Problem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		return Problem{Line: l, Msg: "invalid YAML: " + m[2]}
	}
	return Problem{Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// Name returns the file name the configuration was parsed from.
func (c *Config) Name() string { return c.name }
