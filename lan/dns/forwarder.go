package dns

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netns"
)

// Defaults for the zero fields of Config.
const (
	// DefaultCacheSize is the default number of cache entries.
	DefaultCacheSize = 10000
	// DefaultHedgeAfter is how long a query waits for an upstream before
	// it is also sent to the next one.
	DefaultHedgeAfter = 200 * time.Millisecond
	// DefaultTimeout is how long a query waits for any upstream in all.
	DefaultTimeout = 1500 * time.Millisecond
	// DefaultServeStale is how long past its expiry a cached answer may be
	// served when every upstream fails (RFC 8767 section 5 suggests 1 to 3
	// days; a router's LAN wants fresh answers back soon, so one hour).
	DefaultServeStale = time.Hour
	// DefaultRatePerClient is the default number of queries per second a
	// client may send.
	DefaultRatePerClient = 200
)

// Fixed limits. They bound memory and goroutines whatever the clients do.
const (
	// UDPSize is the EDNS(0) UDP payload size the forwarder advertises,
	// to upstreams and to clients: the DNS flag day 2020 value, which
	// avoids IP fragmentation on any path with an MTU of 1280 or more.
	UDPSize = 1232
	// MaxInFlight bounds the queries being forwarded at once (UDP queries
	// that need an upstream; TCP connections are bounded separately).
	// A UDP query that finds them all busy is dropped and counted.
	MaxInFlight = 1024
	// MaxTCPConns bounds the client TCP connections; one more is closed at
	// once and counted.
	MaxTCPConns = 128
	// TCPIdleTimeout closes a client TCP connection that sends no query
	// for that long (RFC 7766 section 6.2.3 recommends seconds, not
	// minutes).
	TCPIdleTimeout = 10 * time.Second
	// LocalTTL is the TTL of the answers built from Config.Local: DHCP
	// leases change, so clients should ask again soon.
	LocalTTL = 60
	// MinCacheTTL is the shortest time an answer is kept in the cache,
	// whatever its TTL (the TTL given to clients is never raised).
	MinCacheTTL = 5
	// MaxCacheTTL caps the TTLs of cached answers, in seconds.
	MaxCacheTTL = 86400
	// MaxNegativeTTL caps the TTL of cached NXDOMAIN and NODATA answers
	// (RFC 2308 section 5 suggests one to three hours).
	MaxNegativeTTL = 3600
	// StaleTTL is the TTL of stale answers (RFC 8767 section 4).
	StaleTTL = 30
	// refusedRate is the rate, per second for all of them together, at
	// which clients outside AllowedNets get a REFUSED answer over UDP;
	// beyond it their queries are dropped.
	refusedRate = 50
)

// Upstream is one DNS server of one uplink.
type Upstream struct {
	// Uplink names the uplink, for the counters and the logs.
	Uplink string
	// Addr is the server's address; port 0 means 53.
	Addr netip.AddrPort
	// Interface is the uplink's device: every socket to this server is
	// bound to it (SO_BINDTODEVICE). Empty means no device binding (tests;
	// the source address alone then selects the route).
	Interface string
	// Source is the uplink's address, the source of every query to this
	// server, so that the router's rule "from <Source> lookup <uplink
	// table>" sends it through that uplink. The zero Addr lets the kernel
	// choose.
	Source netip.Addr
}

// Config configures a Forwarder. Zero fields take the defaults above.
type Config struct {
	// Listen are the LAN addresses the forwarder serves on, over UDP and
	// TCP. Each is bound as it is (never the wildcard address), so the
	// forwarder is not reachable on an uplink's address.
	Listen []netip.AddrPort
	// AllowedNets are the prefixes of the clients served (the LAN
	// prefixes). A query from elsewhere is refused (TCP: the connection is
	// closed; UDP: REFUSED, or dropped beyond a small global rate) and
	// counted.
	AllowedNets []netip.Prefix
	// Domain is the local domain, like "lan": "host.<Domain>" and bare
	// "host" are answered from Local, and the forwarder is authoritative
	// for the names under Domain (they never go upstream). Empty: only
	// bare names.
	Domain string
	// Local returns the address of a LAN host by its name (lan/dhcp's
	// Server.Lookup). It must be safe for concurrent use and fast. Nil: no
	// local names.
	Local func(host string) (netip.Addr, bool)
	// CacheSize is the number of cached answers (LRU); default
	// DefaultCacheSize, negative: no cache (and so no serve-stale).
	CacheSize int
	// HedgeAfter: a query also goes to the next upstream when the previous
	// one has not answered within HedgeAfter; default DefaultHedgeAfter.
	HedgeAfter time.Duration
	// Timeout is how long a query waits for its upstreams; default
	// DefaultTimeout.
	Timeout time.Duration
	// ServeStale is how long past its expiry a cached answer may still be
	// served when every upstream fails (RFC 8767); default
	// DefaultServeStale, negative disables serve-stale.
	ServeStale time.Duration
	// RatePerClient is the number of queries per second each client IP may
	// send (token bucket, burst of one second's worth); default
	// DefaultRatePerClient, negative means no limit. Excess UDP queries
	// are dropped, excess TCP queries refused; both are counted.
	RatePerClient int
	// Logger receives the forwarder's logs; nil discards them.
	Logger *slog.Logger
	// NetNS, if non-nil, is the network namespace every socket of the
	// forwarder (listeners and upstream queries) is opened in. Nil means
	// the calling process's namespace, which is what the daemon uses.
	NetNS *netns.NsHandle
}

