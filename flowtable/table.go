package flowtable

import (
	"fmt"
	"math"
	"time"
)

// Timeout classes, in eviction order (see the package doc).
const (
	classClosed uint8 = iota
	classTransitory
	classICMP
	classUDP
	classEstablished
	numClasses

	classFree uint8 = 0xff // the entry slot is on the free list
)

const (
	chunkShift = 10
	chunkSize  = 1 << chunkShift
	chunkMask  = chunkSize - 1
)

// list is one timeout class's LRU list of arena indexes, most recently
// seen at head; -1 means none.
type list struct {
	head, tail int32
}

// Table is one worker's flow table. It is not safe for concurrent use: it
// belongs to a single dataplane worker goroutine. Create it with New.
type Table struct {
	cfg     Config
	timeout [numClasses]int64

	// entry arena: chunks are appended as needed, the last one sized to
	// Capacity; indexes below hw have been used, free is the free list.
	chunks [][]Entry
	hw     int32
	free   int32
	n      int
	perUp  []int // flows per uplink index
	lists  [numClasses]list
	clock  int64 // largest now seen

	hash hasher
	fwd  index // hash(Key) → entry
	rev  index // hash(ReplyKey) → entry

	// NAT mappings (Capacity+1 slots: a Create at capacity takes its
	// mapping before it evicts) and port pools.
	mapChunks [][]mapping
	mapCap    int32
	mapHW     int32
	mapFree   int32
	mappings  int
	mapIdx    index
	pools     []pool // [uplink*numProtoClasses + protoClass]

	// flows per LAN host, kept only when hostMax > 0
	hostMax int
	hosts   hostCounts

	ports   PortRange
	first   int // lowest port of this worker's partition
	span    int // number of ports in the partition
	worker  int
	workers int

	stats Stats
}

