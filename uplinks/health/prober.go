package health

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// system is what a Prober needs from the operating system; Run opens one
// and closes it before returning.
type system interface {
	// open returns a session whose probes leave through b. The session is
	// usable even with an error, which says what does not work (an ICMP
	// socket that could not be opened: ICMP probes fail with it).
	open(b Binding) (session, error)
	// localAddrs returns the router's own IPv4 addresses.
	localAddrs() (map[netip.Addr]bool, error)
	close()
}

// session sends probes through one Binding.
type session interface {
	// probe sends one probe to t and waits for its answer until ctx ends;
	// it returns soon after. The result's Target is set by the caller.
	probe(ctx context.Context, t Target) TargetResult
	// close releases the session's sockets; probes still running fail.
	close()
}

// roundGrace is how long after its probes' timeout a round waits for a
// probe that overran before counting it as timed out.
const roundGrace = 100 * time.Millisecond

// Prober probes one uplink and keeps its health State.
type Prober struct {
	name   string
	cfg    Config
	log    *slog.Logger
	echoID uint16
	token  [8]byte

	// Fixed after NewProber; tests replace them.
	newSystem func(*Prober) (system, error)
	tlsRoots  *x509.CertPool // nil: the system roots

	running atomic.Bool

	mu    sync.Mutex // guards what follows
	m     *Machine
	epoch uint64 // incremented by Reset: older rounds are discarded
	stats Stats  // State, Loss are filled in by Stats
	hist  []Result
	histN int // next slot of hist
}

// NewProber returns a Prober for the uplink called name (used in logs and
// Transitions), in cfg.Initial. It checks cfg and fills in its defaults.
// log may be nil.
func NewProber(name string, cfg Config, log *slog.Logger) (*Prober, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("%w (uplink %s)", err, name)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Prober{
		name:      name,
		cfg:       cfg,
		log:       log.With("uplink", name),
		echoID:    cfg.EchoID,
		newSystem: newOSSystem,
		m:         NewMachine(cfg),
	}
	if p.echoID == 0 {
		p.echoID = echoIDFor(name)
	}
	rand.Read(p.token[:])
	p.stats.StateSince = time.Now()
	p.stats.Targets = make([]TargetResult, len(cfg.Targets))
	for i, t := range cfg.Targets {
		p.stats.Targets[i] = TargetResult{Target: t, Err: "not probed yet"}
	}
	return p, nil
}

// Config returns the Prober's configuration with its defaults filled in.
func (p *Prober) Config() Config { return p.cfg }

// EchoID returns the identifier of the Prober's ICMP echo requests.
func (p *Prober) EchoID() uint16 { return p.echoID }

// State returns the current state. Safe for concurrent use.
func (p *Prober) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m.State()
}

// Reset forces state s and restarts counting from it: the consecutive
// counts and the loss window are cleared, and the rounds in flight are
// discarded when they end. The daemon calls Reset(StateDown) when the
// kernel reports a carrier loss, so that the uplink, once its carrier is
// back, is up again only after UpAfter good rounds. Reset reports no
// Transition: the caller records why it forced the state. A Transition
// that Run was delivering while Reset ran may still arrive afterwards;
// State tells the current state. Safe for concurrent use.
func (p *Prober) Reset(s State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m.Reset(s)
	p.epoch++
	p.stats.StateSince = time.Now()
}

// Stats returns a snapshot of the Prober's figures. Safe for concurrent
// use.
func (p *Prober) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.State = p.m.State()
	s.Loss = p.m.Loss()
	s.Targets = slices.Clone(p.stats.Targets)
	s.History = make([]Result, 0, len(p.hist))
	if len(p.hist) == HistoryLen {
		s.History = append(s.History, p.hist[p.histN:]...)
		s.History = append(s.History, p.hist[:p.histN]...)
	} else {
		s.History = append(s.History, p.hist...)
	}
	return s
}

// record adds an observed round to the figures (p.mu held).
func (p *Prober) record(r Result, tr Transition, changed bool) {
	st := &p.stats
	if r.OK >= min(p.cfg.MinOK, r.Total) && r.Total > 0 {
		st.RoundsOK++
		st.LastRTT = r.RTT
	} else {
		st.RoundsFailed++
	}
	copy(st.Targets, r.PerTarget)
	if len(p.hist) < HistoryLen {
		p.hist = append(p.hist, r)
	} else {
		p.hist[p.histN] = r
		p.histN = (p.histN + 1) % HistoryLen
	}
	if changed {
		st.Transitions++
		st.StateSince = tr.At
	}
}

