package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netns"
)

// testListen and testLAN are newTestForwarder's Listen and AllowedNets.
var (
	testListen = []netip.AddrPort{netip.MustParseAddrPort("10.77.0.1:53")}
	testLAN    = []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}
)

// reconfigure calls f.Reconfigure with c, whose Listen and AllowedNets
// default to newTestForwarder's, and fails the test on error.
func reconfigure(t *testing.T, f *Forwarder, c Config) {
	t.Helper()
	if c.Listen == nil {
		c.Listen = testListen
	}
	if c.AllowedNets == nil {
		c.AllowedNets = testLAN
	}
	if err := f.Reconfigure(c); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
}

// cached reports whether name's A record is answered from the cache: the
// upstream is not asked.
func cached(t *testing.T, f *Forwarder, up *testUpstream, name string) bool {
	t.Helper()
	before := up.queries.Load()
	firstA(t, ask(t, f, client, false, mkQuery(t, name, mdns.TypeA)))
	return up.queries.Load() == before
}

func TestReconfigureHedgeAfter(t *testing.T) {
	slow := newTestUpstream(t, silent)
	fast := newTestUpstream(t, answerA(60, "192.0.2.2"))
	f, _ := newTestForwarder(t, Config{HedgeAfter: 400 * time.Millisecond, Timeout: 2 * time.Second, RatePerClient: -1},
		slow.upstream("isp1"), fast.upstream("isp2"))
	took := func(name string) time.Duration {
		t.Helper()
		start := time.Now()
		if a := firstA(t, ask(t, f, client, false, mkQuery(t, name, mdns.TypeA))); a.A.String() != "192.0.2.2" {
			t.Fatalf("answer: got %v, want isp2's", a)
		}
		return time.Since(start)
	}
	if d := took("before.example."); d < 400*time.Millisecond {
		t.Errorf("before: second upstream answered after %v, want at least HedgeAfter 400ms", d)
	}
	reconfigure(t, f, Config{HedgeAfter: 50 * time.Millisecond, Timeout: 2 * time.Second, RatePerClient: -1})
	d := took("after.example.")
	t.Logf("after Reconfigure: hedged answer after %v", d)
	if d < 50*time.Millisecond || d > 300*time.Millisecond {
		t.Errorf("after: second upstream answered after %v, want about the new HedgeAfter 50ms", d)
	}
	if st := f.Stats(); st.Hedged != 2 {
		t.Errorf("Hedged: got %d, want 2", st.Hedged)
	}
}

func TestReconfigureTimeout(t *testing.T) {
	up := newTestUpstream(t, silent)
	f, _ := newTestForwarder(t, Config{Timeout: 5 * time.Second}, up.upstream("isp1"))
	reconfigure(t, f, Config{HedgeAfter: 20 * time.Millisecond, Timeout: 150 * time.Millisecond})
	start := time.Now()
	m := ask(t, f, client, false, mkQuery(t, "silent.example.", mdns.TypeA))
	took := time.Since(start)
	if m.Rcode != mdns.RcodeServerFailure || took < 150*time.Millisecond || took > time.Second {
		t.Errorf("got %v after %v, want SERVFAIL after the new Timeout 150ms", mdns.RcodeToString[m.Rcode], took)
	}
}

// TestReconfigureCacheSize shrinks and grows a one-shard cache: the most
// recently used entries stay, in LRU order.
func TestReconfigureCacheSize(t *testing.T) {
	up := newTestUpstream(t, answerA(3600, "192.0.2.1"))
	f, clk := newTestForwarder(t, Config{CacheSize: 10}, up.upstream("isp1"))
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("n%d.example.", i)
		firstA(t, ask(t, f, client, false, mkQuery(t, names[i], mdns.TypeA)))
		clk.add(time.Second)
	}
	// n1 and n3 used again: with n8 and n9 the four most recent.
	for _, n := range []string{names[1], names[3]} {
		if !cached(t, f, up, n) {
			t.Fatalf("%s not cached", n)
		}
		clk.add(time.Second)
	}
	reconfigure(t, f, Config{CacheSize: 4})
	if n := f.Stats().CacheEntries; n != 4 {
		t.Errorf("entries after shrinking to 4: got %d", n)
	}
	for _, i := range []int{1, 3, 8, 9} {
		if !cached(t, f, up, names[i]) {
			t.Errorf("%s evicted by the shrink, want it kept (recently used)", names[i])
		}
	}
	if cached(t, f, up, names[0]) {
		t.Errorf("%s kept by the shrink, want it evicted (least recently used)", names[0])
	}
	// The cache holds 4: n0 just pushed out the least recent of those.
	if n := f.Stats().CacheEntries; n != 4 {
		t.Errorf("entries: got %d, want 4", n)
	}

	reconfigure(t, f, Config{CacheSize: 100})
	if n := f.Stats().CacheEntries; n != 4 {
		t.Errorf("entries after growing: got %d, want the 4 kept", n)
	}
	for _, n := range names {
		ask(t, f, client, false, mkQuery(t, n, mdns.TypeA))
	}
	if n := f.Stats().CacheEntries; n != 10 {
		t.Errorf("entries after growing to 100 and 10 queries: got %d, want 10", n)
	}
}

