package control

import (
	"net/netip"
	"time"

	"github.com/wanflow/wanflow/uplinks/events"
)

// DefaultSocket is the control socket's path when the config names none.
const DefaultSocket = "/run/wanflow/wanflow.sock"

// The API's paths. Every path carries the API version; a later,
// incompatible API gets /v2/ paths next to these.
const (
	PathStatus  = "/v1/status"  // GET: Status
	PathUplinks = "/v1/uplinks" // GET: UplinksReply
	PathFlows   = "/v1/flows"   // GET with FlowQuery parameters: FlowsReply
	PathExplain = "/v1/explain" // GET with ExplainQuery parameters: ExplainReply
	PathEvents  = "/v1/events"  // GET ?since=SEQ: EventsReply; ?follow=1: NDJSON stream of events.Event
	PathReload  = "/v1/reload"  // POST: ReloadReply
)

// Error is the body of every reply whose status is not 2xx.
type Error struct {
	// Status repeats the HTTP status code.
	Status int `json:"status"`
	// Error says what was wrong, for a person.
	Error string `json:"error"`
}

// Status is the daemon's summary: `wanflow status`.
type Status struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Uptime is in seconds.
	Uptime float64 `json:"uptime_seconds"`
	// Config is the config file's path; Loaded when it was last (re)loaded.
	Config string    `json:"config"`
	Loaded time.Time `json:"loaded"`
	// Workers is the number of dataplane workers.
	Workers int `json:"workers"`
	// Flows is the number of flows in the flow table, FlowCapacity its
	// limit.
	Flows        int `json:"flows"`
	FlowCapacity int `json:"flow_capacity"`
	// Uplinks in index order.
	Uplinks []UplinkStatus `json:"uplinks"`
	// Drops counts the packets the dataplane dropped, by reason (the
	// dataplane counter's name without its "dataplane_" prefix); only
	// non-zero reasons.
	Drops map[string]uint64 `json:"drops,omitempty"`
	// DNS and DHCP are nil when the service is not configured.
	DNS  *DNSSummary  `json:"dns,omitempty"`
	DHCP *DHCPSummary `json:"dhcp,omitempty"`
}

// UplinkStatus is one uplink as `wanflow status` shows it.
type UplinkStatus struct {
	Index     int    `json:"index"`
	Name      string `json:"name"`
	Interface string `json:"interface"`
	// State is one of "up", "degraded", "down" (probes), "no-carrier",
	// "no-device", "no-address".
	State string `json:"state"`
	// Available: the uplink takes new flows.
	Available bool `json:"available"`
	// Since is when Available last changed.
	Since time.Time `json:"since"`
	Tier  int       `json:"tier"`
	// Weight is the configured weight, EffectiveWeight the one new flows
	// see (lower while degraded with `degraded: weight`).
	Weight          uint32 `json:"weight"`
	EffectiveWeight uint32 `json:"effective_weight"`
	// Addr and Gateway are "" while unknown.
	Addr    string `json:"addr"`
	Gateway string `json:"gateway"`
	MTU     int    `json:"mtu"`
	// RTT of the last successful probe round, in milliseconds (0: none);
	// Loss the share of probes lost over the loss window (0..1).
	RTT  float64 `json:"rtt_ms"`
	Loss float64 `json:"loss"`
	// Flows is the number of flows pinned to the uplink.
	Flows int `json:"flows"`
	// Traffic through the uplink since the start, "out" LAN → internet.
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	// RateOut and RateIn are bits per second over the last second.
	RateOut float64 `json:"rate_out_bps"`
	RateIn  float64 `json:"rate_in_bps"`
}

// DNSSummary is the DNS forwarder's part of Status.
type DNSSummary struct {
	Listen       []string `json:"listen"`
	Queries      uint64   `json:"queries"`
	CacheHits    uint64   `json:"cache_hits"`
	CacheEntries int      `json:"cache_entries"`
	ServFail     uint64   `json:"servfail"`
	// Upstreams in the order they are asked now.
	Upstreams []DNSUpstream `json:"upstreams"`
}

// DNSUpstream is one upstream DNS server of the forwarder.
type DNSUpstream struct {
	Uplink   string `json:"uplink"`
	Server   string `json:"server"`
	Queries  uint64 `json:"queries"`
	Answers  uint64 `json:"answers"`
	Failures uint64 `json:"failures"`
}

// DHCPSummary is the DHCP server's part of Status.
type DHCPSummary struct {
	Interface string `json:"interface"`
	// Range is "first-last" of the pool.
	Range         string `json:"range"`
	Leases        int    `json:"leases"`
	PoolSize      int    `json:"pool_size"`
	PoolExhausted uint64 `json:"pool_exhausted"`
}

