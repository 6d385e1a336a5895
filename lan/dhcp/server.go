package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Ports of RFC 2131 section 4.1.
const (
	serverPort = 67
	clientPort = 68
)

// flushInterval is the shortest time between two lease file writes; changes
// in between are batched.
const flushInterval = time.Second

// flushRetry is the delay before retrying a failed lease file write.
const flushRetry = 5 * time.Second

// reopenRetry is how often Serve retries opening the sockets on a new
// interface that cannot be opened yet.
const reopenRetry = 5 * time.Second

// Lease is a client's lease, as returned by Server.Leases.
type Lease struct {
	// MAC is the client's hardware address (chaddr).
	MAC net.HardwareAddr
	// Addr is the leased address.
	Addr netip.Addr
	// Hostname is the client's name (option 12, or its reservation's
	// Hostname), "" if unknown.
	Hostname string
	// ClientID is the client identifier (option 61), nil if the client
	// sent none.
	ClientID []byte
	// Expiry is when the lease ends unless renewed.
	Expiry time.Time
}

// Stats are the server's counters since New. Message counters count
// messages received (Discovers … Informs) or sent (Offers, Acks, Naks).
// The metrics exporter names them dhcp_<direction>_<what>, e.g.
// dhcp_in_discovers, dhcp_out_offers, dhcp_pool_exhausted.
type Stats struct {
	Discovers, Offers, Requests, Acks, Naks, Releases, Declines, Informs uint64
	// PoolExhausted counts DHCPDISCOVERs that got no offer because no
	// address was free.
	PoolExhausted uint64
	// OffersGivenAway counts offers taken back, unanswered, for another
	// client because the pool had nothing else (see table.pick: a DISCOVER
	// flood cannot hold the pool).
	OffersGivenAway uint64
	// BadPackets counts messages dropped as malformed or not for this
	// server (BOOTP without a message type, relayed messages, a server's
	// message type).
	BadPackets uint64
	// SendErrors counts replies the kernel refused to send.
	SendErrors uint64
	// LeasesActive is the number of unexpired leases (a gauge).
	LeasesActive int
}

type counters struct {
	discovers, offers, requests, acks, naks, releases, declines, informs atomic.Uint64
	poolExhausted, badPackets, sendErrors                                atomic.Uint64
}

// Server is a DHCPv4 server for one LAN segment. Its methods are safe for
// concurrent use.
type Server struct {
	mu           sync.Mutex // guards the fields below it up to flushMu
	cfg          *Config
	tab          *table
	dirtyGen     uint64 // incremented on every change to persist
	savedGen     uint64 // dirtyGen of the last successful write
	exhaustedLog logLimiter
	sendErrLog   logLimiter

	flushMu sync.Mutex // serialises lease file writes

	stats   counters
	dirtyc  chan struct{} // cap 1: wakes routineFlush
	reopenc chan struct{} // cap 1: the interface changed, reopen sockets
	serving atomic.Bool

	// now is the clock; tests replace it.
	now func() time.Time
	// open opens the sockets on the named interface; tests replace it to
	// open them inside a network namespace or to use a fake.
	open func(ifname string, log *slog.Logger) (transport, error)
}

// New validates cfg, fills its defaults and loads the lease file. A missing
// lease file is not an error; corrupt lines and leases that do not fit the
// configuration are skipped and logged.
func New(cfg Config) (*Server, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:          &c,
		tab:          newTable(&c),
		exhaustedLog: logLimiter{period: 10 * time.Second},
		sendErrLog:   logLimiter{period: 10 * time.Second},
		dirtyc:       make(chan struct{}, 1),
		reopenc:      make(chan struct{}, 1),
		now:          time.Now,
		open:         openTransport,
	}
	if c.LeaseFile != "" {
		if err := s.load(c.LeaseFile); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// load reads the lease file into the table.
func (s *Server) load(path string) error {
	bs, bad, err := readLeaseFile(path)
	if err != nil {
		return err
	}
	log := s.cfg.Logger
	for i, why := range bad {
		if i == maxCorruptLogged {
			log.Warn("dhcp: more corrupt lease file lines skipped", "file", path, "count", len(bad)-i)
			break
		}
		log.Warn("dhcp: corrupt lease file line skipped", "file", path, "error", why)
	}
	kept := 0
	for _, b := range bs {
		if s.tab.insert(b) {
			kept++
		} else {
			log.Warn("dhcp: lease from file dropped: does not fit the configuration or clashes with a newer lease",
				"file", path, "addr", b.addr.String(), "mac", b.mac.String())
		}
	}
	log.Info("dhcp: leases loaded", "file", path, "leases", kept, "active", s.tab.countActive(s.now()))
	return nil
}

// Leases returns the active leases, ordered by address. The caller owns
// the returned slice.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tab.activeLeases(s.now())
}

