package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestConfigErrors(t *testing.T) {
	lan := []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}
	listen := []netip.AddrPort{netip.MustParseAddrPort("10.77.0.1:53")}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no listen", Config{AllowedNets: lan}, "no listen address"},
		{"wildcard", Config{Listen: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:53")}, AllowedNets: lan}, "want a unicast LAN address"},
		{"port 0", Config{Listen: []netip.AddrPort{netip.MustParseAddrPort("10.77.0.1:0")}, AllowedNets: lan}, "port 0"},
		{"twice", Config{Listen: append(listen, listen...), AllowedNets: lan}, "listed twice"},
		{"no clients", Config{Listen: listen}, "no allowed client prefixes"},
		{"bad domain", Config{Listen: listen, AllowedNets: lan, Domain: "a..b"}, "not a domain name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: got error %v, want one containing %q", err, tt.want)
			}
		})
	}
	f, err := New(Config{Listen: listen, AllowedNets: lan})
	if err != nil {
		t.Fatal(err)
	}
	c := f.cfg
	if c.CacheSize != DefaultCacheSize || c.HedgeAfter != DefaultHedgeAfter || c.Timeout != DefaultTimeout ||
		c.ServeStale != DefaultServeStale || c.RatePerClient != DefaultRatePerClient {
		t.Errorf("defaults: got %+v", c)
	}
}

func TestCacheHitTTLDecrement(t *testing.T) {
	up := newTestUpstream(t, answerA(300, "192.0.2.1"))
	f, clk := newTestForwarder(t, Config{}, up.upstream("isp1"))

	m := ask(t, f, client, false, mkQuery(t, "www.example.com.", mdns.TypeA))
	if a := firstA(t, m); a.Hdr.Ttl != 300 || a.A.String() != "192.0.2.1" {
		t.Fatalf("first answer: got %v, want 192.0.2.1 TTL 300", a)
	}
	if m.Id != 4242 || !m.Response || !m.RecursionAvailable || !m.RecursionDesired {
		t.Errorf("header: got %+v", m.MsgHdr)
	}
	clk.add(100*time.Second + 500*time.Millisecond)
	// Another case: the answer echoes the client's question.
	m = ask(t, f, client, false, mkQuery(t, "WWW.Example.COM.", mdns.TypeA))
	if a := firstA(t, m); a.Hdr.Ttl != 200 {
		t.Errorf("cached TTL: got %d, want 200", a.Hdr.Ttl)
	}
	if got := m.Question[0].Name; got != "WWW.Example.COM." {
		t.Errorf("question: got %q, want the client's WWW.Example.COM.", got)
	}
	if n := up.queries.Load(); n != 1 {
		t.Errorf("upstream queries: got %d, want 1", n)
	}
	clk.add(200 * time.Second)
	ask(t, f, client, false, mkQuery(t, "www.example.com.", mdns.TypeA))
	if n := up.queries.Load(); n != 2 {
		t.Errorf("upstream queries after expiry: got %d, want 2", n)
	}
	st := f.Stats()
	if st.Queries != 3 || st.CacheHits != 1 || st.CacheMisses != 2 || st.CacheEntries != 1 {
		t.Errorf("stats: got %+v, want 3 queries, 1 hit, 2 misses, 1 entry", st)
	}
	if len(st.Upstreams) != 1 || st.Upstreams[0].Queries != 2 || st.Upstreams[0].Failures != 0 || !st.Upstreams[0].Active {
		t.Errorf("upstream stats: got %+v", st.Upstreams)
	}
}

func TestTTLCaps(t *testing.T) {
	up := newTestUpstream(t, answerA(7*86400, "192.0.2.1"))
	f, clk := newTestForwarder(t, Config{}, up.upstream("isp1"))
	if a := firstA(t, ask(t, f, client, false, mkQuery(t, "long.example.", mdns.TypeA))); a.Hdr.Ttl != MaxCacheTTL {
		t.Errorf("TTL: got %d, want the cap %d", a.Hdr.Ttl, MaxCacheTTL)
	}
	up.setHandler(answerA(0, "192.0.2.2"))
	if a := firstA(t, ask(t, f, client, false, mkQuery(t, "zero.example.", mdns.TypeA))); a.Hdr.Ttl != 0 {
		t.Errorf("TTL: got %d, want 0", a.Hdr.Ttl)
	}
	clk.add(MinCacheTTL*time.Second - time.Second)
	ask(t, f, client, false, mkQuery(t, "zero.example.", mdns.TypeA))
	if n := up.queries.Load(); n != 2 {
		t.Errorf("TTL 0 answer kept MinCacheTTL: got %d upstream queries, want 2", n)
	}
}

