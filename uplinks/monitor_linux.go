package uplinks

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Run watches the kernel and keeps the uplinks reconciled until ctx is done.
//
// It subscribes (in Config.NetNS) to link, IPv4 address, IPv4 route and
// IPv4 rule notifications, then reconciles at once and again about 20 ms
// after the first of any burst of relevant notifications (at once when an
// uplink device loses its carrier, is set down or deleted): a change of an
// uplink device (carrier, up/down, MTU, creation or deletion — a PPP device
// that vanishes and comes back under the same name is picked up), any IPv4
// address change, a change of a main table default route (a gateway learnt
// by DHCP), the deletion of one of wanflow's routes or rules by someone else.
// It also reconciles every 30 s in case a notification was lost, retries
// one second after a failed reconcile, and resubscribes if the kernel drops
// a subscription (ENOBUFS).
//
// onChange (may be nil) receives the statuses after the first reconcile and then after
// every reconcile whose statuses differ from the last ones passed; it runs
// on Run's goroutine and should return quickly. It owns the slice.
//
// Run returns nil once ctx is done and every goroutine it started has
// exited; it returns an error early only if the configuration is invalid or
// the first subscriptions fail.
func (m *Manager) Run(ctx context.Context, onChange func([]Status)) error {
	cfg, err := m.cfg.withDefaults()
	if err != nil {
		return err
	}
	if m.h == nil {
		return errNoHandle
	}
	kick, urgentKick := make(chan struct{}, 1), make(chan struct{}, 1)
	trigger := func(urgent bool) {
		c := kick
		if urgent {
			c = urgentKick
		}
		select {
		case c <- struct{}{}:
		default:
		}
	}

	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	names := make(map[string]bool, len(cfg.Uplinks))
	for _, s := range cfg.Uplinks {
		names[s.Interface] = true
	}
	ruleLo, ruleHi := cfg.Priority+RuleOffset, cfg.Priority+RuleOffset+10*MaxUplinks
	err = startWatch(wctx, m, &wg, trigger, watch[netlink.LinkUpdate]{
		name: "link",
		open: func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, cb func(error)) error {
			return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
				Namespace: cfg.NetNS, ErrorCallback: cb,
			})
		},
		relevant: func(u netlink.LinkUpdate) bool { return u.Link != nil && names[u.Attrs().Name] },
		// An uplink device that lost its carrier, was set down or deleted
		// is down whatever follows: no reason to wait for the burst.
		urgent: func(u netlink.LinkUpdate) bool {
			return u.Header.Type == unix.RTM_DELLINK || u.IfInfomsg.Flags&unix.IFF_UP == 0 || u.IfInfomsg.Flags&unix.IFF_LOWER_UP == 0
		},
	})
	if err == nil {
		err = startWatch(wctx, m, &wg, trigger, watch[netlink.AddrUpdate]{
			name: "address",
			open: func(ch chan<- netlink.AddrUpdate, done <-chan struct{}, cb func(error)) error {
				return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
					Namespace: cfg.NetNS, ErrorCallback: cb,
				})
			},
			relevant: func(u netlink.AddrUpdate) bool { return u.LinkAddress.IP.To4() != nil },
		})
	}
	if err == nil {
		err = startWatch(wctx, m, &wg, trigger, watch[netlink.RouteUpdate]{
			name: "route",
			open: func(ch chan<- netlink.RouteUpdate, done <-chan struct{}, cb func(error)) error {
				return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
					Namespace: cfg.NetNS, ErrorCallback: cb,
				})
			},
			relevant: func(u netlink.RouteUpdate) bool {
				if u.Family != netlink.FAMILY_V4 {
					return false
				}
				if u.Table == rtTableMain && (u.Dst == nil || isDefault(u.Dst)) {
					return true // a default route: maybe a learnt gateway
				}
				return u.Type == unix.RTM_DELROUTE && cfg.ownsRoute(&u.Route)
			},
		})
	}
	if err == nil {
		err = startWatch(wctx, m, &wg, trigger, watch[ruleEvent]{
			name: "rule",
			open: func(ch chan<- ruleEvent, done <-chan struct{}, cb func(error)) error {
				return ruleSubscribe(ch, done, cfg.NetNS, cb)
			},
			relevant: func(e ruleEvent) bool {
				return e.Type == unix.RTM_DELRULE && e.Priority >= ruleLo && e.Priority < ruleHi
			},
		})
	}
	if err != nil {
		return err
	}

	// The timer runs the next reconcile; due is when, zero if not armed.
	// schedule arms it for d from now unless it is due sooner already, so
	// a notification is never held back by a pending retry.
	timer := time.NewTimer(0) // the first reconcile, at once
	defer timer.Stop()
	due := time.Now()
	schedule := func(d time.Duration) {
		if at := time.Now().Add(d); due.IsZero() || at.Before(due) {
			timer.Reset(d)
			due = at
		}
	}
	resync := time.NewTicker(m.resyncEvery)
	defer resync.Stop()
	var last []Status
	reported := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			schedule(m.debounce)
		case <-urgentKick:
			schedule(0)
		case <-resync.C:
			schedule(0)
		case <-timer.C:
			due = time.Time{}
			start := time.Now()
			st, err := m.Reconcile()
			m.log.Debug("uplinks: reconciled", "took", time.Since(start))
			if err != nil {
				m.log.Warn("uplinks: reconcile failed; retrying", "err", err, "after", m.retryAfter)
				schedule(m.retryAfter)
			}
			if st == nil || reported && slices.Equal(st, last) {
				continue
			}
			m.logChanges(last, st)
			last, reported = st, true
			if onChange != nil {
				onChange(slices.Clone(st))
			}
		}
	}
}