// TestReconfigureCacheShards moves entries between the sharded layout
// (1024 entries and more) and the single shard: the most recently used
// entries across all shards are kept.
func TestReconfigureCacheShards(t *testing.T) {
	up := newTestUpstream(t, answerA(3600, "192.0.2.1"))
	f, clk := newTestForwarder(t, Config{CacheSize: 2048, ServeStale: time.Hour}, up.upstream("isp1"))
	const n = 200
	for i := range n {
		ask(t, f, client, false, mkQuery(t, fmt.Sprintf("s%d.example.", i), mdns.TypeA))
		clk.add(time.Second)
	}
	// s0..s4 used again: they are now the most recent, then s199..s195.
	for i := range 5 {
		if !cached(t, f, up, fmt.Sprintf("s%d.example.", i)) {
			t.Fatalf("s%d not cached", i)
		}
		clk.add(time.Second)
	}
	reconfigure(t, f, Config{CacheSize: 10, ServeStale: time.Hour})
	if got := f.Stats().CacheEntries; got != 10 {
		t.Fatalf("entries after shrinking to one shard of 10: got %d", got)
	}
	for _, i := range []int{0, 1, 2, 3, 4, 195, 196, 197, 198, 199} {
		if !cached(t, f, up, fmt.Sprintf("s%d.example.", i)) {
			t.Errorf("s%d evicted, want the 10 most recently used kept", i)
		}
	}

	reconfigure(t, f, Config{CacheSize: 5000, ServeStale: time.Hour})
	if got := f.Stats().CacheEntries; got != 10 {
		t.Errorf("entries after growing to 16 shards: got %d, want 10", got)
	}
	if !cached(t, f, up, "s0.example.") {
		t.Error("s0 lost by growing")
	}

	// Expired entries are not carried over.
	clk.add(3*time.Hour + time.Minute)
	reconfigure(t, f, Config{CacheSize: 4000, ServeStale: time.Hour})
	if got := f.Stats().CacheEntries; got != 0 {
		t.Errorf("entries past their stale window after a resize: got %d, want 0", got)
	}

	// No cache.
	ask(t, f, client, false, mkQuery(t, "s0.example.", mdns.TypeA))
	reconfigure(t, f, Config{CacheSize: -1})
	if got := f.Stats().CacheEntries; got != 0 {
		t.Errorf("entries with the cache off: got %d", got)
	}
	if s := f.live.Load(); s.CacheSize != 0 || s.ServeStale != 0 {
		t.Errorf("cache off: got CacheSize %d, ServeStale %v, want 0 and 0", s.CacheSize, s.ServeStale)
	}
	for range 2 {
		if cached(t, f, up, "s1.example.") {
			t.Error("answered from the cache while it is off")
		}
	}
}