// UplinksReply is `wanflow uplinks`: every uplink in detail.
type UplinksReply struct {
	Uplinks []UplinkDetail `json:"uplinks"`
}

// UplinkDetail is one uplink with its probes, DNS servers and failure
// actions.
type UplinkDetail struct {
	UplinkStatus
	// Carrier: the device exists, is up and has carrier.
	Carrier bool `json:"carrier"`
	// DNS are the uplink's DNS servers (configured or learned).
	DNS []string `json:"dns"`
	// OnFailureTCP and OnFailureUDP are the failure actions.
	OnFailureTCP string `json:"on_failure_tcp"`
	OnFailureUDP string `json:"on_failure_udp"`
	// Probes is nil when the uplink is not probed.
	Probes *ProbeDetail `json:"probes,omitempty"`
}

// ProbeDetail is an uplink's prober: its targets' last outcomes and the
// last rounds.
type ProbeDetail struct {
	// Interval and Timeout are in milliseconds.
	Interval      float64       `json:"interval_ms"`
	Timeout       float64       `json:"timeout_ms"`
	MinOK         int           `json:"min_ok"`
	RoundsOK      uint64        `json:"rounds_ok"`
	RoundsFailed  uint64        `json:"rounds_failed"`
	RoundsSkipped uint64        `json:"rounds_skipped"`
	Transitions   uint64        `json:"transitions"`
	Targets       []ProbeTarget `json:"targets"`
	// History is the last rounds, oldest first.
	History []ProbeRound `json:"history"`
}

// ProbeTarget is one probe target and its last outcome.
type ProbeTarget struct {
	// Kind is "icmp", "dns" or "http"; Target the address or URL.
	Kind   string `json:"kind"`
	Target string `json:"target"`
	// OK and RTT (milliseconds) of the last probe; Err why it failed.
	OK  bool      `json:"ok"`
	RTT float64   `json:"rtt_ms"`
	Err string    `json:"error,omitempty"`
	At  time.Time `json:"at"`
}

// ProbeRound is one round of probes.
type ProbeRound struct {
	Time  time.Time `json:"time"`
	OK    int       `json:"ok"`
	Total int       `json:"total"`
	// RTT is the median RTT of the targets that answered, milliseconds.
	RTT float64 `json:"rtt_ms"`
}

// FlowQuery selects and orders flows (`wanflow flows`). As URL parameters:
// uplink, host, remote, proto, port, sort, limit. The zero value selects
// every flow, unordered, up to DefaultFlowLimit.
type FlowQuery struct {
	// Uplink is an uplink's name.
	Uplink string `json:"uplink,omitempty"`
	// Host is the LAN host's address, Remote the internet end's.
	Host   string `json:"host,omitempty"`
	Remote string `json:"remote,omitempty"`
	// Proto is "tcp", "udp" or "icmp".
	Proto string `json:"proto,omitempty"`
	// Port matches the LAN port, the remote port or the NAT port.
	Port uint16 `json:"port,omitempty"`
	// Sort is "" (table order), "bytes", "packets" or "age" (oldest
	// first); bytes and packets count both directions, largest first.
	Sort string `json:"sort,omitempty"`
	// Limit caps the number of flows returned: 1..MaxFlowLimit, 0 means
	// DefaultFlowLimit.
	Limit int `json:"limit,omitempty"`
}

// Limits of FlowQuery.Limit.
const (
	DefaultFlowLimit = 1000
	MaxFlowLimit     = 100000
)

// FlowsReply is the answer to a FlowQuery.
type FlowsReply struct {
	// Matched is the number of flows that matched; Flows holds at most
	// Limit of them (Truncated when fewer than Matched).
	Matched   int    `json:"matched"`
	Truncated bool   `json:"truncated"`
	Flows     []Flow `json:"flows"`
}

// Flow is one flow of the flow table.
type Flow struct {
	// Proto is "tcp", "udp" or "icmp".
	Proto string `json:"proto"`
	// Src is the LAN end (address:port; for ICMP the echo identifier),
	// Dst the internet end, NAT the translated source.
	Src string `json:"src"`
	Dst string `json:"dst"`
	NAT string `json:"nat"`
	// Uplink is the uplink's name, UplinkIndex its index.
	Uplink      string `json:"uplink"`
	UplinkIndex int    `json:"uplink_index"`
	// State is the tracking state: "syn-sent", "established", "closing",
	// "udp", "icmp"...
	State string `json:"state"`
	// Created is when the flow was created or last placed; Age and Idle
	// are in seconds.
	Created time.Time `json:"created"`
	Age     float64   `json:"age_seconds"`
	Idle    float64   `json:"idle_seconds"`
	// Traffic, "out" LAN → internet.
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	// Why the flow was placed on its uplink: the policy's reason
	// ("weighted", "only-candidate", "rule-weighted"...), the tier and
	// the matching rule's name ("" when none).
	Reason string `json:"reason"`
	Tier   int    `json:"tier"`
	Rule   string `json:"rule,omitempty"`
	// PortsFallback: the flow is not on the policy's first choice because
	// that uplink had no free NAT port when the flow began; Reason and
	// Tier describe the choice that placed it.
	PortsFallback bool `json:"ports_fallback,omitempty"`
}