// withDefaults returns c with zero fields replaced by their defaults, or an
// error naming the first invalid field.
func (c Config) withDefaults() (Config, error) {
	if len(c.Listen) == 0 {
		return c, errors.New("dns: config: no listen address")
	}
	ls := make([]netip.AddrPort, len(c.Listen))
	for i, a := range c.Listen {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		switch {
		case !a.Addr().IsValid() || a.Addr().IsUnspecified() || a.Addr().IsMulticast():
			return c, fmt.Errorf("dns: config: listen address %v: want a unicast LAN address", a)
		case a.Port() == 0:
			return c, fmt.Errorf("dns: config: listen address %v: port 0", a)
		case slices.Contains(ls[:i], a):
			return c, fmt.Errorf("dns: config: listen address %v listed twice", a)
		}
		ls[i] = a
	}
	c.Listen = ls
	if len(c.AllowedNets) == 0 {
		return c, errors.New("dns: config: no allowed client prefixes")
	}
	ps := make([]netip.Prefix, len(c.AllowedNets))
	for i, p := range c.AllowedNets {
		if !p.IsValid() {
			return c, fmt.Errorf("dns: config: allowed prefix %v is invalid", p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		ps[i] = p.Masked()
	}
	c.AllowedNets = ps
	c.Domain = strings.ToLower(strings.Trim(c.Domain, "."))
	if c.Domain != "" {
		if _, ok := mdns.IsDomainName(c.Domain); !ok {
			return c, fmt.Errorf("dns: config: domain %q is not a domain name", c.Domain)
		}
	}
	switch {
	case c.CacheSize == 0:
		c.CacheSize = DefaultCacheSize
	case c.CacheSize < 0:
		c.CacheSize, c.ServeStale = 0, -1
	}
	if c.HedgeAfter <= 0 {
		c.HedgeAfter = DefaultHedgeAfter
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	switch {
	case c.ServeStale == 0:
		c.ServeStale = DefaultServeStale
	case c.ServeStale < 0:
		c.ServeStale = 0
	}
	if c.RatePerClient == 0 {
		c.RatePerClient = DefaultRatePerClient
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Stats are the forwarder's counters since New. All are monotonic except
// CacheEntries.
type Stats struct {
	// Queries counts the well-formed queries of allowed clients within
	// their rate.
	Queries uint64
	// CacheHits counts queries answered from a fresh cache entry;
	// CacheMisses those that needed an upstream (coalesced ones included).
	CacheHits, CacheMisses uint64
	// Coalesced counts queries that waited for the same upstream query as
	// an earlier identical one instead of sending their own.
	Coalesced uint64
	// Local counts queries answered from Config.Local or for the local
	// domain.
	Local uint64
	// Hedged counts queries sent to one more upstream because the previous
	// ones had not answered within HedgeAfter.
	Hedged uint64
	// StaleServed counts answers served from an expired cache entry
	// because every upstream failed (RFC 8767).
	StaleServed uint64
	// ServFail counts queries answered SERVFAIL: every upstream failed and
	// nothing stale was cached, or there was no upstream.
	ServFail uint64
	// Refused counts queries (and TCP connections) from clients outside
	// AllowedNets.
	Refused uint64
	// RateLimited counts queries over a client's rate.
	RateLimited uint64
	// Overloaded counts UDP queries dropped because MaxInFlight queries
	// were being forwarded, and TCP connections closed because
	// MaxTCPConns were open.
	Overloaded uint64
	// TruncatedRetries counts truncated UDP answers from upstreams that
	// were asked again over TCP.
	TruncatedRetries uint64
	// BadPackets counts malformed or unsupported queries (answered
	// FORMERR, NOTIMP or BADVERS, or dropped).
	BadPackets uint64
	// CacheEntries is the number of entries in the cache now.
	CacheEntries int
	// Upstreams has the counters of every upstream ever configured, in
	// the order of the current list, then the removed ones.
	Upstreams []UpstreamStats
}

// UpstreamStats are the counters of one upstream server.
type UpstreamStats struct {
	// Uplink and Addr identify the upstream.
	Uplink string
	Addr   netip.AddrPort
	// Active reports whether it is in the current list.
	Active bool
	// Queries counts the queries sent to it (TCP retries included);
	// Failures those that got no usable answer: timeout, network error,
	// SERVFAIL, REFUSED, a malformed answer. A query abandoned because
	// another upstream answered first is neither an answer nor a failure.
	Queries, Failures uint64
}

// Forwarder is the caching DNS forwarder. Create it with New.
type Forwarder struct {
	// cfg is the configuration given to New, with defaults applied. It
	// never changes, so it is read without synchronisation; only the
	// settings Reconfigure cannot change (Listen, NetNS, Logger) are read
	// from it: the others are in live.
	cfg Config
	// live holds the settings Reconfigure changes. A query loads it once
	// and uses that snapshot throughout.
	live     atomic.Pointer[settings]
	reconfMu sync.Mutex // serialises Reconfigure
	cache    *cache
	// refused limits the REFUSED answers to clients outside AllowedNets.
	refused *bucket
	now     func() time.Time
	sem     chan struct{} // MaxInFlight slots
	wg      sync.WaitGroup
	serving atomic.Bool

	upstreams atomic.Pointer[[]*upstream]
	upMu      sync.Mutex // guards upKnown and upOrder
	upKnown   map[upstreamKey]*upstream
	upOrder   []*upstream // every upstream ever known, first seen first

	flightMu sync.Mutex
	flights  map[cacheKey]*flight

	stats counters
}

// settings are the Forwarder's settings that Reconfigure can change: the
// Config (defaults applied; its Listen, NetNS and Logger are those given to
// New) and the rate limiter that enforces its RatePerClient. Immutable once
// stored in Forwarder.live; the rate limiter is safe for concurrent use.
type settings struct {
	Config
	rl *rateLimiter // nil: no limit
}

// allowed reports whether a is in AllowedNets.
func (s *settings) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.AllowedNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// counters are the Forwarder's counters; see Stats.
type counters struct {
	queries, hits, misses, coalesced, local, hedged, stale, servfail,
	refused, rateLimited, overloaded, tcRetries, bad atomic.Uint64
}

// upstreamKey identifies an upstream across SetUpstreams calls.
type upstreamKey struct {
	uplink string
	addr   netip.AddrPort
}

// upstream is an Upstream with its counters. Its Upstream never changes
// once it is in a list; a changed binding makes a new upstream sharing the
// counters.
type upstream struct {
	Upstream
	c *upstreamCounters
}

type upstreamCounters struct {
	key               upstreamKey
	queries, failures atomic.Uint64
	// streak counts the upstream's failures and hedges in a row (a query
	// sent to the next upstream because this one had not answered within
	// HedgeAfter); an answer resets it. From benchAfter on, the upstream
	// is benched — asked after the others — until benchedUntil (Unix
	// nanoseconds), for a time that doubles with the streak.
	streak       atomic.Int32
	benchedUntil atomic.Int64
}

// Benching of upstreams that keep failing or answering late.
const (
	benchAfter = 2                // failures or hedges in a row
	benchMin   = 5 * time.Second  // the first time
	benchMax   = 60 * time.Second // at most
)

// failed records a failure or a hedge of the upstream at now.
func (c *upstreamCounters) failed(now time.Time) {
	n := c.streak.Add(1)
	if n < benchAfter {
		return
	}
	d := benchMin << min(n-benchAfter, 4)
	c.benchedUntil.Store(now.Add(min(d, benchMax)).UnixNano())
}

// answered records an answer of the upstream.
func (c *upstreamCounters) answered() {
	if c.streak.Load() != 0 {
		c.streak.Store(0)
		c.benchedUntil.Store(0)
	}
}

func (c *upstreamCounters) benched(now time.Time) bool {
	return c.benchedUntil.Load() > now.UnixNano()
}

// New returns a Forwarder for cfg, without upstreams (SetUpstreams) and not
// yet serving (Serve).
func New(cfg Config) (*Forwarder, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	f := &Forwarder{
		cfg:     c,
		cache:   newCache(c.CacheSize),
		refused: newBucket(refusedRate, time.Now()),
		now:     time.Now,
		sem:     make(chan struct{}, MaxInFlight),
		upKnown: make(map[upstreamKey]*upstream),
		flights: make(map[cacheKey]*flight),
	}
	s := &settings{Config: c}
	if c.RatePerClient > 0 {
		s.rl = newRateLimiter(c.RatePerClient)
	}
	f.live.Store(s)
	f.upstreams.Store(new([]*upstream))
	return f, nil
}

// SetUpstreams replaces the upstream servers. u is in order of preference
// (tier, then health): a query goes to u[0] first, then, hedged, to the
// next ones. The servers of an uplink that is down must be left out; with
// no upstream at all, queries are answered from the cache (stale answers
// included) or with SERVFAIL. Entries with an invalid address are ignored
// and logged. Queries already being forwarded finish with the previous
// list. SetUpstreams is safe for concurrent use with everything else.
func (f *Forwarder) SetUpstreams(u []Upstream) {
	list := make([]*upstream, 0, len(u))
	f.upMu.Lock()
	defer f.upMu.Unlock()
	was := map[upstreamKey]bool{}
	for _, p := range *f.upstreams.Load() {
		was[p.c.key] = true
	}
	for _, x := range u {
		a := x.Addr
		if a.Port() == 0 {
			a = netip.AddrPortFrom(a.Addr(), 53)
		}
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		x.Addr = a
		x.Source = x.Source.Unmap()
		if !a.Addr().IsValid() || a.Addr().IsUnspecified() {
			f.cfg.Logger.Warn("dns: upstream ignored: invalid address", "uplink", x.Uplink, "addr", a)
			continue
		}
		if x.Source.IsValid() && x.Source.Is4() != a.Addr().Is4() {
			f.cfg.Logger.Warn("dns: upstream ignored: source and server address families differ",
				"uplink", x.Uplink, "addr", a, "source", x.Source)
			continue
		}
		k := upstreamKey{x.Uplink, a}
		if slices.ContainsFunc(list, func(p *upstream) bool { return p.c.key == k }) {
			continue
		}
		old := f.upKnown[k]
		if old == nil {
			old = &upstream{c: &upstreamCounters{key: k}}
			f.upOrder = append(f.upOrder, old)
		}
		if !was[k] {
			// Back in the list (its uplink came back up, its probes
			// answer): whatever benched it is over.
			old.c.answered()
		}
		up := &upstream{Upstream: x, c: old.c}
		f.upKnown[k] = up
		list = append(list, up)
	}
	f.upstreams.Store(&list)
	f.cfg.Logger.Debug("dns: upstreams set", "count", len(list))
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (f *Forwarder) Stats() Stats {
	s := Stats{
		Queries:          f.stats.queries.Load(),
		CacheHits:        f.stats.hits.Load(),
		CacheMisses:      f.stats.misses.Load(),
		Coalesced:        f.stats.coalesced.Load(),
		Local:            f.stats.local.Load(),
		Hedged:           f.stats.hedged.Load(),
		StaleServed:      f.stats.stale.Load(),
		ServFail:         f.stats.servfail.Load(),
		Refused:          f.stats.refused.Load(),
		RateLimited:      f.stats.rateLimited.Load(),
		Overloaded:       f.stats.overloaded.Load(),
		TruncatedRetries: f.stats.tcRetries.Load(),
		BadPackets:       f.stats.bad.Load(),
		CacheEntries:     f.cache.len(),
	}
	cur := *f.upstreams.Load()
	f.upMu.Lock()
	defer f.upMu.Unlock()
	add := func(c *upstreamCounters, active bool) {
		s.Upstreams = append(s.Upstreams, UpstreamStats{
			Uplink: c.key.uplink, Addr: c.key.addr, Active: active,
			Queries: c.queries.Load(), Failures: c.failures.Load(),
		})
	}
	for _, u := range cur {
		add(u.c, true)
	}
	for _, u := range f.upOrder {
		if !slices.ContainsFunc(cur, func(x *upstream) bool { return x.c == u.c }) {
			add(u.c, false)
		}
	}
	return s
}

// allowed reports whether a is in the current AllowedNets.
func (f *Forwarder) allowed(a netip.Addr) bool { return f.live.Load().allowed(a) }

var errServing = errors.New("dns: Serve is already running")
