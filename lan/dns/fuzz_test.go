package dns

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fuzzForwarder returns a forwarder without upstreams (forwarded queries
// fail at once), with local names and a cached answer for example.com. A
// (with and without DO), so queries reach every path that needs no network.
func fuzzForwarder(t testing.TB) *Forwarder {
	f, _ := newTestForwarder(t, Config{
		Domain: "lan",
		Local: func(h string) (netip.Addr, bool) {
			return netip.MustParseAddr("10.77.0.50"), h == "laptop"
		},
		RatePerClient: -1,
	})
	for _, do := range []bool{false, true} {
		m := new(mdns.Msg)
		m.SetQuestion("example.com.", mdns.TypeA)
		m.Response = true
		for i := range 50 {
			m.Answer = append(m.Answer, &mdns.A{
				Hdr: mdns.RR_Header{Name: "example.com.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300},
				A:   net.IPv4(192, 0, 2, byte(i)),
			})
		}
		key := cacheKey{name: "example.com.", qtype: mdns.TypeA, qclass: mdns.ClassINET, do: do}
		e, ok, err := newEntry(key, m, f.now(), time.Hour)
		if err != nil || !ok {
			t.Fatalf("newEntry: %v %v", ok, err)
		}
		f.cache.put(e)
	}
	return f
}

func FuzzQuery(f *testing.F) {
	seeds := [][]byte{
		mkQuery(f, "example.com.", mdns.TypeA),
		mkQuery(f, "EXAMPLE.com.", mdns.TypeA, withEDNS(4096, true)),
		mkQuery(f, "example.com.", mdns.TypeA, withEDNS(100, false)),
		mkQuery(f, "laptop.lan.", mdns.TypeA, withEDNS(1232, false)),
		mkQuery(f, "laptop.", mdns.TypeAAAA),
		mkQuery(f, "nobody.lan.", mdns.TypeMX),
		mkQuery(f, "forwarded.example.", mdns.TypeTXT, func(m *mdns.Msg) { m.CheckingDisabled = true }),
		mkQuery(f, "a.", mdns.TypeA, func(m *mdns.Msg) { m.SetEdns0(1232, true); m.IsEdns0().SetVersion(3) }),
		{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1},
		{},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	fw := fuzzForwarder(f)
	outside := netip.MustParseAddrPort("192.0.2.1:53")
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, from := range []netip.AddrPort{client, outside} {
			for _, tcp := range []bool{false, true} {
				st := time.Now()
				resp := fw.handle(context.Background(), from, tcp, raw)
				if d := time.Since(st); d > 5*time.Second {
					t.Fatalf("SLOW %v tcp=%v from=%v: %x", d, tcp, from, raw)
				}
				if resp == nil {
					continue
				}
				var m mdns.Msg
				if err := m.Unpack(resp); err != nil {
					t.Fatalf("answer does not unpack: %v\n%x", err, resp)
				}
				if len(raw) < 2 || binary.BigEndian.Uint16(resp) != binary.BigEndian.Uint16(raw) {
					t.Fatalf("answer ID %x, query %x", resp[:2], raw)
				}
				limit := mdns.MaxMsgSize
				if !tcp {
					limit = mdns.MinMsgSize
					var q mdns.Msg
					if q.Unpack(raw) == nil && q.IsEdns0() != nil {
						limit = max(int(q.IsEdns0().UDPSize()), mdns.MinMsgSize)
					}
				}
				if len(resp) > limit {
					t.Fatalf("answer of %d bytes for a limit of %d", len(resp), limit)
				}
			}
		}
	})
}

// FuzzUpstreamAnswer feeds upstream answers to the code that checks them,
// caches them and copies them to clients.
func FuzzUpstreamAnswer(f *testing.F) {
	const id = 0x1234
	qm := new(mdns.Msg)
	qm.SetQuestion("example.com.", mdns.TypeA)
	qm.Id = id
	qm.SetEdns0(1232, true)
	for _, h := range []func(mdns.ResponseWriter, *mdns.Msg){
		answerA(300, "192.0.2.1", "192.0.2.2"),
		answerRcode(mdns.RcodeNameError, 60),
		answerRcode(mdns.RcodeSuccess, 60),
		answerRcode(mdns.RcodeServerFailure, 0),
	} {
		w := &captureWriter{}
		h(w, qm)
		f.Add(w.b)
	}
	qraw, _ := qm.Pack()
	fw := fuzzForwarder(f)
	base, _, ok := fw.parse(client, false, qraw)
	if !ok {
		f.Fatal("parse")
	}
	plain := base
	plain.edns, plain.do, plain.size = false, false, mdns.MinMsgSize
	now := time.Now()
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, _, err := checkAnswer(raw, id, &base)
		if err != nil || m == nil {
			return
		}
		e, _, err := newEntry(base.key, m, now, time.Hour)
		if err != nil {
			return
		}
		for _, q := range []*query{&base, &plain} {
			for _, stale := range []bool{false, true} {
				resp := e.reply(q, now.Add(time.Minute), stale)
				if resp == nil {
					continue
				}
				var a mdns.Msg
				if err := a.Unpack(resp); err != nil {
					t.Fatalf("answer does not unpack: %v\n%x", err, resp)
				}
				if len(resp) > q.size {
					t.Fatalf("answer of %d bytes for a limit of %d", len(resp), q.size)
				}
			}
		}
	})
}

// captureWriter is an mdns.ResponseWriter that keeps what is written.
type captureWriter struct{ b []byte }

func (w *captureWriter) LocalAddr() net.Addr  { return &net.UDPAddr{} }
func (w *captureWriter) RemoteAddr() net.Addr { return &net.UDPAddr{} }
func (w *captureWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	w.b = b
	return err
}
func (w *captureWriter) Write(b []byte) (int, error) {
	w.b = append([]byte(nil), b...)
	return len(b), nil
}
func (w *captureWriter) Close() error        { return nil }
func (w *captureWriter) TsigStatus() error   { return nil }
func (w *captureWriter) TsigTimersOnly(bool) {}
func (w *captureWriter) Hijack()             {}
func (w *captureWriter) Network() string     { return "udp" }
