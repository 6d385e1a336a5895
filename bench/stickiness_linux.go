package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/labrouter"
	"github.com/wanflow/wanflow/cmd/wanflow/control"
)

// Router names in the stickiness and balance results: wanflow, and the
// reference setup's kernel configurations.
const (
	// RouterWanflow is the wanflow daemon.
	RouterWanflow = "wanflow"
	// RouterKernelL3 is one multipath default route with
	// fib_multipath_hash_policy 0 (source and destination address) and
	// masquerade: lab.BaselineMultipathL3.
	RouterKernelL3 = "kernel-multipath-l3"
	// RouterKernelL4 is the same route with fib_multipath_hash_policy 1
	// (5-tuple): lab.BaselineMultipathL4.
	RouterKernelL4 = "kernel-multipath-l4"
	// RouterKernelConnmark is the reference setup's connection-tracking
	// variant: new connections follow the multipath route (policy 1), and
	// once a connection's first reply has arrived a conntrack mark pins it
	// to that uplink's own routing table (lab.Lab.ConnmarkBaseline).
	RouterKernelConnmark = "kernel-connmark"
)

// Phases of the stickiness benchmark.
const (
	// PhaseSteady: nothing changes while the flows run.
	PhaseSteady = "steady"
	// PhaseRemoveReadd: one uplink is removed while the flows run and put
	// back before they end.
	PhaseRemoveReadd = "remove-readd"
	// PhaseReweight: the weights change while the flows run.
	PhaseReweight = "reweight"
)

// StickinessOptions tune Stickiness. Zero fields take the defaults, sized so
// that the whole benchmark takes about a minute.
type StickinessOptions struct {
	// Flows is the number of TCP flows and the number of UDP flows that run
	// at once in each phase (default 200 of each). They start in 10 groups
	// spread over one Interval, so that their messages are not in step.
	Flows int
	// Packets is the number of messages each flow sends, each waiting for
	// its echo (default 30).
	Packets int
	// Interval is the pause between two messages of a flow (default
	// 100ms), so that a flow lives about (Packets-1) × Interval.
	Interval time.Duration
	// Timeout bounds each reply and each TCP connect (default 1s); a flow
	// missing a reply counts as failed.
	Timeout time.Duration
	// Weights are the uplinks' weights, one per uplink; their number is the
	// number of uplinks, 2..8 (default 8, 6, 3: the reference setup's three
	// uplinks).
	Weights []int
	// NewWeights are the weights set during PhaseReweight (default all 1).
	NewWeights []int
	// Remove is the 0-based index of the uplink removed during
	// PhaseRemoveReadd (default 0, the first: with weights 8/6/3 the
	// heaviest).
	Remove int
	// EventAt is when, after the flows started, a phase's change happens
	// (default 1s); it must leave the flows time to run past the change.
	EventAt time.Duration
	// Outage is how long the uplink stays removed in PhaseRemoveReadd
	// (default 1s).
	Outage time.Duration
	// Routers restricts the routers measured, by name (RouterWanflow,
	// RouterKernelL3, ...); empty means all four.
	Routers []string
}

