package flowtable

import (
	"errors"
	"fmt"
)

// ErrConflict means a Saved flow cannot be restored as it was: its NAT port
// lies outside this table's partition, or is held by another mapping, or
// its LAN endpoint already has a different NAT port on that uplink.
var ErrConflict = errors.New("flowtable: saved flow conflicts with the table")

// Saved is a flow as [Entry.Save] hands it out and [Table.Restore] takes it
// back: everything a Table knows about the flow, with no table-internal
// indexes. It is how a restarting dataplane hands its flows to the next
// process. Created and LastSeen are in the clock of the table that saved
// it; the caller moves them to the clock of the table it restores into.
type Saved struct {
	Key       Key
	Uplink    uint8
	State     State
	TCPSeen   uint8 // the TCP state machine's memory (which side sent data, which a FIN)
	NATAddr   [4]byte
	NATPort   uint16
	Decision  uint32
	RemoteSeq uint32
	Created   int64
	LastSeen  int64

	PacketsOut, BytesOut uint64
	PacketsIn, BytesIn   uint64
}

// Save returns the flow as a Saved.
func (e *Entry) Save() Saved {
	return Saved{
		Key: e.Key, Uplink: e.Uplink, State: e.State, TCPSeen: e.tcp,
		NATAddr: e.NATAddr, NATPort: e.NATPort, Decision: e.Decision, RemoteSeq: e.RemoteSeq,
		Created: e.Created, LastSeen: e.LastSeen,
		PacketsOut: e.PacketsOut, BytesOut: e.BytesOut, PacketsIn: e.PacketsIn, BytesIn: e.BytesIn,
	}
}

// PortOwner reports whether NAT port p belongs to this table's partition
// of the port range (p % Workers == Worker, within Config.Ports).
func (t *Table) PortOwner(p uint16) bool {
	return int(p) >= t.first && p <= t.ports.Hi && int(p)%t.workers == t.worker
}

// Restore puts a saved flow back, with its NAT port, state, timers and
// counters, and returns it. It is for a table that is being filled from a
// handover, before packets flow: it never evicts and never allocates a
// different port. Flows should be restored oldest LastSeen first: each goes
// to the head of its timeout list, and one older than the newest flow of
// its class is taken as seen at that flow's LastSeen, so the lists stay
// ordered and expiry stays exact (it only ever expires later).
//
// Errors: ErrProto, ErrUplink, ErrInvalidConfig (a state that does not fit
// the protocol), ErrExists (the key or reply key is taken), ErrConflict
// (see its doc), ErrHostLimit, ErrFull. On error the table is unchanged.
// Restore allocates only as Create does.
func (t *Table) Restore(s Saved) (*Entry, error) {
	k := s.Key
	pc := protoClass(k.Proto)
	if pc < 0 {
		return nil, ErrProto
	}
	if int(s.Uplink) >= t.cfg.MaxUplinks {
		return nil, ErrUplink
	}
	switch {
	case s.State > StateClosed,
		k.Proto == ProtoTCP && s.State == StateActive,
		k.Proto != ProtoTCP && s.State > StateActive:
		return nil, fmt.Errorf("%w: state %v for protocol %d", ErrInvalidConfig, s.State, k.Proto)
	}
	if !t.PortOwner(s.NATPort) {
		return nil, fmt.Errorf("%w: NAT port %d is not in worker %d's partition", ErrConflict, s.NATPort, t.worker)
	}
	if t.Lookup(k) != nil {
		return nil, ErrExists
	}
	rk := ReplyKey{Remote: k.Dst, RemotePort: k.DstPort, NATPort: s.NATPort, Uplink: s.Uplink, Proto: k.Proto}
	if t.LookupReply(rk) != nil {
		return nil, ErrExists
	}
	if t.n >= t.cfg.Capacity {
		t.stats.Full++
		return nil, ErrFull
	}
	hslot, hfound, err := t.hostRoom(k.Src)
	if err != nil {
		return nil, err
	}
	mi, err := t.acquirePort(k.Src, k.SrcPort, k.Proto, s.Uplink, s.NATPort)
	if err != nil {
		return nil, err
	}
	idx := t.allocEntry()
	if idx < 0 { // cannot happen below Capacity
		t.release(mi)
		t.stats.Full++
		return nil, ErrFull
	}
	class := initialClass(k.Proto)
	if k.Proto == ProtoTCP {
		class = tcpClass(s.State)
	}
	last := s.LastSeen
	if h := t.lists[class].head; h >= 0 && t.entry(h).LastSeen > last {
		last = t.entry(h).LastSeen
	}
	if last > t.clock {
		t.clock = last
	}
	e := t.entry(idx)
	*e = Entry{
		Key: k, Uplink: s.Uplink, State: s.State, NATAddr: s.NATAddr, NATPort: s.NATPort,
		class: class, tcp: s.TCPSeen, Decision: s.Decision, RemoteSeq: s.RemoteSeq,
		idx: idx, mapping: mi, Created: s.Created, LastSeen: last,
		PacketsOut: s.PacketsOut, BytesOut: s.BytesOut, PacketsIn: s.PacketsIn, BytesIn: s.BytesIn,
	}
	if k.Proto != ProtoTCP {
		e.tcp = 0
	}
	t.link(e, &rk, hslot, hfound)
	return e, nil
}

// acquirePort takes a reference on the mapping for (src, srcPort, proto,
// uplink) with NAT port port: the existing mapping if it has that port
// (ErrConflict if it has another), else a new one taking exactly that port
// (ErrConflict if another mapping holds it). port must be in this table's
// partition.
func (t *Table) acquirePort(src [4]byte, srcPort uint16, proto, uplink uint8, port uint16) (int32, error) {
	h := t.hash.mapping(src, srcPort, proto, uplink)
	if mi := t.findMapping(h, src, srcPort, proto, uplink); mi >= 0 {
		m := t.mappingAt(mi)
		if m.natPort != port {
			return -1, fmt.Errorf("%w: %v:%d already maps to port %d, not %d", ErrConflict, src, srcPort, m.natPort, port)
		}
		m.refs++
		return mi, nil
	}
	if t.mapFree < 0 && t.mapHW >= t.mapCap {
		return -1, ErrFull
	}
	pl := &t.pools[int(uplink)*numProtoClasses+protoClass(proto)]
	if pl.bits == nil {
		t.initPool(pl)
	}
	b := (int(port) - t.first) / t.workers
	if pl.bits[b>>6]&(1<<(b&63)) != 0 {
		return -1, fmt.Errorf("%w: NAT port %d is held by another endpoint", ErrConflict, port)
	}
	pl.bits[b>>6] |= 1 << (b & 63)
	pl.free--
	return t.newMapping(h, src, srcPort, proto, uplink, port), nil
}
