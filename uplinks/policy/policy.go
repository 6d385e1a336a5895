package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
)

// MaxUplinks is the largest number of uplinks a Policy accepts. Uplink sets
// are kept as 64-bit masks so that Choose never allocates.
const MaxUplinks = 64

// IP protocol numbers the policy knows by name.
const (
	ProtoICMP uint8 = 1
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
)

// Affinity selects which fields of a Flow pin its choice: flows with equal
// fields always get the same uplink.
type Affinity uint8

const (
	// AffinityFlow keys on the whole 5-tuple (protocol, source and
	// destination address and port): the finest spread.
	AffinityFlow Affinity = iota
	// AffinitySrcDst keys on source and destination address: every
	// connection between one LAN host and one server uses one uplink, which
	// keeps sites that tie a session to the client address working.
	AffinitySrcDst
	// AffinitySrc keys on the source address: each LAN host uses one uplink.
	AffinitySrc
)

var affinityNames = [...]string{AffinityFlow: "flow", AffinitySrcDst: "src-dst", AffinitySrc: "src"}

// ParseAffinity parses the configuration spelling of an affinity: "flow",
// "src-dst" or "src".
func ParseAffinity(s string) (Affinity, error) {
	for i, n := range affinityNames {
		if s == n {
			return Affinity(i), nil
		}
	}
	return 0, fmt.Errorf("policy: unknown affinity %q (want flow, src-dst or src)", s)
}

// String returns the configuration spelling of a.
func (a Affinity) String() string {
	if int(a) < len(affinityNames) {
		return affinityNames[a]
	}
	return "Affinity(" + strconv.Itoa(int(a)) + ")"
}