func (o *StickinessOptions) defaults() error {
	if o.Flows <= 0 {
		o.Flows = 200
	}
	if o.Packets <= 0 {
		o.Packets = 30
	}
	if o.Interval <= 0 {
		o.Interval = 100 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if len(o.Weights) == 0 {
		o.Weights = []int{8, 6, 3}
	}
	if len(o.Weights) < 2 || len(o.Weights) > 8 {
		return fmt.Errorf("bench: stickiness: %d uplinks, want 2..8", len(o.Weights))
	}
	if len(o.NewWeights) == 0 {
		o.NewWeights = make([]int, len(o.Weights))
		for i := range o.NewWeights {
			o.NewWeights[i] = 1
		}
	}
	if len(o.NewWeights) != len(o.Weights) {
		return fmt.Errorf("bench: stickiness: %d new weights for %d uplinks", len(o.NewWeights), len(o.Weights))
	}
	for _, w := range append(slices.Clone(o.Weights), o.NewWeights...) {
		// 1..256 fits both the kernel's nexthop weights and wanflow's.
		if w < 1 || w > 256 {
			return fmt.Errorf("bench: stickiness: weight %d outside 1..256", w)
		}
	}
	if o.Remove < 0 || o.Remove >= len(o.Weights) {
		return fmt.Errorf("bench: stickiness: uplink to remove %d outside 0..%d", o.Remove, len(o.Weights)-1)
	}
	if o.EventAt <= 0 {
		o.EventAt = time.Second
	}
	if o.Outage <= 0 {
		o.Outage = time.Second
	}
	if life := time.Duration(o.Packets-1) * o.Interval; o.EventAt+o.Outage >= life {
		return fmt.Errorf("bench: stickiness: the flows live %v (%d packets, %v apart), too short for a change at %v lasting %v", life, o.Packets, o.Interval, o.EventAt, o.Outage)
	}
	if len(o.Routers) == 0 {
		o.Routers = []string{RouterKernelL3, RouterKernelL4, RouterKernelConnmark, RouterWanflow}
	}
	for _, r := range o.Routers {
		switch r {
		case RouterWanflow, RouterKernelL3, RouterKernelL4, RouterKernelConnmark:
		default:
			return fmt.Errorf("bench: stickiness: unknown router %q", r)
		}
	}
	return nil
}

// StickinessGroup counts one group of flows. Moved and Failed may overlap
// (a UDP flow can move and lose a reply); Sticky is the share that did
// neither.
type StickinessGroup struct {
	// Flows is the number of flows in the group.
	Flows int `json:"flows"`
	// Sticky is the share of flows whose every message was answered and
	// seen by the server from one source address: all of the flow's packets
	// left through one uplink.
	Sticky float64 `json:"sticky"`
	// Moved is the share of flows the server saw from more than one source
	// address.
	Moved float64 `json:"moved"`
	// Failed is the share of flows that missed a reply (for TCP, whose
	// connection failed or was reset).
	Failed float64 `json:"failed"`
	// FirstError is the error of the group's first failed flow, empty when
	// none failed.
	FirstError string `json:"first_error,omitempty"`
}

// StickinessResult is one router's stickiness in one phase for one
// protocol.
type StickinessResult struct {
	// Router is RouterWanflow or one of the RouterKernel… names.
	Router string `json:"router"`
	// Phase is PhaseSteady, PhaseRemoveReadd or PhaseReweight.
	Phase string `json:"phase"`
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// Event says what was done to the router while the flows ran.
	Event string `json:"event"`
	// Weights are the uplinks' weights when the phase started.
	Weights []int `json:"weights"`
	// StickinessGroup counts the flows that were not on the removed uplink
	// in PhaseRemoveReadd (a flow is on the uplink through which the server
	// first saw it; a flow never seen counts here, as failed), and every
	// flow in the other phases.
	StickinessGroup
	// Removed counts, in PhaseRemoveReadd only, the flows that were on the
	// removed uplink: they must move or fail with any router.
	Removed *StickinessGroup `json:"removed,omitempty"`
	// Target states wanflow's target (every flow sticky, none failed);
	// empty for the kernel, which has none.
	Target string `json:"target,omitempty"`
	// TargetMet reports whether wanflow met its target; nil for the kernel.
	TargetMet *bool `json:"target_met,omitempty"`
}

// StickinessHeader is the header of the table whose rows Row returns
// (tab-separated columns, for a text/tabwriter).
const StickinessHeader = "router\tphase\tproto\tflows\tsticky\tmoved\tfailed\ton removed: flows\tsticky\tmoved\tfailed\ttarget\t"

// Row formats the result as a table row under StickinessHeader.
func (r StickinessResult) Row() string {
	rm := "\t\t\t"
	if r.Removed != nil {
		rm = fmt.Sprintf("%d\t%s\t%s\t%s", r.Removed.Flows, stickPct(r.Removed.Sticky), stickPct(r.Removed.Moved), stickPct(r.Removed.Failed))
	}
	return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t", r.Router, r.Phase, r.Proto, r.Flows, stickPct(r.Sticky), stickPct(r.Moved), stickPct(r.Failed), rm, r.targetWord())
}

func (r StickinessResult) targetWord() string {
	switch {
	case r.TargetMet == nil:
		return "-"
	case *r.TargetMet:
		return "met"
	}
	return "MISSED"
}

// String formats the result on one line.
func (r StickinessResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s: %d flows, %s sticky, %s moved, %s failed", r.Router, r.Phase, r.Proto, r.Flows, stickPct(r.Sticky), stickPct(r.Moved), stickPct(r.Failed))
	if r.Removed != nil {
		fmt.Fprintf(&b, "; on the removed uplink %d flows, %s sticky, %s moved, %s failed", r.Removed.Flows, stickPct(r.Removed.Sticky), stickPct(r.Removed.Moved), stickPct(r.Removed.Failed))
	}
	if r.TargetMet != nil {
		fmt.Fprintf(&b, "; target (%s) %s", r.Target, r.targetWord())
	}
	if r.FirstError != "" {
		fmt.Fprintf(&b, "; first error: %s", r.FirstError)
	}
	if r.Removed != nil && r.Removed.FirstError != "" {
		fmt.Fprintf(&b, "; first error on the removed uplink: %s", r.Removed.FirstError)
	}
	return b.String()
}

// stickPct formats a share as a percentage.
func stickPct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

// Stickiness measures how well each router keeps a flow on one uplink:
// wanflow (bin, affinity flow) and the kernel baselines (RouterKernelL3,
// RouterKernelL4, RouterKernelConnmark), one after the other in one lab of
// len(o.Weights) uplinks. For each router, three phases each run o.Flows TCP
// and o.Flows UDP flows at once from one LAN host to the lab's 20 servers,
// every flow o.Packets messages o.Interval apart, and count per protocol the
// flows that stayed on one uplink, moved, or failed:
//
//   - PhaseSteady: nothing happens.
//   - PhaseRemoveReadd: at o.EventAt uplink o.Remove loses its carrier (the
//     ISP end of its link goes down) and gets it back o.Outage later. The
//     kernel baselines also get the reference setup's route checker's
//     answer, at once: the uplink's nexthop is taken out of the multipath
//     route after the loss and put back after the repair
//     (SetMultipathWeights of package lab). wanflow sees the carrier
//     itself (its probes are off, so carrier and address are its only
//     health signal, as for the kernel): the uplink's TCP flows are reset,
//     its UDP flows re-pinned, and the uplink carries new flows again once
//     its carrier is back.
//   - PhaseReweight: at o.EventAt the weights become o.NewWeights: the
//     kernel's multipath route is replaced, wanflow's config is rewritten
//     and reloaded through its control API.
//
// Progress lines go to w. Stickiness needs root; it removes the lab and
// stops the daemon also on error and when ctx ends.
func Stickiness(ctx context.Context, bin string, o StickinessOptions, w io.Writer) ([]StickinessResult, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: stickiness needs root: it builds network namespaces")
	}
	uplinks := make([]lab.UplinkSpec, len(o.Weights))
	l, err := lab.Up(ctx, lab.Config{Uplinks: uplinks})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if err := l.StartServers(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "  lab: %d uplinks, weights %v; %d TCP + %d UDP flows × %d messages %v apart per phase\n",
		len(o.Weights), o.Weights, o.Flows, o.Flows, o.Packets, o.Interval)
	var out []StickinessResult
	for _, name := range o.Routers {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		rs, err := stickRouter(ctx, l, bin, name, &o, w)
		out = append(out, rs...)
		if err != nil {
			return out, fmt.Errorf("bench: stickiness: %s: %w", name, err)
		}
	}
	return out, nil
}

