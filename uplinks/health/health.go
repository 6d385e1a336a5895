package health

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// Kind is the protocol of a probe.
type Kind uint8

const (
	// KindICMP is an ICMP echo request (RFC 792); any echo reply from the
	// target with the probe's identifier, sequence number and payload
	// answers it.
	KindICMP Kind = iota
	// KindDNS is a DNS query over UDP (RFC 1035); any well-formed response
	// with the query's id answers it, whatever its RCODE: even NXDOMAIN or
	// REFUSED proves that the server was reached.
	KindDNS
	// KindHTTP is an HTTP or HTTPS GET on a fresh connection; a response
	// with a status below 500 answers it.
	KindHTTP
)

// String returns the kind's name as ParseKind accepts it.
func (k Kind) String() string {
	switch k {
	case KindICMP:
		return "icmp"
	case KindDNS:
		return "dns"
	case KindHTTP:
		return "http"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ParseKind parses "icmp", "dns", "http" or "https" (both KindHTTP; the
// scheme of Target.URL chooses TLS).
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(s) {
	case "icmp", "ping":
		return KindICMP, nil
	case "dns":
		return KindDNS, nil
	case "http", "https":
		return KindHTTP, nil
	}
	return 0, fmt.Errorf("health: unknown probe kind %q (want icmp, dns, http or https)", s)
}

// Target is one thing to probe.
type Target struct {
	// Kind is the probe's protocol.
	Kind Kind
	// Addr is the IPv4 address probed. ICMP: port 0. DNS: port 0 means 53.
	// HTTP: the address connected to, whatever host URL names; the zero
	// AddrPort means the URL's host, which must then be an IPv4 literal;
	// port 0 means 80 for http and 443 for https.
	Addr netip.AddrPort
	// URL is the URL fetched by an HTTP probe (http:// or https://); its
	// host is sent as the Host header and, for https, as the TLS server
	// name, whose certificate is verified. Empty for other kinds.
	URL string
	// Name is the name a DNS probe asks for: type NS when it is "." (the
	// default), type A otherwise. Empty for other kinds.
	Name string
}

// ParseTarget parses a target written as in a configuration file:
// "192.0.2.1" or "icmp:192.0.2.1" (ICMP echo), "dns:192.0.2.1" or
// "dns:192.0.2.1:5353" (DNS query for ". NS"), or an http:// or https://
// URL whose host is an IPv4 literal.
func ParseTarget(s string) (Target, error) {
	var t Target
	switch {
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		t = Target{Kind: KindHTTP, URL: s}
	case strings.HasPrefix(s, "dns:"):
		rest := s[len("dns:"):]
		ap, err := netip.ParseAddrPort(rest)
		if err != nil {
			a, aerr := netip.ParseAddr(rest)
			if aerr != nil {
				return Target{}, fmt.Errorf("health: target %q: want dns:ADDR or dns:ADDR:PORT", s)
			}
			ap = netip.AddrPortFrom(a, 0)
		}
		t = Target{Kind: KindDNS, Addr: ap}
	default:
		a, err := netip.ParseAddr(strings.TrimPrefix(s, "icmp:"))
		if err != nil {
			return Target{}, fmt.Errorf("health: target %q: want ADDR, icmp:ADDR, dns:ADDR[:PORT] or an http(s) URL", s)
		}
		t = Target{Kind: KindICMP, Addr: netip.AddrPortFrom(a, 0)}
	}
	return t.normalize()
}

// String renders t as ParseTarget reads it ("icmp:192.0.2.1",
// "dns:192.0.2.1:53", the URL of an HTTP probe, followed by " @ADDR:PORT"
// when the address connected to is not the URL's host).
func (t Target) String() string {
	switch t.Kind {
	case KindICMP:
		return "icmp:" + t.Addr.Addr().String()
	case KindDNS:
		return "dns:" + t.Addr.String()
	case KindHTTP:
		if u, err := url.Parse(t.URL); err == nil {
			if a, err := netip.ParseAddr(u.Hostname()); err == nil && a == t.Addr.Addr() {
				return t.URL
			}
		}
		return t.URL + " @" + t.Addr.String()
	}
	return fmt.Sprintf("%v:%v", t.Kind, t.Addr)
}

// normalize fills t's defaults and checks it.
func (t Target) normalize() (Target, error) {
	switch t.Kind {
	case KindICMP:
		if t.Addr.Port() != 0 {
			return t, fmt.Errorf("health: target %v: an ICMP target has no port", t.Addr)
		}
	case KindDNS:
		if t.Addr.Port() == 0 {
			t.Addr = netip.AddrPortFrom(t.Addr.Addr(), 53)
		}
		if t.Name == "" {
			t.Name = "."
		}
	case KindHTTP:
		u, err := url.Parse(t.URL)
		if err != nil {
			return t, fmt.Errorf("health: target %q: %w", t.URL, err)
		}
		port := uint16(80)
		switch u.Scheme {
		case "http":
		case "https":
			port = 443
		default:
			return t, fmt.Errorf("health: target %q: want an http:// or https:// URL", t.URL)
		}
		if u.Host == "" {
			return t, fmt.Errorf("health: target %q: URL has no host", t.URL)
		}
		if p := u.Port(); p != "" {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				return t, fmt.Errorf("health: target %q: bad port %q", t.URL, p)
			}
			port = uint16(n)
		}
		if !t.Addr.Addr().IsValid() {
			a, err := netip.ParseAddr(u.Hostname())
			if err != nil {
				return t, fmt.Errorf("health: target %q: the host is a name, give the address to connect to in Target.Addr", t.URL)
			}
			t.Addr = netip.AddrPortFrom(a, port)
		}
		if t.Addr.Port() == 0 {
			t.Addr = netip.AddrPortFrom(t.Addr.Addr(), port)
		}
	default:
		return t, fmt.Errorf("health: target %v: unknown kind %v", t.Addr, t.Kind)
	}
	a := t.Addr.Addr().Unmap()
	t.Addr = netip.AddrPortFrom(a, t.Addr.Port())
	if !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return t, fmt.Errorf("health: target %v: want a unicast IPv4 address", t)
	}
	return t, nil
}

