package hooks

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/wanflow/wanflow/uplinks/events"
)

// Defaults and limits.
const (
	// DefaultRetry is the pause between WhileDown runs when Spec.Retry is 0.
	DefaultRetry = 30 * time.Second
	// DefaultTimeout is the per-run limit when Spec.Timeout is 0.
	DefaultTimeout = 60 * time.Second
	// KillGrace is how long a timed-out hook's process group has between
	// SIGTERM and SIGKILL.
	KillGrace = 5 * time.Second
	// OutputLimit is how many bytes of a run's output (stdout and stderr
	// together) are logged as they arrive; the rest is skipped except for
	// the last TailLimit bytes, logged when the run ends.
	OutputLimit = 64 << 10
	// TailLimit bounds the output kept from beyond OutputLimit.
	TailLimit = 16 << 10
	// Path is the PATH hooks run with, and where a command name without a
	// slash is looked up.
	Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Hook names, as in the configuration, in logs, in WANFLOW_HOOK and in
// events.Event.Hook.
const (
	OnDown    = "on_down"
	OnUp      = "on_up"
	WhileDown = "while_down"
)

// maxPending bounds the queue of Down/Up transitions waiting for a running
// hook: two flaps. Beyond it the oldest down/up pair is dropped (its net
// effect is nil).
const maxPending = 4

// Spec is the hook configuration of one uplink.
type Spec struct {
	// OnDown runs once when the uplink goes down, OnUp once when it comes
	// up, and WhileDown right after OnDown and then again every Retry while
	// the uplink stays down (the 3G redial). Empty means none.
	OnDown, OnUp, WhileDown string
	// Retry is the pause between the end of one WhileDown run and the start
	// of the next (DefaultRetry if 0), so a slow redial never runs back to
	// back.
	Retry time.Duration
	// Timeout limits each run (DefaultTimeout if 0). On expiry the run's
	// process group gets SIGTERM, then SIGKILL after KillGrace.
	Timeout time.Duration
	// Shell runs each line with /bin/sh -c. Otherwise a line is split into
	// argv by Split (quotes, no expansion) and executed directly.
	Shell bool
}

type command struct {
	name string   // OnDown, OnUp, WhileDown
	argv []string // argv[0] is absolute or a name looked up in Path
}

type transition struct {
	down  bool
	cause string
}

// Runner runs the hooks of one uplink, one at a time, in the order of the
// Down and Up calls. It is safe for concurrent use.
type Runner struct {
	uplink    string
	killGrace time.Duration
	log       *slog.Logger
	record    func(events.Event)

	wake chan struct{} // cap 1: the queue changed or Close was called
	quit chan struct{} // closed by Close
	done chan struct{} // closed when routineRun returns

	mu                      sync.Mutex
	onDown, onUp, whileDown *command // replaced by SetSpec
	retry, timeout          time.Duration
	iface                   string
	state                   string // the last state asked for: "", "down" or "up"
	queue                   []transition
	closed                  bool
}

// New validates spec and returns a Runner for the uplink named uplink, whose
// device is currently iface. A line that Split rejects (or, with Shell, that
// contains a NUL byte), a command name that is a relative path, and a
// negative Retry or Timeout are errors. Runs are logged to log (nil: not
// logged) with the attributes uplink, hook and pid, and each run is passed
// to record (nil: not recorded) as an events.Event of kind events.KindHook;
// record is called from the Runner's goroutine, must not block for long
// and must not call Close.
//
// The Runner starts in no state: the first Down or Up always acts. New
// starts the Runner's goroutine; Close stops it.
func New(uplink, iface string, spec Spec, log *slog.Logger, record func(events.Event)) (*Runner, error) {
	c, err := compile(uplink, spec)
	if err != nil {
		return nil, err
	}
	r := &Runner{
		uplink:    uplink,
		killGrace: KillGrace,
		record:    record,
		wake:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		iface:     iface,
	}
	r.set(c)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r.log = log.With("uplink", uplink)
	go r.routineRun()
	return r, nil
}

// compiled is a checked Spec.
type compiled struct {
	onDown, onUp, whileDown *command
	retry, timeout          time.Duration
}

func compile(uplink string, spec Spec) (compiled, error) {
	c := compiled{retry: spec.Retry, timeout: spec.Timeout}
	if spec.Retry < 0 {
		return c, fmt.Errorf("hooks: uplink %s: negative retry %v", uplink, spec.Retry)
	}
	if spec.Timeout < 0 {
		return c, fmt.Errorf("hooks: uplink %s: negative timeout %v", uplink, spec.Timeout)
	}
	if c.retry == 0 {
		c.retry = DefaultRetry
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	for _, h := range []struct {
		dst  **command
		name string
		line string
	}{{&c.onDown, OnDown, spec.OnDown}, {&c.onUp, OnUp, spec.OnUp}, {&c.whileDown, WhileDown, spec.WhileDown}} {
		cmd, err := parse(h.name, h.line, spec.Shell)
		if err != nil {
			return c, fmt.Errorf("hooks: uplink %s: %s %q: %w", uplink, h.name, h.line, err)
		}
		*h.dst = cmd
	}
	return c, nil
}

// set installs c; the caller holds r.mu or owns r exclusively.
func (r *Runner) set(c compiled) {
	r.onDown, r.onUp, r.whileDown, r.retry, r.timeout = c.onDown, c.onUp, c.whileDown, c.retry, c.timeout
}

// get returns the current commands and timings.
func (r *Runner) get() compiled {
	r.mu.Lock()
	defer r.mu.Unlock()
	return compiled{r.onDown, r.onUp, r.whileDown, r.retry, r.timeout}
}

// SetSpec replaces the hooks (a config reload) without changing the
// uplink's state: a run in progress finishes, later runs use the new
// commands and timings. A spec that New would reject is an error and
// changes nothing.
func (r *Runner) SetSpec(spec Spec) error {
	c, err := compile(r.uplink, spec)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.set(c)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// parse turns a configured line into a command; an empty line is no command.
func parse(name, line string, shell bool) (*command, error) {
	if strings.TrimSpace(line) == "" {
		return nil, nil
	}
	if shell {
		if i := strings.IndexByte(line, 0); i >= 0 {
			return nil, &SyntaxError{Offset: i, Msg: "NUL byte"}
		}
		return &command{name: name, argv: []string{"/bin/sh", "-c", line}}, nil
	}
	argv, err := Split(line)
	if err != nil {
		return nil, err
	}
	switch {
	case len(argv) == 0:
		return nil, errors.New("no command")
	case argv[0] == "":
		return nil, errors.New("empty command name")
	case strings.Contains(argv[0], "/") && !strings.HasPrefix(argv[0], "/"):
		return nil, fmt.Errorf("command %q: relative path (hooks run in /); use an absolute path or a name in %s", argv[0], Path)
	}
	return &command{name: name, argv: argv}, nil
}

// Down reports that the uplink went down for cause: OnDown runs once, then
// WhileDown right after it and again every Retry until Up. A Down while the
// uplink is already down does nothing. Down does not wait for any hook.
func (r *Runner) Down(cause string) { r.push(transition{down: true, cause: cause}) }

// Up reports that the uplink came up: the WhileDown loop stops (a WhileDown
// run in progress is not killed; it finishes or times out first) and OnUp
// runs. An Up while the uplink is already up does nothing. Up does not wait
// for any hook.
func (r *Runner) Up() { r.push(transition{}) }

func (r *Runner) push(t transition) {
	state := "up"
	if t.down {
		state = "down"
	}
	r.mu.Lock()
	if r.closed || r.state == state {
		r.mu.Unlock()
		return
	}
	r.state = state
	coalesced := false
	if len(r.queue) >= maxPending {
		// The queue alternates down and up: dropping its two oldest
		// entries skips one flap and keeps the order of the rest.
		r.queue = append(r.queue[:0], r.queue[2:]...)
		coalesced = true
	}
	r.queue = append(r.queue, t)
	r.mu.Unlock()
	if coalesced {
		r.log.Warn("hooks: uplink flapping faster than its hooks run; skipped one down/up pair")
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// SetInterface sets the device name the next runs see in
// WANFLOW_INTERFACE (ppp0 → ppp1 after a redial).
func (r *Runner) SetInterface(iface string) {
	r.mu.Lock()
	r.iface = iface
	r.mu.Unlock()
}

// Close stops the Runner: pending transitions are dropped, the WhileDown
// loop ends, and Close waits for a hook in progress to finish (at most its
// Timeout plus KillGrace). Down, Up and Close are no-ops afterwards.
func (r *Runner) Close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		r.queue = nil
		close(r.quit)
	}
	r.mu.Unlock()
	<-r.done
}

// pop returns the next transition, if any, and whether the Runner is closed.
func (r *Runner) pop() (t transition, ok, closed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return t, false, true
	}
	if len(r.queue) == 0 {
		return t, false, false
	}
	t = r.queue[0]
	r.queue = append(r.queue[:0], r.queue[1:]...)
	return t, true, false
}

// routineRun is the Runner's only long-lived goroutine: it runs every hook,
// so no two runs of one uplink ever overlap.
func (r *Runner) routineRun() {
	defer close(r.done)
	var (
		down  bool      // the last transition run was a Down
		cause string    // its cause
		last  time.Time // when WhileDown last ran; zero: run it now
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		t, ok, closed := r.pop()
		if closed {
			return
		}
		c := r.get()
		if ok {
			if t.down {
				down, cause = true, t.cause
				r.run(c.onDown, "down", cause, c.timeout)
				last = time.Time{}
			} else {
				down = false
				r.run(c.onUp, "up", "", c.timeout)
			}
			continue
		}
		if down && c.whileDown != nil {
			// The retry is read anew each time: a reload that shortens it
			// cuts the current wait short.
			if d := time.Until(last.Add(c.retry)); !last.IsZero() && d > 0 {
				timer.Reset(d)
				select {
				case <-r.wake:
				case <-r.quit:
				case <-timer.C:
				}
				timer.Stop()
				continue // re-check the queue before running
			}
			r.run(c.whileDown, "down", cause, c.timeout)
			last = time.Now()
			continue
		}
		select {
		case <-r.wake:
		case <-r.quit:
		}
	}
}

// result is the outcome of one run.
type result struct {
	pid      int
	exit     int    // -1: killed by a signal or not started
	err      string // empty on success
	lastLine string // last non-empty output line
}

// run runs c (nil: nothing) and logs and records the outcome.
func (r *Runner) run(c *command, state, cause string, timeout time.Duration) {
	if c == nil {
		return
	}
	r.mu.Lock()
	iface := r.iface
	r.mu.Unlock()
	// The values of the event go only into the environment, never into
	// argv: nothing in them is ever parsed as a command.
	env := []string{
		"PATH=" + Path,
		"WANFLOW_UPLINK=" + envValue(r.uplink),
		"WANFLOW_HOOK=" + c.name,
		"WANFLOW_STATE=" + state,
		"WANFLOW_INTERFACE=" + envValue(iface),
		"WANFLOW_CAUSE=" + envValue(cause),
	}
	log := r.log.With("hook", c.name)
	start := time.Now()
	res := r.exec(c, env, log, timeout)
	d := time.Since(start)
	attrs := []any{"pid", res.pid, "exit", res.exit, "duration", d}
	if res.err != "" {
		log.Warn("hook failed", append(attrs, "err", res.err)...)
	} else {
		log.Info("hook done", attrs...)
	}
	if r.record != nil {
		r.record(events.Event{
			Time:      start,
			Kind:      events.KindHook,
			Uplink:    r.uplink,
			Interface: iface,
			Cause:     cause,
			Duration:  d,
			Hook:      c.name,
			PID:       res.pid,
			Exit:      res.exit,
			Err:       res.err,
			Detail:    res.lastLine,
		})
	}
}

// envValue removes NUL bytes, which cannot be passed in an environment.
func envValue(s string) string {
	return strings.ReplaceAll(s, "\x00", "")
}
