package steer

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Apply installs the steering of the Config given to New, converging from
// any prior state: it sets the sysctls, brings the TUN device up, replaces
// the route, adds the missing rules and prunes the rules and routes steer
// owns but no longer wants. Running it twice leaves exactly one copy of each
// object. The TUN device must exist. The kernel drops the route when the
// TUN device is deleted or set down: call Apply again once it is back.
func (s *Steering) Apply() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, err := s.cfg.withDefaults(true)
	if err != nil {
		return err
	}
	tun, err := s.h.LinkByName(cfg.TUN)
	if err != nil {
		return fmt.Errorf("steer: TUN device %q: %w", cfg.TUN, err)
	}
	// Sysctls first: once the rules exist, replies on the TUN must already
	// pass reverse-path filtering.
	if err := s.inNS(func() error { return applySysctls(cfg.TUN) }); err != nil {
		return err
	}
	// IPv4 refuses routes through a device that is down (ENETDOWN).
	if tun.Attrs().Flags&net.FlagUp == 0 {
		if err := s.h.LinkSetUp(tun); err != nil {
			return fmt.Errorf("steer: set %q up: %w", cfg.TUN, err)
		}
	}
	// Route before rules, so the steering rule never points at an empty table.
	if err := syncRoutes(s.h, cfg, desiredRoutes(cfg, tun.Attrs().Index)); err != nil {
		return err
	}
	if err := syncRules(s.h, cfg, desiredRules(cfg)); err != nil {
		return err
	}
	s.applied = true
	return nil
}

// SetFallback replaces Config.Fallback (a reload changed the uplinks' tiers
// or weights, hence the order LAN traffic falls back in) and, if Apply has
// run, rewrites the fallback rules in place. On error the rules may be
// partly rewritten; the next Apply completes them.
func (s *Steering) SetFallback(tables []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.cfg
	next.Fallback = slices.Clone(tables)
	cfg, err := next.withDefaults(true)
	if err != nil {
		return err
	}
	s.cfg = next
	if !s.applied {
		return nil
	}
	return syncRules(s.h, cfg, desiredRules(cfg))
}

// Remove deletes every rule and route steer owns (see the package
// documentation), whether Apply or an earlier process installed it. It
// tolerates their absence and leaves the sysctls as they are: they are
// neutral without the rules.
func (s *Steering) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, err := s.cfg.withDefaults(false)
	if err != nil {
		return err
	}
	s.applied = false
	// Rules before the route: traffic stops entering the table first.
	return errors.Join(syncRules(s.h, cfg, nil), syncRoutes(s.h, cfg, nil))
}

// inNS runs fn in the configured namespace: on the calling thread if
// Config.NetNS is nil, else through InNetNS.
func (s *Steering) inNS(fn func() error) error {
	if s.cfg.NetNS == nil {
		return fn()
	}
	return InNetNS(*s.cfg.NetNS, fn)
}

// syncRules makes the rules steer owns equal to want: missing ones are
// added, owned ones not wanted (or duplicated) are deleted.
func syncRules(h *netlink.Handle, cfg Config, want []ruleSpec) error {
	have, err := listRules(h)
	if err != nil {
		return err
	}
	present := make(map[ruleSpec]bool)
	var stale []netlink.Rule
	for _, r := range have {
		if !ownsRule(cfg, &r) {
			continue
		}
		if k, ok := ruleSpecOf(r); ok && slices.Contains(want, k) && !present[k] {
			present[k] = true
			continue
		}
		stale = append(stale, r)
	}
	var errs []error
	for _, w := range want {
		if present[w] {
			continue
		}
		if err := h.RuleAdd(w.netlinkRule(cfg.Protocol)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("steer: add rule %v: %w", w, err))
		}
	}
	for _, r := range stale {
		if err := h.RuleDel(&r); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("steer: delete rule %v: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

// syncRoutes makes the routes steer owns equal to want.
func syncRoutes(h *netlink.Handle, cfg Config, want []routeSpec) error {
	have, err := listRoutes(h, cfg.Table)
	if err != nil {
		return err
	}
	present := make(map[routeSpec]bool)
	var stale []netlink.Route
	for _, r := range have {
		if !ownsRoute(cfg, &r) {
			continue
		}
		if k, ok := routeSpecOf(r); ok && slices.Contains(want, k) && !present[k] {
			present[k] = true
			continue
		}
		stale = append(stale, r)
	}
	var errs []error
	for _, w := range want {
		if present[w] {
			continue
		}
		if err := h.RouteReplace(w.netlinkRoute(cfg.Protocol)); err != nil {
			errs = append(errs, fmt.Errorf("steer: replace route %v: %w", w, err))
		}
	}
	for _, r := range stale {
		if err := h.RouteDel(&r); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("steer: delete route %v: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

// isGone reports whether a delete failed only because the object was
// already gone (or, for a route, its device).
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV)
}

// dumpRetries bounds the retries of a dump the kernel interrupted because
// the list changed meanwhile.
const dumpRetries = 5

func listRules(h *netlink.Handle) ([]netlink.Rule, error) {
	for i := 0; ; i++ {
		rs, err := h.RuleList(netlink.FAMILY_V4)
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < dumpRetries {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("steer: list rules: %w", err)
		}
		return rs, nil
	}
}

func listRoutes(h *netlink.Handle, table int) ([]netlink.Route, error) {
	filter := &netlink.Route{Table: table}
	for i := 0; ; i++ {
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_TABLE)
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < dumpRetries {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("steer: list routes of table %d: %w", table, err)
		}
		return rs, nil
	}
}