func TestNegativeCaching(t *testing.T) {
	tests := []struct {
		name      string
		rcode     int
		soaMin    uint32
		wantTTL   uint32 // SOA TTL in the first answer
		cached    time.Duration
		wantRcode int
	}{
		{"NXDOMAIN", mdns.RcodeNameError, 120, 120, 120 * time.Second, mdns.RcodeNameError},
		{"NODATA", mdns.RcodeSuccess, 300, 300, 300 * time.Second, mdns.RcodeSuccess},
		{"capped", mdns.RcodeNameError, 86400, 3600, MaxNegativeTTL * time.Second, mdns.RcodeNameError},
		{"no SOA", mdns.RcodeNameError, 0, 0, 0, mdns.RcodeNameError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newTestUpstream(t, answerRcode(tt.rcode, tt.soaMin))
			f, clk := newTestForwarder(t, Config{}, up.upstream("isp1"))
			q := mkQuery(t, "nope.example.", mdns.TypeA)
			m := ask(t, f, client, false, q)
			if m.Rcode != tt.wantRcode {
				t.Fatalf("rcode: got %v, want %v", mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tt.wantRcode])
			}
			if tt.soaMin > 0 {
				if len(m.Ns) != 1 || m.Ns[0].Header().Ttl != tt.wantTTL {
					t.Fatalf("authority: got %v, want SOA with TTL %d", m.Ns, tt.wantTTL)
				}
			}
			if tt.cached > 0 {
				clk.add(tt.cached / 2)
				m = ask(t, f, client, false, q)
				if m.Rcode != tt.wantRcode || m.Ns[0].Header().Ttl != tt.wantTTL-uint32(tt.cached/2/time.Second) {
					t.Errorf("cached answer: got %v", m)
				}
				clk.add(tt.cached / 2)
			}
			// Expired (or never cached): asked again.
			ask(t, f, client, false, q)
			if n := up.queries.Load(); n != 2 {
				t.Errorf("upstream queries: got %d, want 2", n)
			}
		})
	}
}

func TestHedging(t *testing.T) {
	slow := newTestUpstream(t, silent)
	fast := newTestUpstream(t, answerA(60, "192.0.2.2"))
	const hedge = 100 * time.Millisecond
	f, _ := newTestForwarder(t, Config{HedgeAfter: hedge, Timeout: time.Second},
		slow.upstream("isp1"), fast.upstream("isp2"))
	start := time.Now()
	m := ask(t, f, client, false, mkQuery(t, "hedge.example.", mdns.TypeA))
	took := time.Since(start)
	if a := firstA(t, m); a.A.String() != "192.0.2.2" {
		t.Errorf("answer: got %v, want isp2's", a)
	}
	t.Logf("hedged answer after %v (HedgeAfter %v)", took, hedge)
	if took < hedge || took > hedge+80*time.Millisecond {
		t.Errorf("answer after %v, want about HedgeAfter %v", took, hedge)
	}
	st := f.Stats()
	if st.Hedged != 1 {
		t.Errorf("Hedged: got %d, want 1", st.Hedged)
	}
	if slow.queries.Load() != 1 || fast.queries.Load() != 1 {
		t.Errorf("upstream queries: got %d and %d, want 1 and 1", slow.queries.Load(), fast.queries.Load())
	}
	// The slow upstream was abandoned, not failed: it may answer later.
	if st.Upstreams[0].Failures != 0 {
		t.Errorf("abandoned upstream counted as failed: %+v", st.Upstreams[0])
	}
}