// New returns an empty Table for cfg, after validating it (errors wrap
// ErrInvalidConfig). It allocates little: entries are allocated in chunks
// as flows arrive. With Config.MaxFlowsPerHost set it also allocates the
// per-host counts at once: 8 bytes per slot, between 4/3 and 8/3 slots per
// flow of Capacity.
func New(cfg Config) (*Table, error) {
	if cfg.Capacity < 1 || cfg.Capacity > MaxCapacity {
		return nil, fmt.Errorf("%w: capacity %d not in [1, %d]", ErrInvalidConfig, cfg.Capacity, MaxCapacity)
	}
	if cfg.Workers < 1 || cfg.Workers > 65536 {
		return nil, fmt.Errorf("%w: workers %d not in [1, 65536]", ErrInvalidConfig, cfg.Workers)
	}
	if cfg.Worker < 0 || cfg.Worker >= cfg.Workers {
		return nil, fmt.Errorf("%w: worker %d not in [0, %d)", ErrInvalidConfig, cfg.Worker, cfg.Workers)
	}
	if cfg.MaxUplinks < 1 || cfg.MaxUplinks > 256 {
		return nil, fmt.Errorf("%w: max uplinks %d not in [1, 256]", ErrInvalidConfig, cfg.MaxUplinks)
	}
	if cfg.MaxFlowsPerHost < 0 {
		return nil, fmt.Errorf("%w: max flows per host %d is negative", ErrInvalidConfig, cfg.MaxFlowsPerHost)
	}
	if cfg.Ports == (PortRange{}) {
		cfg.Ports = DefaultPorts()
	}
	if cfg.Ports.Lo == 0 || cfg.Ports.Lo > cfg.Ports.Hi {
		return nil, fmt.Errorf("%w: port range %d-%d: want 1 <= lo <= hi", ErrInvalidConfig, cfg.Ports.Lo, cfg.Ports.Hi)
	}
	lo, hi, w := int(cfg.Ports.Lo), int(cfg.Ports.Hi), cfg.Workers
	first := lo + ((cfg.Worker-lo%w)%w+w)%w
	if first > hi {
		return nil, fmt.Errorf("%w: port range %d-%d has no port p with p %% %d == %d", ErrInvalidConfig, lo, hi, w, cfg.Worker)
	}
	def := DefaultTimeouts()
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"udp", &cfg.Timeouts.UDP, def.UDP},
		{"tcp established", &cfg.Timeouts.TCPEstablished, def.TCPEstablished},
		{"tcp transitory", &cfg.Timeouts.TCPTransitory, def.TCPTransitory},
		{"icmp", &cfg.Timeouts.ICMP, def.ICMP},
		{"tcp closed", &cfg.Timeouts.TCPClosed, def.TCPClosed},
	} {
		if *f.v < 0 {
			return nil, fmt.Errorf("%w: %s timeout %v is negative", ErrInvalidConfig, f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}

	t := &Table{
		cfg:     cfg,
		free:    -1,
		hash:    newHasher(),
		mapCap:  int32(cfg.Capacity) + 1,
		mapFree: -1,
		pools:   make([]pool, cfg.MaxUplinks*numProtoClasses),
		perUp:   make([]int, cfg.MaxUplinks),
		ports:   cfg.Ports,
		first:   first,
		span:    (hi-first)/w + 1,
		worker:  cfg.Worker,
		workers: w,
		hostMax: cfg.MaxFlowsPerHost,
	}
	if t.hostMax > 0 {
		t.hosts = newHostCounts(cfg.Capacity)
	}
	t.timeout[classClosed] = int64(cfg.Timeouts.TCPClosed)
	t.timeout[classTransitory] = int64(cfg.Timeouts.TCPTransitory)
	t.timeout[classICMP] = int64(cfg.Timeouts.ICMP)
	t.timeout[classUDP] = int64(cfg.Timeouts.UDP)
	t.timeout[classEstablished] = int64(cfg.Timeouts.TCPEstablished)
	for c := range t.lists {
		t.lists[c] = list{head: -1, tail: -1}
	}
	return t, nil
}

// Config returns the table's configuration with defaults filled in.
func (t *Table) Config() Config { return t.cfg }

// UplinkLen returns the number of flows pinned to uplink i (0 for an index
// outside MaxUplinks). It is O(1).
func (t *Table) UplinkLen(i int) int {
	if i < 0 || i >= len(t.perUp) {
		return 0
	}
	return t.perUp[i]
}

// Len returns the number of flows in the table.
func (t *Table) Len() int { return t.n }

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	s := t.stats
	s.Flows = uint64(t.n)
	s.PortsInUse = uint64(t.mappings)
	return s
}

func (t *Table) entry(i int32) *Entry {
	return &t.chunks[i>>chunkShift][i&chunkMask]
}

// owns reports whether e is a live flow of t.
func (t *Table) owns(e *Entry) bool {
	return e != nil && e.class != classFree && e.idx >= 0 && e.idx < t.hw && t.entry(e.idx) == e
}

// Lookup returns the flow with LAN-side key k, or nil. It does not allocate.
func (t *Table) Lookup(k Key) *Entry {
	ix := &t.fwd
	if ix.n == 0 {
		return nil
	}
	h := t.hash.key(&k)
	mask := ix.mask
	for p := h & mask; ; p = (p + 1) & mask {
		s := ix.slots[p]
		if s == 0 {
			return nil
		}
		if uint32(s>>32) == h {
			if e := t.entry(slotIdx(s)); e.Key == k {
				return e
			}
		}
	}
}

// LookupReply returns the flow that a packet from the internet with reply
// key rk belongs to, or nil. It does not allocate.
func (t *Table) LookupReply(rk ReplyKey) *Entry {
	ix := &t.rev
	if ix.n == 0 {
		return nil
	}
	h := t.hash.reply(&rk)
	mask := ix.mask
	for p := h & mask; ; p = (p + 1) & mask {
		s := ix.slots[p]
		if s == 0 {
			return nil
		}
		if uint32(s>>32) == h {
			if e := t.entry(slotIdx(s)); e.Key.Dst == rk.Remote && e.Key.DstPort == rk.RemotePort &&
				e.NATPort == rk.NATPort && e.Uplink == rk.Uplink && e.Key.Proto == rk.Proto {
				return e
			}
		}
	}
}

