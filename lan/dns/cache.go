package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// cacheKey identifies a cached answer: the question, and the query bits
// that change what an upstream answers (DO: signatures wanted; CD:
// validation disabled upstream).
type cacheKey struct {
	name   string // lower case, fully qualified
	qtype  uint16
	qclass uint16
	do, cd bool
}

// entry is an upstream's answer, ready to be copied to clients. Everything
// but the LRU links and used is immutable once the entry is built, so
// entries are read without locks; prev, next and used are guarded by the
// shard's mutex.
type entry struct {
	key cacheKey
	// wire is the answer with ID 0 and without OPT record; its TTLs are
	// those at stored, capped.
	wire []byte
	// ttls are the offsets in wire of the TTL field of every record.
	ttls []uint16
	// qend is the offset in wire just past the question's name.
	qend int
	// stored is when the answer arrived; expires is the end of its
	// freshness; staleUntil the end of its serve-stale window.
	stored, expires, staleUntil time.Time

	// used is when the entry was last stored or found: the recency that
	// orders entries of different shards when the cache is resized.
	used       time.Time
	prev, next *entry
}

// Header flag bits (RFC 1035 section 4.1.1, RFC 4035 section 3.2).
const (
	flagQR = 0x80 // byte 2
	flagAA = 0x04 // byte 2
	flagTC = 0x02 // byte 2
	flagRD = 0x01 // byte 2
	flagRA = 0x80 // byte 3
	flagAD = 0x20 // byte 3
	flagCD = 0x10 // byte 3
)

// newEntry builds the entry for upstream answer m (NOERROR or NXDOMAIN, its
// question already checked) received at now, and reports whether it may be
// cached. It modifies m. TTLs are capped at MaxCacheTTL; a negative answer
// (NXDOMAIN, or NOERROR without answer records) is cached for the lesser of
// its SOA's TTL and MINIMUM field, capped at MaxNegativeTTL, and the SOA's
// TTL is set to that (RFC 2308 section 5); one without SOA is not cached
// (RFC 2308 section 5). Positive answers are cached for their smallest
// TTL, at least MinCacheTTL.
func newEntry(key cacheKey, m *mdns.Msg, now time.Time, serveStale time.Duration) (*entry, bool, error) {
	// The OPT record is hop-by-hop (RFC 6891 section 6.1.1): ours is
	// added per client.
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr != nil && rr.Header().Rrtype != mdns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	negative := m.Rcode == mdns.RcodeNameError || len(m.Answer) == 0
	ttl := uint32(MaxCacheTTL)
	cacheable := !negative
	for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr == nil {
				return nil, false, errors.New("nil record")
			}
			h := rr.Header()
			h.Ttl = min(h.Ttl, MaxCacheTTL)
			if !negative {
				ttl = min(ttl, h.Ttl)
			}
		}
	}
	if negative {
		for _, rr := range m.Ns {
			if soa, ok := rr.(*mdns.SOA); ok {
				soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl, MaxNegativeTTL)
				ttl = soa.Hdr.Ttl
				cacheable = true
				break
			}
		}
	}
	life := time.Duration(max(ttl, MinCacheTTL)) * time.Second
	m.Id = 0
	m.Response = true
	m.Truncated = false
	m.Compress = true
	wire, err := m.Pack()
	if err != nil {
		return nil, false, fmt.Errorf("pack answer: %w", err)
	}
	if len(wire) > mdns.MaxMsgSize {
		return nil, false, errors.New("answer too long")
	}
	// miekg/dns unpacks some records it cannot pack back (an SOA with
	// empty RDATA): never hand clients what does not parse.
	if err := new(mdns.Msg).Unpack(wire); err != nil {
		return nil, false, fmt.Errorf("repacked answer: %w", err)
	}
	qend, ttls, err := walk(wire)
	if err != nil {
		return nil, false, err
	}
	e := &entry{key: key, wire: wire, ttls: ttls, qend: qend, stored: now, expires: now.Add(life)}
	e.staleUntil = e.expires.Add(serveStale)
	return e, cacheable, nil
}

var errWire = errors.New("malformed message")

