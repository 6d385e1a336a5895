package supervise

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/wanflow/wanflow/uplinks"
	"github.com/wanflow/wanflow/uplinks/events"
	"github.com/wanflow/wanflow/uplinks/health"
	"github.com/wanflow/wanflow/uplinks/hooks"
)

// Degraded is what a degraded uplink does.
type Degraded uint8

const (
	// DegradedKeep keeps a degraded uplink's weight.
	DegradedKeep Degraded = iota
	// DegradedWeight halves its weight for new flows.
	DegradedWeight
	// DegradedDown treats it as down.
	DegradedDown
)

// Uplink configures the supervision of one uplink.
type Uplink struct {
	Name     string
	Probe    bool          // false: health is the kernel's view only
	Health   health.Config // when Probe
	Degraded Degraded
	Hooks    hooks.Spec
}

// View is one uplink's state as the dataplane should see it.
type View struct {
	uplinks.Status
	// Health is the probes' verdict (StateUp when not probing).
	Health health.State
	// Available: the uplink may carry new flows.
	Available bool
	// WeightFactor scales the uplink's weight for new flows (1, or ½ when
	// degraded with DegradedWeight).
	WeightFactor float64
	// Since is when Available last changed.
	Since time.Time
}

// Change is one uplink's transition reported to the change function.
type Change struct {
	Index int
	// Lost: it stopped being available. Gained: it became available.
	// Readdressed: its address changed (flows NATed to the old one are
	// dead). Several may be set at once.
	Lost, Gained, Readdressed bool
	// Reweighted: its weight factor changed (degraded or recovered).
	Reweighted bool
	Cause      string
}

// Supervisor supervises every configured uplink.
type Supervisor struct {
	log      *slog.Logger
	ring     *events.Ring
	onChange func([]View, []Change)

	mu      sync.Mutex
	cfg     []Uplink
	views   []View
	probers []*health.Prober
	stops   []func() // per prober: stop its Run and wait (nil: not running)
	runners []*hooks.Runner
	seen    []bool          // per uplink: evaluated at least once
	ctx     context.Context // Run's, for probers started later

	notify chan struct{} // wakes routineNotify
	pend   []Change
	fmu    sync.Mutex // serialises onChange calls
	wg     sync.WaitGroup
}

// New returns a Supervisor of cfg (index i = uplink index i). onChange is
// called with every uplink's view and the changes since the last call.
func New(cfg []Uplink, log *slog.Logger, ring *events.Ring, onChange func([]View, []Change)) (*Supervisor, error) {
	s := &Supervisor{log: log, ring: ring, onChange: onChange, cfg: cfg, notify: make(chan struct{}, 1)}
	s.views = make([]View, len(cfg))
	s.stops = make([]func(), len(cfg))
	s.seen = make([]bool, len(cfg))
	for i, u := range cfg {
		s.views[i] = View{Status: uplinks.Status{Index: i, Name: u.Name}, Health: health.StateDown, WeightFactor: 1}
		var p *health.Prober
		if u.Probe {
			var err error
			if p, err = health.NewProber(u.Name, u.Health, log); err != nil {
				return nil, fmt.Errorf("supervise: uplink %s: %w", u.Name, err)
			}
			s.views[i].Health = u.Health.Initial
		} else {
			s.views[i].Health = health.StateUp
		}
		s.probers = append(s.probers, p)
		r, err := hooks.New(u.Name, "", u.Hooks, log, func(e events.Event) { ring.Add(e) })
		if err != nil {
			return nil, fmt.Errorf("supervise: uplink %s: %w", u.Name, err)
		}
		s.runners = append(s.runners, r)
	}
	return s, nil
}

// Views returns every uplink's current view.
func (s *Supervisor) Views() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]View(nil), s.views...)
}

// Prober returns uplink i's prober (nil when it is not probed), for status
// displays.
func (s *Supervisor) Prober(i int) *health.Prober {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.probers) {
		return nil
	}
	return s.probers[i]
}

// Run starts the probers and the change notifier; it returns when ctx is
// done, after every goroutine and hook has finished.
func (s *Supervisor) Run(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	for i, p := range s.probers {
		if p != nil {
			s.stops[i] = s.startProber(ctx, i, p)
		}
	}
	s.mu.Unlock()
	s.wg.Add(1)
	go s.routineNotify(ctx)
	<-ctx.Done()
	s.wg.Wait()
	for _, r := range s.runners {
		r.Close()
	}
}

