package dns

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netns"
)

// Reconfigure applies c to the forwarder, running or not, with the
// defaults of New (a zero field takes its default; a negative CacheSize
// means no cache, a negative ServeStale or RatePerClient none). It is what
// a configuration reload calls; it never interrupts Serve.
//
// These settings change from the next query on (queries being forwarded
// finish with the settings they started with):
//   - Domain and Local: the local names.
//   - AllowedNets: checked per query, so a TCP connection from a client no
//     longer allowed is closed at its next query.
//   - HedgeAfter and Timeout.
//   - ServeStale: a shorter window applies at once to the answers already
//     cached, a longer one to the answers cached from now on.
//   - RatePerClient: each client keeps the tokens it has left, capped at
//     the new burst; switching the limit on starts every client with a full
//     bucket.
//   - CacheSize: a smaller cache keeps its most recently used entries, a
//     larger one keeps them all; an answer that arrives while the cache is
//     being resized may not be kept.
//
// Listen and NetNS would need new sockets: Reconfigure returns an error if
// they differ from New's (Listen compared as a set of addresses). Logger is
// not changed: the forwarder keeps New's, and c.Logger is ignored. On error
// nothing is changed. Reconfigure is safe for concurrent use with
// everything else; concurrent calls are applied one at a time.
func (f *Forwarder) Reconfigure(c Config) error {
	n, err := c.withDefaults()
	if err != nil {
		return err
	}
	if !sameAddrs(n.Listen, f.cfg.Listen) {
		return fmt.Errorf("dns: reconfigure: listen addresses %v differ from %v: changing them needs a new forwarder", n.Listen, f.cfg.Listen)
	}
	if !sameNetNS(n.NetNS, f.cfg.NetNS) {
		return fmt.Errorf("dns: reconfigure: network namespace differs: changing it needs a new forwarder")
	}
	f.reconfMu.Lock()
	defer f.reconfMu.Unlock()
	old := f.live.Load()
	s := &settings{Config: n}
	s.Listen, s.NetNS, s.Logger = f.cfg.Listen, f.cfg.NetNS, f.cfg.Logger
	switch {
	case n.RatePerClient <= 0:
	case old.rl != nil:
		s.rl = old.rl
	default:
		s.rl = newRateLimiter(n.RatePerClient)
	}

	// Nothing below fails.
	if n.CacheSize != old.CacheSize {
		f.cache.resize(n.CacheSize, f.now())
	}
	if s.rl != nil && s.rl == old.rl && n.RatePerClient != old.RatePerClient {
		s.rl.setRate(n.RatePerClient)
	}
	f.live.Store(s)
	f.cfg.Logger.Info("dns: reconfigured", "domain", n.Domain, "allowed", n.AllowedNets,
		"cache_size", n.CacheSize, "hedge_after", n.HedgeAfter, "timeout", n.Timeout,
		"serve_stale", n.ServeStale, "rate_per_client", n.RatePerClient)
	return nil
}

// sameAddrs reports whether a and b hold the same addresses, in any order;
// neither has duplicates (withDefaults).
func sameAddrs(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// sameNetNS reports whether a and b name the same network namespace (nil:
// the process's).
func sameNetNS(a, b *netns.NsHandle) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b || a.Equal(*b)
}