// TestSilentUpstreamBenched: an upstream hedged past twice in a row is
// asked after the others (no HedgeAfter wait per query) until its bench
// time is over; then it is asked first again, and an answer ends it.
func TestSilentUpstreamBenched(t *testing.T) {
	first := newTestUpstream(t, silent)
	second := newTestUpstream(t, answerA(60, "192.0.2.2"))
	const hedge = 100 * time.Millisecond
	f, clk := newTestForwarder(t, Config{HedgeAfter: hedge, Timeout: time.Second},
		first.upstream("isp1"), second.upstream("isp2"))
	timed := func(name string) time.Duration {
		t.Helper()
		start := time.Now()
		if a := firstA(t, ask(t, f, client, false, mkQuery(t, name, mdns.TypeA))); a.A.String() != "192.0.2.2" {
			t.Fatalf("%s: %v", name, a)
		}
		return time.Since(start)
	}
	for i, name := range []string{"a.example.", "b.example."} {
		if d := timed(name); d < hedge {
			t.Errorf("query %d answered after %v, before the hedge", i, d)
		}
	}
	// Benched: isp2 is asked first, at once.
	for _, name := range []string{"c.example.", "d.example.", "e.example."} {
		if d := timed(name); d >= hedge {
			t.Errorf("%s answered after %v with isp1 benched, want no hedge wait", name, d)
		}
	}
	if n := first.queries.Load(); n != 2 {
		t.Errorf("the benched upstream was asked %d times, want 2", n)
	}
	// Its uplink goes down and comes back: the bench is over at once.
	f.SetUpstreams([]Upstream{second.upstream("isp2")})
	f.SetUpstreams([]Upstream{first.upstream("isp1"), second.upstream("isp2")})
	if f.upstreamsForTest()[0].c.benched(clk.now()) {
		t.Error("an upstream back in the list is still benched")
	}
	timed("e2.example.")
	if n := first.queries.Load(); n != 3 {
		t.Errorf("isp1 back in the list was asked %d times in all, want 3", n)
	}
	clk.add(time.Second)
	timed("e3.example.") // hedged past again: benched again (streak 2)
	timed("e4.example.")
	if n := first.queries.Load(); n != 4 {
		t.Errorf("isp1 was asked %d times in all, want 4 (benched after two misses)", n)
	}
	// Bench time over: isp1 first again; it answers now, which ends it.
	first.setHandler(answerA(60, "192.0.2.2"))
	clk.add(benchMin + time.Second)
	timed("f.example.")
	if n := first.queries.Load(); n != 5 {
		t.Errorf("after the bench time isp1 was asked %d times in all, want 5", n)
	}
	if f.upstreamsForTest()[0].c.streak.Load() != 0 {
		t.Error("an answer did not end the streak")
	}
}

func TestFailureTriesNextAtOnce(t *testing.T) {
	for _, rcode := range []int{mdns.RcodeServerFailure, mdns.RcodeRefused} {
		t.Run(mdns.RcodeToString[rcode], func(t *testing.T) {
			bad := newTestUpstream(t, answerRcode(rcode, 0))
			good := newTestUpstream(t, answerA(60, "192.0.2.2"))
			f, _ := newTestForwarder(t, Config{HedgeAfter: time.Second, Timeout: 2 * time.Second},
				bad.upstream("isp1"), good.upstream("isp2"))
			start := time.Now()
			m := ask(t, f, client, false, mkQuery(t, "fail.example.", mdns.TypeA))
			took := time.Since(start)
			if m.Rcode != mdns.RcodeSuccess || firstA(t, m).A.String() != "192.0.2.2" {
				t.Errorf("answer: got %v, want isp2's", m)
			}
			if took > 200*time.Millisecond {
				t.Errorf("answer after %v, want well under HedgeAfter (1s)", took)
			}
			st := f.Stats()
			if st.Hedged != 0 || st.Upstreams[0].Failures != 1 || st.Upstreams[1].Failures != 0 {
				t.Errorf("stats: got %+v", st)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		// A closed port: ICMP port unreachable fails the first at once.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		pc.Close()
		good := newTestUpstream(t, answerA(60, "192.0.2.2"))
		f, _ := newTestForwarder(t, Config{HedgeAfter: time.Second, Timeout: 2 * time.Second},
			Upstream{Uplink: "isp1", Addr: dead}, good.upstream("isp2"))
		start := time.Now()
		firstA(t, ask(t, f, client, false, mkQuery(t, "fail.example.", mdns.TypeA)))
		if took := time.Since(start); took > 200*time.Millisecond {
			t.Errorf("answer after %v, want well under HedgeAfter (1s)", took)
		}
	})
}

func TestAllFail(t *testing.T) {
	up := newTestUpstream(t, answerA(1, "192.0.2.1"))
	f, clk := newTestForwarder(t, Config{ServeStale: time.Hour}, up.upstream("isp1"))
	q := mkQuery(t, "stale.example.", mdns.TypeA)
	ask(t, f, client, false, q)

	up.setHandler(answerRcode(mdns.RcodeServerFailure, 0))
	clk.add(10 * time.Minute)
	m := ask(t, f, client, false, q)
	if a := firstA(t, m); a.Hdr.Ttl != StaleTTL || a.A.String() != "192.0.2.1" {
		t.Errorf("stale answer: got %v, want 192.0.2.1 TTL %d", a, StaleTTL)
	}
	if st := f.Stats(); st.StaleServed != 1 {
		t.Errorf("StaleServed: got %d, want 1", st.StaleServed)
	}

	// No upstream at all (every uplink down): stale at once.
	f.SetUpstreams(nil)
	start := time.Now()
	firstA(t, ask(t, f, client, false, q))
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("stale answer without upstreams after %v", took)
	}

	// Past the serve-stale window: SERVFAIL.
	clk.add(time.Hour)
	m = ask(t, f, client, false, q)
	if m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("rcode past the stale window: got %v, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
	if st := f.Stats(); st.StaleServed != 2 || st.ServFail != 1 {
		t.Errorf("stats: got %+v, want 2 stale, 1 SERVFAIL", st)
	}

	t.Run("timeout", func(t *testing.T) {
		up := newTestUpstream(t, silent)
		f, _ := newTestForwarder(t, Config{HedgeAfter: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}, up.upstream("isp1"))
		start := time.Now()
		m := ask(t, f, client, false, mkQuery(t, "silent.example.", mdns.TypeA))
		took := time.Since(start)
		if m.Rcode != mdns.RcodeServerFailure || took < 200*time.Millisecond || took > 400*time.Millisecond {
			t.Errorf("got %v after %v, want SERVFAIL after Timeout", mdns.RcodeToString[m.Rcode], took)
		}
		// The upstream's failure is counted by the query's goroutine,
		// which may finish just after the client got its SERVFAIL.
		deadline := time.Now().Add(time.Second)
		st := f.Stats()
		for st.Upstreams[0].Failures == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			st = f.Stats()
		}
		if st.Upstreams[0].Failures != 1 {
			t.Errorf("timed-out upstream: got %+v, want 1 failure", st.Upstreams[0])
		}
	})
}

// bigAnswer answers with n A records; over UDP it obeys the query's size
// (miekg truncates) unless tcOnly, then it answers UDP with TC and no
// records.
func bigAnswer(n int, tcOnly bool) func(w mdns.ResponseWriter, r *mdns.Msg) {
	return func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		size := mdns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		udp := w.RemoteAddr().Network() == "udp"
		if udp && tcOnly {
			m.Truncated = true
			w.WriteMsg(m)
			return
		}
		for i := range n {
			m.Answer = append(m.Answer, &mdns.A{
				Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300},
				A:   net.IPv4(192, 0, byte(2+i/250), byte(1+i%250)),
			})
		}
		if udp {
			m.Truncate(size)
		}
		w.WriteMsg(m)
	}
}