// State is an uplink's health verdict.
type State uint8

const (
	// StateDown: the probes fail; the uplink must not carry new flows.
	StateDown State = iota
	// StateDegraded: the probes answer, but too slowly or with too much
	// loss (Config.LatencyMax, Config.LossMax). The daemon chooses what
	// that means: keep the uplink, lower its weight, or treat it as down.
	StateDegraded
	// StateUp: the probes answer.
	StateUp
)

// String returns "down", "degraded" or "up".
func (s State) String() string {
	switch s {
	case StateDown:
		return "down"
	case StateDegraded:
		return "degraded"
	case StateUp:
		return "up"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Defaults used for the zero value of the corresponding Config field.
const (
	DefaultInterval      = 200 * time.Millisecond
	DefaultTimeout       = 400 * time.Millisecond
	DefaultDownAfter     = 3
	DefaultUpAfter       = 5
	DefaultLossWindow    = 20
	DefaultDegradedAfter = 3
	DefaultRecoverAfter  = 5
)

// MaxEchoID bounds the ICMP echo identifiers of probes: they are below it.
// The dataplane's NAT allocates echo identifiers from MaxEchoID up, so a
// probe's reply is never taken for a LAN host's and the reverse.
const MaxEchoID = 1024

// MaxRounds bounds the rounds in flight when Timeout exceeds Interval: a
// round that would be the (MaxRounds+1)-th is skipped (and counted in
// Stats.RoundsSkipped), so at most MaxRounds probes to one target are ever
// outstanding.
const MaxRounds = 8

// HistoryLen is the number of rounds Stats.History keeps.
const HistoryLen = 32

// Config configures the probes of one uplink and its state machine.
type Config struct {
	// Targets are probed once per round, all at once. At least one.
	Targets []Target
	// MinOK is how many targets must answer for a round to succeed
	// ("N of M"); 0 means 1. It may not exceed len(Targets).
	MinOK int
	// Interval is the time between the starts of two rounds; 0 means
	// DefaultInterval. At least 10ms.
	Interval time.Duration
	// Timeout is how long each probe waits for its answer; 0 means
	// DefaultTimeout. It may exceed Interval: rounds then overlap, at most
	// MaxRounds at a time.
	Timeout time.Duration
	// DownAfter consecutive failed rounds take an up or degraded uplink
	// down; 0 means DefaultDownAfter.
	DownAfter int
	// UpAfter consecutive successful rounds bring a down uplink up (or
	// degraded); 0 means DefaultUpAfter.
	UpAfter int
	// LatencyMax, if positive, marks a successful round whose RTT (the
	// median of the answering targets' RTTs) exceeds it as degraded.
	LatencyMax time.Duration
	// LossMax, if positive, marks a round as degraded when the share of
	// probes lost over the last LossWindow rounds exceeds it (0 < LossMax
	// < 1). Every target counts: choose targets that always answer.
	LossMax float64
	// LossWindow is the number of rounds the loss is measured over; 0
	// means DefaultLossWindow.
	LossWindow int
	// DegradedAfter consecutive degraded rounds take an up uplink to
	// degraded; 0 means DefaultDegradedAfter.
	DegradedAfter int
	// RecoverAfter consecutive healthy rounds take a degraded uplink back
	// up; 0 means DefaultRecoverAfter.
	RecoverAfter int
	// Initial is the state before any round; the zero value is StateDown,
	// the default: an uplink carries new flows only once its probes have
	// proven it (UpAfter rounds), so a freshly started router never sends
	// flows into a dead ISP. StateUp trusts the uplink until DownAfter
	// rounds fail.
	Initial State
	// EchoID is the ICMP echo identifier, in [1, MaxEchoID); 0 derives one
	// from the uplink's name in [100, 1000). The daemon may set 100+index.
	// Uplinks sharing an identifier still never take each other's replies
	// (each socket is bound to its own device and address), but distinct
	// identifiers make captures readable.
	EchoID uint16
	// NetNS, if non-nil, is the network namespace the probe sockets are
	// opened in and the router's addresses are read from. Nil means the
	// calling process's namespace, which is what the daemon uses.
	NetNS *netns.NsHandle
}

// withDefaults returns c with zero fields replaced by their defaults and
// the targets normalised, or an error naming the first invalid field.
func (c Config) withDefaults() (Config, error) {
	c = c.machineDefaults()
	if len(c.Targets) == 0 {
		return c, errors.New("health: config: no targets")
	}
	ts := make([]Target, len(c.Targets))
	for i, t := range c.Targets {
		nt, err := t.normalize()
		if err != nil {
			return c, fmt.Errorf("health: config: targets[%d]: %w", i, err)
		}
		ts[i] = nt
	}
	c.Targets = ts
	switch {
	case c.MinOK < 1 || c.MinOK > len(c.Targets):
		return c, fmt.Errorf("health: config: min_ok %d: want 1..%d (the number of targets)", c.MinOK, len(c.Targets))
	case c.Interval < 10*time.Millisecond:
		return c, fmt.Errorf("health: config: interval %v: want at least 10ms", c.Interval)
	case c.Timeout < time.Millisecond:
		return c, fmt.Errorf("health: config: timeout %v: want at least 1ms", c.Timeout)
	case c.DownAfter < 1 || c.UpAfter < 1 || c.DegradedAfter < 1 || c.RecoverAfter < 1 || c.LossWindow < 1:
		return c, fmt.Errorf("health: config: down_after %d, up_after %d, degraded_after %d, recover_after %d, loss_window %d: want at least 1",
			c.DownAfter, c.UpAfter, c.DegradedAfter, c.RecoverAfter, c.LossWindow)
	case c.LatencyMax < 0:
		return c, fmt.Errorf("health: config: latency_max %v: negative", c.LatencyMax)
	case c.LossMax < 0 || c.LossMax >= 1:
		return c, fmt.Errorf("health: config: loss_max %v: want 0 (off) or a ratio in (0, 1)", c.LossMax)
	case c.Initial > StateUp:
		return c, fmt.Errorf("health: config: initial %v: unknown state", c.Initial)
	case c.EchoID >= MaxEchoID:
		return c, fmt.Errorf("health: config: echo id %d: want 1..%d (the NAT uses %d and up)", c.EchoID, MaxEchoID-1, MaxEchoID)
	}
	return c, nil
}

// machineDefaults fills the zero fields the Machine uses; it never fails.
func (c Config) machineDefaults() Config {
	if c.MinOK == 0 {
		c.MinOK = 1
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.DownAfter <= 0 {
		c.DownAfter = DefaultDownAfter
	}
	if c.UpAfter <= 0 {
		c.UpAfter = DefaultUpAfter
	}
	if c.LossWindow <= 0 {
		c.LossWindow = DefaultLossWindow
	}
	if c.DegradedAfter <= 0 {
		c.DegradedAfter = DefaultDegradedAfter
	}
	if c.RecoverAfter <= 0 {
		c.RecoverAfter = DefaultRecoverAfter
	}
	return c
}

// echoIDFor derives an echo identifier in [100, 1000) from an uplink name.
func echoIDFor(name string) uint16 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return uint16(100 + h.Sum32()%900)
}

// Binding is what an uplink's probes bind to: its device and its address.
type Binding struct {
	// Ifindex is the device's index; replies arriving on another device
	// are ignored. 0 skips that check (SO_BINDTODEVICE still applies).
	Ifindex int
	// Interface is the device's name, used for SO_BINDTODEVICE; when empty,
	// Ifindex is used (SO_BINDTOIFINDEX).
	Interface string
	// Addr is the uplink's IPv4 address, the probes' source address.
	Addr netip.Addr
}

// valid reports whether b can carry probes.
func (b Binding) valid() bool {
	return b.Addr.Is4() && (b.Interface != "" || b.Ifindex > 0)
}

// TargetResult is the outcome of one probe.
type TargetResult struct {
	// Target is the probed target.
	Target Target
	// OK reports an answer within the timeout.
	OK bool
	// RTT is the time from sending to the answer (HTTP: to the response
	// header, including the TCP and TLS handshakes); valid iff OK.
	RTT time.Duration
	// Err says why the probe failed ("timeout", "refused: ... router's own
	// address", "http status 503", ...); empty iff OK.
	Err string
}

// String renders r as "icmp:192.0.2.1 ok 1.2ms" or "icmp:192.0.2.1 timeout".
func (r TargetResult) String() string {
	if r.OK {
		return fmt.Sprintf("%v ok %v", r.Target, r.RTT)
	}
	return fmt.Sprintf("%v %s", r.Target, r.Err)
}

// Result is the outcome of one round: every target probed once.
type Result struct {
	// Time is when the round started (its probes were sent).
	Time time.Time
	// Done is when the round's verdict was known; the zero Time means Time.
	Done time.Time
	// OK is the number of targets that answered, Total the number probed.
	OK, Total int
	// RTT is the median RTT of the targets that answered, 0 if none did.
	RTT time.Duration
	// PerTarget holds each target's outcome, in Config.Targets order. It
	// must not be modified once the Result is observed.
	PerTarget []TargetResult
}

// done returns when r's verdict was known.
func (r Result) done() time.Time {
	if r.Done.IsZero() {
		return r.Time
	}
	return r.Done
}

// Transition is a change of an uplink's state.
type Transition struct {
	// Uplink is the uplink's name (empty from a bare Machine).
	Uplink string
	// From and To are the states before and after.
	From, To State
	// Cause says why, e.g. "3 of 3 rounds failed (0 of 2 answered, need 1):
	// icmp:1.1.1.1 timeout, dns:8.8.8.8:53 timeout".
	Cause string
	// At is when the round that caused the change ended.
	At time.Time
	// Since is the time from the start of the first round of the streak
	// that caused the change (the first failed round for a change to down)
	// to At: an upper bound of the detection time, within one Interval of
	// the time since the fault.
	Since time.Duration
}

// String renders t for logs.
func (t Transition) String() string {
	return fmt.Sprintf("%s: %v → %v after %v: %s", t.Uplink, t.From, t.To, t.Since.Round(time.Millisecond), t.Cause)
}

// Stats is a snapshot of a Prober's figures, for status displays.
type Stats struct {
	// State is the current state, StateSince when it was entered (or when
	// Run started or Reset was called).
	State      State
	StateSince time.Time
	// LastRTT is the RTT of the last successful round.
	LastRTT time.Duration
	// Loss is the share of probes lost over the last LossWindow rounds.
	Loss float64
	// RoundsOK and RoundsFailed count the rounds observed; RoundsSkipped
	// the rounds not run (no binding: the link is down or has no address;
	// MaxRounds in flight) or discarded (the binding changed or Reset was
	// called while they ran).
	RoundsOK, RoundsFailed, RoundsSkipped uint64
	// Transitions counts the state changes (Reset excluded).
	Transitions uint64
	// Targets holds the last outcome of each target, in Config.Targets
	// order; a target not yet probed has the zero Err "".
	Targets []TargetResult
	// History holds the last HistoryLen rounds, oldest first.
	History []Result
}
