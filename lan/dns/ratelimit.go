package dns

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// maxClients bounds the clients whose rate the forwarder tracks (one
// bucket each, a few dozen bytes): a /16 of LAN hosts. Past it, clients
// without a bucket of their own share one per shard.
const maxClients = 1 << 16

const rlShards = 16

// rateLimiter is a token bucket per client IP. Safe for concurrent use;
// setRate changes the rate of every bucket.
type rateLimiter struct {
	seed   maphash.Seed
	shards [rlShards]rlShard
}

type rlShard struct {
	mu       sync.Mutex
	rate     float64 // tokens per second and burst, the same in every shard but while setRate runs
	m        map[netip.Addr]tokens
	overflow tokens
}

// tokens is a token bucket whose burst is one second's worth of its rate.
type tokens struct {
	n    float64
	last time.Time
}

func newRateLimiter(perSecond int) *rateLimiter {
	r := &rateLimiter{seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].rate = float64(perSecond)
		r.shards[i].m = make(map[netip.Addr]tokens)
		r.shards[i].overflow = tokens{n: float64(perSecond)}
	}
	return r
}

// setRate makes every bucket refill at perSecond tokens per second and hold
// at most that many, keeping the tokens each client has left (capped at the
// new burst at its next query).
func (r *rateLimiter) setRate(perSecond int) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.rate = float64(perSecond)
		s.mu.Unlock()
	}
}

// allow takes a token from a's bucket at now and reports whether there
// was one.
func (r *rateLimiter) allow(a netip.Addr, now time.Time) bool {
	s := &r.shards[maphash.Comparable(r.seed, a)%rlShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[a]
	if !ok {
		if len(s.m) >= maxClients/rlShards {
			s.sweep(s.rate, now)
		}
		if len(s.m) >= maxClients/rlShards {
			return s.overflow.take(s.rate, now)
		}
		t = tokens{n: s.rate, last: now}
	}
	ok = t.take(s.rate, now)
	s.m[a] = t
	return ok
}

// sweep forgets the clients whose bucket is full again: a fresh bucket is
// the same.
func (s *rlShard) sweep(rate float64, now time.Time) {
	for a, t := range s.m {
		if t.n+now.Sub(t.last).Seconds()*rate >= rate {
			delete(s.m, a)
		}
	}
}

// take refills t for the time since its last use, up to rate (a bucket
// filled under a higher rate is capped too), and takes a token.
func (t *tokens) take(rate float64, now time.Time) bool {
	if d := now.Sub(t.last); d > 0 {
		t.n += d.Seconds() * rate
		t.last = now
	}
	t.n = min(t.n, rate)
	if t.n < 1 {
		return false
	}
	t.n--
	return true
}

// bucket is a token bucket shared by its users. Safe for concurrent use.
type bucket struct {
	mu   sync.Mutex
	rate float64
	t    tokens
}

func newBucket(perSecond int, now time.Time) *bucket {
	return &bucket{rate: float64(perSecond), t: tokens{n: float64(perSecond), last: now}}
}

func (b *bucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.t.take(b.rate, now)
}
