package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/policy"
)

// Uplink is the dataplane's view of one uplink.
type Uplink struct {
	Index     int        // position in the policy's uplink list; also the flow table's uplink id
	Name      string     // for logs
	Ifindex   int        // kernel interface index
	Addr      netip.Addr // the uplink's IPv4 address: the NAT address of its flows
	MTU       int        // largest IPv4 packet the uplink carries
	Available bool       // the uplink may carry new flows
	// LinkHeader is the link-layer header that takes a packet to the
	// uplink's next hop (Ethernet: the gateway's MAC, the device's MAC,
	// type IPv4), empty but not nil on a layer-3 device (PPP, TUN), nil
	// while unknown. With it the dataplane sends TCP super-packets whole
	// through the uplink's packet socket; without it, segment by segment
	// through the raw socket (which resolves the next hop itself).
	LinkHeader []byte
}

// UplinkIO is one uplink's packet I/O: replies come in through ReadBatch,
// NATed packets go out through WriteBatch. Implementations: the AF_PACKET +
// raw-socket pair of OpenUplinkSocket, and dptest's in-memory fake.
//
// ReadBatch is called by one goroutine; WriteBatch by several concurrently
// (one per worker); Close concurrently with both, after which both return
// errors.
type UplinkIO interface {
	// ReadBatch fills bufs[i][offset:] with received IPv4 packets addressed
	// to the uplink and bufs[i][offset-packet.VirtioNetHdrLen:offset] with
	// each packet's virtio-net header (zero when the packet needs no
	// checksum or segmentation work), and sizes[i] with the IPv4 length. It
	// blocks until at least one packet arrives.
	ReadBatch(bufs [][]byte, sizes []int, offset int) (int, error)
	// WriteBatch sends the IPv4 packets bufs[i][offset:] out of the uplink,
	// letting the kernel route them and resolve the next hop. It returns
	// how many were sent.
	WriteBatch(bufs [][]byte, offset int) (int, error)
	// WriteFrames sends complete frames as they are: a virtio-net header
	// (packet.VirtioNetHdrLen bytes, offsets relative to the frame's link
	// header), the uplink's link-layer header (Uplink.LinkHeader), an IPv4
	// packet — typically a TCP super-packet the device or kernel segments.
	WriteFrames(frames [][]byte) (int, error)
	Close() error
}

// OpenUplinkFunc opens the I/O of one uplink: replies to u.Addr on NAT ports
// in ports, and sending from u.Addr.
type OpenUplinkFunc func(u Uplink, ports flowtable.PortRange) (UplinkIO, error)

// Config configures an Engine.
type Config struct {
	TUN        LANIO          // the LAN side; the engine owns it from New on and Close closes it
	OpenUplink OpenUplinkFunc // opens uplink I/O when an uplink gains an address
	Workers    int            // flow-table shards and worker goroutines; 0 = GOMAXPROCS
	// Flows configures the flow tables. Capacity and MaxFlowsPerHost are
	// the engine's: each of the W workers' tables gets ceil(Capacity/W)
	// flows and a per-host limit of ceil(MaxFlowsPerHost/W). A LAN host's
	// flows are spread over the workers by the hash of their LAN endpoint
	// (source address, port, protocol), so a host can hold at most
	// W·ceil(MaxFlowsPerHost/W) flows, that is between MaxFlowsPerHost and
	// MaxFlowsPerHost+W-1; it may be refused sooner when its endpoints
	// hash unevenly — in particular one endpoint (one UDP socket talking
	// to many peers) lives on one worker and gets at most
	// ceil(MaxFlowsPerHost/W) flows. Worker, Workers and MaxUplinks are
	// set by New.
	Flows flowtable.Config
	// RouterAddr is the router's LAN address, the source of the ICMP errors
	// it sends to LAN hosts (RFC 1812 §4.3.2.4: an address of the interface
	// the offending packet arrived on). A LAN packet with RouterAddr as its
	// source is spoofed and dropped (OutDropSpoofed).
	RouterAddr netip.Addr
	// LANPrefixes are the IPv4 prefixes LAN hosts' addresses lie in. When
	// set, a packet from the LAN whose source is in none of them is
	// dropped and counted (OutDropSpoofed) before any flow or ICMP error is
	// made for it: RFC 2827 ingress filtering, so a LAN host cannot have
	// the router NAT packets with a forged source (whose replies would go
	// to another host) nor make it answer such a source. Empty: no prefix
	// check. Never-valid sources and destinations (OutDropBadSource,
	// OutDropBadDestination) are dropped either way. Checked linearly per
	// packet: meant for a handful of prefixes.
	LANPrefixes []netip.Prefix
	// MaxUplinks bounds uplink indexes (default 32).
	MaxUplinks int
	// Buffers bounds the packet buffers in flight (default 4096).
	Buffers int
	// QueueLen is each worker's queue of batches (default 256).
	QueueLen int
	// ExpireEvery is how often a worker expires idle flows (default 1s).
	ExpireEvery time.Duration
	// TrimEvery is the window after which packet buffers that stayed
	// unused all window long are released to the garbage collector, so
	// memory taken by a burst comes back (default 10s).
	TrimEvery time.Duration
	Logger    *slog.Logger
}

