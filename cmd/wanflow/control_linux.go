//go:build linux

package main

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
	"github.com/wanflow/wanflow/cmd/wanflow/control"
	"github.com/wanflow/wanflow/dataplane"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/events"
	"github.com/wanflow/wanflow/uplinks/health"
	"github.com/wanflow/wanflow/uplinks/policy"
	"github.com/wanflow/wanflow/uplinks/supervise"
)

// The daemon is the control API's Backend: this file answers the API's
// questions from the live state (the supervisor's views, the probers, the
// dataplane's shards, the LAN services), and startControl serves them on
// the control socket.

var _ control.Backend = (*daemon)(nil)

// rates keeps each uplink's traffic rate over the last second
// (routineRates).
type rates struct {
	mu      sync.Mutex
	last    []dataplane.Traffic
	at      time.Time
	out, in []float64 // bits per second, by uplink index
}

// routineRates samples the uplinks' traffic every second.
func (d *daemon) routineRates(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		now := time.Now()
		cur := d.engine.Traffic()
		r := &d.rates
		r.mu.Lock()
		if !r.at.IsZero() {
			secs := now.Sub(r.at).Seconds()
			r.out, r.in = make([]float64, len(cur)), make([]float64, len(cur))
			for i, t := range cur {
				var prev dataplane.Traffic
				if i < len(r.last) {
					prev = r.last[i]
				}
				r.out[i] = float64(t.BytesOut-prev.BytesOut) * 8 / secs
				r.in[i] = float64(t.BytesIn-prev.BytesIn) * 8 / secs
			}
		}
		r.last, r.at = cur, now
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (r *rates) get(i int) (out, in float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < len(r.out) {
		return r.out[i], r.in[i]
	}
	return 0, 0
}

// startControl serves the control API on control.socket until ctx ends.
func (d *daemon) startControl(ctx context.Context) error {
	path := d.conf().Control.Socket
	srv := control.NewServer(d, d.log.With("service", "control"))
	ln, err := srv.Listen(path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
			d.log.Error("control API stopped", "err", err)
		}
	}()
	return nil
}

// uplinkState names an uplink's state for people: what keeps it from
// carrying flows, else its health.
func uplinkState(v supervise.View) string {
	switch {
	case v.Ifindex <= 0:
		return "no-device"
	case !v.Carrier:
		return "no-carrier"
	case !v.Addr.IsValid():
		return "no-address"
	}
	return v.Health.String()
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Status implements control.Backend.
func (d *daemon) Status() control.Status {
	cfg := d.conf()
	now := time.Now()
	st := d.engine.Stats()
	d.mu.Lock()
	loaded := d.loaded
	d.mu.Unlock()
	s := control.Status{
		Version: version, Started: d.started, Uptime: now.Sub(d.started).Seconds(),
		Config: d.cfgPath, Loaded: loaded, Workers: d.engine.Workers(),
		Flows: st.Flows, FlowCapacity: cfg.Dataplane.Flows.Capacity,
	}
	s.Uplinks = d.uplinkStatuses(cfg)
	for i, v := range st.Counters {
		name := dataplane.Counter(i).String()
		if v != 0 && strings.Contains(name, "_drop_") {
			if s.Drops == nil {
				s.Drops = map[string]uint64{}
			}
			s.Drops[strings.TrimPrefix(name, "dataplane_")] = v
		}
	}
	if d.dns != nil {
		ds := d.dns.Stats()
		sum := &control.DNSSummary{Queries: ds.Queries, CacheHits: ds.CacheHits, CacheEntries: ds.CacheEntries, ServFail: ds.ServFail}
		for _, a := range cfg.LAN.DNS.Listen {
			sum.Listen = append(sum.Listen, a.AddrPort.String())
		}
		for _, u := range ds.Upstreams {
			if u.Active {
				sum.Upstreams = append(sum.Upstreams, control.DNSUpstream{Uplink: u.Uplink, Server: u.Addr.String(),
					Queries: u.Queries, Answers: u.Queries - min(u.Failures, u.Queries), Failures: u.Failures})
			}
		}
		s.DNS = sum
	}
	if d.dhcp != nil {
		c := cfg.LAN.DHCP
		hs := d.dhcp.Stats()
		s.DHCP = &control.DHCPSummary{
			Interface: cfg.LAN.Interface, Range: c.Range.First.String() + "-" + c.Range.Last.String(),
			Leases: hs.LeasesActive, PoolSize: poolSize(c.Range.First, c.Range.Last), PoolExhausted: hs.PoolExhausted,
		}
	}
	return s
}

func poolSize(first, last netip.Addr) int {
	a, b := first.As4(), last.As4()
	n := int(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])) - int(uint32(a[0])<<24|uint32(a[1])<<16|uint32(a[2])<<8|uint32(a[3])) + 1
	return max(n, 0)
}