// Create adds a flow for LAN key k over uplink, translated to natAddr and a
// NAT port chosen as described in the package doc, with Created and
// LastSeen set to now and State StateNew. The caller then Touches it with
// the flow's first packet, whatever its TCP flags (loose pickup is the
// caller's choice).
//
// When the table is full, Create first evicts one flow (see the package
// doc). Errors: ErrProto, ErrUplink, ErrExists (k is already in the table),
// ErrHostLimit (k.Src has Config.MaxFlowsPerHost flows already; nothing is
// evicted for it), ErrPortsExhausted, ErrFull. Create does not allocate
// once the arena chunks, indexes and port pools it needs exist.
func (t *Table) Create(k Key, uplink uint8, natAddr [4]byte, now int64) (*Entry, error) {
	pc := protoClass(k.Proto)
	if pc < 0 {
		return nil, ErrProto
	}
	if int(uplink) >= t.cfg.MaxUplinks {
		return nil, ErrUplink
	}
	if t.Lookup(k) != nil {
		return nil, ErrExists
	}
	// The host's count slot (or the empty slot where it goes), found once;
	// found again only if an eviction below moved it.
	hslot, hfound, err := t.hostRoom(k.Src)
	if err != nil {
		return nil, err
	}
	// Take the mapping reference before evicting, so that eviction cannot
	// release the mapping this flow is about to share.
	mi, err := t.acquire(k.Src, k.SrcPort, k.Proto, uplink)
	if err != nil {
		if err == ErrPortsExhausted {
			t.stats.PortsExhausted++
		} else {
			t.stats.Full++
		}
		return nil, err
	}
	rk := ReplyKey{Remote: k.Dst, RemotePort: k.DstPort, NATPort: t.mappingAt(mi).natPort, Uplink: uplink, Proto: k.Proto}
	if t.LookupReply(rk) != nil {
		// Cannot happen while ports are unique per (uplink, proto).
		t.release(mi)
		return nil, ErrExists
	}
	if t.n >= t.cfg.Capacity {
		if !t.evictOne() {
			t.release(mi)
			t.stats.Full++
			return nil, ErrFull
		}
		if t.hostMax > 0 {
			hslot, hfound = t.hostFind(be32(k.Src))
		}
	}
	idx := t.allocEntry()
	if idx < 0 {
		t.release(mi)
		t.stats.Full++
		return nil, ErrFull
	}
	if now > t.clock {
		t.clock = now
	}
	e := t.entry(idx)
	*e = Entry{
		Key:      k,
		Uplink:   uplink,
		State:    StateNew,
		NATAddr:  natAddr,
		NATPort:  rk.NATPort,
		class:    initialClass(k.Proto),
		idx:      idx,
		mapping:  mi,
		Created:  now,
		LastSeen: t.clock,
	}
	t.link(e, &rk, hslot, hfound)
	t.stats.Created++
	return e, nil
}

// hostRoom returns the count slot of host src (or the empty slot where it
// goes) and ErrHostLimit, counted, when the host has hostMax flows already.
// Without a per-host limit it does nothing.
func (t *Table) hostRoom(src [4]byte) (slot uint32, found bool, err error) {
	if t.hostMax == 0 {
		return 0, false, nil
	}
	slot, found = t.hostFind(be32(src))
	if found && int(uint32(t.hosts.slots[slot])) >= t.hostMax {
		t.stats.HostLimited++
		return slot, found, ErrHostLimit
	}
	return slot, found, nil
}

// link makes the filled entry e (reply key rk) a live flow: indexed both
// ways, at the head of its class's list, counted per uplink and per host
// (at the slot hostRoom returned).
func (t *Table) link(e *Entry, rk *ReplyKey, hslot uint32, hfound bool) {
	t.fwd.insert(t.hash.key(&e.Key), e.idx)
	t.rev.insert(t.hash.reply(rk), e.idx)
	t.pushHead(e)
	t.n++
	t.perUp[e.Uplink]++
	if t.hostMax > 0 {
		if hfound {
			t.hosts.slots[hslot]++
		} else {
			t.hosts.slots[hslot] = uint64(be32(e.Key.Src))<<32 | 1
			t.hosts.n++
		}
	}
}