// MarshalText implements encoding.TextMarshaler with the configuration
// spelling.
func (a Affinity) MarshalText() ([]byte, error) {
	if int(a) >= len(affinityNames) {
		return nil, fmt.Errorf("policy: invalid affinity %d", a)
	}
	return []byte(a.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseAffinity.
func (a *Affinity) UnmarshalText(b []byte) error {
	v, err := ParseAffinity(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Uplink is one uplink as the policy sees it. Its index in the slice given
// to New is the uplink id the dataplane uses (it fits a uint8).
type Uplink struct {
	// Name identifies the uplink and feeds its hash (NameHash), so a
	// renamed uplink gets a different share of flows.
	Name string
	// Tier orders uplinks by preference: the lowest tier with an available
	// uplink of positive weight carries all new flows.
	Tier int
	// Weight is the uplink's relative share of new flows within its tier.
	// An uplink of weight 0 is never chosen.
	Weight uint32
	// Available reports whether the uplink may carry new flows (it is up).
	Available bool
}

// PortRange is an inclusive range of ports, Lo <= Hi.
type PortRange struct {
	Lo, Hi uint16 // first and last port
}

// Contains reports whether port p is in r.
func (r PortRange) Contains(p uint16) bool { return r.Lo <= p && p <= r.Hi }

// String returns "lo-hi", or "lo" for a single port.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// Rule restricts the uplinks allowed for the flows it matches. Rules are
// tried in order and the first match wins; a flow that matches no rule may
// use every uplink. Empty fields match anything.
type Rule struct {
	// Name labels the rule in decisions and explanations.
	Name string
	// Src and Dst are IPv4 prefixes; the flow's address must lie in one of
	// them. Empty matches any address.
	Src, Dst []netip.Prefix
	// Proto is the IP protocol number to match; 0 matches any protocol.
	Proto uint8
	// DstPorts are destination port ranges; empty matches any port. A
	// non-empty list only matches TCP and UDP flows.
	DstPorts []PortRange
	// Uplinks names the uplinks allowed for matching flows; it must not be
	// empty.
	Uplinks []string
}

// Flow is the part of a new flow's first packet that the policy looks at.
// Addresses are IPv4 in network byte order.
type Flow struct {
	// Proto is the IP protocol number.
	Proto uint8
	// Src and Dst are the source and destination addresses.
	Src, Dst [4]byte
	// SrcPort and DstPort are the TCP/UDP ports; for ICMP echo the
	// dataplane puts the identifier in SrcPort and 0 in DstPort.
	SrcPort, DstPort uint16
}

// String formats f as "udp 10.77.0.10:5000 -> 1.1.1.1:53".
func (f Flow) String() string {
	src := netip.AddrPortFrom(netip.AddrFrom4(f.Src), f.SrcPort)
	dst := netip.AddrPortFrom(netip.AddrFrom4(f.Dst), f.DstPort)
	return ProtoName(f.Proto) + " " + src.String() + " -> " + dst.String()
}

// ProtoName returns "tcp", "udp", "icmp", "any" for 0, or the number.
func ProtoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// Reason says how a Decision was reached.
type Reason uint8

const (
	// ReasonNone is the zero Reason; no Decision carries it.
	ReasonNone Reason = iota
	// ReasonWeighted: no rule matched and the uplink won the weighted
	// rendezvous hash among the available uplinks of the best available tier.
	ReasonWeighted
	// ReasonOnlyCandidate: no rule matched and the uplink was the only
	// available uplink of positive weight in the best available tier.
	ReasonOnlyCandidate
	// ReasonRuleWeighted: like ReasonWeighted, among the uplinks allowed by
	// the matching rule.
	ReasonRuleWeighted
	// ReasonRuleOnlyCandidate: like ReasonOnlyCandidate, among the uplinks
	// allowed by the matching rule.
	ReasonRuleOnlyCandidate
	// ReasonNoUplink: no allowed uplink is available with a positive
	// weight (Decision.Rule tells whether a rule narrowed the choice).
	ReasonNoUplink
)

var reasonNames = [...]string{
	ReasonNone:              "none",
	ReasonWeighted:          "weighted",
	ReasonOnlyCandidate:     "only-candidate",
	ReasonRuleWeighted:      "rule-weighted",
	ReasonRuleOnlyCandidate: "rule-only-candidate",
	ReasonNoUplink:          "no-uplink",
}

// String returns the short name of r, e.g. "weighted".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Decision is the outcome of Choose.
type Decision struct {
	// Uplink is the index of the chosen uplink, or -1 when none is available.
	Uplink int
	// Tier is the chosen uplink's tier (0 when Uplink is -1).
	Tier int
	// Rule is the index of the matching rule, or -1 when no rule matched.
	Rule int
	// Reason says how the uplink was chosen.
	Reason Reason
}

type prefix4 struct{ addr, mask uint32 }

func (p prefix4) contains(a uint32) bool { return a&p.mask == p.addr }

type compiledRule struct {
	src, dst []prefix4
	proto    uint8
	ports    []PortRange
	allowed  uint64 // mask of uplink indexes
}

type tierSet struct {
	tier int
	mask uint64
}

// Policy is a built, immutable uplink policy. It is safe for concurrent use.
type Policy struct {
	uplinks  []Uplink
	affinity Affinity
	rules    []Rule
	compiled []compiledRule
	nameHash []uint64
	tiers    []tierSet // ascending tier order
	usable   uint64    // Available && Weight > 0
	all      uint64
}

// New builds a Policy. Uplink names must be unique and non-empty, at most
// MaxUplinks uplinks; rule prefixes must be IPv4, port ranges ordered and
// rule uplink names known. New copies its inputs.
func New(uplinks []Uplink, affinity Affinity, rules []Rule) (*Policy, error) {
	if len(uplinks) == 0 {
		return nil, errors.New("policy: no uplinks")
	}
	if len(uplinks) > MaxUplinks {
		return nil, fmt.Errorf("policy: %d uplinks, at most %d", len(uplinks), MaxUplinks)
	}
	if int(affinity) >= len(affinityNames) {
		return nil, fmt.Errorf("policy: invalid affinity %d", affinity)
	}
	p := &Policy{
		uplinks:  slices.Clone(uplinks),
		affinity: affinity,
		nameHash: make([]uint64, len(uplinks)),
	}
	index := make(map[string]int, len(uplinks))
	for i, u := range uplinks {
		if u.Name == "" {
			return nil, fmt.Errorf("policy: uplink %d: empty name", i)
		}
		if j, dup := index[u.Name]; dup {
			return nil, fmt.Errorf("policy: uplink %d: name %q already used by uplink %d", i, u.Name, j)
		}
		index[u.Name] = i
		p.nameHash[i] = NameHash(u.Name)
		bit := uint64(1) << i
		p.all |= bit
		k := slices.IndexFunc(p.tiers, func(t tierSet) bool { return t.tier == u.Tier })
		if k < 0 {
			p.tiers = append(p.tiers, tierSet{tier: u.Tier})
			k = len(p.tiers) - 1
		}
		p.tiers[k].mask |= bit
	}
	slices.SortFunc(p.tiers, func(a, b tierSet) int { return a.tier - b.tier })
	p.usable = usableMask(p.uplinks)

	p.rules = make([]Rule, len(rules))
	p.compiled = make([]compiledRule, len(rules))
	for i, r := range rules {
		c, err := compileRule(r, index)
		if err != nil {
			return nil, fmt.Errorf("policy: rule %d (%s): %w", i, r.Name, err)
		}
		p.compiled[i] = c
		p.rules[i] = Rule{
			Name:     r.Name,
			Src:      slices.Clone(r.Src),
			Dst:      slices.Clone(r.Dst),
			Proto:    r.Proto,
			DstPorts: slices.Clone(r.DstPorts),
			Uplinks:  slices.Clone(r.Uplinks),
		}
	}
	return p, nil
}

func usableMask(us []Uplink) uint64 {
	var m uint64
	for i, u := range us {
		if u.Available && u.Weight > 0 {
			m |= 1 << i
		}
	}
	return m
}

func compilePrefixes(ps []netip.Prefix) ([]prefix4, error) {
	out := make([]prefix4, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() || !p.Addr().Is4() {
			return nil, fmt.Errorf("prefix %v is not IPv4", p)
		}
		p = p.Masked()
		a := p.Addr().As4()
		var mask uint32
		if p.Bits() > 0 {
			mask = ^uint32(0) << (32 - p.Bits())
		}
		out = append(out, prefix4{addr: binary.BigEndian.Uint32(a[:]), mask: mask})
	}
	return out, nil
}

func compileRule(r Rule, index map[string]int) (compiledRule, error) {
	var c compiledRule
	var err error
	if c.src, err = compilePrefixes(r.Src); err != nil {
		return c, fmt.Errorf("src: %w", err)
	}
	if c.dst, err = compilePrefixes(r.Dst); err != nil {
		return c, fmt.Errorf("dst: %w", err)
	}
	c.proto = r.Proto
	if len(r.DstPorts) > 0 && r.Proto != 0 && r.Proto != ProtoTCP && r.Proto != ProtoUDP {
		return c, fmt.Errorf("dst ports need protocol tcp, udp or any, got %s", ProtoName(r.Proto))
	}
	for _, pr := range r.DstPorts {
		if pr.Lo > pr.Hi {
			return c, fmt.Errorf("port range %d-%d is reversed", pr.Lo, pr.Hi)
		}
	}
	c.ports = slices.Clone(r.DstPorts)
	if len(r.Uplinks) == 0 {
		return c, errors.New("no allowed uplinks")
	}
	for _, n := range r.Uplinks {
		i, ok := index[n]
		if !ok {
			return c, fmt.Errorf("unknown uplink %q", n)
		}
		c.allowed |= 1 << i
	}
	return c, nil
}

// WithAvailability returns a copy of p whose uplink i is available iff
// available[i]; len(available) must equal the number of uplinks. The copy
// shares p's immutable rule tables, so it is cheap to build whenever uplink
// health changes.
func (p *Policy) WithAvailability(available []bool) (*Policy, error) {
	if len(available) != len(p.uplinks) {
		return nil, fmt.Errorf("policy: availability for %d uplinks, have %d", len(available), len(p.uplinks))
	}
	q := *p
	q.uplinks = slices.Clone(p.uplinks)
	for i := range q.uplinks {
		q.uplinks[i].Available = available[i]
	}
	q.usable = usableMask(q.uplinks)
	return &q, nil
}

// Uplinks returns a copy of the policy's uplinks, indexed by uplink id.
func (p *Policy) Uplinks() []Uplink { return slices.Clone(p.uplinks) }

// Affinity returns the policy's affinity.
func (p *Policy) Affinity() Affinity { return p.affinity }

// Rules returns a copy of the policy's rules; their slices are shared and
// must not be modified.
func (p *Policy) Rules() []Rule { return slices.Clone(p.rules) }

// match returns the index of the first rule matching f and the mask of
// uplinks it allows, or -1 and all uplinks.
func (p *Policy) match(f *Flow) (int, uint64) {
	if len(p.compiled) == 0 {
		return -1, p.all
	}
	src := binary.BigEndian.Uint32(f.Src[:])
	dst := binary.BigEndian.Uint32(f.Dst[:])
	for i := range p.compiled {
		if p.compiled[i].matches(f, src, dst) {
			return i, p.compiled[i].allowed
		}
	}
	return -1, p.all
}

func (c *compiledRule) matches(f *Flow, src, dst uint32) bool {
	if c.proto != 0 && f.Proto != c.proto {
		return false
	}
	if len(c.ports) > 0 {
		if f.Proto != ProtoTCP && f.Proto != ProtoUDP {
			return false
		}
		ok := false
		for _, r := range c.ports {
			if r.Contains(f.DstPort) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return matchPrefixes(c.src, src) && matchPrefixes(c.dst, dst)
}

func matchPrefixes(ps []prefix4, a uint32) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.contains(a) {
			return true
		}
	}
	return false
}

// Choose picks the uplink for a new flow f: the first matching rule narrows
// the allowed uplinks; among those that are available with a positive
// weight, the lowest tier is taken; within it the uplink with the highest
// Score(Hash64(KeyHash(affinity, f), NameHash(name)), weight) wins (ties, of
// probability about 2^-52, go to the lower index). It never allocates.
func (p *Policy) Choose(f Flow) Decision {
	rule, allowed := p.match(&f)
	cand := allowed & p.usable
	if cand == 0 {
		return Decision{Uplink: -1, Rule: rule, Reason: ReasonNoUplink}
	}
	for _, t := range p.tiers {
		m := cand & t.mask
		if m == 0 {
			continue
		}
		if m&(m-1) == 0 {
			return Decision{Uplink: bits.TrailingZeros64(m), Tier: t.tier, Rule: rule, Reason: reason(rule, true)}
		}
		key := KeyHash(p.affinity, &f)
		best, bestScore := -1, 0.0
		for m != 0 {
			i := bits.TrailingZeros64(m)
			m &= m - 1
			s := Score(Hash64(key, p.nameHash[i]), p.uplinks[i].Weight)
			if best < 0 || s > bestScore {
				best, bestScore = i, s
			}
		}
		return Decision{Uplink: best, Tier: t.tier, Rule: rule, Reason: reason(rule, false)}
	}
	// Unreachable: every uplink belongs to a tier.
	return Decision{Uplink: -1, Rule: rule, Reason: ReasonNoUplink}
}

func reason(rule int, only bool) Reason {
	switch {
	case rule < 0 && only:
		return ReasonOnlyCandidate
	case rule < 0:
		return ReasonWeighted
	case only:
		return ReasonRuleOnlyCandidate
	default:
		return ReasonRuleWeighted
	}
}