// uplinkStatuses is every uplink's status, in index order.
func (d *daemon) uplinkStatuses(cfg *config.Config) []control.UplinkStatus {
	views := d.sup.Views()
	traffic := d.engine.Traffic()
	perUplink := d.engine.FlowsPerUplink()
	out := make([]control.UplinkStatus, 0, len(cfg.Uplinks))
	for i, u := range cfg.Uplinks {
		us := control.UplinkStatus{Index: i, Name: u.Name, Interface: u.Interface, Tier: u.Tier, Weight: u.Weight, EffectiveWeight: u.Weight}
		if i < len(views) {
			v := views[i]
			us.State, us.Available, us.Since = uplinkState(v), v.Available, v.Since
			us.Addr, us.Gateway, us.MTU = addrString(v.Addr), addrString(v.Gateway), v.MTU
			if m := u.MTU; m > 0 && (us.MTU <= 0 || m < us.MTU) {
				us.MTU = m
			}
			if v.WeightFactor < 1 {
				us.EffectiveWeight = max(1, uint32(float64(u.Weight)*v.WeightFactor))
			}
		}
		if p := d.sup.Prober(i); p != nil {
			ps := p.Stats()
			us.RTT, us.Loss = ms(ps.LastRTT), ps.Loss
		}
		if i < len(perUplink) {
			us.Flows = perUplink[i]
		}
		if i < len(traffic) {
			t := traffic[i]
			us.PacketsOut, us.BytesOut, us.PacketsIn, us.BytesIn = t.PacketsOut, t.BytesOut, t.PacketsIn, t.BytesIn
		}
		us.RateOut, us.RateIn = d.rates.get(i)
		out = append(out, us)
	}
	return out
}

// Uplinks implements control.Backend.
func (d *daemon) Uplinks() control.UplinksReply {
	cfg := d.conf()
	views := d.sup.Views()
	d.mu.Lock()
	learned := d.learnedDNS
	d.mu.Unlock()
	var r control.UplinksReply
	for i, us := range d.uplinkStatuses(cfg) {
		u := cfg.Uplinks[i]
		det := control.UplinkDetail{UplinkStatus: us, OnFailureTCP: u.OnFailure.TCP, OnFailureUDP: u.OnFailure.UDP}
		if i < len(views) {
			det.Carrier = views[i].Carrier
		}
		for _, a := range knownDNS(u, i, learned) {
			det.DNS = append(det.DNS, a.String())
		}
		if p := d.sup.Prober(i); p != nil {
			det.Probes = probeDetail(p.Config(), p.Stats())
		}
		r.Uplinks = append(r.Uplinks, det)
	}
	return r
}