// ExplainQuery names a flow: `wanflow explain tcp 192.168.1.20:51000
// 203.0.113.5:443`. As URL parameters: proto, src, dst. Ports are
// required for TCP and UDP; for ICMP echo, src's port is the echo
// identifier and dst has none.
type ExplainQuery struct {
	Proto string `json:"proto"`
	Src   string `json:"src"`
	Dst   string `json:"dst"`
}

// ExplainReply says where a flow goes and why.
type ExplainReply struct {
	// Query echoes the flow explained, normalised.
	Query ExplainQuery `json:"query"`
	// Existing is the flow when it is in the flow table: it stays where
	// it is pinned, whatever the policy says now.
	Existing *Flow `json:"existing,omitempty"`
	// Policy is what the policy decides for the flow now: for a new flow,
	// what the dataplane will do.
	Policy Decision `json:"policy"`
	// Uplink is where the flow's packets go: the existing flow's uplink,
	// else the policy's choice; "" when they would be dropped (no uplink).
	Uplink string `json:"uplink"`
	// Why says it in one sentence.
	Why string `json:"why"`
}

// Decision is the policy's reasoning for one flow.
type Decision struct {
	// Affinity is the hash affinity ("flow", "src-dst", "src").
	Affinity string `json:"affinity"`
	// Rule is the matching rule's name, "" when none matched.
	Rule string `json:"rule,omitempty"`
	// Uplink is the chosen uplink's name ("" when none), Tier its tier,
	// Reason how it was chosen.
	Uplink string `json:"uplink"`
	Tier   int    `json:"tier"`
	Reason string `json:"reason"`
	// Candidates is every uplink, in index order.
	Candidates []Candidate `json:"candidates"`
}

// Candidate is one uplink's part in a Decision.
type Candidate struct {
	Index     int     `json:"index"`
	Name      string  `json:"name"`
	Tier      int     `json:"tier"`
	Weight    uint32  `json:"weight"`
	Available bool    `json:"available"`
	Allowed   bool    `json:"allowed"`
	Score     float64 `json:"score"`
	// Verdict is "chosen", "lower-score", "higher-tier", "unavailable",
	// "zero-weight" or "not-allowed".
	Verdict string `json:"verdict"`
}

// EventsReply is the event ring's content after a sequence number.
type EventsReply struct {
	// Events are oldest first.
	Events []events.Event `json:"events"`
	// Last is the sequence number of the newest event in the ring (0:
	// none yet): pass it as since to get only later events.
	Last uint64 `json:"last"`
	// Dropped counts events lost by slow followers.
	Dropped uint64 `json:"dropped"`
}

// ReloadReply reports a reload (`wanflow reload`, SIGHUP).
type ReloadReply struct {
	Config string    `json:"config"`
	Loaded time.Time `json:"loaded"`
	// Changed lists the config keys whose new values are now in effect
	// (empty: the file had no change).
	Changed []string `json:"changed"`
}

// FlowFilter is a FlowQuery parsed and checked (ParseFlowQuery): what the
// daemon's Backend receives.
type FlowFilter struct {
	// Uplink is an uplink's name, "" for any.
	Uplink string
	// Host and Remote are invalid for any.
	Host, Remote netip.Addr
	// Proto is 6, 17 or 1; 0 for any.
	Proto uint8
	// Port is 0 for any.
	Port uint16
	// Sort is "", "bytes", "packets" or "age".
	Sort string
	// Limit is 1..MaxFlowLimit.
	Limit int
}

// FlowKey is an ExplainQuery parsed and checked (ParseExplainQuery): the
// LAN-side 5-tuple. For ICMP echo, Src's port is the echo identifier and
// Dst's port is 0.
type FlowKey struct {
	Proto    uint8
	Src, Dst netip.AddrPort
}

// Backend is what the Server serves: the daemon. Its methods are called
// concurrently. An error made with BadRequest becomes a 400 reply, one made
// with Conflict a 409 (a reload the running daemon cannot apply, a config
// that does not validate); any other error a 500.
type Backend interface {
	Status() Status
	Uplinks() UplinksReply
	Flows(FlowFilter) (FlowsReply, error)
	Explain(FlowKey) (ExplainReply, error)
	// Events is the daemon's event ring.
	Events() *events.Ring
	Reload() (ReloadReply, error)
}