func initialClass(proto uint8) uint8 {
	switch proto {
	case ProtoUDP:
		return classUDP
	case ProtoICMP:
		return classICMP
	}
	return classTransitory
}

// allocEntry returns a free arena index, or -1 when Capacity entries are in
// use.
func (t *Table) allocEntry() int32 {
	if t.free >= 0 {
		i := t.free
		t.free = t.entry(i).next
		return i
	}
	if int(t.hw) >= t.cfg.Capacity {
		return -1
	}
	i := t.hw
	if c := int(i >> chunkShift); c == len(t.chunks) {
		t.chunks = append(t.chunks, make([]Entry, min(chunkSize, t.cfg.Capacity-c<<chunkShift)))
	}
	t.hw++
	return i
}

// evictOne removes the least recently seen flow of the first non-empty
// class in eviction order.
func (t *Table) evictOne() bool {
	for c := range t.lists {
		if tail := t.lists[c].tail; tail >= 0 {
			t.remove(t.entry(tail))
			t.stats.Evicted++
			return true
		}
	}
	return false
}

// Remove deletes flow e and releases its NAT mapping reference. It is a
// no-op if e is nil or not a live flow of t (e.g. already removed).
func (t *Table) Remove(e *Entry) {
	if !t.owns(e) {
		return
	}
	t.remove(e)
	t.stats.Removed++
}

func (t *Table) remove(e *Entry) {
	t.unlink(e)
	rk := e.ReplyKey()
	t.fwd.remove(t.hash.key(&e.Key), e.idx)
	t.rev.remove(t.hash.reply(&rk), e.idx)
	t.release(e.mapping)
	t.perUp[e.Uplink]--
	if t.hostMax > 0 {
		t.hostDec(be32(e.Key.Src))
	}
	*e = Entry{idx: e.idx, class: classFree, prev: -1, next: t.free, mapping: -1}
	t.free = e.idx
	t.n--
}

func (t *Table) pushHead(e *Entry) {
	l := &t.lists[e.class]
	e.prev = -1
	e.next = l.head
	if l.head >= 0 {
		t.entry(l.head).prev = e.idx
	} else {
		l.tail = e.idx
	}
	l.head = e.idx
}

func (t *Table) unlink(e *Entry) {
	l := &t.lists[e.class]
	if e.prev >= 0 {
		t.entry(e.prev).next = e.next
	} else {
		l.head = e.next
	}
	if e.next >= 0 {
		t.entry(e.next).prev = e.prev
	} else {
		l.tail = e.prev
	}
}

// Touch records a packet of bytes bytes in direction dir on flow e at now:
// it updates the counters and LastSeen, runs the TCP state machine with the
// packet's TCP flags (tcpFlags, byte 13 of the TCP header; ignored for UDP
// and ICMP) and moves e to the head of its (possibly new) timeout class.
// It is a no-op if e is not a live flow of t. It does not allocate.
//
// TCP states (loose, conntrack-like; see RFC 5382 §5): a SYN from the LAN
// → SynSent; the remote's SYN(-ACK) → SynRecv; the LAN's ACK → Established;
// a flow picked up without a SYN becomes Established once non-SYN traffic
// has been seen both ways; a FIN from one side → FinWait, from both →
// TimeWait; a RST from either side → Closed. A new SYN from the LAN reopens
// a TimeWait or Closed flow (→ SynSent), and traffic in both directions
// after a RST (a lost or spoofed RST) returns it to Established.
func (t *Table) Touch(e *Entry, dir Dir, tcpFlags uint8, bytes int, now int64) {
	if !t.owns(e) {
		return
	}
	n := uint64(0)
	if bytes > 0 {
		n = uint64(bytes)
	}
	if dir == DirIn {
		e.PacketsIn++
		e.BytesIn += n
	} else {
		dir = DirOut
		e.PacketsOut++
		e.BytesOut += n
	}
	if now > t.clock {
		t.clock = now
	}
	e.LastSeen = t.clock
	c := e.class
	if e.Key.Proto == ProtoTCP {
		e.State, e.tcp = tcpNext(e.State, e.tcp, dir, tcpFlags)
		c = tcpClass(e.State)
	} else if dir == DirIn {
		e.State = StateActive
	}
	if c == e.class && t.lists[c].head == e.idx {
		return
	}
	t.unlink(e)
	e.class = c
	t.pushHead(e)
}