func probeDetail(c health.Config, s health.Stats) *control.ProbeDetail {
	pd := &control.ProbeDetail{
		Interval: ms(c.Interval), Timeout: ms(c.Timeout), MinOK: c.MinOK,
		RoundsOK: s.RoundsOK, RoundsFailed: s.RoundsFailed, RoundsSkipped: s.RoundsSkipped, Transitions: s.Transitions,
	}
	for i, t := range c.Targets {
		pt := control.ProbeTarget{Kind: t.Kind.String(), Target: t.Addr.String()}
		switch {
		case t.Kind == health.KindHTTP:
			pt.Target = t.URL
		case t.Kind == health.KindICMP:
			pt.Target = t.Addr.Addr().String()
		}
		if i < len(s.Targets) {
			tr := s.Targets[i]
			pt.OK, pt.RTT, pt.Err = tr.OK, ms(tr.RTT), tr.Err
			if n := len(s.History); n > 0 {
				pt.At = s.History[n-1].Time // the targets' last outcomes are the last round's
			}
		}
		pd.Targets = append(pd.Targets, pt)
	}
	for _, h := range s.History {
		pd.History = append(pd.History, control.ProbeRound{Time: h.Time, OK: h.OK, Total: h.Total, RTT: ms(h.RTT)})
	}
	return pd
}

// Flows implements control.Backend.
func (d *daemon) Flows(f control.FlowFilter) (control.FlowsReply, error) {
	cfg := d.conf()
	uplink := -1
	if f.Uplink != "" {
		for i, u := range cfg.Uplinks {
			if u.Name == f.Uplink {
				uplink = i
			}
		}
		if uplink < 0 {
			return control.FlowsReply{}, control.BadRequest("no uplink named %q", f.Uplink)
		}
	}
	var host, remote [4]byte
	if f.Host.Is4() {
		host = f.Host.As4()
	}
	if f.Remote.Is4() {
		remote = f.Remote.As4()
	}
	match := func(e *flowtable.Entry) bool {
		switch {
		case uplink >= 0 && int(e.Uplink) != uplink,
			f.Host.IsValid() && e.Key.Src != host,
			f.Remote.IsValid() && e.Key.Dst != remote,
			f.Proto != 0 && e.Key.Proto != f.Proto,
			f.Port != 0 && e.Key.SrcPort != f.Port && e.Key.DstPort != f.Port && e.NATPort != f.Port:
			return false
		}
		return true
	}
	q := dataplane.FlowQuery{Match: match, Limit: f.Limit}
	switch f.Sort {
	case "bytes":
		q.Less = func(a, b *flowtable.Entry) bool { return a.BytesOut+a.BytesIn > b.BytesOut+b.BytesIn }
	case "packets":
		q.Less = func(a, b *flowtable.Entry) bool { return a.PacketsOut+a.PacketsIn > b.PacketsOut+b.PacketsIn }
	case "age":
		q.Less = func(a, b *flowtable.Entry) bool { return a.Created < b.Created }
	}
	es, matched := d.engine.Flows(q)
	r := control.FlowsReply{Matched: matched, Truncated: len(es) < matched, Flows: make([]control.Flow, 0, len(es))}
	now, mono := time.Now(), dataplane.Now()
	for i := range es {
		r.Flows = append(r.Flows, d.flow(cfg, &es[i], now, mono))
	}
	if q.Less == nil {
		// Table order differs from run to run: give a stable one.
		slices.SortFunc(r.Flows, func(a, b control.Flow) int {
			return cmp.Or(cmp.Compare(a.Src, b.Src), cmp.Compare(a.Dst, b.Dst), cmp.Compare(a.Proto, b.Proto))
		})
	}
	return r, nil
}

