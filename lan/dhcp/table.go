package dhcp

import (
	"bytes"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Hold times of addresses that are not leased.
const (
	// offerHold is how long an offered address stays reserved for the
	// client it was offered to (RFC 2131 section 4.3.1: the server need not
	// reserve it, but should avoid offering it to another client).
	offerHold = 30 * time.Second
	// declineHold is how long an address a client declined (RFC 2131
	// section 4.3.3: another host uses it) is kept out of the pool.
	declineHold = 10 * time.Minute
)

// clientKey identifies a client: its client identifier (option 61) if it
// sent one, else its hardware address (RFC 2131 section 4.2).
type clientKey string

func keyOf(mac net.HardwareAddr, clientID []byte) clientKey {
	if len(clientID) > 0 {
		return clientKey("i" + string(clientID))
	}
	return clientKey("m" + string(mac))
}

// client is what a message tells about its sender.
type client struct {
	key      clientKey
	mac      net.HardwareAddr
	clientID []byte
	hostname string // sanitised option 12, "" if absent or invalid
}

// binding is the state of one address that is not plainly free: leased
// (expiry in the future), previously leased (expiry in the past, kept so the
// client gets the same address back), offered (hold in the future) or
// declined (key "", hold in the future).
type binding struct {
	addr     netip.Addr
	key      clientKey
	mac      net.HardwareAddr
	clientID []byte
	hostname string
	expiry   time.Time // end of the lease; zero if never leased
	hold     time.Time // offered or declined until
}

func (b *binding) active(now time.Time) bool { return now.Before(b.expiry) }
func (b *binding) busy(now time.Time) bool   { return b.active(now) || now.Before(b.hold) }
func (b *binding) declined() bool            { return b.key == "" }

// lastUse is when b stopped (or stops) being busy; the oldest is reused
// first when the pool has no never-used address left.
func (b *binding) lastUse() time.Time {
	if b.hold.After(b.expiry) {
		return b.hold
	}
	return b.expiry
}

// table is the lease database. Every binding is in byAddr; a client's
// binding is also in byClient (one binding per client). Bindings exist only
// for pool and reserved addresses, so the table never holds more than
// MaxPoolSize+len(Reservations) entries. A table is not safe for concurrent
// use; Server guards it with its mutex.
type table struct {
	cfg       *Config
	resByMAC  map[string]Reservation
	resByAddr map[netip.Addr]Reservation
	resByName map[string]Reservation // lower-case Hostname
	byAddr    map[netip.Addr]*binding
	byClient  map[clientKey]*binding
	names     map[string]*binding // lower-case hostname → newest binding with it
	poolStart uint32
	poolSize  uint32

	offersGivenAway uint64 // offers taken back for another client (pool full)
}

func newTable(cfg *Config) *table {
	t := &table{
		byAddr:   make(map[netip.Addr]*binding),
		byClient: make(map[clientKey]*binding),
		names:    make(map[string]*binding),
	}
	t.setConfig(cfg)
	return t
}

// setConfig installs cfg (already normalized) and drops every binding that
// no longer fits it. It returns the dropped bindings.
func (t *table) setConfig(cfg *Config) []*binding {
	t.cfg = cfg
	t.resByMAC = make(map[string]Reservation, len(cfg.Reservations))
	t.resByAddr = make(map[netip.Addr]Reservation, len(cfg.Reservations))
	t.resByName = make(map[string]Reservation, len(cfg.Reservations))
	for _, r := range cfg.Reservations {
		t.resByMAC[string(r.MAC)] = r
		t.resByAddr[r.Addr] = r
		if r.Hostname != "" {
			t.resByName[strings.ToLower(r.Hostname)] = r
		}
	}
	t.poolStart = addrToU32(cfg.RangeStart)
	t.poolSize = addrToU32(cfg.RangeEnd) - t.poolStart + 1
	var dropped []*binding
	for _, b := range t.sorted() {
		ok := t.validFor(b.mac, b.addr)
		if b.declined() {
			ok = t.dynamic(b.addr) || t.isReserved(b.addr)
		}
		if !ok {
			t.remove(b)
			dropped = append(dropped, b)
			continue
		}
		if r, has := t.resByMAC[string(b.mac)]; has && r.Hostname != "" && !b.declined() {
			t.setName(b, r.Hostname)
		}
	}
	return dropped
}

func (t *table) isReserved(a netip.Addr) bool {
	_, ok := t.resByAddr[a]
	return ok
}

// dynamic reports whether a may be handed out from the pool.
func (t *table) dynamic(a netip.Addr) bool {
	if !a.Is4() || addrToU32(a)-t.poolStart >= t.poolSize {
		return false
	}
	return a != t.cfg.ServerAddr && !t.isReserved(a)
}

// validFor reports whether a may be leased to the client with hardware
// address mac: its reservation if it has one, else a pool address.
func (t *table) validFor(mac net.HardwareAddr, a netip.Addr) bool {
	if r, ok := t.resByMAC[string(mac)]; ok {
		return a == r.Addr
	}
	return t.dynamic(a)
}

// canBind reports whether a may be leased to c now: valid for c and not
// busy for another client (nor declined).
func (t *table) canBind(c client, a netip.Addr, now time.Time) bool {
	if !t.validFor(c.mac, a) {
		return false
	}
	b := t.byAddr[a]
	return b == nil || (b.key == c.key && !b.declined()) || !b.busy(now)
}

// pick chooses the address to offer c (RFC 2131 section 4.3.1): its
// reservation; else its current or previous binding if still valid; else
// the requested address if free; else a never-used pool address, searched
// from a position derived from the client key (so a client tends to get
// the same address even after its record is gone, as dnsmasq does); else
// the pool address unused for the longest time; else the pool address
// offered longest ago to a client that has not taken it. ok is false if
// nothing is available (every pool address leased or declined).
//
// Offers are held for offerHold so that a client is not offered what was
// just offered to another, but they give way when the pool runs out: a
// host sending DISCOVERs from many made-up MACs would otherwise hold the
// whole pool in offers it never takes, and starve every other client for
// as long as it keeps going (DHCP starvation). A client whose offer was
// given away gets a NAK for its REQUEST and starts over.
func (t *table) pick(c client, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if r, ok := t.resByMAC[string(c.mac)]; ok {
		return r.Addr, t.canBind(c, r.Addr, now)
	}
	if b := t.byClient[c.key]; b != nil && t.canBind(c, b.addr, now) {
		return b.addr, true
	}
	if requested.IsValid() && t.canBind(c, requested, now) {
		return requested, true
	}
	h := fnv.New32a()
	h.Write([]byte(c.key))
	start := h.Sum32() % t.poolSize
	var oldest, offered *binding
	for i := range t.poolSize {
		a := u32ToAddr(t.poolStart + (start+i)%t.poolSize)
		if !t.dynamic(a) {
			continue
		}
		b := t.byAddr[a]
		if b == nil {
			return a, true
		}
		switch {
		case !b.busy(now):
			if oldest == nil || b.lastUse().Before(oldest.lastUse()) {
				oldest = b
			}
		case !b.active(now) && !b.declined():
			// Only an offer holds it.
			if offered == nil || b.hold.Before(offered.hold) {
				offered = b
			}
		}
	}
	if oldest != nil {
		return oldest.addr, true
	}
	if offered != nil {
		t.offersGivenAway++
		return offered.addr, true
	}
	return netip.Addr{}, false
}

// claim makes a the binding of c, dropping c's binding on another address
// and any lapsed binding of another client on a. The caller has checked
// canBind. It returns the binding, unchanged if c already held a.
func (t *table) claim(c client, a netip.Addr) *binding {
	if b := t.byClient[c.key]; b != nil && b.addr != a {
		t.remove(b)
	}
	b := t.byAddr[a]
	if b != nil && b.key != c.key {
		t.remove(b)
		b = nil
	}
	if b == nil {
		b = &binding{addr: a, key: c.key}
		t.byAddr[a] = b
		t.byClient[c.key] = b
	}
	if !bytes.Equal(b.mac, c.mac) {
		b.mac = bytes.Clone(c.mac)
	}
	if !bytes.Equal(b.clientID, c.clientID) {
		b.clientID = bytes.Clone(c.clientID)
	}
	return b
}

// offer holds a for c for offerHold.
func (t *table) offer(c client, a netip.Addr, now time.Time) {
	b := t.claim(c, a)
	b.hold = now.Add(offerHold)
}

// bind leases a to c until now+LeaseTime and returns the binding.
func (t *table) bind(c client, a netip.Addr, now time.Time) *binding {
	b := t.claim(c, a)
	b.hold = time.Time{}
	b.expiry = now.Add(t.cfg.LeaseTime)
	name := c.hostname
	if r, ok := t.resByMAC[string(c.mac)]; ok && r.Hostname != "" {
		name = r.Hostname
	}
	if name != "" {
		t.setName(b, name)
	}
	return b
}

// forgetOffer drops the hold of c's binding: c chose another server (RFC
// 2131 section 4.3.2, SELECTING with another server identifier). A binding
// that was only an offer is removed.
func (t *table) forgetOffer(c client) {
	b := t.byClient[c.key]
	if b == nil || b.hold.IsZero() {
		return
	}
	b.hold = time.Time{}
	if b.expiry.IsZero() {
		t.remove(b)
	}
}

// release ends c's lease on a now but keeps the record, so that c gets a
// again later (RFC 2131 section 4.3.4). It reports whether c held a.
func (t *table) release(c client, a netip.Addr, now time.Time) bool {
	b := t.byAddr[a]
	if b == nil || b.key != c.key || !b.busy(now) {
		return false
	}
	b.hold = time.Time{}
	if b.active(now) {
		b.expiry = now
	}
	if b.expiry.IsZero() {
		t.remove(b)
	}
	return true
}

// decline marks a unusable for declineHold if it was offered or leased to
// c (RFC 2131 section 4.3.3). Declines from other clients are ignored, so
// that a host cannot take addresses out of the pool that are not its own.
func (t *table) decline(c client, a netip.Addr, now time.Time) bool {
	b := t.byAddr[a]
	if b == nil || b.key != c.key {
		return false
	}
	t.remove(b)
	t.byAddr[a] = &binding{addr: a, hold: now.Add(declineHold)}
	return true
}

// remove deletes b from every index.
func (t *table) remove(b *binding) {
	if t.byAddr[b.addr] == b {
		delete(t.byAddr, b.addr)
	}
	if b.key != "" && t.byClient[b.key] == b {
		delete(t.byClient, b.key)
	}
	t.clearName(b)
}

func (t *table) setName(b *binding, name string) {
	if !strings.EqualFold(b.hostname, name) {
		t.clearName(b)
	}
	b.hostname = name
	t.names[strings.ToLower(name)] = b
}

func (t *table) clearName(b *binding) {
	if b.hostname == "" {
		return
	}
	k := strings.ToLower(b.hostname)
	if t.names[k] == b {
		delete(t.names, k)
	}
}

// lookup returns the address of the client or reservation named name
// (lower case, without domain).
func (t *table) lookup(name string, now time.Time) (netip.Addr, bool) {
	if r, ok := t.resByName[name]; ok {
		return r.Addr, true
	}
	if b := t.names[name]; b != nil && b.active(now) {
		return b.addr, true
	}
	return netip.Addr{}, false
}

// insert adds a binding loaded from the lease file if it fits the
// configuration and does not clash with a newer one. It reports whether b
// was kept.
func (t *table) insert(b *binding) bool {
	if b.key == "" || !t.validFor(b.mac, b.addr) {
		return false
	}
	if o := t.byAddr[b.addr]; o != nil {
		if !b.expiry.After(o.expiry) {
			return false
		}
		t.remove(o)
	}
	if o := t.byClient[b.key]; o != nil {
		if !b.expiry.After(o.expiry) {
			return false
		}
		t.remove(o)
	}
	t.byAddr[b.addr] = b
	t.byClient[b.key] = b
	name := b.hostname
	b.hostname = ""
	if r, ok := t.resByMAC[string(b.mac)]; ok && r.Hostname != "" {
		name = r.Hostname
	}
	if name != "" {
		t.setName(b, name)
	}
	return true
}

// sorted returns every binding, ordered by address.
func (t *table) sorted() []*binding {
	out := make([]*binding, 0, len(t.byAddr))
	for _, b := range t.byAddr {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *binding) int { return a.addr.Compare(b.addr) })
	return out
}

// activeLeases returns the active leases, ordered by address.
func (t *table) activeLeases(now time.Time) []Lease {
	var out []Lease
	for _, b := range t.sorted() {
		if b.active(now) {
			out = append(out, b.lease())
		}
	}
	return out
}

func (t *table) countActive(now time.Time) int {
	n := 0
	for _, b := range t.byAddr {
		if b.active(now) {
			n++
		}
	}
	return n
}

func (b *binding) lease() Lease {
	return Lease{
		MAC:      bytes.Clone(b.mac),
		Addr:     b.addr,
		Hostname: b.hostname,
		ClientID: bytes.Clone(b.clientID),
		Expiry:   b.expiry,
	}
}