// stickTarget is one router under test: how to apply each phase's change.
type stickTarget struct {
	remove, readd func() error
	reweight      func(ctx context.Context, weights []int) error
	settle        func(ctx context.Context) error // after readd: until every uplink carries new flows
	removeEvent   string
	reweightEvent string
}

// stickRouter sets up router name in l, runs the three phases and undoes
// the setup.
func stickRouter(ctx context.Context, l *lab.Lab, bin, name string, o *StickinessOptions, w io.Writer) (out []StickinessResult, err error) {
	x := o.Remove
	removed := slices.Clone(o.Weights)
	removed[x] = 0
	up := l.Uplinks[x].Name
	var t stickTarget
	switch name {
	case RouterWanflow:
		fmt.Fprintf(w, "  %s: starting the daemon\n", name)
		var d *stickDaemon
		d, err = startStickDaemon(ctx, l, bin, labrouter.Options{Weights: o.Weights})
		if err != nil {
			return nil, err
		}
		defer func() { // sets the named result err
			if serr := d.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		t = stickTarget{
			remove:   func() error { return l.SetUplinkCarrier(x, false) },
			readd:    func() error { return l.SetUplinkCarrier(x, true) },
			reweight: d.setWeights,
			settle:   func(ctx context.Context) error { return d.waitAvailable(ctx, 10*time.Second) },
			removeEvent: fmt.Sprintf("%s lost carrier for %v (wanflow: TCP flows on it reset, UDP flows re-pinned; new flows again once the carrier is back; probes off)",
				up, o.Outage),
			reweightEvent: fmt.Sprintf("weights %v → %v: config rewritten, reloaded through the control API", o.Weights, o.NewWeights),
		}
	default:
		var undo func() error
		switch name {
		case RouterKernelL3:
			undo, err = l.KernelBaseline(lab.BaselineMultipathL3, o.Weights)
		case RouterKernelL4:
			undo, err = l.KernelBaseline(lab.BaselineMultipathL4, o.Weights)
		case RouterKernelConnmark:
			undo, err = l.ConnmarkBaseline(lab.BaselineMultipathL4, o.Weights)
		}
		if err != nil {
			return nil, err
		}
		defer func() {
			if uerr := undo(); uerr != nil && err == nil {
				err = uerr
			}
		}()
		t = stickTarget{
			remove: func() error {
				if err := l.SetUplinkCarrier(x, false); err != nil {
					return err
				}
				return l.SetMultipathWeights(removed)
			},
			readd: func() error {
				if err := l.SetUplinkCarrier(x, true); err != nil {
					return err
				}
				return l.SetMultipathWeights(o.Weights)
			},
			reweight: func(_ context.Context, weights []int) error { return l.SetMultipathWeights(weights) },
			settle:   func(ctx context.Context) error { return stickSleep(ctx, 200*time.Millisecond) },
			removeEvent: fmt.Sprintf("%s lost carrier for %v; its nexthop taken out of the multipath route right after the loss and put back right after the repair (the route checker's job, done at once)",
				up, o.Outage),
			reweightEvent: fmt.Sprintf("weights %v → %v: multipath route replaced", o.Weights, o.NewWeights),
		}
	}

	phases := []struct {
		phase, event string
		change       func() error
		revert       func() error
	}{
		{PhaseSteady, "none", nil, nil},
		{PhaseRemoveReadd, t.removeEvent, t.remove, t.readd},
		{PhaseReweight, t.reweightEvent, func() error { return t.reweight(ctx, o.NewWeights) }, nil},
	}
	for _, ph := range phases {
		fmt.Fprintf(w, "  %s: %s...\n", name, ph.phase)
		flows, err := stickPhase(ctx, l, o, ph.change, ph.revert)
		if err != nil {
			return out, fmt.Errorf("%s: %w", ph.phase, err)
		}
		var removedAddr netip.Addr
		if ph.phase == PhaseRemoveReadd {
			removedAddr = l.Uplinks[x].Addr
		}
		for _, proto := range []labclient.Proto{labclient.TCP, labclient.UDP} {
			r := stickCount(flows, proto, removedAddr)
			r.Router, r.Phase, r.Event, r.Weights = name, ph.phase, ph.event, slices.Clone(o.Weights)
			if name == RouterWanflow {
				met := r.Sticky == 1 && r.Failed == 0
				r.Target, r.TargetMet = "100% sticky, 0% failed", &met
			}
			fmt.Fprintf(w, "    %v\n", r)
			out = append(out, r)
		}
		if ph.phase == PhaseRemoveReadd {
			if err := t.settle(ctx); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// stickGroups is the number of groups stickPhase starts its flows in, at
// offsets spread over one Interval: flows started together would send their
// messages in step, so that a change would find either all of them or none
// between two messages.
const stickGroups = 10

// stickPhase runs one phase's flows, in stickGroups groups started
// o.Interval/stickGroups apart; change runs o.EventAt after the first group
// started, revert (if not nil) o.Outage after change. An error of change or
// revert ends the flows and is returned.
func stickPhase(ctx context.Context, l *lab.Lab, o *StickinessOptions, change, revert func() error) ([]labclient.Flow, error) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	groups := min(stickGroups, o.Flows)
	type ran struct {
		flows []labclient.Flow
		err   error
	}
	done := make(chan ran, groups)
	for g := range groups {
		n := o.Flows/groups + stickBtoi(g < o.Flows%groups)
		delay := time.Duration(g) * o.Interval / time.Duration(groups)
		go func() {
			if err := stickSleep(fctx, delay); err != nil {
				done <- ran{nil, err}
				return
			}
			flows, err := labclient.Run(fctx, l.Hosts[0], labclient.Config{
				TCPFlows:    n,
				UDPFlows:    n,
				Messages:    o.Packets,
				Interval:    o.Interval,
				Timeout:     o.Timeout,
				Concurrency: 2 * n, // every flow alive at once
				DialThreads: 2,
			})
			done <- ran{flows, err}
		}()
	}
	var err error
	if change != nil {
		if err = stickSleep(ctx, o.EventAt); err == nil {
			err = change()
		}
		if err == nil && revert != nil {
			if err = stickSleep(ctx, o.Outage); err == nil {
				err = revert()
			}
		}
		if err != nil {
			cancel()
		}
	}
	var flows []labclient.Flow
	for range groups {
		res := <-done
		flows = append(flows, res.flows...)
		if err == nil {
			err = res.err
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return flows, err
}

// stickBtoi is 1 for true, 0 for false.
func stickBtoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stickCount counts the flows of proto; with removed valid, those first
// seen from removed go to the Removed group.
func stickCount(flows []labclient.Flow, proto labclient.Proto, removed netip.Addr) StickinessResult {
	r := StickinessResult{Proto: string(proto)}
	type counts struct {
		n, sticky, moved, failed int
		firstErr                 string
	}
	var kept, rm counts
	for i := range flows {
		f := &flows[i]
		if f.Proto != proto {
			continue
		}
		g := &kept
		if removed.IsValid() && len(f.Seen) > 0 && f.Seen[0].Addr() == removed {
			g = &rm
		}
		g.n++
		failed, moved := !f.OK(), len(f.Addrs()) > 1
		if failed {
			g.failed++
			if g.firstErr == "" {
				if f.Err != nil {
					g.firstErr = f.Err.Error()
				} else {
					g.firstErr = fmt.Sprintf("%s flow %d: %d of %d replies", f.Proto, f.Index, f.Replies, f.Sent)
				}
			}
		}
		if moved {
			g.moved++
		}
		if !failed && !moved {
			g.sticky++
		}
	}
	group := func(c counts) StickinessGroup {
		g := StickinessGroup{Flows: c.n, FirstError: c.firstErr}
		if c.n > 0 {
			g.Sticky = float64(c.sticky) / float64(c.n)
			g.Moved = float64(c.moved) / float64(c.n)
			g.Failed = float64(c.failed) / float64(c.n)
		}
		return g
	}
	r.StickinessGroup = group(kept)
	if removed.IsValid() {
		rg := group(rm)
		r.Removed = &rg
	}
	return r
}

// stickSleep waits d or until ctx ends.
func stickSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// stickDaemon is a wanflow daemon started by startStickDaemon for the
// stickiness and balance benchmarks: the process, a client of its control
// socket, and the temporary directory holding its config and socket.
type stickDaemon struct {
	l   *lab.Lab
	r   *labrouter.Router
	ctl *control.Client
	o   labrouter.Options
	dir string
}

// stickExtra is the YAML the benchmarks add to every wanflow config: probes
// off (an uplink's health is its carrier and address, the only signals the
// kernel baselines have too; no probe traffic competes with the flows on a
// loaded machine) and the control socket in dir.
func stickExtra(dir string) string {
	return "probes:\n  targets: []\ncontrol:\n  socket: " + filepath.Join(dir, "wanflow.sock") + "\n"
}

// startStickDaemon starts wanflow (bin) in l's router namespace with
// labrouter.ConfigYAML(l, o) plus stickExtra, and waits until every uplink
// is available. stop must be called (it is safe after an error of a later
// call too).
func startStickDaemon(ctx context.Context, l *lab.Lab, bin string, o labrouter.Options) (*stickDaemon, error) {
	dir, err := os.MkdirTemp("", "wanflow-stick-")
	if err != nil {
		return nil, err
	}
	o.Extra += stickExtra(dir)
	r, err := labrouter.Start(l, bin, dir, labrouter.ConfigYAML(l, o), nil, 15*time.Second)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	d := &stickDaemon{l: l, r: r, ctl: control.NewClient(filepath.Join(dir, "wanflow.sock")), o: o, dir: dir}
	if err := d.waitAvailable(ctx, 10*time.Second); err != nil {
		return nil, errors.Join(err, d.stop())
	}
	return d, nil
}

// waitAvailable waits until the daemon reports every uplink available.
func (d *stickDaemon) waitAvailable(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := d.ctl.Status(cctx)
		cancel()
		if err == nil {
			ok := len(st.Uplinks) == len(d.l.Uplinks)
			var states []string
			for _, u := range st.Uplinks {
				ok = ok && u.Available
				states = append(states, u.Name+"="+u.State)
			}
			if ok {
				return nil
			}
			last = strings.Join(states, " ")
		} else {
			last = err.Error()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.r.Exited() {
			return fmt.Errorf("bench: wanflow exited:\n%s", d.r.Log())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: wanflow's uplinks not all available after %v: %s", timeout, last)
		}
		if err := stickSleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// setWeights rewrites the daemon's config with new weights and reloads it
// through the control API.
func (d *stickDaemon) setWeights(ctx context.Context, weights []int) error {
	o := d.o
	o.Weights = weights
	if err := os.WriteFile(d.r.Config, []byte(labrouter.ConfigYAML(d.l, o)), 0o600); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rr, err := d.ctl.Reload(cctx)
	if err != nil {
		return fmt.Errorf("bench: reload with weights %v: %w", weights, err)
	}
	if len(rr.Changed) == 0 {
		return fmt.Errorf("bench: reload with weights %v changed nothing", weights)
	}
	d.o = o
	return nil
}

// stop stops the daemon (if it still runs) and removes its directory.
func (d *stickDaemon) stop() error {
	err := d.r.Stop() // an error too if the daemon had exited
	os.RemoveAll(d.dir)
	return err
}