// flow converts a flow-table entry; now is the wall clock and mono the
// dataplane's clock at the same moment.
func (d *daemon) flow(cfg *config.Config, e *flowtable.Entry, now time.Time, mono int64) control.Flow {
	k := e.Key
	proto := policy.ProtoName(k.Proto)
	f := control.Flow{
		Proto:       proto,
		Src:         netip.AddrPortFrom(netip.AddrFrom4(k.Src), k.SrcPort).String(),
		Dst:         netip.AddrPortFrom(netip.AddrFrom4(k.Dst), k.DstPort).String(),
		NAT:         netip.AddrPortFrom(netip.AddrFrom4(e.NATAddr), e.NATPort).String(),
		UplinkIndex: int(e.Uplink),
		State:       e.State.String(),
		Created:     now.Add(-time.Duration(mono - e.Created)),
		Age:         time.Duration(mono - e.Created).Seconds(),
		Idle:        time.Duration(mono - e.LastSeen).Seconds(),
		PacketsOut:  e.PacketsOut, BytesOut: e.BytesOut, PacketsIn: e.PacketsIn, BytesIn: e.BytesIn,
	}
	if k.Proto == flowtable.ProtoICMP {
		f.Dst = netip.AddrFrom4(k.Dst).String()
	}
	if int(e.Uplink) < len(cfg.Uplinks) {
		f.Uplink = cfg.Uplinks[e.Uplink].Name
	}
	reason, tier, rule := dataplane.DecodeDecision(e.Decision)
	f.Reason, f.Tier = reason.String(), tier
	f.PortsFallback = dataplane.DecisionPortsFallback(e.Decision)
	if rules := cfg.PolicyRules(); rule >= 0 && rule < len(rules) {
		f.Rule = rules[rule].Name
	}
	return f
}

// Explain implements control.Backend.
func (d *daemon) Explain(k control.FlowKey) (control.ExplainReply, error) {
	cfg := d.conf()
	key := dataplane.KeyOf(k.Proto, k.Src, k.Dst)
	pf := policy.Flow{Proto: key.Proto, Src: key.Src, Dst: key.Dst, SrcPort: key.SrcPort, DstPort: key.DstPort}
	x, sent, ok := d.engine.Explain(pf)
	if !ok {
		return control.ExplainReply{}, fmt.Errorf("no uplink state published yet")
	}
	r := control.ExplainReply{
		Query: control.ExplainQuery{Proto: policy.ProtoName(k.Proto), Src: k.Src.String(), Dst: k.Dst.String()},
		Policy: control.Decision{
			Affinity: x.Affinity.String(), Rule: x.RuleName, Tier: x.Decision.Tier, Reason: x.Decision.Reason.String(),
		},
	}
	if k.Proto == flowtable.ProtoICMP {
		r.Query.Dst = k.Dst.Addr().String()
	}
	if x.Decision.Uplink >= 0 {
		r.Policy.Uplink = x.Candidates[x.Decision.Uplink].Name
	}
	for _, c := range x.Candidates {
		r.Policy.Candidates = append(r.Policy.Candidates, control.Candidate{
			Index: c.Uplink, Name: c.Name, Tier: c.Tier, Weight: c.Weight, Available: c.Available,
			Allowed: c.Allowed, Score: c.Score, Verdict: c.Verdict.String(),
		})
	}
	why := x.Why()
	if e, found := d.engine.Lookup(key); found {
		f := d.flow(cfg, &e, time.Now(), dataplane.Now())
		r.Existing = &f
		r.Uplink = f.Uplink
		r.Why = fmt.Sprintf("existing flow: pinned to %s since %s by %s; flows never move while their uplink is up (a new flow would get: %s)",
			f.Uplink, f.Created.Format(time.RFC3339), placedBy(f), why)
		return r, nil
	}
	switch {
	case sent:
		r.Uplink = r.Policy.Uplink
		r.Why = "new flow: " + why
	case x.Decision.Uplink >= 0:
		r.Why = "new flow: dropped, answered with ICMP net unreachable: " + r.Policy.Uplink + " has no socket yet (no address)"
	default:
		r.Why = "new flow: dropped, answered with ICMP net unreachable: " + why
	}
	return r, nil
}

func placedBy(f control.Flow) string {
	s := f.Reason + " choice in tier " + strconv.Itoa(f.Tier)
	if f.Rule != "" {
		s += " (rule " + f.Rule + ")"
	}
	if f.PortsFallback {
		s += ", its first choice having no free NAT port"
	}
	return s
}

// Events implements control.Backend.
func (d *daemon) Events() *events.Ring { return d.ring }