func TestTruncatedRetriedOverTCP(t *testing.T) {
	for _, tcOnly := range []bool{true, false} {
		name := "partial"
		if tcOnly {
			name = "empty"
		}
		t.Run(name, func(t *testing.T) {
			// 200 A records: 3212 bytes, more than our 1232 over UDP.
			up := newTestUpstream(t, bigAnswer(200, tcOnly))
			f, _ := newTestForwarder(t, Config{}, up.upstream("isp1"))
			m := ask(t, f, client, true, mkQuery(t, "big.example.", mdns.TypeA))
			if len(m.Answer) != 200 || m.Truncated {
				t.Errorf("answer over TCP: got %d records (TC %v), want 200", len(m.Answer), m.Truncated)
			}
			st := f.Stats()
			if st.TruncatedRetries != 1 || st.Upstreams[0].Queries != 2 {
				t.Errorf("stats: got %+v, want 1 TCP retry, 2 upstream queries", st)
			}
		})
	}
}

func TestEDNSSizes(t *testing.T) {
	up := newTestUpstream(t, bigAnswer(60, false)) // 972 bytes
	f, _ := newTestForwarder(t, Config{}, up.upstream("isp1"))
	tests := []struct {
		name     string
		tcp      bool
		opts     []func(*mdns.Msg)
		wantTC   bool
		maxLen   int
		wantEDNS bool
	}{
		{"no EDNS", false, nil, true, 512, false},
		{"EDNS 512", false, []func(*mdns.Msg){withEDNS(512, false)}, true, 512, true},
		{"EDNS 1232", false, []func(*mdns.Msg){withEDNS(1232, false)}, false, 1232, true},
		{"EDNS 4096", false, []func(*mdns.Msg){withEDNS(4096, false)}, false, 4096, true},
		{"TCP", true, nil, false, 65535, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.handle(context.Background(), client, tt.tcp, mkQuery(t, "sixty.example.", mdns.TypeA, tt.opts...))
			m := new(mdns.Msg)
			if err := m.Unpack(resp); err != nil {
				t.Fatal(err)
			}
			if len(resp) > tt.maxLen || m.Truncated != tt.wantTC {
				t.Errorf("got %d bytes, TC %v; want at most %d, TC %v", len(resp), m.Truncated, tt.maxLen, tt.wantTC)
			}
			if !tt.wantTC && len(m.Answer) != 60 {
				t.Errorf("got %d records, want 60", len(m.Answer))
			}
			o := m.IsEdns0()
			if (o != nil) != tt.wantEDNS || o != nil && o.UDPSize() != UDPSize {
				t.Errorf("OPT: got %v, want present %v with size %d", o, tt.wantEDNS, UDPSize)
			}
		})
	}
	if q := up.lastQuery(); q.IsEdns0() == nil || q.IsEdns0().UDPSize() != UDPSize {
		t.Errorf("upstream query OPT: got %v, want size %d", q.IsEdns0(), UDPSize)
	}
	m := ask(t, f, client, false, mkQuery(t, "sixty.example.", mdns.TypeA, func(m *mdns.Msg) {
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
	}))
	if m.Rcode != mdns.RcodeBadVers {
		t.Errorf("EDNS version 1: got rcode %v, want BADVERS", mdns.RcodeToString[m.Rcode])
	}
}