func TestReconfigureServeStale(t *testing.T) {
	up := newTestUpstream(t, answerA(60, "192.0.2.1"))
	f, clk := newTestForwarder(t, Config{ServeStale: time.Hour}, up.upstream("isp1"))
	q := mkQuery(t, "stale.example.", mdns.TypeA)
	ask(t, f, client, false, q)
	up.setHandler(answerRcode(mdns.RcodeServerFailure, 0))

	clk.add(30 * time.Minute)
	if a := firstA(t, ask(t, f, client, false, q)); a.Hdr.Ttl != StaleTTL {
		t.Fatalf("30 min past expiry with ServeStale 1h: got %v, want a stale answer", a)
	}
	reconfigure(t, f, Config{ServeStale: 10 * time.Minute})
	if m := ask(t, f, client, false, q); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("30 min past expiry with ServeStale 10m: got %v, want SERVFAIL", m)
	}

	// A longer window applies to answers cached from now on.
	up.setHandler(answerA(60, "192.0.2.1"))
	q2 := mkQuery(t, "stale2.example.", mdns.TypeA)
	reconfigure(t, f, Config{ServeStale: 2 * time.Hour})
	ask(t, f, client, false, q2)
	up.setHandler(answerRcode(mdns.RcodeServerFailure, 0))
	clk.add(90 * time.Minute)
	if a := firstA(t, ask(t, f, client, false, q2)); a.Hdr.Ttl != StaleTTL {
		t.Errorf("90 min past expiry with ServeStale 2h: got %v, want a stale answer", a)
	}
	reconfigure(t, f, Config{ServeStale: -1})
	if m := ask(t, f, client, false, q2); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("serve-stale off: got %v, want SERVFAIL", m)
	}
}

func TestReconfigureRateLimit(t *testing.T) {
	f, clk := newTestForwarder(t, Config{
		RatePerClient: -1,
		Local:         func(string) (netip.Addr, bool) { return netip.MustParseAddr("10.77.0.5"), true },
	})
	local := f.live.Load().Local
	q := mkQuery(t, "host.", mdns.TypeA)
	count := func(n int) (answered int) {
		for range n {
			if resp := f.handle(context.Background(), client, false, q); resp != nil {
				answered++
			}
		}
		return answered
	}
	if got := count(100); got != 100 {
		t.Errorf("no limit: %d of 100 answered", got)
	}
	reconfigure(t, f, Config{RatePerClient: 10, Local: local})
	if got := count(30); got != 10 {
		t.Errorf("limit switched on at 10/s: %d of 30 answered, want the burst of 10", got)
	}
	// A higher rate: the client's empty bucket refills faster.
	reconfigure(t, f, Config{RatePerClient: 40, Local: local})
	clk.add(500 * time.Millisecond)
	if got := count(100); got != 20 {
		t.Errorf("after 0.5 s at 40/s: %d answered, want 20", got)
	}
	// A lower rate caps what the client has saved: after a second idle it
	// has 40, takes one, 39 are left.
	clk.add(time.Second)
	if got := count(1); got != 1 {
		t.Fatalf("after 1 s at 40/s: %d of 1 answered", got)
	}
	reconfigure(t, f, Config{RatePerClient: 5, Local: local})
	if got := count(100); got != 5 {
		t.Errorf("full bucket, rate lowered to 5/s: %d answered, want 5", got)
	}
	reconfigure(t, f, Config{RatePerClient: -1, Local: local})
	if got := count(100); got != 100 {
		t.Errorf("limit switched off: %d of 100 answered", got)
	}
}

func TestReconfigureLocalNames(t *testing.T) {
	up := newTestUpstream(t, answerA(60, "192.0.2.9"))
	hosts := func(m map[string]string) func(string) (netip.Addr, bool) {
		return func(h string) (netip.Addr, bool) {
			a, ok := m[h]
			if !ok {
				return netip.Addr{}, false
			}
			return netip.MustParseAddr(a), true
		}
	}
	f, _ := newTestForwarder(t, Config{Domain: "lan", Local: hosts(map[string]string{"laptop": "10.77.0.50"})}, up.upstream("isp1"))
	answer := func(name string) (string, bool) {
		t.Helper()
		m := ask(t, f, client, false, mkQuery(t, name, mdns.TypeA))
		if len(m.Answer) == 0 {
			return mdns.RcodeToString[m.Rcode], m.Authoritative
		}
		return firstA(t, m).A.String(), m.Authoritative
	}
	if a, aa := answer("laptop.lan."); a != "10.77.0.50" || !aa {
		t.Fatalf("laptop.lan before: got %s (AA %v)", a, aa)
	}
	reconfigure(t, f, Config{Domain: "home.arpa", Local: hosts(map[string]string{"laptop": "10.77.0.51"})})
	for _, tt := range []struct{ name, want string }{
		{"laptop.home.arpa.", "10.77.0.51"},
		{"laptop.", "10.77.0.51"},
		{"nobody.home.arpa.", "NXDOMAIN"},
	} {
		if a, aa := answer(tt.name); a != tt.want || !aa {
			t.Errorf("%s: got %s (AA %v), want %s from the new domain and hosts", tt.name, a, aa, tt.want)
		}
	}
	before := up.queries.Load()
	if a, aa := answer("laptop.lan."); a != "192.0.2.9" || aa {
		t.Errorf("laptop.lan after the domain changed: got %s (AA %v), want the upstream's answer", a, aa)
	}
	if up.queries.Load() != before+1 {
		t.Error("the old domain's name did not go upstream")
	}
	m := ask(t, f, client, false, mkQuery(t, "home.arpa.", mdns.TypeSOA))
	if len(m.Answer) != 1 || m.Answer[0].Header().Name != "home.arpa." {
		t.Errorf("SOA of the new domain: got %v", m.Answer)
	}
}