// walk returns the offset past the (single) question's name and the offsets
// of every record's TTL field in the packed message b.
func walk(b []byte) (qend int, ttls []uint16, err error) {
	if len(b) < 12 {
		return 0, nil, errWire
	}
	qd := binary.BigEndian.Uint16(b[4:])
	n := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	if qd != 1 {
		return 0, nil, errWire
	}
	off, ok := skipName(b, 12)
	if !ok || off+4 > len(b) {
		return 0, nil, errWire
	}
	qend = off
	off += 4
	ttls = make([]uint16, 0, n)
	for range n {
		if off, ok = skipName(b, off); !ok || off+10 > len(b) {
			return 0, nil, errWire
		}
		ttls = append(ttls, uint16(off+4))
		off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
		if off > len(b) {
			return 0, nil, errWire
		}
	}
	return qend, ttls, nil
}

// skipName returns the offset past the domain name at off.
func skipName(b []byte, off int) (int, bool) {
	for {
		if off >= len(b) {
			return 0, false
		}
		c := int(b[off])
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off + 1, true
			}
			off += 1 + c
		case 0xC0:
			if off+2 > len(b) {
				return 0, false
			}
			return off + 2, true
		default:
			return 0, false
		}
	}
}

// reply returns the answer to q built from e at now: q's ID, flags and
// question name (its case preserved), TTLs decremented by e's age (or
// StaleTTL when stale), our OPT record if q had one, and truncated to q's
// size. Nil means the answer could not be built.
func (e *entry) reply(q *query, now time.Time, stale bool) []byte {
	out := make([]byte, len(e.wire), len(e.wire)+optLen)
	copy(out, e.wire)
	binary.BigEndian.PutUint16(out, q.id)
	out[2] = flagQR | byte(q.opcode&0xF)<<3 | e.wire[2]&flagAA
	if q.rd {
		out[2] |= flagRD
	}
	out[3] = flagRA | e.wire[3]&0x0F
	// RFC 6840 section 5.8: AD only to clients that asked for it (AD or
	// DO set); we always ask upstreams with AD set.
	if q.do || q.ad {
		out[3] |= e.wire[3] & flagAD
	}
	if q.cd {
		out[3] |= flagCD
	}
	var nb [256]byte
	if n, err := mdns.PackDomainName(q.question.Name, nb[:], 0, nil, false); err == nil && 12+n == e.qend {
		copy(out[12:], nb[:n])
	}
	var age int64
	if d := now.Sub(e.stored); d > 0 {
		age = int64(d / time.Second)
	}
	for _, off := range e.ttls {
		t := int64(binary.BigEndian.Uint32(out[off:]))
		if stale {
			t = StaleTTL
		} else {
			t = max(t-age, 0)
		}
		binary.BigEndian.PutUint32(out[off:], uint32(t))
	}
	if q.edns {
		out = appendOPT(out, q.do, 0)
	}
	if len(out) > q.size {
		return truncate(out, q.size)
	}
	return out
}

// optLen is the length of our OPT record (no options).
const optLen = 11

// appendOPT appends our OPT record (RFC 6891 section 6.1.2) to the message
// b and counts it in ARCOUNT. extRcode is the upper 8 bits of the rcode.
func appendOPT(b []byte, do bool, extRcode uint8) []byte {
	var flags byte
	if do {
		flags = 0x80
	}
	b = append(b, 0, 0, byte(mdns.TypeOPT), UDPSize>>8, UDPSize&0xFF, extRcode, 0, flags, 0, 0, 0)
	binary.BigEndian.PutUint16(b[10:], binary.BigEndian.Uint16(b[10:])+1)
	return b
}

// truncate returns the message b cut to at most size bytes, with TC set if
// records were left out (RFC 2181 section 9), or nil.
func truncate(b []byte, size int) []byte {
	var m mdns.Msg
	if err := m.Unpack(b); err != nil {
		return nil
	}
	m.Truncate(size)
	out, err := m.Pack()
	if err != nil || len(out) > max(size, mdns.MinMsgSize) {
		return nil
	}
	return out
}

// cache is the bounded LRU cache of answers, sharded to spread lock
// contention. Safe for concurrent use, resize included.
type cache struct {
	seed     maphash.Seed
	tab      atomic.Pointer[cacheTable]
	resizeMu sync.Mutex // serialises resize
}