// startProber runs p for uplink i until the returned stop is called or ctx
// ends.
func (s *Supervisor) startProber(ctx context.Context, i int, p *health.Prober) (stop func()) {
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		err := p.Run(pctx, func() (health.Binding, bool) { return s.binding(i) }, func(t health.Transition) { s.healthChanged(i, p, t) })
		if err != nil && pctx.Err() == nil {
			s.log.Error("prober stopped", "uplink", s.cfg[i].Name, "err", err)
		}
	}()
	return func() { cancel(); <-done }
}

// SetHealth replaces uplink i's probe configuration (its targets changed:
// DNS servers learned anew); cfg with no targets turns probing off. The
// new prober starts from the uplink's current health, so nothing flaps.
func (s *Supervisor) SetHealth(i int, cfg health.Config) error {
	if i < 0 || i >= len(s.cfg) {
		return fmt.Errorf("supervise: no uplink %d", i)
	}
	s.mu.Lock()
	var p *health.Prober
	if len(cfg.Targets) > 0 {
		cfg.Initial = s.views[i].Health
		var err error
		if p, err = health.NewProber(s.cfg[i].Name, cfg, s.log); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("supervise: uplink %s: %w", s.cfg[i].Name, err)
		}
	}
	old := s.stops[i]
	s.stops[i] = nil
	s.probers[i] = p
	s.cfg[i].Probe, s.cfg[i].Health = p != nil, cfg
	if p == nil {
		s.views[i].Health = health.StateUp
		s.reevaluate(i, "probing off", false)
	}
	ctx := s.ctx
	s.mu.Unlock()
	if old != nil {
		old() // outside the lock: its last transition may be waiting for it
	}
	if p != nil && ctx != nil {
		s.mu.Lock()
		if s.probers[i] == p && ctx.Err() == nil {
			s.stops[i] = s.startProber(ctx, i, p)
		}
		s.mu.Unlock()
	}
	return nil
}

// Reconfigure applies a reloaded configuration of uplink i (same name):
// its hooks (a running hook finishes), its degraded action (availability
// and weight are re-evaluated at once) and, when they differ, its probes
// (SetHealth: the new prober starts from the current health). On error
// nothing is changed.
func (s *Supervisor) Reconfigure(i int, u Uplink) error {
	if i < 0 || i >= len(s.cfg) {
		return fmt.Errorf("supervise: no uplink %d", i)
	}
	s.mu.Lock()
	name, runner := s.cfg[i].Name, s.runners[i]
	probe, hc := s.cfg[i].Probe, s.cfg[i].Health
	s.mu.Unlock()
	if u.Name != name {
		return fmt.Errorf("supervise: uplink %d is %s, not %s", i, name, u.Name)
	}
	if !u.Probe {
		u.Health = health.Config{}
	}
	if u.Probe {
		if _, err := health.NewProber(u.Name, u.Health, nil); err != nil {
			return fmt.Errorf("supervise: uplink %s: %w", u.Name, err)
		}
	}
	if err := runner.SetSpec(u.Hooks); err != nil {
		return err
	}
	s.mu.Lock()
	s.cfg[i].Hooks = u.Hooks
	if s.cfg[i].Degraded != u.Degraded {
		s.cfg[i].Degraded = u.Degraded
		s.reevaluate(i, "config reloaded", false)
	}
	s.mu.Unlock()
	hc.Initial = u.Health.Initial // the initial state only matters at start
	if u.Probe != probe || !reflect.DeepEqual(u.Health, hc) {
		return s.SetHealth(i, u.Health)
	}
	return nil
}

// binding is what uplink i's probes bind to, while it has a link with an
// address.
func (s *Supervisor) binding(i int) (health.Binding, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.views[i]
	if !v.Status.Available || !v.Addr.IsValid() {
		return health.Binding{}, false
	}
	return health.Binding{Ifindex: v.Ifindex, Interface: v.Interface, Addr: v.Addr}, true
}

