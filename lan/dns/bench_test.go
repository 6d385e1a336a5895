package dns

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// BenchmarkCachedQuery is one query answered from the cache: parse,
// rate limit, cache look-up, answer copy with TTLs decremented.
func BenchmarkCachedQuery(b *testing.B) {
	up := newTestUpstream(b, answerA(300, "192.0.2.1", "192.0.2.2"))
	f, _ := newTestForwarder(b, Config{RatePerClient: 1 << 30}, up.upstream("isp1"))
	f.now = time.Now
	q := mkQuery(b, "www.example.com.", mdns.TypeA, withEDNS(1232, false))
	ctx := context.Background()
	if f.handle(ctx, client, false, q) == nil {
		b.Fatal("no answer")
	}
	b.ReportAllocs()
	for b.Loop() {
		if f.handle(ctx, client, false, q) == nil {
			b.Fatal("no answer")
		}
	}
	b.StopTimer()
	if n := up.queries.Load(); n != 1 {
		b.Fatalf("upstream queries: %d", n)
	}
}

// BenchmarkCachedQueryUDP is BenchmarkCachedQuery through Serve's UDP
// socket on loopback, from parallel clients: queries per second served
// from the cache.
func BenchmarkCachedQueryUDP(b *testing.B) {
	up := newTestUpstream(b, answerA(300, "192.0.2.1", "192.0.2.2"))
	listen := serveLoopback(b, Config{RatePerClient: -1}, up.upstream("isp1"))
	q := mkQuery(b, "www.example.com.", mdns.TypeA, withEDNS(1232, false))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("udp", listen.String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 2048)
		for pb.Next() {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(q); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Read(buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkForwardedQuery is one query that misses the cache and is
// forwarded over UDP to an upstream on loopback (a miekg/dns server, whose
// own cost is included).
func BenchmarkForwardedQuery(b *testing.B) {
	up := newTestUpstream(b, answerA(300, "192.0.2.1"))
	f, _ := newTestForwarder(b, Config{RatePerClient: -1}, up.upstream("isp1"))
	qs := make([][]byte, 1000)
	for i := range qs {
		qs[i] = mkQuery(b, "n"+strconv.Itoa(i)+".example.com.", mdns.TypeA, withEDNS(1232, false))
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		q := qs[i%len(qs)]
		// A new ID each round makes a new name: never cached.
		binary.BigEndian.PutUint16(q, uint16(i))
		q[13] = 'a' + byte(i/len(qs)%26)
		i++
		if resp := f.handle(ctx, client, false, q); resp == nil || resp[3]&0xF != 0 {
			b.Fatalf("answer %x", resp)
		}
	}
	b.StopTimer()
	if st := f.Stats(); st.CacheHits > 0 && b.N < 26*len(qs) {
		b.Fatalf("cache hits: %d", st.CacheHits)
	}
}

// serveLoopback runs a forwarder on a free loopback port until the test
// ends and returns its address.
func serveLoopback(tb testing.TB, cfg Config, ups ...Upstream) netip.AddrPort {
	tb.Helper()
	pc, l := listenPair(tb, "127.0.0.1")
	listen := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	l.Close()
	cfg.Listen = []netip.AddrPort{listen}
	cfg.AllowedNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	f, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	f.SetUpstreams(ups)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	waitListening(tb, listen)
	return listen
}