func (p *Prober) skipped() {
	p.mu.Lock()
	p.stats.RoundsSkipped++
	p.mu.Unlock()
}

// Run probes the uplink until ctx ends, then returns nil once every probe
// and reader goroutine has finished. It starts a round at once and then
// every Interval. Before each round it calls bind: when bind reports false
// (the link is down or has no address) the round is skipped and not
// counted; when the Binding changed, the probe sockets are reopened and
// rounds still in flight are discarded. Every target is probed once per
// round, concurrently; a round succeeds when at least MinOK targets
// answered within Timeout. Rounds are observed in the order they started,
// and out (which may be nil) is called with every state change, from Run's
// goroutine. Run returns an error at once if the Prober is already running
// or the system cannot probe at all (not Linux, no netlink).
func (p *Prober) Run(ctx context.Context, bind func() (Binding, bool), out func(Transition)) error {
	if !p.running.CompareAndSwap(false, true) {
		return fmt.Errorf("health: uplink %s: Run called while running", p.name)
	}
	defer p.running.Store(false)
	sys, err := p.newSystem(p)
	if err != nil {
		return fmt.Errorf("health: uplink %s: %w", p.name, err)
	}
	r := &runner{
		p:        p,
		sys:      sys,
		bind:     bind,
		out:      out,
		inflight: make([]atomic.Int32, len(p.cfg.Targets)),
		refused:  make([]bool, len(p.cfg.Targets)),
	}
	return r.run(ctx)
}

// runner is the state of one Run, owned by Run's goroutine except where
// noted.
type runner struct {
	p    *Prober
	sys  system
	bind func() (Binding, bool)
	out  func(Transition)

	wg       sync.WaitGroup // probe goroutines
	inflight []atomic.Int32 // per target: probes outstanding (updated by probe goroutines)
	refused  []bool         // per target: refusal logged

	cur     Binding
	haveCur bool
	sess    session
	queue   []*round // rounds in flight, oldest first

	localsErrLogged, skipLogged bool
}

// round is one round of probes.
type round struct {
	epoch    uint64
	bind     Binding
	start    time.Time
	deadline time.Time // when the round is counted even with probes outstanding
	done     chan struct{}

	mu      sync.Mutex // guards what follows
	results []TargetResult
	have    []bool
	left    int
	sealed  bool
}

// set stores target i's result; the last one closes done. Results arriving
// after seal are dropped.
func (rd *round) set(i int, res TargetResult) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.sealed || rd.have[i] {
		return
	}
	rd.results[i], rd.have[i] = res, true
	if rd.left--; rd.left == 0 {
		close(rd.done)
	}
}

// seal ends the round: a probe still outstanding counts as timed out.
func (rd *round) seal(targets []Target) []TargetResult {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	rd.sealed = true
	for i, ok := range rd.have {
		if !ok {
			rd.results[i] = TargetResult{Target: targets[i], Err: "timeout"}
		}
	}
	return rd.results
}

func (r *runner) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		r.wg.Wait()
		if r.sess != nil {
			r.sess.close()
		}
		r.sys.close()
	}()
	tick := time.NewTicker(r.p.cfg.Interval)
	defer tick.Stop()
	r.start(ctx)
	for {
		var done <-chan struct{}
		var expire <-chan time.Time
		if len(r.queue) > 0 {
			done = r.queue[0].done
			expire = time.After(time.Until(r.queue[0].deadline))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			r.start(ctx)
		case <-done:
			r.finish()
		case <-expire:
			r.finish()
		}
	}
}

