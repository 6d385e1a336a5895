package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// client is an allowed LAN client of the test forwarders.
var client = netip.MustParseAddrPort("10.77.0.10:40000")

// testUpstream is a miekg/dns server on loopback, UDP and TCP on one port.
type testUpstream struct {
	addr    netip.AddrPort
	queries atomic.Int64

	mu      sync.Mutex
	handler func(w mdns.ResponseWriter, r *mdns.Msg)
	last    *mdns.Msg
}

func newTestUpstream(t testing.TB, h func(w mdns.ResponseWriter, r *mdns.Msg)) *testUpstream {
	t.Helper()
	u := &testUpstream{handler: h}
	hf := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		u.queries.Add(1)
		u.mu.Lock()
		u.last = r.Copy()
		h := u.handler
		u.mu.Unlock()
		h(w, r)
	})
	pc, l := listenPair(t, "127.0.0.1")
	u.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, s := range []*mdns.Server{{PacketConn: pc, Handler: hf}, {Listener: l, Handler: hf}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() { defer close(done); s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { s.Shutdown(); <-done })
	}
	return u
}

// listenPair opens a UDP socket and a TCP listener on the same free port
// of ip.
func listenPair(t testing.TB, ip string) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
		if err == nil {
			return pc, l
		}
		pc.Close()
	}
	t.Fatal("no free port pair")
	return nil, nil
}

func (u *testUpstream) setHandler(h func(w mdns.ResponseWriter, r *mdns.Msg)) {
	u.mu.Lock()
	u.handler = h
	u.mu.Unlock()
}

func (u *testUpstream) lastQuery() *mdns.Msg {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

func (u *testUpstream) upstream(name string) Upstream {
	return Upstream{Uplink: name, Addr: u.addr, Source: netip.MustParseAddr("127.0.0.1")}
}

// answerA answers r with one A record per address, TTL ttl.
func answerA(ttl uint32, addrs ...string) func(w mdns.ResponseWriter, r *mdns.Msg) {
	return func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		for _, a := range addrs {
			m.Answer = append(m.Answer, &mdns.A{
				Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: ttl},
				A:   net.ParseIP(a),
			})
		}
		if o := r.IsEdns0(); o != nil {
			m.SetEdns0(o.UDPSize(), o.Do())
		}
		w.WriteMsg(m)
	}
}

// answerRcode answers r with rcode and, if soa, an SOA record (TTL 3600,
// MINIMUM soaMin).
func answerRcode(rcode int, soaMin uint32) func(w mdns.ResponseWriter, r *mdns.Msg) {
	return func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetRcode(r, rcode)
		m.RecursionAvailable = true
		if soaMin > 0 {
			m.Ns = []mdns.RR{&mdns.SOA{
				Hdr: mdns.RR_Header{Name: "example.", Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 3600},
				Ns:  "ns.example.", Mbox: "root.example.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: soaMin,
			}}
		}
		w.WriteMsg(m)
	}
}

// silent never answers.
func silent(mdns.ResponseWriter, *mdns.Msg) {}

// clock is a settable time for the cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestForwarder returns a Forwarder (not serving) for the LAN
// 10.77.0.0/24 with cfg's other fields, its clock settable.
func newTestForwarder(t testing.TB, cfg Config, ups ...Upstream) (*Forwarder, *clock) {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = []netip.AddrPort{netip.MustParseAddrPort("10.77.0.1:53")}
	}
	if cfg.AllowedNets == nil {
		cfg.AllowedNets = []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}
	}
	if cfg.RatePerClient == 0 {
		cfg.RatePerClient = -1
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	f.now = c.now
	f.SetUpstreams(ups)
	t.Cleanup(f.wg.Wait)
	return f, c
}

// mkQuery packs a query for name and qtype; opts adjust it.
func mkQuery(t testing.TB, name string, qtype uint16, opts ...func(*mdns.Msg)) []byte {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 4242
	for _, o := range opts {
		o(m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func withEDNS(size uint16, do bool) func(*mdns.Msg) {
	return func(m *mdns.Msg) { m.SetEdns0(size, do) }
}

// ask sends raw to f as client over UDP (or TCP) and returns the decoded
// answer, failing if there is none.
func ask(t testing.TB, f *Forwarder, from netip.AddrPort, tcp bool, raw []byte) *mdns.Msg {
	t.Helper()
	resp := f.handle(context.Background(), from, tcp, raw)
	if resp == nil {
		t.Fatal("no answer")
	}
	m := new(mdns.Msg)
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("unpack answer: %v", err)
	}
	return m
}

func firstA(t testing.TB, m *mdns.Msg) *mdns.A {
	t.Helper()
	if len(m.Answer) == 0 {
		t.Fatalf("no answer records: %v", m)
	}
	a, ok := m.Answer[0].(*mdns.A)
	if !ok {
		t.Fatalf("answer %v is not an A record", m.Answer[0])
	}
	return a
}

// upstreamsForTest returns the current upstream list.
func (f *Forwarder) upstreamsForTest() []*upstream { return *f.upstreams.Load() }