func TestDNSSECBits(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	up := newTestUpstream(t, func(w mdns.ResponseWriter, r *mdns.Msg) {
		o := r.IsEdns0()
		mu.Lock()
		seen = append(seen, strings.Join([]string{boolS("do", o != nil && o.Do()), boolS("cd", r.CheckingDisabled), boolS("ad", r.AuthenticatedData)}, ","))
		mu.Unlock()
		m := new(mdns.Msg)
		m.SetReply(r)
		m.AuthenticatedData = true
		m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		if o != nil {
			m.SetEdns0(1232, o.Do())
		}
		w.WriteMsg(m)
	})
	f, _ := newTestForwarder(t, Config{}, up.upstream("isp1"))
	plain := mkQuery(t, "sec.example.", mdns.TypeA)
	do := mkQuery(t, "sec.example.", mdns.TypeA, withEDNS(1232, true))
	cd := mkQuery(t, "sec.example.", mdns.TypeA, func(m *mdns.Msg) { m.CheckingDisabled = true })
	m := ask(t, f, client, false, plain)
	if m.AuthenticatedData {
		t.Error("AD set for a client that set neither AD nor DO (RFC 6840 section 5.8)")
	}
	m = ask(t, f, client, false, do)
	if !m.AuthenticatedData || !m.IsEdns0().Do() {
		t.Errorf("DO query: got AD %v, DO %v, want both", m.AuthenticatedData, m.IsEdns0().Do())
	}
	if m = ask(t, f, client, false, cd); !m.CheckingDisabled {
		t.Error("CD not echoed")
	}
	ask(t, f, client, false, plain)
	ask(t, f, client, false, do)
	mu.Lock()
	defer mu.Unlock()
	want := []string{"-do,-cd,ad", "do,-cd,ad", "-do,cd,ad"}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Errorf("upstream queries: got %v, want %v (DO and CD in the cache key)", seen, want)
	}
}

func boolS(name string, b bool) string {
	if b {
		return name
	}
	return "-" + name
}

func TestLocalNames(t *testing.T) {
	up := newTestUpstream(t, answerA(60, "192.0.2.9"))
	hosts := map[string]netip.Addr{"laptop": netip.MustParseAddr("10.77.0.50")}
	f, _ := newTestForwarder(t, Config{
		Domain: "Lan.",
		Local: func(h string) (netip.Addr, bool) {
			a, ok := hosts[h]
			return a, ok
		},
	}, up.upstream("isp1"))
	tests := []struct {
		name      string
		qtype     uint16
		wantRcode int
		wantA     string
		wantSOA   bool
	}{
		{"laptop.lan.", mdns.TypeA, mdns.RcodeSuccess, "10.77.0.50", false},
		{"LapTop.LAN.", mdns.TypeA, mdns.RcodeSuccess, "10.77.0.50", false},
		{"laptop.", mdns.TypeA, mdns.RcodeSuccess, "10.77.0.50", false},
		{"laptop.lan.", mdns.TypeAAAA, mdns.RcodeSuccess, "", true},
		{"laptop.", mdns.TypeAAAA, mdns.RcodeSuccess, "", false},
		{"nobody.lan.", mdns.TypeA, mdns.RcodeNameError, "", true},
		{"a.laptop.lan.", mdns.TypeA, mdns.RcodeNameError, "", true},
		{"lan.", mdns.TypeA, mdns.RcodeSuccess, "", true},
		{"lan.", mdns.TypeSOA, mdns.RcodeSuccess, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name+mdns.Type(tt.qtype).String(), func(t *testing.T) {
			m := ask(t, f, client, false, mkQuery(t, tt.name, tt.qtype))
			if m.Rcode != tt.wantRcode || !m.Authoritative {
				t.Errorf("got rcode %v AA %v, want %v AA", mdns.RcodeToString[m.Rcode], m.Authoritative, mdns.RcodeToString[tt.wantRcode])
			}
			if tt.wantA != "" {
				a := firstA(t, m)
				if a.A.String() != tt.wantA || a.Hdr.Ttl != LocalTTL || a.Hdr.Name != tt.name {
					t.Errorf("got %v, want %s %s with TTL %d", a, tt.name, tt.wantA, LocalTTL)
				}
			}
			if gotSOA := len(m.Ns) == 1 && m.Ns[0].Header().Rrtype == mdns.TypeSOA; gotSOA != tt.wantSOA {
				t.Errorf("authority: got %v, want SOA %v", m.Ns, tt.wantSOA)
			}
		})
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("local names went upstream: %d queries", n)
	}
	// Unknown bare names and other domains go upstream.
	for _, n := range []string{"nobody.", "example.com."} {
		if a := firstA(t, ask(t, f, client, false, mkQuery(t, n, mdns.TypeA))); a.A.String() != "192.0.2.9" {
			t.Errorf("%s: got %v, want the upstream's answer", n, a)
		}
	}
	if st := f.Stats(); st.Local != uint64(len(tests)) || up.queries.Load() != 2 {
		t.Errorf("got %d local answers and %d upstream queries, want %d and 2", st.Local, up.queries.Load(), len(tests))
	}
}