// cacheTable is the cache's shards for one size; resize replaces the whole
// table, so its layout never changes.
type cacheTable struct {
	size   int
	shards []cacheShard
}

type cacheShard struct {
	mu  sync.Mutex
	m   map[cacheKey]*entry
	lru entry // sentinel: lru.next is the most recently used
	max int   // immutable
}

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed()}
	c.tab.Store(newCacheTable(size))
	return c
}

// newCacheTable returns an empty table of size entries: one shard below
// 1024 entries (exact LRU order), else 16 (LRU order per shard).
func newCacheTable(size int) *cacheTable {
	n := 16
	if size < 1024 {
		n = 1
	}
	t := &cacheTable{size: size, shards: make([]cacheShard, n)}
	for i := range t.shards {
		s := &t.shards[i]
		s.m = make(map[cacheKey]*entry)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		s.max = (size + n - 1) / n
	}
	return t
}

func (c *cache) shard(t *cacheTable, k cacheKey) *cacheShard {
	if len(t.shards) == 1 {
		return &t.shards[0]
	}
	return &t.shards[maphash.Comparable(c.seed, k)%uint64(len(t.shards))]
}

// get returns the entry for k if it is fresh or within its serve-stale
// window at now, or nil. Entries past their window are removed.
func (c *cache) get(k cacheKey, now time.Time) *entry {
	s := c.shard(c.tab.Load(), k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[k]
	if e == nil {
		return nil
	}
	if !now.Before(e.staleUntil) {
		s.unlink(e)
		delete(s.m, k)
		return nil
	}
	s.unlink(e)
	s.pushFront(e)
	e.used = now
	return e
}

// put stores e, replacing the entry with its key and evicting the least
// recently used entries beyond the shard's size.
func (c *cache) put(e *entry) {
	s := c.shard(c.tab.Load(), e.key)
	if s.max == 0 { // no cache
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e.used = e.stored
	s.add(e)
}

// add stores e in s, evicting the least recently used entries beyond the
// shard's size. The caller holds s.mu or owns s.
func (s *cacheShard) add(e *entry) {
	if old := s.m[e.key]; old != nil {
		s.unlink(old)
	}
	s.m[e.key] = e
	s.pushFront(e)
	for len(s.m) > s.max {
		last := s.lru.prev
		s.unlink(last)
		delete(s.m, last.key)
	}
}

func (c *cache) len() int {
	t := c.tab.Load()
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// resize makes the cache hold at most size entries (0: none). The most
// recently used entries that fit are kept, those past their serve-stale
// window at now dropped. The entries are copied into a new table while the
// old one keeps serving; what is stored in the old one meanwhile is lost
// (a later cache miss).
func (c *cache) resize(size int, now time.Time) {
	c.resizeMu.Lock()
	defer c.resizeMu.Unlock()
	old := c.tab.Load()
	if old.size == size {
		return
	}
	t := newCacheTable(size)
	if size > 0 {
		// Each shard's entries from least to most recently used, copied:
		// the old table's readers still move its entries in its lists.
		lists := make([][]*entry, len(old.shards))
		for i := range old.shards {
			s := &old.shards[i]
			s.mu.Lock()
			for e := s.lru.prev; e != &s.lru; e = e.prev {
				if now.Before(e.staleUntil) {
					lists[i] = append(lists[i], e.clone())
				}
			}
			s.mu.Unlock()
		}
		// Merge the lists by last use, keeping each one's order, and add
		// from least to most recently used: the shards' own eviction
		// keeps the most recent that fit.
		for {
			best := -1
			for i, l := range lists {
				if len(l) > 0 && (best < 0 || l[0].used.Before(lists[best][0].used)) {
					best = i
				}
			}
			if best < 0 {
				break
			}
			e := lists[best][0]
			lists[best] = lists[best][1:]
			c.shard(t, e.key).add(e)
		}
	}
	c.tab.Store(t)
}

// clone returns a copy of e outside any list.
func (e *entry) clone() *entry {
	return &entry{
		key: e.key, wire: e.wire, ttls: e.ttls, qend: e.qend,
		stored: e.stored, expires: e.expires, staleUntil: e.staleUntil, used: e.used,
	}
}

func (s *cacheShard) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *cacheShard) pushFront(e *entry) {
	e.prev, e.next = &s.lru, s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}
