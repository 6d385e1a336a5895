package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/labrouter"
	"github.com/wanflow/wanflow/bench/plot"
	"github.com/wanflow/wanflow/cmd/wanflow/control"
)

// DNSOptions tune DNSFailover. Zero fields take the defaults, with which
// the whole scenario takes about 40 s.
type DNSOptions struct {
	// Period between two queries of the LAN host (default 20ms). Each
	// query has a name of its own, so none is answered from a cache.
	Period time.Duration
	// Lead is the normal operation measured before the first fault
	// (default 2s).
	Lead time.Duration
	// DNSDead is how long phase (a) lasts: ISP 1's DNS server is silent,
	// its uplink and internet are fine (default 6s).
	DNSDead time.Duration
	// ISPDead is how long phase (b) lasts: ISP 1's internet dies too
	// behind the live link, so wanflow's probes take up1 down (default
	// 6s).
	ISPDead time.Duration
	// Recovery is how long the repaired lab is observed (default 5s).
	Recovery time.Duration
	// StubTimeout and StubAttempts are the LAN host's stub resolver
	// options "timeout:" and "attempts:" (glibc's defaults, and the
	// reference setup's resolv.conf: 5s and 2). Like glibc's, the timeout
	// counts whole seconds (rounded down, at least 1s, at most 30s) and
	// attempts are 1..5.
	StubTimeout  time.Duration
	StubAttempts int
}

func (o *DNSOptions) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Period, 20*time.Millisecond)
	def(&o.Lead, 2*time.Second)
	def(&o.DNSDead, 6*time.Second)
	def(&o.ISPDead, 6*time.Second)
	def(&o.Recovery, 5*time.Second)
	def(&o.StubTimeout, 5*time.Second)
	o.StubTimeout = min(max(o.StubTimeout.Truncate(time.Second), time.Second), 30*time.Second) // RES_MAXRETRANS
	if o.StubAttempts <= 0 {
		o.StubAttempts = 2
	}
	o.StubAttempts = min(o.StubAttempts, 5) // RES_MAXRETRY
}

// DNSResult is one router's DNS answers through the failover of
// DNSFailover. Times are milliseconds; instants are relative to fault (a),
// the origin of the samples' time axis.
type DNSResult struct {
	// Router is "kernel" (forwarding + masquerade; the LAN host's stub
	// resolver asks ISP 1's then ISP 2's DNS server itself, as the
	// reference setup's resolv.conf makes it) or "wanflow" (the stub asks
	// wanflow's forwarder, which asks the ISPs' servers through their
	// uplinks).
	Router string `json:"router"`
	// Resolver describes the LAN host's stub resolver configuration.
	Resolver string `json:"resolver"`
	// Phases are "normal", "dns-dead" (a), "isp-dead" (b; for wanflow
	// only until its probes took up1 down), "isp-down" (wanflow only:
	// from then to the repair) and "recovered" (c). A query belongs to the
	// phase in which it was sent.
	Phases []DNSPhase `json:"phases"`
	// ISPDeadAtMs and RepairAtMs are when faults (b) and (c) happened.
	ISPDeadAtMs float64 `json:"isp_dead_at_ms"`
	RepairAtMs  float64 `json:"repair_at_ms"`
	// DownAtMs and UpAtMs are when wanflow reported up1 unavailable after
	// fault (b) and available again after the repair (-1: not seen; always
	// -1 for the kernel, which has no health checks).
	DownAtMs float64 `json:"down_at_ms"`
	UpAtMs   float64 `json:"up_at_ms"`
	// ToISP2Ms is the time from fault (a) to the first answer from ISP 2
	// (when it arrived); BackToISP1Ms the time from the repair to the first
	// answer from ISP 1 again. -1: none.
	ToISP2Ms     float64 `json:"to_isp2_ms"`
	BackToISP1Ms float64 `json:"back_to_isp1_ms"`
	// Samples are every query of the run, in the order sent.
	Samples []DNSSample `json:"samples,omitempty"`
}

