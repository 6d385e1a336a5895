package events

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of Event. Kind is an open set; these are the ones wanflow emits.
const (
	// KindState is a change of an uplink's availability for new flows
	// (From → To: "up" or "down"), with its Cause.
	KindState = "state"
	// KindHealth is a change of an uplink's probe verdict (From → To:
	// "up", "degraded" or "down"), with the Cause that decided it and, as
	// Duration, how long the run of probe rounds that decided it lasted.
	KindHealth = "health"
	// KindHook is one run of an uplink hook (package uplinks/hooks): Hook
	// names it, Duration is its run time, Exit and Err its outcome.
	KindHook = "hook"
	// KindFailover is a change of the uplink that new flows prefer.
	KindFailover = "failover"
	// KindConfig is a configuration load or reload.
	KindConfig = "config"
)

// DefaultCapacity is the capacity NewRing uses when asked for less than one
// event.
const DefaultCapacity = 1024

// DefaultSubscribeBuffer is the channel buffer Subscribe uses when asked for
// less than one slot.
const DefaultSubscribeBuffer = 64

// Event is one thing that happened to an uplink (or to the router as a
// whole, with Uplink empty). Fields that do not apply to a Kind are left at
// their zero value and omitted from logs and JSON.
type Event struct {
	// Seq is the ring's sequence number, assigned by Ring.Add.
	Seq uint64 `json:"seq"`
	// Time is when the event happened; Ring.Add sets it to the current time
	// when it is zero.
	Time time.Time `json:"time"`
	// Kind says what happened: KindState, KindHealth, KindHook,
	// KindFailover, KindConfig.
	Kind string `json:"kind"`
	// Uplink is the name of the uplink concerned, if any.
	Uplink string `json:"uplink,omitempty"`
	// Interface is the uplink's device when the event happened (ppp0).
	Interface string `json:"interface,omitempty"`
	// From and To are the old and new state (KindState: "up", "down";
	// KindHealth: "up", "degraded", "down"; KindFailover: uplink names).
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Cause says why, in a few words ("carrier lost", "3 probes lost").
	Cause string `json:"cause,omitempty"`
	// Duration is how long the deciding probe rounds lasted (KindHealth),
	// the run time of a hook (KindHook) or of a failover sweep
	// (KindFailover).
	Duration time.Duration `json:"duration,omitempty"`
	// Hook is the hook that ran ("on_down", "on_up", "while_down"); valid
	// iff Kind is KindHook.
	Hook string `json:"hook,omitempty"`
	// PID is the process id of the hook run, 0 if it did not start; valid
	// iff Kind is KindHook.
	PID int `json:"pid,omitempty"`
	// Exit is the hook's exit status, -1 when it was killed by a signal or
	// did not start; valid iff Kind is KindHook.
	Exit int `json:"exit"`
	// Err describes a failure ("exit status 1", "timeout after 1m0s"); empty
	// on success.
	Err string `json:"err,omitempty"`
	// Detail is free text, e.g. the last line a hook printed.
	Detail string `json:"detail,omitempty"`
}

// Ring is a bounded, concurrency-safe log of the most recent Events with
// live subscriptions. The zero value is not usable; use NewRing.
type Ring struct {
	mu      sync.Mutex
	buf     []Event // circular, len(buf) == capacity
	head    int     // index of the oldest event
	n       int     // number of events held
	seq     uint64  // last assigned Seq
	subs    map[*subscriber]struct{}
	dropped atomic.Uint64
}

type subscriber struct {
	ch chan Event
}

// NewRing returns an empty ring holding the last n events (DefaultCapacity
// if n < 1).
func NewRing(n int) *Ring {
	if n < 1 {
		n = DefaultCapacity
	}
	return &Ring{buf: make([]Event, n), subs: make(map[*subscriber]struct{})}
}

// Cap returns the number of events r holds at most.
func (r *Ring) Cap() int { return len(r.buf) }

