package dhcp

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fuzzServer returns a server with a lease for mac(1), a pending offer
// for mac(2) and a reservation, so that a single message can reach every
// state: renewal, release, decline, SELECTING, INIT-REBOOT. It also
// returns mac(1)'s address and mac(2)'s offered address.
func fuzzServer(t testing.TB) (*Server, *clock, netip.Addr, netip.Addr) {
	cfg := testConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, clk := newServer(t, cfg)
	a := dora(t, s, mac(1))
	r, ok := exchange(t, s, msg(t, mac(2), dhcpv4.MessageTypeDiscover))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	return s, clk, a, yiaddr(r)
}

// FuzzHandle feeds arbitrary bytes to the packet handler of a server that
// has leases and offers: it must never panic, every reply must encode, and
// the table must stay within its bounds. Each input is handled twice, a
// minute apart, to also exercise the state it created.
func FuzzHandle(f *testing.F) {
	_, _, a, offered := fuzzServer(f)
	m := func(hw net.HardwareAddr, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) []byte {
		d, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(mt)}, mods...)...)
		if err != nil {
			f.Fatal(err)
		}
		return d.ToBytes()
	}
	f.Add(m(mac(3), dhcpv4.MessageTypeDiscover, withHostname("host"), dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 3}))))
	f.Add(m(reservedHW, dhcpv4.MessageTypeDiscover, withRequested(a)))
	f.Add(m(mac(2), dhcpv4.MessageTypeRequest, withServerID(serverIP), withRequested(offered)))
	f.Add(m(mac(2), dhcpv4.MessageTypeRequest, withServerID(netip.MustParseAddr("10.77.0.2")), withRequested(offered)))
	f.Add(m(mac(1), dhcpv4.MessageTypeRequest, withCIAddr(a)))
	f.Add(m(mac(1), dhcpv4.MessageTypeRequest, withRequested(a)))
	f.Add(m(mac(1), dhcpv4.MessageTypeRequest, withRequested(netip.MustParseAddr("192.168.0.1"))))
	f.Add(m(mac(1), dhcpv4.MessageTypeRelease, withCIAddr(a)))
	f.Add(m(mac(1), dhcpv4.MessageTypeDecline, withRequested(a)))
	f.Add(m(mac(4), dhcpv4.MessageTypeInform, withCIAddr(netip.MustParseAddr("10.77.0.9"))))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, clk, _, _ := fuzzServer(t)
		for range 2 {
			r, ok := s.handlePacket(bytes.Clone(data))
			if ok {
				if r.msg == nil {
					t.Fatal("ok reply without message")
				}
				_ = r.msg.ToBytes()
			}
			clk.Advance(time.Minute)
		}
		if n := len(s.tab.byAddr); n > 11 {
			t.Fatalf("%d bindings, more than pool+reservations", n)
		}
		if len(s.tab.byClient) > len(s.tab.byAddr) {
			t.Fatalf("%d clients for %d bindings", len(s.tab.byClient), len(s.tab.byAddr))
		}
		_ = s.Leases()
		_ = s.Stats()
	})
}

// FuzzParseLeaseLine checks that the lease file parser never panics and
// that what it accepts survives a write/read round trip.
func FuzzParseLeaseLine(f *testing.F) {
	f.Add("1767225600 02:77:00:00:00:0a 10.77.0.100 laptop 01:02:77:00:00:00:0a")
	f.Add("1767225600 02:77:00:00:00:0a 10.77.0.100 * *")
	f.Add("duid 00:01")
	f.Add("")
	f.Fuzz(func(t *testing.T, line string) {
		b, skip, err := parseLeaseLine(line)
		if err != nil || skip {
			return
		}
		out := string(appendLeaseLine(nil, b))
		b2, skip, err := parseLeaseLine(out)
		if err != nil || skip {
			t.Fatalf("re-parse of %q: skip=%v err=%v", out, skip, err)
		}
		if b2.addr != b.addr || !bytes.Equal(b2.mac, b.mac) || b2.hostname != b.hostname ||
			!bytes.Equal(b2.clientID, b.clientID) || !b2.expiry.Equal(b.expiry) || b2.key != b.key {
			t.Fatalf("round trip of %q: %+v != %+v", line, b2, b)
		}
	})
}