// Lookup returns the address of the DHCP client or reservation called
// hostname, compared case-insensitively, for the DNS forwarder. hostname is
// a single label ("laptop"); a trailing dot or the configured domain
// ("laptop.lan.") are accepted and stripped. Reservations answer even
// without a lease; clients only while their lease is active.
func (s *Server) Lookup(hostname string) (netip.Addr, bool) {
	name := strings.ToLower(strings.TrimSuffix(hostname, "."))
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := strings.ToLower(s.cfg.Domain); d != "" {
		name = strings.TrimSuffix(name, "."+d)
	}
	if !validLabel(name) {
		return netip.Addr{}, false
	}
	return s.tab.lookup(name, s.now())
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Discovers:     s.stats.discovers.Load(),
		Offers:        s.stats.offers.Load(),
		Requests:      s.stats.requests.Load(),
		Acks:          s.stats.acks.Load(),
		Naks:          s.stats.naks.Load(),
		Releases:      s.stats.releases.Load(),
		Declines:      s.stats.declines.Load(),
		Informs:       s.stats.informs.Load(),
		PoolExhausted: s.stats.poolExhausted.Load(),
		BadPackets:    s.stats.badPackets.Load(),
		SendErrors:    s.stats.sendErrors.Load(),
	}
	s.mu.Lock()
	st.LeasesActive = s.tab.countActive(s.now())
	st.OffersGivenAway = s.tab.offersGivenAway
	s.mu.Unlock()
	return st
}

// Reconfigure applies cfg. Leases that still fit (address inside the new
// pool, or the client's reservation) are kept; the others are dropped and
// logged, and the client gets a DHCPNAK at its next renewal. A new
// Interface makes a running Serve reopen its sockets; a new LeaseFile is
// written with the current leases (the old file is left alone). On error
// the old configuration stays in force.
func (s *Server) Reconfigure(cfg Config) error {
	c, err := cfg.normalize()
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.cfg
	dropped := s.tab.setConfig(&c)
	s.cfg = &c
	for _, b := range dropped {
		c.Logger.Info("dhcp: lease dropped: does not fit the new configuration", "addr", b.addr.String(), "mac", b.mac.String())
	}
	if len(dropped) > 0 || c.LeaseFile != old.LeaseFile {
		s.markDirty()
	}
	s.mu.Unlock()
	if c.Interface != old.Interface {
		select {
		case s.reopenc <- struct{}{}:
		default:
		}
	}
	return nil
}

// markDirty records a change to persist and wakes routineFlush. The caller
// holds s.mu.
func (s *Server) markDirty() {
	s.dirtyGen++
	select {
	case s.dirtyc <- struct{}{}:
	default:
	}
}

// flush writes the lease file if anything changed since the last write.
func (s *Server) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	gen, path := s.dirtyGen, s.cfg.LeaseFile
	if gen == s.savedGen || path == "" {
		s.savedGen = gen
		s.mu.Unlock()
		return nil
	}
	data := encodeLeases(s.tab.sorted(), s.now())
	s.mu.Unlock()
	if err := writeFileAtomic(path, data); err != nil {
		return err
	}
	s.mu.Lock()
	s.savedGen = max(s.savedGen, gen)
	s.mu.Unlock()
	return nil
}