func TestRefusedOutsideAllowedNets(t *testing.T) {
	up := newTestUpstream(t, answerA(60, "192.0.2.9"))
	f, _ := newTestForwarder(t, Config{}, up.upstream("isp1"))
	for _, from := range []string{"100.64.1.1:1234", "10.77.1.10:53", "[::ffff:100.64.1.1]:99"} {
		m := ask(t, f, netip.MustParseAddrPort(from), false, mkQuery(t, "example.com.", mdns.TypeA))
		if m.Rcode != mdns.RcodeRefused || len(m.Answer) != 0 {
			t.Errorf("%s: got %v, want REFUSED", from, m)
		}
	}
	if resp := f.handle(context.Background(), netip.MustParseAddrPort("100.64.1.1:1234"), true, mkQuery(t, "example.com.", mdns.TypeA)); resp != nil {
		t.Error("TCP query from outside: got an answer, want none")
	}
	if st := f.Stats(); st.Refused != 4 || st.Queries != 0 || up.queries.Load() != 0 {
		t.Errorf("got %d refused, %d queries, %d upstream queries; want 4, 0, 0", st.Refused, st.Queries, up.queries.Load())
	}
	// Beyond refusedRate per second, UDP queries from outside are dropped.
	answered := 0
	for range 2 * refusedRate {
		if f.handle(context.Background(), netip.MustParseAddrPort("100.64.1.1:1234"), false, mkQuery(t, "x.", mdns.TypeA)) != nil {
			answered++
		}
	}
	if answered > refusedRate {
		t.Errorf("answered %d of %d refused queries at once, want at most %d", answered, 2*refusedRate, refusedRate)
	}
}

func TestRateLimit(t *testing.T) {
	const rate = 10
	f, clk := newTestForwarder(t, Config{
		RatePerClient: rate,
		Local:         func(string) (netip.Addr, bool) { return netip.MustParseAddr("10.77.0.5"), true },
	})
	q := mkQuery(t, "host.", mdns.TypeA)
	count := func(from netip.AddrPort, tcp bool, n int) (answered int) {
		for range n {
			if resp := f.handle(context.Background(), from, tcp, q); resp != nil {
				m := new(mdns.Msg)
				if m.Unpack(resp) == nil && m.Rcode == mdns.RcodeSuccess {
					answered++
				}
			}
		}
		return answered
	}
	if got := count(client, false, 3*rate); got != rate {
		t.Errorf("burst: %d of %d answered, want %d", got, 3*rate, rate)
	}
	other := netip.MustParseAddrPort("10.77.0.11:5353")
	if got := count(other, false, rate); got != rate {
		t.Errorf("another client: %d of %d answered, want all", got, rate)
	}
	clk.add(500 * time.Millisecond)
	if got := count(client, false, rate); got != rate/2 {
		t.Errorf("after 0.5 s: %d answered, want %d", got, rate/2)
	}
	// Over TCP the excess is refused rather than dropped.
	resp := f.handle(context.Background(), client, true, q)
	if m := new(mdns.Msg); resp == nil || m.Unpack(resp) != nil || m.Rcode != mdns.RcodeRefused {
		t.Errorf("TCP over the rate: got %x, want REFUSED", resp)
	}
	if st := f.Stats(); st.RateLimited != 2*rate+rate/2+1 {
		t.Errorf("RateLimited: got %d, want %d", st.RateLimited, 2*rate+rate/2+1)
	}
}