func TestReconfigureAllowedNets(t *testing.T) {
	up := newTestUpstream(t, answerA(60, "192.0.2.9"))
	f, _ := newTestForwarder(t, Config{}, up.upstream("isp1"))
	other := netip.MustParseAddrPort("10.88.0.7:5353")
	q := mkQuery(t, "example.com.", mdns.TypeA)
	if m := ask(t, f, other, false, q); m.Rcode != mdns.RcodeRefused {
		t.Fatalf("10.88.0.7 before: got %v, want REFUSED", mdns.RcodeToString[m.Rcode])
	}
	reconfigure(t, f, Config{AllowedNets: []netip.Prefix{netip.MustParsePrefix("10.88.0.0/16")}})
	if m := ask(t, f, other, false, q); m.Rcode != mdns.RcodeSuccess {
		t.Errorf("10.88.0.7 after: got %v, want an answer", mdns.RcodeToString[m.Rcode])
	}
	if m := ask(t, f, client, false, q); m.Rcode != mdns.RcodeRefused {
		t.Errorf("%v after: got %v, want REFUSED", client, mdns.RcodeToString[m.Rcode])
	}
}

func TestReconfigureRejected(t *testing.T) {
	f, _ := newTestForwarder(t, Config{HedgeAfter: 300 * time.Millisecond, Listen: []netip.AddrPort{
		netip.MustParseAddrPort("10.77.0.1:53"), netip.MustParseAddrPort("10.77.0.1:5353"),
	}})
	ns := netns.NsHandle(1 << 20)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"listen added", Config{Listen: []netip.AddrPort{
			netip.MustParseAddrPort("10.77.0.1:53"), netip.MustParseAddrPort("10.77.0.1:5353"), netip.MustParseAddrPort("10.77.0.2:53"),
		}}, "listen addresses"},
		{"listen changed", Config{Listen: []netip.AddrPort{
			netip.MustParseAddrPort("10.77.0.1:53"), netip.MustParseAddrPort("10.77.0.1:54"),
		}}, "listen addresses"},
		{"netns", Config{Listen: f.cfg.Listen, NetNS: &ns}, "network namespace"},
		{"invalid", Config{Listen: f.cfg.Listen, AllowedNets: []netip.Prefix{{}}}, "invalid"},
		{"bad domain", Config{Listen: f.cfg.Listen, Domain: "a..b"}, "not a domain name"},
	}
	before := f.live.Load()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.HedgeAfter = time.Second // would be applied if accepted
			if tt.cfg.AllowedNets == nil {
				tt.cfg.AllowedNets = testLAN
			}
			err := f.Reconfigure(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Reconfigure: got error %v, want one containing %q", err, tt.want)
			}
			if f.live.Load() != before {
				t.Error("settings changed by a rejected Reconfigure")
			}
		})
	}
	// The same addresses in another order are the same sockets.
	reconfigure(t, f, Config{HedgeAfter: time.Second, Listen: []netip.AddrPort{
		netip.MustParseAddrPort("10.77.0.1:5353"), netip.MustParseAddrPort("[::ffff:10.77.0.1]:53"),
	}})
	if got := f.live.Load().HedgeAfter; got != time.Second {
		t.Errorf("HedgeAfter after an accepted Reconfigure: got %v", got)
	}
}