// Engine is the running dataplane. Its methods are safe for concurrent use.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	tunDev  LANIO
	gsoLAN  bool // the LAN device takes super-packets
	workers []*worker
	bufs    *bufPool
	batches *batchPool
	snap    atomic.Pointer[snapshot]

	rdCount counters // the TUN reader's counters
	rxCount []counters

	lan    []prefix4 // Config.LANPrefixes; empty: no check
	router uint32    // Config.RouterAddr
	// exhausted counts, per uplink index, packets that would have made a
	// new flow there but found no free NAT port (each packet of a flow
	// that could not be made counts, whether it then fell back to another
	// uplink or was dropped), since routineReport last looked.
	exhausted []atomic.Uint64

	mu      sync.Mutex // guards ports, started, closed; serialises Update
	ports   map[int]*uplinkPort
	started bool
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// snapshot is the immutable uplink view the workers load once per batch.
type snapshot struct {
	uplinks []uplinkState // by index; entries of unknown index have ok == false
	policy  *policy.Policy
}

type uplinkState struct {
	Uplink
	ok    bool
	addr4 [4]byte
	mss   uint16 // MTU - 40: the TCP MSS that fits the uplink
	port  *uplinkPort
	// gso: super-packets can be sent whole, with linkHdr in front.
	gso     bool
	linkHdr []byte
}

// uplinkPort is an open UplinkIO plus what it was opened for.
type uplinkPort struct {
	io      UplinkIO
	ifindex int
	addr    netip.Addr
	index   int
	// mu keeps Close from racing a WriteBatch: writers hold it shared.
	mu     sync.RWMutex
	closed bool
	// rxStarted (guarded by Engine.mu) tells whether routineUplinkRx runs;
	// it closes done when it returns.
	rxStarted bool
	done      chan struct{}
}

func (p *uplinkPort) write(bufs [][]byte) (int, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return 0, errPortClosed
	}
	return p.io.WriteBatch(bufs, headroom)
}

func (p *uplinkPort) writeFrames(frames [][]byte) (int, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return 0, errPortClosed
	}
	return p.io.WriteFrames(frames)
}

func (p *uplinkPort) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.io.Close()
	}
	p.mu.Unlock()
}

var errPortClosed = errors.New("dataplane: uplink socket closed")