func TestRateLimiterBounded(t *testing.T) {
	r := newRateLimiter(1)
	now := time.Now()
	for i := range maxClients + 1000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		r.allow(a, now)
	}
	n := 0
	for i := range r.shards {
		n += len(r.shards[i].m)
	}
	if n > maxClients {
		t.Errorf("tracked clients: got %d, want at most %d", n, maxClients)
	}
	// A second later every bucket is full again: new clients replace them.
	a := netip.MustParseAddr("192.168.0.1")
	if !r.allow(a, now.Add(time.Second)) || r.allow(a, now.Add(time.Second)) {
		t.Error("new client after a sweep: want one query allowed, the next refused")
	}
}

func TestMalformed(t *testing.T) {
	f, _ := newTestForwarder(t, Config{})
	two := new(mdns.Msg)
	two.SetQuestion("a.", mdns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	twoB, _ := two.Pack()
	tests := []struct {
		name      string
		raw       []byte
		wantRcode int // -1: no answer
	}{
		{"empty", nil, -1},
		{"short", []byte{1, 2, 3}, -1},
		{"response", mkQuery(t, "a.", mdns.TypeA, func(m *mdns.Msg) { m.Response = true }), -1},
		{"garbage after header", append(mkQuery(t, "a.", mdns.TypeA)[:12], 0xff, 0xff, 0xff), mdns.RcodeFormatError},
		{"two questions", twoB, mdns.RcodeFormatError},
		{"no question", mkQuery(t, "a.", mdns.TypeA, func(m *mdns.Msg) { m.Question = nil }), mdns.RcodeFormatError},
		{"two OPT", mkQuery(t, "a.", mdns.TypeA, withEDNS(1232, false), withEDNS(1232, false)), mdns.RcodeFormatError},
		{"NOTIFY", mkQuery(t, "a.", mdns.TypeSOA, func(m *mdns.Msg) { m.Opcode = mdns.OpcodeNotify }), mdns.RcodeNotImplemented},
		{"AXFR", mkQuery(t, "a.", mdns.TypeAXFR), mdns.RcodeNotImplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.handle(context.Background(), client, false, tt.raw)
			if tt.wantRcode < 0 {
				if resp != nil {
					t.Errorf("got answer %x, want none", resp)
				}
				return
			}
			if len(resp) < 12 {
				t.Fatalf("got %x, want an answer", resp)
			}
			if int(resp[3]&0xF) != tt.wantRcode || resp[0] != tt.raw[0] || resp[1] != tt.raw[1] {
				t.Errorf("got rcode %d id %x, want %d id %x", resp[3]&0xF, resp[:2], tt.wantRcode, tt.raw[:2])
			}
		})
	}
	if st := f.Stats(); st.BadPackets != uint64(len(tests)) || st.Queries != 0 {
		t.Errorf("BadPackets: got %d (queries %d), want %d", st.BadPackets, st.Queries, len(tests))
	}
}

func TestCoalescing(t *testing.T) {
	up := newTestUpstream(t, func(w mdns.ResponseWriter, r *mdns.Msg) {
		time.Sleep(100 * time.Millisecond)
		answerA(60, "192.0.2.1")(w, r)
	})
	f, _ := newTestForwarder(t, Config{}, up.upstream("isp1"))
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { firstA(t, ask(t, f, client, false, mkQuery(t, "same.example.", mdns.TypeA))) })
	}
	wg.Wait()
	if n := up.queries.Load(); n != 1 {
		t.Errorf("upstream queries: got %d, want 1", n)
	}
	if st := f.Stats(); st.Coalesced != 9 {
		t.Errorf("Coalesced: got %d, want 9", st.Coalesced)
	}
}

func TestCacheBounded(t *testing.T) {
	up := newTestUpstream(t, answerA(60, "192.0.2.1"))
	f, _ := newTestForwarder(t, Config{CacheSize: 3}, up.upstream("isp1"))
	for _, n := range []string{"a.", "b.", "c.", "a.", "d.", "e."} {
		ask(t, f, client, false, mkQuery(t, n, mdns.TypeA))
	}
	if n := f.Stats().CacheEntries; n != 3 {
		t.Errorf("entries: got %d, want 3", n)
	}
	// LRU: a was used after b and c, so b and c went first.
	before := up.queries.Load()
	ask(t, f, client, false, mkQuery(t, "a.", mdns.TypeA))
	if up.queries.Load() != before {
		t.Error("a was evicted, want b and c evicted first")
	}
}