// TestReconfigureDefaults checks that zero fields take New's defaults and
// that the Logger, Listen and NetNS stay New's.
func TestReconfigureDefaults(t *testing.T) {
	f, _ := newTestForwarder(t, Config{CacheSize: 5, HedgeAfter: time.Second, Timeout: 3 * time.Second,
		ServeStale: time.Minute, RatePerClient: 7, Domain: "lan"})
	logger := f.cfg.Logger
	reconfigure(t, f, Config{})
	s := f.live.Load()
	if s.CacheSize != DefaultCacheSize || s.HedgeAfter != DefaultHedgeAfter || s.Timeout != DefaultTimeout ||
		s.ServeStale != DefaultServeStale || s.RatePerClient != DefaultRatePerClient || s.Domain != "" || s.Local != nil {
		t.Errorf("defaults: got %+v", s.Config)
	}
	if s.rl == nil {
		t.Error("default rate limit not enforced")
	}
	if s.Logger != logger || f.cfg.Logger != logger || len(s.Listen) != 1 || s.Listen[0] != testListen[0] || s.NetNS != nil {
		t.Errorf("fixed settings changed: %+v", s.Config)
	}
}

// TestReconfigureConcurrent reconfigures a serving forwarder over and over
// while clients query it over UDP and TCP and through handle, and while its
// upstreams change; run with -race.
func TestReconfigureConcurrent(t *testing.T) {
	a := newTestUpstream(t, answerA(60, "192.0.2.1"))
	b := newTestUpstream(t, answerA(60, "192.0.2.2"))
	pc, l := listenPair(t, "127.0.0.1")
	listen := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	l.Close()
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.77.0.0/24")}
	local := func(h string) (netip.Addr, bool) { return netip.MustParseAddr("10.77.0.5"), h == "laptop" }
	f, err := New(Config{Listen: []netip.AddrPort{listen}, AllowedNets: loopback, Domain: "lan", Local: local})
	if err != nil {
		t.Fatal(err)
	}
	f.SetUpstreams([]Upstream{a.upstream("isp1"), b.upstream("isp2")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	waitListening(t, listen)

	configs := []Config{
		{CacheSize: 1, HedgeAfter: 10 * time.Millisecond, RatePerClient: 5, Domain: "home"},
		{CacheSize: 5000, Timeout: 500 * time.Millisecond, RatePerClient: -1, ServeStale: -1, Domain: "lan", Local: local},
		{CacheSize: -1, RatePerClient: 100000, Domain: "lan", Local: local},
		{CacheSize: 100, ServeStale: time.Minute, RatePerClient: 1000, Domain: "lan"},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reconfigs atomic.Int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c := configs[i%len(configs)]
			c.Listen, c.AllowedNets = []netip.AddrPort{listen}, loopback
			if err := f.Reconfigure(c); err != nil {
				t.Errorf("Reconfigure: %v", err)
				return
			}
			reconfigs.Add(1)
			if i%3 == 0 {
				f.SetUpstreams([]Upstream{b.upstream("isp2")})
			} else {
				f.SetUpstreams([]Upstream{a.upstream("isp1"), b.upstream("isp2")})
			}
			f.Stats()
			time.Sleep(time.Millisecond)
		}
	})
	var answered atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			c := &mdns.Client{Net: []string{"udp", "tcp"}[w%2], Timeout: time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				q := new(mdns.Msg)
				q.SetQuestion([]string{"x.example.", "y.example.", "laptop.lan.", fmt.Sprintf("n%d.example.", i%50)}[i%4], mdns.TypeA)
				if _, _, err := c.Exchange(q, listen.String()); err == nil {
					answered.Add(1)
				}
			}
		})
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				raw := mkQuery(t, fmt.Sprintf("h%d.example.", i%30), mdns.TypeA)
				if f.handle(ctx, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 77, 0, byte(w)}), 1000), w%2 == 1, raw) != nil {
					answered.Add(1)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d reconfigurations, %d answers", reconfigs.Load(), answered.Load())
	if reconfigs.Load() < 10 || answered.Load() < 10 {
		t.Errorf("got %d reconfigurations and %d answers, want both going on", reconfigs.Load(), answered.Load())
	}
}