// start starts a round, unless there is no binding or MaxRounds are in
// flight.
func (r *runner) start(ctx context.Context) {
	p := r.p
	b, ok := r.bind()
	if ok && !b.valid() {
		if !r.skipLogged {
			p.log.Warn("health: unusable binding, probes skipped", "binding", fmt.Sprintf("%+v", b))
			r.skipLogged = true
		}
		ok = false
	}
	if !ok {
		if r.sess != nil {
			r.sess.close()
			r.sess = nil
		}
		r.haveCur = false
		p.skipped()
		return
	}
	r.skipLogged = false
	if !r.haveCur || b != r.cur {
		if r.sess != nil {
			r.sess.close()
		}
		sess, err := r.sys.open(b)
		if err != nil {
			p.log.Warn("health: probe socket", "interface", b.Interface, "addr", b.Addr, "err", err)
		}
		r.sess, r.cur, r.haveCur = sess, b, true
	}
	if len(r.queue) >= MaxRounds {
		p.skipped()
		return
	}
	locals, err := r.sys.localAddrs()
	if err != nil && !r.localsErrLogged {
		p.log.Warn("health: reading the router's addresses", "err", err)
	}
	r.localsErrLogged = err != nil

	p.mu.Lock()
	epoch := p.epoch
	p.mu.Unlock()
	n := len(p.cfg.Targets)
	now := time.Now()
	rd := &round{
		epoch:    epoch,
		bind:     b,
		start:    now,
		deadline: now.Add(p.cfg.Timeout + roundGrace),
		done:     make(chan struct{}),
		results:  make([]TargetResult, n),
		have:     make([]bool, n),
		left:     n,
	}
	r.queue = append(r.queue, rd)
	for i, t := range p.cfg.Targets {
		if why := refusal(t, b, locals); why != "" {
			if !r.refused[i] {
				p.log.Warn("health: probe target refused", "target", t.String(), "reason", why)
				r.refused[i] = true
			}
			rd.set(i, TargetResult{Target: t, Err: "refused: " + why})
			continue
		}
		r.refused[i] = false
		if r.inflight[i].Load() >= MaxRounds {
			rd.set(i, TargetResult{Target: t, Err: fmt.Sprintf("busy: %d probes outstanding", MaxRounds)})
			continue
		}
		r.inflight[i].Add(1)
		r.wg.Add(1)
		go r.routineProbe(ctx, r.sess, rd, i, t)
	}
}

// refusal says why target t must not be probed from b, or "" if it may:
// the router's own addresses would be answered by the router itself.
func refusal(t Target, b Binding, locals map[netip.Addr]bool) string {
	a := t.Addr.Addr()
	if a == b.Addr || a.IsLoopback() || locals[a] {
		return fmt.Sprintf("%v is one of the router's own addresses", a)
	}
	return ""
}

// routineProbe runs one probe of round rd.
func (r *runner) routineProbe(ctx context.Context, s session, rd *round, i int, t Target) {
	defer r.wg.Done()
	defer r.inflight[i].Add(-1)
	pctx, cancel := context.WithDeadline(ctx, rd.start.Add(r.p.cfg.Timeout))
	defer cancel()
	res := s.probe(pctx, t)
	res.Target = t
	if res.OK {
		res.Err = ""
	} else if res.Err == "" {
		res.Err = "failed"
	}
	rd.set(i, res)
}

// finish observes the oldest round in flight.
func (r *runner) finish() {
	p := r.p
	rd := r.queue[0]
	r.queue[0] = nil
	r.queue = r.queue[1:]
	results := rd.seal(p.cfg.Targets)
	res := Result{Time: rd.start, Done: time.Now(), Total: len(results), PerTarget: results}
	var rtts []time.Duration
	for _, t := range results {
		if t.OK {
			rtts = append(rtts, t.RTT)
		}
	}
	res.OK = len(rtts)
	res.RTT = median(rtts)

	p.mu.Lock()
	if rd.epoch != p.epoch || !r.haveCur || rd.bind != r.cur {
		p.stats.RoundsSkipped++
		p.mu.Unlock()
		return
	}
	tr, changed := p.m.Observe(res)
	tr.Uplink = p.name
	p.record(res, tr, changed)
	p.mu.Unlock()
	if !changed {
		return
	}
	p.log.Info("health: uplink state changed", "from", tr.From.String(), "to", tr.To.String(),
		"cause", tr.Cause, "since", tr.Since.Round(time.Millisecond))
	if r.out != nil {
		r.out(tr)
	}
}

// median returns the median of ds (the mean of the two middle values for
// an even count), 0 for none. It reorders ds.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return (ds[n/2-1] + ds[n/2]) / 2
}