// Repin moves flow e to another uplink with a new NAT mapping for
// (Src, SrcPort, Proto) on that uplink (endpoint-independent, so shared with
// the LAN endpoint's other flows there) and source address natAddr. Used
// for UDP failover. On the same uplink only NATAddr changes. On error
// (ErrNoEntry, ErrUplink, ErrPortsExhausted) e is unchanged.
func (t *Table) Repin(e *Entry, uplink uint8, natAddr [4]byte) error {
	if !t.owns(e) {
		return ErrNoEntry
	}
	if int(uplink) >= t.cfg.MaxUplinks {
		return ErrUplink
	}
	if uplink == e.Uplink {
		e.NATAddr = natAddr
		return nil
	}
	mi, err := t.acquire(e.Key.Src, e.Key.SrcPort, e.Key.Proto, uplink)
	if err != nil {
		if err == ErrPortsExhausted {
			t.stats.PortsExhausted++
		}
		return err
	}
	rk := ReplyKey{Remote: e.Key.Dst, RemotePort: e.Key.DstPort, NATPort: t.mappingAt(mi).natPort, Uplink: uplink, Proto: e.Key.Proto}
	if t.LookupReply(rk) != nil {
		t.release(mi) // cannot happen while ports are unique per (uplink, proto)
		return ErrExists
	}
	old := e.ReplyKey()
	t.rev.remove(t.hash.reply(&old), e.idx)
	t.release(e.mapping)
	e.mapping = mi
	t.perUp[e.Uplink]--
	t.perUp[uplink]++
	e.Uplink = uplink
	e.NATAddr = natAddr
	e.NATPort = rk.NATPort
	t.rev.insert(t.hash.reply(&rk), e.idx)
	t.stats.Repinned++
	return nil
}

// Expire removes every flow idle for at least its class's timeout at now
// (LastSeen + timeout <= now) and returns how many. Its cost is
// O(expired + classes), not O(table). It does not allocate.
func (t *Table) Expire(now int64) int { return t.ExpireN(now, math.MaxInt) }

// ExpireN is Expire removing at most limit flows, so a worker can bound the
// work it does per batch; the rest go on the next call.
func (t *Table) ExpireN(now int64, limit int) int {
	n := 0
	for c := range t.lists {
		l, to := &t.lists[c], t.timeout[c]
		for n < limit && l.tail >= 0 {
			e := t.entry(l.tail)
			if !idleAtLeast(e.LastSeen, now, to) {
				break
			}
			t.remove(e)
			n++
		}
	}
	t.stats.Expired += uint64(n)
	return n
}

// idleAtLeast reports whether now - last >= d without overflowing.
func idleAtLeast(last, now, d int64) bool {
	return now >= last && uint64(now)-uint64(last) >= uint64(d)
}

// ExpiresAt returns the now at which e expires if it sees no more packets
// (LastSeen plus its class's timeout), or 0 if e is not a live flow of t.
func (t *Table) ExpiresAt(e *Entry) int64 {
	if !t.owns(e) {
		return 0
	}
	to := t.timeout[e.class]
	if e.LastSeen > math.MaxInt64-to {
		return math.MaxInt64
	}
	return e.LastSeen + to
}

// Range calls fn for each flow, in no particular order, until fn returns
// false. fn may Touch or Remove any flow; flows it Creates may or may not
// be visited.
func (t *Table) Range(fn func(*Entry) bool) {
	for i := int32(0); i < t.hw; i++ {
		if e := t.entry(i); e.class != classFree && !fn(e) {
			return
		}
	}
}