// Kernel takes the uplink manager's statuses.
func (s *Supervisor) Kernel(st []uplinks.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range st {
		i := k.Index
		if i < 0 || i >= len(s.views) {
			continue
		}
		old := s.views[i].Status
		s.views[i].Status = k
		if k.Interface != old.Interface && s.runners[i] != nil {
			s.runners[i].SetInterface(k.Interface)
		}
		cause := ""
		switch {
		case old.Available && !k.Available:
			cause = kernelCause(k)
			// Down at once; probing starts over from down when it returns.
			if p := s.probers[i]; p != nil {
				p.Reset(health.StateDown)
				s.views[i].Health = health.StateDown
			}
		case !old.Available && k.Available:
			cause = fmt.Sprintf("link %s up with %v", k.Interface, k.Addr)
		}
		readdr := old.Available && k.Available && old.Addr != k.Addr
		if readdr {
			cause = fmt.Sprintf("address %v → %v", old.Addr, k.Addr)
		}
		s.reevaluate(i, cause, readdr)
	}
}

func kernelCause(k uplinks.Status) string {
	switch {
	case k.Ifindex <= 0:
		return fmt.Sprintf("device %s gone", k.Interface)
	case !k.Carrier:
		return fmt.Sprintf("carrier lost on %s", k.Interface)
	case !k.Addr.IsValid():
		return fmt.Sprintf("no IPv4 address on %s", k.Interface)
	}
	return fmt.Sprintf("link %s down", k.Interface)
}

func (s *Supervisor) healthChanged(i int, p *health.Prober, t health.Transition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.probers[i] != p || t.To != p.State() {
		return // from a replaced prober, or computed before a Reset since taken effect
	}
	s.views[i].Health = t.To
	s.ring.Add(events.Event{Kind: events.KindHealth, Uplink: s.cfg[i].Name, From: t.From.String(), To: t.To.String(), Cause: t.Cause, Duration: t.Since})
	s.reevaluate(i, t.Cause, false)
}

// reevaluate recomputes uplink i's availability (s.mu held) and queues the
// change for the notifier.
func (s *Supervisor) reevaluate(i int, cause string, readdressed bool) {
	v := &s.views[i]
	was, wasFactor := v.Available, v.WeightFactor
	h := v.Health
	v.WeightFactor = 1
	switch {
	case h == health.StateDegraded && s.cfg[i].Degraded == DegradedDown:
		h = health.StateDown
	case h == health.StateDegraded && s.cfg[i].Degraded == DegradedWeight:
		v.WeightFactor = 0.5
	}
	v.Available = v.Status.Available && h != health.StateDown
	c := Change{Index: i, Readdressed: readdressed, Reweighted: v.WeightFactor != wasFactor, Cause: cause}
	if was != v.Available {
		v.Since = time.Now()
		c.Lost, c.Gained = was, !was
		state := "down"
		if v.Available {
			state = "up"
		}
		s.ring.Add(events.Event{Kind: events.KindState, Uplink: s.cfg[i].Name, From: onOff(was), To: state, Cause: cause})
		if r := s.runners[i]; r != nil {
			if v.Available {
				r.Up()
			} else {
				r.Down(cause)
			}
		}
	}
	if !s.seen[i] && !v.Available {
		// Not available from the start (a PPP device not dialled yet, a
		// modem not plugged in): that is a down state too, so its hooks
		// run — on_down, then while_down every retry: the redial.
		if cause == "" {
			cause = kernelCause(v.Status)
			if v.Status.Available {
				cause = "probes down at start"
			}
		}
		if r := s.runners[i]; r != nil {
			r.Down(cause)
		}
	}
	s.seen[i] = true
	if !c.Lost && !c.Gained && !c.Readdressed && !c.Reweighted {
		return
	}
	s.pend = append(s.pend, c)
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func onOff(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// routineNotify calls onChange outside the lock, in order.
func (s *Supervisor) routineNotify(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notify:
		}
		s.Flush()
	}
}

// Flush calls the change function now with what is pending (the daemon
// calls it once at start, before Run, to publish the initial state).
func (s *Supervisor) Flush() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.mu.Lock()
	pend := s.pend
	s.pend = nil
	views := append([]View(nil), s.views...)
	s.mu.Unlock()
	s.onChange(views, pend)
}