// DNSPhase sums up the queries sent during one phase of DNSFailover.
type DNSPhase struct {
	// Name is the phase's name (see DNSResult.Phases); FromMs and ToMs
	// bound it. A lookup belongs to the phase in which it started, also
	// when a fault hit while it was under way.
	Name   string  `json:"name"`
	FromMs float64 `json:"from_ms"`
	ToMs   float64 `json:"to_ms"`
	// Queries were sent in the phase; Failed got no answer at all (the
	// stub resolver gave up).
	Queries int `json:"queries"`
	Failed  int `json:"failed"`
	// ISP1 and ISP2 count the answers by the ISP whose server answered.
	ISP1 int `json:"isp1"`
	ISP2 int `json:"isp2"`
	// Latency of the answered queries: time from the lookup's start to
	// its answer, retries included (0 when none was answered).
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// DNSSample is one lookup of DNSFailover.
type DNSSample struct {
	// Ms is when the lookup started, relative to fault (a).
	Ms float64 `json:"ms"`
	// LatencyMs is how long the stub resolver took to get the answer, or
	// to give up.
	LatencyMs float64 `json:"latency_ms"`
	// OK: an answer came.
	OK bool `json:"ok"`
	// ISP is "isp1" or "isp2": whose DNS server answered (the lab's ISP
	// servers say so in their TXT answers); "" without an answer.
	ISP string `json:"isp"`
	// Tries is the number of queries the stub sent (1: the first server
	// answered the first query).
	Tries int `json:"tries"`
}

// Router names of DNSResult.Router.
const (
	dnsRouterKernel  = "kernel"
	dnsRouterWanflow = "wanflow"
)

// durMs returns d in milliseconds (microsecond resolution).
func durMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Phase names of DNSResult.Phases.
const (
	dnsPhaseNormal    = "normal"
	dnsPhaseDNSDead   = "dns-dead"
	dnsPhaseISPDead   = "isp-dead"
	dnsPhaseISPDown   = "isp-down"
	dnsPhaseRecovered = "recovered"
)

// DNSFailover measures how long DNS lookups of a LAN host take through a
// failover, first through plain kernel forwarding — the reference setup,
// whose hosts' resolv.conf lists ISP 1's and then ISP 2's DNS server — then
// through wanflow (the binary bin; uplinks up1 tier 1 and up2 tier 2 with
// their ISP's DNS server each, default probes, the LAN DNS forwarder on
// 10.77.0.1, which the host's resolv.conf lists alone), in the same
// two-uplink lab in the same run.
//
// The host looks up a new name (TXT, so the answer tells which ISP's
// server gave it) every o.Period with a stub resolver that follows glibc's
// rules (see stubResolver). After o.Lead, (a) ISP 1's DNS server goes
// silent while its uplink and internet work; o.DNSDead later (b) ISP 1's
// internet dies too behind the live link (its DNS server stays silent),
// so wanflow's probes take up1 down; o.ISPDead later (c) ISP 1 is
// repaired, DNS included, and observed for o.Recovery.
//
// Progress goes to w. The results are the kernel's, then wanflow's.
func DNSFailover(ctx context.Context, bin string, o DNSOptions, w io.Writer) ([]DNSResult, error) {
	o.defaults()
	l, err := lab.Up(ctx, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if err := l.StartServers(ctx); err != nil {
		return nil, err
	}

	ispServers := []netip.AddrPort{netip.AddrPortFrom(l.Uplinks[0].ISPDNS, 53), netip.AddrPortFrom(l.Uplinks[1].ISPDNS, 53)}
	fmt.Fprintf(w, "  %s: forwarding + masquerade (multipath 8/6), the host asks %v then %v itself\n", dnsRouterKernel, ispServers[0].Addr(), ispServers[1].Addr())
	undo, err := l.KernelBaseline(lab.BaselineMultipathL4, []int{8, 6})
	if err != nil {
		return nil, err
	}
	kr, err := dnsRun(ctx, l, dnsRouterKernel, ispServers, nil, o, w)
	if uerr := undo(); uerr != nil && err == nil {
		err = uerr
	}
	if err != nil {
		return nil, err
	}

	fmt.Fprintf(w, "  %s: starting the daemon (up1 tier 1, up2 tier 2, DNS forwarder on 10.77.0.1)\n", dnsRouterWanflow)
	dir, err := os.MkdirTemp("", "wanflow-dnsbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "wanflow.sock")
	r, err := labrouter.Start(l, bin, dir, dnsBenchConfig(l, sock), nil, 15*time.Second)
	if err != nil {
		return nil, err
	}
	ctl := control.NewClient(sock)
	err = waitDNSReady(ctx, ctl, 10*time.Second)
	var wr DNSResult
	if err == nil {
		wr, err = dnsRun(ctx, l, dnsRouterWanflow, []netip.AddrPort{netip.AddrPortFrom(lab.RouterLANAddr.Addr(), 53)}, ctl, o, w)
	}
	if serr := r.Stop(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("bench: dns failover through wanflow: %w", err)
	}
	return []DNSResult{kr, wr}, nil
}

// dnsBenchConfig returns wanflow's config for the DNS scenario: up1 tier
// 1, up2 tier 2, each with its ISP's DNS server, the forwarder on the
// router's LAN address, the control socket at sock, default probes.
func dnsBenchConfig(l *lab.Lab, sock string) string {
	yaml := labrouter.ConfigYAML(l, labrouter.Options{Tiers: []int{1, 2}, Extra: "control:\n  socket: " + sock + "\n"})
	yaml = strings.Replace(yaml, "lan:\n  interface: "+l.RouterLAN+"\n",
		fmt.Sprintf("lan:\n  interface: %s\n  dns: { listen: [%s] }\n", l.RouterLAN, lab.RouterLANAddr.Addr()), 1)
	for _, u := range l.Uplinks {
		yaml = strings.Replace(yaml, "  - name: "+u.Name+"\n", fmt.Sprintf("  - name: %s\n    dns: [%s]\n", u.Name, u.ISPDNS), 1)
	}
	return yaml
}

// waitDNSReady waits until the daemon reports every uplink available and
// the forwarder has every uplink's DNS server.
func waitDNSReady(ctx context.Context, ctl *control.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no status"
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := ctl.Status(cctx)
		cancel()
		if err == nil {
			ok := len(st.Uplinks) > 0 && st.DNS != nil && len(st.DNS.Upstreams) == len(st.Uplinks)
			for _, u := range st.Uplinks {
				ok = ok && u.Available
			}
			if ok {
				return nil
			}
			last = fmt.Sprintf("uplinks %+v, dns %+v", st.Uplinks, st.DNS)
		} else {
			last = err.Error()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: wanflow's uplinks and DNS upstreams not ready after %v: %s", timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dnsRaw is one lookup as measured.
type dnsRaw struct {
	at    time.Time
	took  time.Duration
	isp   string
	tries int
	ok    bool
}

// availChange is a change of up1's availability as the daemon reported
// it.
type availChange struct {
	at    time.Time
	avail bool
}

// dnsRunner runs one router's part of DNSFailover. Its goroutines:
// routineQueries (one lookup goroutine per tick) and, for wanflow,
// routineWatch; run starts and waits for all of them.
type dnsRunner struct {
	l      *lab.Lab
	stub   stubResolver
	ctl    *control.Client // nil for the kernel
	router string
	period time.Duration

	wg      sync.WaitGroup
	mu      sync.Mutex
	samples []dnsRaw
	changes []availChange
}

// dnsRun measures one router through the faults; the lab is repaired
// before it returns, also on error.
func dnsRun(ctx context.Context, l *lab.Lab, router string, servers []netip.AddrPort, ctl *control.Client, o DNSOptions, w io.Writer) (res DNSResult, err error) {
	r := &dnsRunner{
		l:      l,
		stub:   stubResolver{ns: l.Hosts[0], servers: servers, timeout: o.StubTimeout, attempts: o.StubAttempts},
		ctl:    ctl,
		router: router,
		period: o.Period,
	}
	res = DNSResult{Router: router, Resolver: r.stub.String(), DownAtMs: -1, UpAtMs: -1}
	defer func() {
		// Repair whatever is still broken (on error: ctx ended mid-run).
		err = errors.Join(err, l.SetISPInternet(0, true), l.SetISPDNS(0, true))
	}()
	qctx, stopQueries := context.WithCancel(ctx)
	defer stopQueries()
	r.wg.Add(1)
	go r.routineQueries(qctx)
	if ctl != nil {
		r.wg.Add(1)
		go r.routineWatch(qctx)
	}
	fail := func(err error) (DNSResult, error) {
		stopQueries()
		r.wg.Wait()
		return res, err
	}

	sleepCtx := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	fmt.Fprintf(w, "  %s: a lookup every %v; normal for %v\n", router, o.Period, o.Lead)
	if err := sleepCtx(o.Lead); err != nil {
		return fail(err)
	}
	fmt.Fprintf(w, "  %s: (a) ISP 1's DNS server silent for %v\n", router, o.DNSDead)
	t0 := time.Now()
	if err := l.SetISPDNS(0, false); err != nil {
		return fail(err)
	}
	if err := sleepCtx(o.DNSDead); err != nil {
		return fail(err)
	}
	fmt.Fprintf(w, "  %s: (b) ISP 1's internet dead behind the live link for %v\n", router, o.ISPDead)
	tB := time.Now()
	if err := l.SetISPInternet(0, false); err != nil {
		return fail(err)
	}
	if err := sleepCtx(o.ISPDead); err != nil {
		return fail(err)
	}
	fmt.Fprintf(w, "  %s: (c) ISP 1 repaired; observed for %v\n", router, o.Recovery)
	tC := time.Now()
	if err := errors.Join(l.SetISPInternet(0, true), l.SetISPDNS(0, true)); err != nil {
		return fail(err)
	}
	if err := sleepCtx(o.Recovery); err != nil {
		return fail(err)
	}
	end := time.Now()
	stopQueries()
	r.wg.Wait() // the lookups still running end by their own timeouts

	rel := func(t time.Time) float64 { return durMs(t.Sub(t0)) }
	res.ISPDeadAtMs, res.RepairAtMs = rel(tB), rel(tC)
	downAt, upAt := r.availability(tB, tC)
	if !downAt.IsZero() {
		res.DownAtMs = rel(downAt)
	}
	if !upAt.IsZero() {
		res.UpAtMs = rel(upAt)
	}
	slices.SortFunc(r.samples, func(a, b dnsRaw) int { return a.at.Compare(b.at) })
	res.ToISP2Ms, res.BackToISP1Ms = -1, -1
	for _, s := range r.samples {
		res.Samples = append(res.Samples, DNSSample{Ms: rel(s.at), LatencyMs: durMs(s.took), OK: s.ok, ISP: s.isp, Tries: s.tries})
		arrive := s.at.Add(s.took)
		if s.isp == "isp2" && !s.at.Before(t0) && (res.ToISP2Ms < 0 || durMs(arrive.Sub(t0)) < res.ToISP2Ms) {
			res.ToISP2Ms = durMs(arrive.Sub(t0))
		}
		if s.isp == "isp1" && !s.at.Before(tC) && (res.BackToISP1Ms < 0 || durMs(arrive.Sub(tC)) < res.BackToISP1Ms) {
			res.BackToISP1Ms = durMs(arrive.Sub(tC))
		}
	}
	type bound struct {
		name string
		to   float64 // the phase ends here (ms after fault (a))
	}
	bounds := []bound{{dnsPhaseNormal, 0}, {dnsPhaseDNSDead, res.ISPDeadAtMs}}
	if res.DownAtMs >= 0 && res.DownAtMs < res.RepairAtMs {
		bounds = append(bounds, bound{dnsPhaseISPDead, res.DownAtMs}, bound{dnsPhaseISPDown, res.RepairAtMs})
	} else {
		bounds = append(bounds, bound{dnsPhaseISPDead, res.RepairAtMs})
	}
	bounds = append(bounds, bound{dnsPhaseRecovered, rel(end)})
	from := -durMs(o.Lead)
	for _, b := range bounds {
		res.Phases = append(res.Phases, dnsPhase(b.name, from, b.to, res.Samples))
		from = b.to
	}
	for _, p := range res.Phases {
		fmt.Fprintf(w, "  %s: %-9s %4d queries, %3d failed, isp1 %4d, isp2 %4d; ms: mean %7.1f p50 %7.1f p99 %7.1f max %7.1f\n",
			router, p.Name, p.Queries, p.Failed, p.ISP1, p.ISP2, p.MeanMs, p.P50Ms, p.P99Ms, p.MaxMs)
	}
	fmt.Fprintf(w, "  %s: first answer from ISP 2 %.0f ms after (a); first from ISP 1 %.0f ms after the repair; up1 down at %.0f ms, up at %.0f ms\n",
		router, res.ToISP2Ms, res.BackToISP1Ms, res.DownAtMs, res.UpAtMs)
	return res, nil
}

// dnsPhase sums up the samples sent in [from, to).
func dnsPhase(name string, from, to float64, samples []DNSSample) DNSPhase {
	p := DNSPhase{Name: name, FromMs: from, ToMs: to}
	var lat []float64
	for _, s := range samples {
		if s.Ms < from || s.Ms >= to {
			continue
		}
		p.Queries++
		switch {
		case !s.OK:
			p.Failed++
			continue
		case s.ISP == "isp1":
			p.ISP1++
		case s.ISP == "isp2":
			p.ISP2++
		}
		lat = append(lat, s.LatencyMs)
	}
	if len(lat) == 0 {
		return p
	}
	slices.Sort(lat)
	sum := 0.0
	for _, v := range lat {
		sum += v
	}
	rank := func(q float64) float64 { // nearest rank
		return lat[max(0, int(math.Ceil(q*float64(len(lat))))-1)]
	}
	p.MeanMs, p.P50Ms, p.P99Ms, p.MaxMs = sum/float64(len(lat)), rank(0.50), rank(0.99), lat[len(lat)-1]
	return p
}

// routineQueries starts a lookup of a new name every period until ctx
// ends; each lookup runs on its own goroutine so that one waiting for a
// timeout does not delay the next.
func (r *dnsRunner) routineQueries(ctx context.Context) {
	defer r.wg.Done()
	tick := time.NewTicker(r.period)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			name := fmt.Sprintf("q%d.%s.dnsbench.example.", seq, r.router)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				start := time.Now()
				txt, tries, err := r.stub.lookupTXT(name)
				s := dnsRaw{at: start, took: time.Since(start), tries: tries, ok: err == nil}
				if f := strings.Fields(txt); err == nil && len(f) > 0 {
					s.isp = f[0]
				}
				r.mu.Lock()
				r.samples = append(r.samples, s)
				r.mu.Unlock()
			}()
		}
	}
}

// routineWatch records when the daemon's up1 changes availability, until
// ctx ends.
func (r *dnsRunner) routineWatch(ctx context.Context) {
	defer r.wg.Done()
	known := true
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := r.ctl.Status(cctx)
		cancel()
		if err == nil && len(st.Uplinks) > 0 && st.Uplinks[0].Available != known {
			known = st.Uplinks[0].Available
			at := st.Uplinks[0].Since // when the daemon changed it
			if at.IsZero() {
				at = time.Now()
			}
			r.mu.Lock()
			r.changes = append(r.changes, availChange{at: at, avail: known})
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// availability returns when up1 became unavailable after tB and
// available again after tC (zero: not seen).
func (r *dnsRunner) availability(tB, tC time.Time) (down, up time.Time) {
	for _, c := range r.changes {
		switch {
		case !c.avail && down.IsZero() && !c.at.Before(tB):
			down = c.at
		case c.avail && up.IsZero() && !c.at.Before(tC):
			up = c.at
		}
	}
	return down, up
}

// stubResolver is a LAN host's stub resolver that follows the rules of
// glibc's (resolv/res_send.c) for a resolv.conf with the nameservers
// servers and "options timeout:T attempts:A", without rotate: for each of
// A attempts it asks the servers in order, each over a new connected UDP
// socket, and waits for server i (0-based) T<<i/len(servers) for i > 0 —
// glibc's per-server wait, in whole seconds, at least 1 — and T for i = 0.
// An answer with another ID or question is ignored; SERVFAIL, NOTIMP and
// REFUSED, and an ICMP error (ECONNREFUSED), move on to the next server at
// once; any other answer ends the lookup. With two servers and the
// defaults, a silent first server costs every lookup 5 s before the second
// one is asked; nothing is remembered from one lookup to the next.
type stubResolver struct {
	ns       *lab.NS
	servers  []netip.AddrPort
	timeout  time.Duration
	attempts int
}

// String describes the resolver as its resolv.conf would.
func (r stubResolver) String() string {
	var b strings.Builder
	for _, s := range r.servers {
		fmt.Fprintf(&b, "nameserver %s; ", s.Addr())
	}
	fmt.Fprintf(&b, "options timeout:%d attempts:%d", int(r.timeout/time.Second), r.attempts)
	return b.String()
}

// wait returns how long the stub waits for server i.
func (r stubResolver) wait(i int) time.Duration {
	secs := int(r.timeout/time.Second) << i
	if i > 0 {
		secs /= len(r.servers)
	}
	return time.Duration(max(secs, 1)) * time.Second
}

// lookupTXT resolves name's TXT record and returns its first string and
// the number of queries sent.
func (r stubResolver) lookupTXT(name string) (txt string, tries int, err error) {
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeTXT)
	wire, err := q.Pack()
	if err != nil {
		return "", 0, err
	}
	err = errors.New("no servers")
	for range r.attempts {
		for i, srv := range r.servers {
			tries++
			var m *dns.Msg
			m, err = r.exchange(srv, wire, q, r.wait(i))
			if err != nil {
				continue
			}
			switch m.Rcode {
			case dns.RcodeServerFailure, dns.RcodeNotImplemented, dns.RcodeRefused:
				err = fmt.Errorf("%v answered %s", srv, dns.RcodeToString[m.Rcode])
				continue
			}
			for _, rr := range m.Answer {
				if t, ok := rr.(*dns.TXT); ok && len(t.Txt) > 0 {
					return t.Txt[0], tries, nil
				}
			}
			return "", tries, nil
		}
	}
	return "", tries, err
}

// exchange sends the query wire (q packed) to srv from a new socket in the
// resolver's namespace and waits up to wait for its answer.
func (r stubResolver) exchange(srv netip.AddrPort, wire []byte, q *dns.Msg, wait time.Duration) (*dns.Msg, error) {
	deadline := time.Now().Add(wait)
	var c net.Conn
	if err := r.ns.Do(func() error {
		var err error
		c, err = net.Dial("udp4", srv.String())
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := c.Write(wire); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%v: %w", srv, err)
		}
		if err != nil {
			return nil, fmt.Errorf("%v: no answer within %v: %w", srv, wait, err)
		}
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil || !m.Response || m.Id != q.Id || len(m.Question) != 1 ||
			!strings.EqualFold(m.Question[0].Name, q.Question[0].Name) || m.Question[0].Qtype != q.Question[0].Qtype {
			continue // not our answer (glibc's res_queriesmatch)
		}
		return m, nil
	}
}

// DNSTimeline returns a chart of DNSFailover's results for plot.Timeline:
// one row per router with every lookup at the time it was sent, its height
// the answer's latency, its colour the ISP that answered; the faults as
// events, and wanflow's up1 down/up as events of its row.
func DNSTimeline(rs []DNSResult) plot.TimelineChart {
	c := plot.TimelineChart{
		Title:      "DNS lookups of a LAN host through failover",
		XLabel:     "ms since ISP 1's DNS server went silent",
		ValueLabel: "answer latency, ms",
	}
	for i, r := range rs {
		name := r.Router
		switch r.Router {
		case dnsRouterKernel:
			name = "kernel: host asks ISPs"
		case dnsRouterWanflow:
			name = "wanflow forwarder"
		}
		ser := plot.Series{Name: name}
		for _, s := range r.Samples {
			ser.Samples = append(ser.Samples, plot.Sample{Ms: s.Ms, OK: s.OK, Uplink: s.ISP, Value: s.LatencyMs})
		}
		c.Series = append(c.Series, ser)
		if i == 0 {
			c.Events = append(c.Events,
				plot.Event{Ms: 0, Label: "(a) ISP 1 DNS silent"},
				plot.Event{Ms: r.ISPDeadAtMs, Label: "(b) ISP 1 dead"},
				plot.Event{Ms: r.RepairAtMs, Label: "(c) repaired"})
		}
		if r.DownAtMs >= 0 {
			c.Events = append(c.Events, plot.Event{Ms: r.DownAtMs, Label: "up1 down", Series: name})
		}
		if r.UpAtMs >= 0 {
			c.Events = append(c.Events, plot.Event{Ms: r.UpAtMs, Label: "up1 up", Series: name})
		}
	}
	return c
}