// New validates cfg and builds an Engine. Start runs it.
func New(cfg Config) (*Engine, error) {
	if cfg.TUN == nil {
		return nil, errors.New("dataplane: no TUN device")
	}
	if cfg.OpenUplink == nil {
		return nil, errors.New("dataplane: no uplink opener")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Workers > 64 {
		return nil, fmt.Errorf("dataplane: %d workers: at most 64", cfg.Workers)
	}
	if cfg.MaxUplinks <= 0 {
		cfg.MaxUplinks = 32
	}
	if cfg.MaxUplinks > 255 {
		return nil, fmt.Errorf("dataplane: max uplinks %d: at most 255", cfg.MaxUplinks)
	}
	if cfg.Buffers <= 0 {
		cfg.Buffers = 4096
	}
	if cfg.Buffers < 4*batchSize {
		cfg.Buffers = 4 * batchSize
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 256
	}
	if cfg.ExpireEvery <= 0 {
		cfg.ExpireEvery = time.Second
	}
	if cfg.TrimEvery <= 0 {
		cfg.TrimEvery = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !cfg.RouterAddr.Is4() {
		return nil, fmt.Errorf("dataplane: router LAN address %v is not IPv4", cfg.RouterAddr)
	}
	lan, err := compilePrefixes(cfg.LANPrefixes)
	if err != nil {
		return nil, err
	}
	if cfg.Flows.MaxFlowsPerHost < 0 {
		return nil, fmt.Errorf("dataplane: max flows per host %d is negative", cfg.Flows.MaxFlowsPerHost)
	}
	router := cfg.RouterAddr.As4()
	e := &Engine{
		cfg:       cfg,
		log:       cfg.Logger,
		tunDev:    cfg.TUN,
		bufs:      newBufPool(cfg.Buffers),
		batches:   newBatchPool(cfg.Workers*cfg.QueueLen + 4*(cfg.MaxUplinks+1)),
		ports:     make(map[int]*uplinkPort),
		rxCount:   make([]counters, cfg.MaxUplinks),
		lan:       lan,
		router:    be32(router),
		exhausted: make([]atomic.Uint64, cfg.MaxUplinks),
	}
	capacity := cfg.Flows.Capacity
	for i := 0; i < cfg.Workers; i++ {
		fc := cfg.Flows
		fc.Worker, fc.Workers = i, cfg.Workers
		fc.MaxUplinks = cfg.MaxUplinks
		fc.Capacity = (capacity + cfg.Workers - 1) / cfg.Workers
		fc.MaxFlowsPerHost = (cfg.Flows.MaxFlowsPerHost + cfg.Workers - 1) / cfg.Workers
		ft, err := flowtable.New(fc)
		if err != nil {
			return nil, fmt.Errorf("dataplane: flow table: %w", err)
		}
		e.workers = append(e.workers, newWorker(e, i, ft))
	}
	if g, ok := cfg.TUN.(interface{ CanGSO() bool }); ok {
		e.gsoLAN = g.CanGSO()
	}
	e.snap.Store(&snapshot{})
	return e, nil
}

// Workers returns the number of workers.
func (e *Engine) Workers() int { return len(e.workers) }

// Start starts the engine's goroutines. They run until Close.
func (e *Engine) Start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started || e.closed {
		return
	}
	e.started = true
	e.ctx, e.cancel = context.WithCancel(context.Background())
	for _, w := range e.workers {
		e.wg.Add(1)
		go w.routineWorker(e.ctx, &e.wg)
	}
	e.wg.Add(1)
	go e.routineTUNRead(e.ctx)
	e.wg.Add(1)
	go e.routineReport(e.ctx)
	for _, p := range e.ports {
		e.startRx(p)
	}
}

// Update publishes a new uplink view: uplinks (by Index) and the policy that
// chooses among them. It opens the I/O of uplinks that gained an address or
// changed address or interface, and closes the I/O of those that lost it.
// Flows stay where they are; a flow whose uplink lost its address or
// availability is dealt with by its worker when its next packet arrives.
func (e *Engine) Update(uplinks []Uplink, pol *policy.Policy) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("dataplane: engine closed")
	}
	s := &snapshot{policy: pol, uplinks: make([]uplinkState, e.cfg.MaxUplinks)}
	var errs []error
	want := make(map[int]bool)
	for _, u := range uplinks {
		if u.Index < 0 || u.Index >= e.cfg.MaxUplinks {
			errs = append(errs, fmt.Errorf("dataplane: uplink %q index %d out of range", u.Name, u.Index))
			continue
		}
		st := uplinkState{Uplink: u, ok: true}
		if u.MTU <= 0 {
			st.MTU = 1500
		}
		if st.MTU < 576 {
			st.MTU = 576
		}
		st.mss = uint16(st.MTU - 40)
		if u.LinkHeader != nil && len(u.LinkHeader) <= headroom-packetVirtioLen {
			st.gso, st.linkHdr = true, append([]byte{}, u.LinkHeader...)
		}
		if u.Addr.Is4() && u.Ifindex > 0 {
			st.addr4 = u.Addr.As4()
			want[u.Index] = true
			p := e.ports[u.Index]
			if p != nil && (p.addr != u.Addr || p.ifindex != u.Ifindex) {
				e.closePort(p)
				p = nil
			}
			if p == nil {
				io, err := e.cfg.OpenUplink(u, e.cfg.Flows.Ports)
				if err != nil {
					errs = append(errs, fmt.Errorf("dataplane: open uplink %s: %w", u.Name, err))
				} else {
					p = &uplinkPort{io: io, ifindex: u.Ifindex, addr: u.Addr, index: u.Index, done: make(chan struct{})}
					e.ports[u.Index] = p
					if e.started {
						e.startRx(p)
					}
				}
			}
			st.port = p
		}
		s.uplinks[u.Index] = st
	}
	for i, p := range e.ports {
		if !want[i] {
			e.closePort(p)
		}
	}
	e.snap.Store(s)
	return errors.Join(errs...)
}

func (e *Engine) closePort(p *uplinkPort) {
	p.close()
	delete(e.ports, p.index)
	if p.rxStarted {
		<-p.done
	}
}

func (e *Engine) startRx(p *uplinkPort) {
	p.rxStarted = true
	e.wg.Add(1)
	go e.routineUplinkRx(e.ctx, p)
}

// Close stops every goroutine, closes the uplink I/O and the TUN device, and
// waits for the goroutines to return.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	started := e.started
	if e.cancel != nil {
		e.cancel()
	}
	for _, p := range e.ports {
		p.close()
	}
	e.mu.Unlock()
	err := e.tunDev.Close()
	if started {
		e.wg.Wait()
	}
	return err
}

// Stats returns a copy of the counters and per-shard flow-table statistics.
// It asks each worker between batches, so it reflects a consistent view of
// each shard.
func (e *Engine) Stats() Stats {
	var s Stats
	add := func(c *counters) {
		for i := range s.Counters {
			s.Counters[i] += c.get(Counter(i))
		}
	}
	add(&e.rdCount)
	for i := range e.rxCount {
		add(&e.rxCount[i])
	}
	for _, w := range e.workers {
		add(&w.count)
		fs := w.flowStats()
		s.FlowStats = append(s.FlowStats, fs)
		s.Flows += fs.Flows
	}
	s.Buffers = e.bufs.allocated()
	return s
}

// FlowShardStats is one worker's flow-table figures.
type FlowShardStats struct {
	Worker int
	Flows  int
	flowtable.Stats
}