// logChanges logs each uplink whose availability differs between old and
// cur.
func (m *Manager) logChanges(old, cur []Status) {
	for i, s := range cur {
		if i < len(old) && old[i].Available == s.Available && old[i].Addr == s.Addr && old[i].Ifindex == s.Ifindex {
			continue
		}
		m.log.Info("uplink state", "uplink", s.Name, "interface", s.Interface, "available", s.Available,
			"carrier", s.Carrier, "addr", s.Addr, "gateway", s.Gateway, "ifindex", s.Ifindex)
	}
}

// watch describes one kind of netlink subscription.
type watch[T any] struct {
	name string
	// open subscribes: the updates arrive on ch until done is closed or the
	// subscription fails, then ch is closed. cb receives errors.
	open func(ch chan<- T, done <-chan struct{}, cb func(error)) error
	// relevant reports whether an update calls for a reconcile.
	relevant func(T) bool
	// urgent (may be nil) reports whether a relevant update calls for a
	// reconcile at once rather than after the debounce.
	urgent func(T) bool
}

// startWatch opens w's subscription and starts routineWatch to serve it.
func startWatch[T any](ctx context.Context, m *Manager, wg *sync.WaitGroup, trigger func(urgent bool), w watch[T]) error {
	ch, done := make(chan T, 64), make(chan struct{})
	if err := w.open(ch, done, m.subscriptionError(ctx, w.name)); err != nil {
		return fmt.Errorf("uplinks: subscribe to %s notifications: %w", w.name, err)
	}
	wg.Add(1)
	go routineWatch(ctx, m, wg, trigger, w, ch, done)
	return nil
}

// routineWatch forwards the relevant updates of one subscription as
// triggers until ctx is done, resubscribing (with backoff) whenever the
// subscription dies; a resubscription triggers a reconcile, since updates
// were lost. Before returning it waits for the netlink library's goroutine
// to close the channel.
func routineWatch[T any](ctx context.Context, m *Manager, wg *sync.WaitGroup, trigger func(urgent bool), w watch[T], ch chan T, done chan struct{}) {
	defer wg.Done()
	backoff := 50 * time.Millisecond
	for {
	serve:
		for {
			select {
			case u, ok := <-ch:
				if !ok {
					break serve
				}
				if w.relevant(u) {
					trigger(w.urgent != nil && w.urgent(u))
				}
			case <-ctx.Done():
				close(done)
				for range ch {
				}
				return
			}
		}
		close(done) // the library's closer goroutine exits
		m.log.Warn("uplinks: netlink subscription lost; resubscribing", "kind", w.name)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			ch, done = make(chan T, 64), make(chan struct{})
			err := w.open(ch, done, m.subscriptionError(ctx, w.name))
			if err == nil {
				backoff = 50 * time.Millisecond
				break
			}
			m.log.Warn("uplinks: resubscribe failed", "kind", w.name, "err", err)
			backoff = min(2*backoff, 5*time.Second)
		}
		trigger(false)
	}
}

// subscriptionError returns the error callback of a subscription: it logs,
// except for the error every subscription reports when it is closed on
// shutdown.
func (m *Manager) subscriptionError(ctx context.Context, kind string) func(error) {
	return func(err error) {
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("uplinks: netlink subscription error", "kind", kind, "err", err)
	}
}

// ruleEvent is a rule notification: RTM_NEWRULE or RTM_DELRULE, and the
// rule's priority. The netlink library has no rule subscription.
type ruleEvent struct {
	Type     uint16
	Priority int
}

// ruleSubscribe subscribes to IPv4 rule notifications in ns (nil: the
// current namespace) the way the netlink library subscribes to the others:
// events go to ch until done is closed or the socket fails, then ch is
// closed.
func ruleSubscribe(ch chan<- ruleEvent, done <-chan struct{}, ns *netns.NsHandle, cb func(error)) error {
	target := netns.None()
	if ns != nil {
		target = *ns
	}
	s, err := nl.SubscribeAt(target, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_IPV4_RULE)
	if err != nil {
		return err
	}
	go closeOnDone(s, done)
	go receiveRules(s, ch, cb)
	return nil
}

// closeOnDone closes s once done is closed, which ends receiveRules.
func closeOnDone(s *nl.NetlinkSocket, done <-chan struct{}) {
	<-done
	s.Close()
}

// receiveRules decodes rule notifications from s into ch until s fails.
func receiveRules(s *nl.NetlinkSocket, ch chan<- ruleEvent, cb func(error)) {
	defer close(ch)
	for {
		msgs, from, err := s.Receive()
		if err != nil {
			cb(fmt.Errorf("receive: %w", err))
			return
		}
		if from.Pid != nl.PidKernel {
			continue
		}
		for _, msg := range msgs {
			if msg.Header.Type != unix.RTM_NEWRULE && msg.Header.Type != unix.RTM_DELRULE {
				continue
			}
			ev := ruleEvent{Type: msg.Header.Type}
			if len(msg.Data) < unix.SizeofRtMsg {
				continue
			}
			attrs, err := nl.ParseRouteAttr(msg.Data[unix.SizeofRtMsg:])
			if err != nil {
				continue
			}
			for _, a := range attrs {
				if a.Attr.Type == nl.FRA_PRIORITY && len(a.Value) >= 4 {
					ev.Priority = int(nl.NativeEndian().Uint32(a.Value))
				}
			}
			ch <- ev
		}
	}
}

// isDefault reports whether n is a default (/0) destination.
func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}