// Serve answers DHCP clients on Config.Interface until ctx ends, then
// writes pending lease changes and returns nil. It listens on UDP port 67
// bound to the interface (SO_BINDTODEVICE, SO_BROADCAST) and sends replies
// to clients without an address through an AF_PACKET socket (see the
// package documentation). It returns an error if the sockets cannot be
// opened at start, or if Serve is already running. When Reconfigure
// changes the interface, Serve reopens its sockets, retrying every 5 s
// while the new interface cannot be opened (it keeps serving nobody
// meanwhile, and logs why).
func (s *Server) Serve(ctx context.Context) (err error) {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("dhcp: Serve is already running")
	}
	defer s.serving.Store(false)

	flushCtx, stopFlush := context.WithCancel(context.Background())
	flushDone := make(chan struct{})
	go s.routineFlush(flushCtx, flushDone)
	defer func() {
		stopFlush()
		<-flushDone
		if ferr := s.flush(); ferr != nil {
			s.logger().Error("dhcp: final lease file write failed", "error", ferr)
			err = errors.Join(err, ferr)
		}
	}()

	for first := true; ; first = false {
		t, err := s.openCurrent(ctx, first)
		if err != nil {
			return err
		}
		if t == nil { // ctx ended while retrying
			return nil
		}
		s.serveTransport(ctx, t)
		t.close()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// openCurrent opens the sockets on the configured interface. The first
// open fails fast, so that a wrong configuration is reported by Serve; a
// reopen after Reconfigure changed the interface is retried every
// reopenRetry (and after every further Reconfigure) until it works or ctx
// ends, which returns a nil transport.
func (s *Server) openCurrent(ctx context.Context, first bool) (transport, error) {
	for {
		s.mu.Lock()
		ifname, log := s.cfg.Interface, s.cfg.Logger
		s.mu.Unlock()
		select { // a reopen request for the interface opened now is moot
		case <-s.reopenc:
		default:
		}
		t, err := s.open(ifname, log)
		if err == nil {
			log.Info("dhcp: serving", "interface", ifname)
			return t, nil
		}
		if first {
			return nil, err
		}
		log.Error("dhcp: cannot serve on the new interface, will retry", "interface", ifname, "error", err)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-s.reopenc:
		case <-time.After(reopenRetry):
		}
	}
}

// serveTransport reads and answers messages on t until ctx ends or the
// interface changes.
func (s *Server) serveTransport(ctx context.Context, t transport) {
	stop := make(chan struct{})
	watchDone := make(chan struct{})
	go s.routineWatch(ctx, t, stop, watchDone)
	defer func() {
		close(stop)
		<-watchDone
	}()
	buf := make([]byte, 1<<16)
	var errLog logLimiter
	errLog.period = 10 * time.Second
	for {
		n, err := t.readFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			if ok, _ := errLog.allow(time.Now()); ok {
				s.logger().Warn("dhcp: read", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		r, ok := s.handlePacket(buf[:n])
		if ok {
			s.send(t, r)
		}
	}
}

// routineWatch closes t, which ends serveTransport's read, when ctx ends or
// Reconfigure changes the interface; it returns when stop is closed.
func (s *Server) routineWatch(ctx context.Context, t transport, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	select {
	case <-ctx.Done():
		t.close()
	case <-s.reopenc:
		t.close()
	case <-stop:
	}
}

// routineFlush writes the lease file after changes, at most once per
// flushInterval, until ctx ends. Failed writes are retried after
// flushRetry.
func (s *Server) routineFlush(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.dirtyc:
		}
		if wait := flushInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		if err := s.flush(); err != nil {
			s.logger().Error("dhcp: lease file write failed, will retry", "error", err, "retry_in", flushRetry)
			last = last.Add(flushRetry - flushInterval) // next attempt in flushRetry
			select {
			case s.dirtyc <- struct{}{}:
			default:
			}
		}
	}
}

// send transmits r on t.
func (s *Server) send(t transport, r response) {
	b := r.msg.ToBytes()
	bcast := netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), clientPort)
	var err error
	switch r.kind {
	case toUnicast:
		err = t.sendUDP(b, netip.AddrPortFrom(r.ip, clientPort))
	case toHW:
		err = t.sendHW(b, r.hw, r.src, r.ip)
		if errors.Is(err, errNoHW) {
			err = t.sendUDP(b, bcast)
		}
	default:
		err = t.sendUDP(b, bcast)
	}
	if err != nil {
		s.stats.sendErrors.Add(1)
		s.mu.Lock()
		ok, suppressed := s.sendErrLog.allow(s.now())
		s.mu.Unlock()
		if ok {
			s.logger().Warn("dhcp: send reply", "mac", r.msg.ClientHWAddr.String(), "error", err, "suppressed", suppressed)
		}
	}
}

// logger returns the configured logger.
func (s *Server) logger() *slog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Logger
}