// Add stores e, discarding the oldest event when r is full, sends it to every
// subscriber that has room, and returns it as stored. It assigns e.Seq when
// e.Seq is zero or not greater than the last sequence number (sequence
// numbers always increase), and e.Time when it is zero. Add never blocks on
// a subscriber.
func (r *Ring) Add(e Event) Event {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Seq <= r.seq {
		e.Seq = r.seq + 1
	}
	r.seq = e.Seq
	if r.n < len(r.buf) {
		r.buf[(r.head+r.n)%len(r.buf)] = e
		r.n++
	} else {
		r.buf[r.head] = e
		r.head = (r.head + 1) % len(r.buf)
	}
	for s := range r.subs {
		select {
		case s.ch <- e:
		default:
			r.dropped.Add(1)
		}
	}
	return e
}

// Since returns, oldest first, the events still in r whose Seq is greater
// than seq; Since(0) returns all of them. The result is a fresh slice the
// caller owns.
func (r *Ring) Since(seq uint64) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for i := 0; i < r.n; i++ {
		e := r.buf[(r.head+i)%len(r.buf)]
		if e.Seq > seq {
			if out == nil {
				out = make([]Event, 0, r.n-i)
			}
			out = append(out, e)
		}
	}
	return out
}

// Last returns the sequence number of the most recent event, 0 if none was
// ever added.
func (r *Ring) Last() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Subscribe returns a channel that receives every event added from now on,
// until ctx is done; then the channel is closed. The channel buffers buf
// events (DefaultSubscribeBuffer if buf < 1); when a subscriber falls that
// far behind, further events are dropped for it and counted in Dropped,
// rather than slowing Add down.
//
// To follow the log without a gap (`wanflow events -f`), subscribe first,
// then print Since(0), then print the events received from the channel
// whose Seq is greater than the last one printed.
func (r *Ring) Subscribe(ctx context.Context, buf int) <-chan Event {
	if buf < 1 {
		buf = DefaultSubscribeBuffer
	}
	s := &subscriber{ch: make(chan Event, buf)}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		delete(r.subs, s)
		close(s.ch) // under mu: Add never sends on a closed channel
		r.mu.Unlock()
	})
	return s.ch
}

// Dropped returns how many events were not delivered to a subscriber because
// its buffer was full, summed over all subscribers since r was created.
func (r *Ring) Dropped() uint64 { return r.dropped.Load() }

// Attrs returns e as slog attributes, leaving out the fields that are zero
// (Exit is kept for hook events, where 0 means success).
func (e Event) Attrs() []slog.Attr {
	a := make([]slog.Attr, 0, 12)
	a = append(a, slog.Uint64("seq", e.Seq), slog.String("kind", e.Kind))
	str := func(k, v string) {
		if v != "" {
			a = append(a, slog.String(k, v))
		}
	}
	str("uplink", e.Uplink)
	str("interface", e.Interface)
	str("from", e.From)
	str("to", e.To)
	str("cause", e.Cause)
	str("hook", e.Hook)
	if e.PID != 0 {
		a = append(a, slog.Int("pid", e.PID))
	}
	if e.Kind == KindHook {
		a = append(a, slog.Int("exit", e.Exit))
	}
	if e.Duration != 0 {
		a = append(a, slog.Duration("duration", e.Duration))
	}
	str("err", e.Err)
	str("detail", e.Detail)
	if !e.Time.IsZero() {
		a = append(a, slog.Time("event_time", e.Time))
	}
	return a
}

// Log writes e to l as one structured line with message "uplink event"
// (journald keeps each attribute as a field with the slog journal handlers,
// and a plain text handler keeps it greppable): at level Warn when e.Err is
// set or the uplink went down, at Info otherwise. A nil l logs nothing.
func Log(ctx context.Context, l *slog.Logger, e Event) {
	if l == nil {
		return
	}
	level := slog.LevelInfo
	if e.Err != "" || (e.Kind == KindState && e.To == "down") {
		level = slog.LevelWarn
	}
	l.LogAttrs(ctx, level, "uplink event", e.Attrs()...)
}