func TestCacheDisabled(t *testing.T) {
	up := newTestUpstream(t, answerA(60, "192.0.2.1"))
	f, _ := newTestForwarder(t, Config{CacheSize: -1}, up.upstream("isp1"))
	if f.cfg.ServeStale != 0 {
		t.Errorf("serve-stale %v without a cache", f.cfg.ServeStale)
	}
	for range 3 {
		firstA(t, ask(t, f, client, false, mkQuery(t, "a.", mdns.TypeA)))
	}
	if n := up.queries.Load(); n != 3 {
		t.Errorf("upstream queries: got %d, want 3 (nothing cached)", n)
	}
	if n := f.Stats().CacheEntries; n != 0 {
		t.Errorf("entries: got %d, want 0", n)
	}
}

func TestSetUpstreamsStats(t *testing.T) {
	a := newTestUpstream(t, answerA(60, "192.0.2.1"))
	b := newTestUpstream(t, answerA(60, "192.0.2.2"))
	f, _ := newTestForwarder(t, Config{}, a.upstream("isp1"), b.upstream("isp2"))
	firstA(t, ask(t, f, client, false, mkQuery(t, "one.", mdns.TypeA)))
	f.SetUpstreams([]Upstream{b.upstream("isp2"), {Uplink: "bad"}})
	if got := firstA(t, ask(t, f, client, false, mkQuery(t, "two.", mdns.TypeA))); got.A.String() != "192.0.2.2" {
		t.Errorf("after SetUpstreams: got %v, want isp2's answer", got)
	}
	st := f.Stats().Upstreams
	if len(st) != 2 || st[0].Uplink != "isp2" || !st[0].Active || st[0].Queries != 1 ||
		st[1].Uplink != "isp1" || st[1].Active || st[1].Queries != 1 {
		t.Errorf("upstream stats: got %+v", st)
	}
	if st[0].Addr.Port() == 0 {
		t.Error("port not kept")
	}
}

func TestSetUpstreamsConcurrent(t *testing.T) {
	a := newTestUpstream(t, answerA(60, "192.0.2.1"))
	b := newTestUpstream(t, answerA(60, "192.0.2.2"))
	f, _ := newTestForwarder(t, Config{CacheSize: 1}, a.upstream("isp1"))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			if i%2 == 0 {
				f.SetUpstreams([]Upstream{a.upstream("isp1"), b.upstream("isp2")})
			} else {
				f.SetUpstreams([]Upstream{b.upstream("isp2")})
			}
			f.Stats()
		}
	})
	for i := range 200 {
		name := []string{"x.", "y."}[i%2]
		if m := ask(t, f, client, false, mkQuery(t, name, mdns.TypeA)); m.Rcode != mdns.RcodeSuccess {
			t.Fatalf("query %d: got %v", i, m)
		}
	}
	cancel()
	wg.Wait()
}

// TestServe runs the forwarder on loopback sockets: UDP and TCP answers,
// TCP connections from outside AllowedNets closed, everything stopped and
// waited for when ctx ends.
func TestServe(t *testing.T) {
	up := newTestUpstream(t, answerA(60, "192.0.2.1"))
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pc, l := listenPair(t, "127.0.0.1")
	listen := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	l.Close()
	f, err := New(Config{
		Listen:      []netip.AddrPort{listen},
		AllowedNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.SetUpstreams([]Upstream{up.upstream("isp1")})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Serve(ctx) }()
	waitListening(t, listen)
	if err := f.Serve(ctx); !errors.Is(err, errServing) {
		t.Errorf("second Serve: got %v, want errServing", err)
	}

	for _, netw := range []string{"udp", "tcp"} {
		c := &mdns.Client{Net: netw, Timeout: 2 * time.Second}
		q := new(mdns.Msg)
		q.SetQuestion("serve.example.", mdns.TypeA)
		m, _, err := c.Exchange(q, listen.String())
		if err != nil {
			t.Fatalf("%s: %v", netw, err)
		}
		if a := firstA(t, m); a.A.String() != "192.0.2.1" {
			t.Errorf("%s: got %v", netw, a)
		}
	}
	// An idle TCP connection is closed when Serve stops.
	idle, err := net.Dial("tcp", listen.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return")
	}
	idle.SetReadDeadline(time.Now().Add(time.Second))
	var ne net.Error
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("idle connection after Serve: read got %v, want closed", err)
	}
}

func TestServeBindError(t *testing.T) {
	f, err := New(Config{
		Listen:      []netip.AddrPort{netip.MustParseAddrPort("192.0.2.77:53")}, // not ours
		AllowedNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Serve(context.Background()); err == nil || !strings.Contains(err.Error(), "192.0.2.77:53") {
		t.Errorf("Serve: got %v, want a listen error naming the address", err)
	}
}

func waitListening(t testing.TB, a netip.AddrPort) {
	t.Helper()
	for range 200 {
		c, err := net.Dial("tcp", a.String())
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%v not listening", a)
}
