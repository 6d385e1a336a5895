package uplinks

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Reconcile reads the uplinks' devices and addresses, derives their
// statuses, and makes wanflow's uplink routes and rules match them: it
// replaces what is missing or different and prunes what the Manager owns
// but no longer wants, including the routes and rule of every uplink that is
// not Available. Running it twice leaves exactly one copy of each object.
//
// The statuses, one per configured uplink in configuration order, are
// returned even when applying them failed (the error then says what
// failed); they are nil only if the configuration is invalid or the kernel
// could not be read.
func (m *Manager) Reconcile() ([]Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, err := m.cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if m.h == nil {
		return nil, errNoHandle
	}
	obs, err := m.observe(cfg)
	if err != nil {
		return nil, err
	}
	st := make([]Status, len(obs))
	for i, o := range obs {
		st[i] = o.Status
	}
	routes, rules := desired(cfg, obs)
	return st, m.sync(cfg, routes, rules)
}

// Remove deletes every rule and route the Manager owns (see the package
// documentation), whoever installed it; it tolerates their absence. Stop
// Run first, or its next reconcile puts them back.
func (m *Manager) Remove() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, err := m.cfg.withDefaults()
	if err != nil {
		return err
	}
	if m.h == nil {
		return errNoHandle
	}
	return m.sync(cfg, nil, nil)
}

// observe reads the device state of every configured uplink.
func (m *Manager) observe(cfg Config) ([]observed, error) {
	var mainDefaults []netlink.Route
	for _, s := range cfg.Uplinks {
		if !s.Gateway.IsValid() {
			var err error
			if mainDefaults, err = listRoutes(m.h, rtTableMain); err != nil {
				return nil, err
			}
			break
		}
	}
	obs := make([]observed, 0, len(cfg.Uplinks))
	for _, s := range cfg.Uplinks {
		ls, err := m.readLink(s.Interface, mainDefaults)
		if err != nil {
			return nil, err
		}
		obs = append(obs, statusOf(s, ls))
	}
	return obs, nil
}

// readLink reads one device; a device that does not exist (or vanishes
// while being read) yields a linkState with Exists false.
func (m *Manager) readLink(name string, mainDefaults []netlink.Route) (linkState, error) {
	link, err := m.h.LinkByName(name)
	if err != nil {
		if notFound(err) {
			return linkState{}, nil
		}
		return linkState{}, fmt.Errorf("uplinks: read link %q: %w", name, err)
	}
	a := link.Attrs()
	ls := linkState{
		Exists:    true,
		Index:     a.Index,
		MTU:       a.MTU,
		OperState: a.OperState,
		RawFlags:  a.RawFlags,
		HasMAC:    a.EncapType == "ether" && len(a.HardwareAddr) == 6,
	}
	addrs, err := listAddrs(m.h, link)
	if err != nil {
		if notFound(err) {
			return linkState{}, nil
		}
		return linkState{}, fmt.Errorf("uplinks: read addresses of %q: %w", name, err)
	}
	for _, ad := range addrs {
		p, ok := prefixWithAddr(ad.IPNet)
		if !ok {
			continue
		}
		ia := ifAddr{Prefix: p, Secondary: ad.Flags&unix.IFA_F_SECONDARY != 0, Scope: ad.Scope}
		if ad.Peer != nil {
			ia.Peer, _ = prefixWithAddr(ad.Peer)
		}
		ls.Addrs = append(ls.Addrs, ia)
	}
	ls.LearntGW = learntGateway(mainDefaults, a.Index)
	return ls, nil
}

// sync makes the routes and rules the Manager owns equal to the wanted
// ones. Order: missing routes, missing rules, stale rules, stale routes, so
// that a rule never points at a table that is being filled or emptied.
func (m *Manager) sync(cfg Config, wantRoutes []routeSpec, wantRules []ruleSpec) error {
	haveRules, err := listRules(m.h)
	if err != nil {
		return err
	}
	haveRoutes, err := listRoutes(m.h, unix.RT_TABLE_UNSPEC)
	if err != nil {
		return err
	}

	presentRoutes := make(map[routeSpec]bool)
	var staleRoutes []netlink.Route
	for _, r := range haveRoutes {
		if !cfg.ownsRoute(&r) {
			continue
		}
		if k, ok := routeSpecOf(r); ok && slices.Contains(wantRoutes, k) && !presentRoutes[k] {
			presentRoutes[k] = true
			continue
		}
		staleRoutes = append(staleRoutes, r)
	}
	presentRules := make(map[ruleSpec]bool)
	var staleRules []netlink.Rule
	for _, r := range haveRules {
		if !cfg.ownsRule(&r) {
			continue
		}
		if k, ok := ruleSpecOf(r); ok && slices.Contains(wantRules, k) && !presentRules[k] {
			presentRules[k] = true
			continue
		}
		staleRules = append(staleRules, r)
	}

	var errs []error
	for _, w := range wantRoutes {
		if presentRoutes[w] {
			continue
		}
		if err := m.h.RouteReplace(w.netlinkRoute(cfg.Protocol)); err != nil {
			errs = append(errs, fmt.Errorf("uplinks: replace route %v: %w", w, err))
			continue
		}
		m.log.Debug("route installed", "route", w.String())
	}
	for _, w := range wantRules {
		if presentRules[w] {
			continue
		}
		if err := m.h.RuleAdd(w.netlinkRule(cfg.Protocol)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("uplinks: add rule %v: %w", w, err))
			continue
		}
		m.log.Debug("rule installed", "rule", w.String())
	}
	for _, r := range staleRules {
		if err := m.h.RuleDel(&r); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("uplinks: delete rule %v: %w", r, err))
			continue
		}
		m.log.Debug("rule removed", "rule", r.String())
	}
	for _, r := range staleRoutes {
		if err := m.h.RouteDel(&r); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("uplinks: delete route %v: %w", r, err))
			continue
		}
		m.log.Debug("route removed", "route", r.String())
	}
	return errors.Join(errs...)
}

// isGone reports whether a delete failed only because the object (or its
// device) was already gone.
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV)
}

// notFound reports whether err says a device does not exist.
func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
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
			return nil, fmt.Errorf("uplinks: list rules: %w", err)
		}
		return rs, nil
	}
}

// listRoutes lists the IPv4 routes of table, or of every table if table is
// RT_TABLE_UNSPEC.
func listRoutes(h *netlink.Handle, table int) ([]netlink.Route, error) {
	filter := &netlink.Route{Table: table}
	for i := 0; ; i++ {
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_TABLE)
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < dumpRetries {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("uplinks: list routes of table %d: %w", table, err)
		}
		return rs, nil
	}
}

func listAddrs(h *netlink.Handle, link netlink.Link) ([]netlink.Addr, error) {
	for i := 0; ; i++ {
		as, err := h.AddrList(link, netlink.FAMILY_V4)
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < dumpRetries {
			continue
		}
		return as, err
	}
}
