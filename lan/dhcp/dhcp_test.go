package dhcp

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

var (
	serverIP   = netip.MustParseAddr("10.77.0.1")
	reservedIP = netip.MustParseAddr("10.77.0.50")
	reservedHW = mac(0x99)
	t0         = time.Unix(1_800_000_000, 0)
)

func mac(n byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0x77, 0, 0, 0, n} }

// testWriter sends log output to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig is a /24 LAN with a 10-address pool and one reservation.
func testConfig(t testing.TB) Config {
	return Config{
		Interface:  "lan0",
		ServerAddr: serverIP,
		Subnet:     netip.MustParsePrefix("10.77.0.0/24"),
		RangeStart: netip.MustParseAddr("10.77.0.100"),
		RangeEnd:   netip.MustParseAddr("10.77.0.109"),
		LeaseTime:  time.Hour,
		Domain:     "lan",
		Reservations: []Reservation{
			{MAC: reservedHW, Addr: reservedIP, Hostname: "printer"},
		},
		Logger: testLogger(t),
	}
}

// clock is a settable test clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }
func newServer(t testing.TB, cfg Config) (*Server, *clock) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c := &clock{now: t0}
	s.now = c.Now
	return s, c
}

// exchange sends m through the wire format into the handler.
func exchange(t testing.TB, s *Server, m *dhcpv4.DHCPv4) (response, bool) {
	t.Helper()
	r, ok := s.handlePacket(m.ToBytes())
	if ok {
		// Whatever the server sends must itself parse.
		if _, err := dhcpv4.FromBytes(r.msg.ToBytes()); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
	}
	return r, ok
}

func msg(t testing.TB, hw net.HardwareAddr, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func withRequested(a netip.Addr) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(a.AsSlice()))
}

func withServerID(a netip.Addr) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(a.AsSlice()))
}

func withCIAddr(a netip.Addr) dhcpv4.Modifier { return dhcpv4.WithClientIP(a.AsSlice()) }

func withHostname(h string) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptHostName(h)) }

func mustType(t testing.TB, r response, ok bool, want dhcpv4.MessageType) {
	t.Helper()
	if !ok {
		t.Fatalf("no reply, want %v", want)
	}
	if got := r.msg.MessageType(); got != want {
		t.Fatalf("reply type %v (%s), want %v", got, r.msg.Message(), want)
	}
}

func yiaddr(r response) netip.Addr { return ip4(r.msg.YourIPAddr) }

// dora runs DISCOVER/OFFER/REQUEST/ACK for hw and returns the address.
func dora(t testing.TB, s *Server, hw net.HardwareAddr, mods ...dhcpv4.Modifier) netip.Addr {
	t.Helper()
	r, ok := exchange(t, s, msg(t, hw, dhcpv4.MessageTypeDiscover, mods...))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	a := yiaddr(r)
	r, ok = exchange(t, s, msg(t, hw, dhcpv4.MessageTypeRequest,
		append([]dhcpv4.Modifier{withServerID(serverIP), withRequested(a)}, mods...)...))
	mustType(t, r, ok, dhcpv4.MessageTypeAck)
	if got := yiaddr(r); got != a {
		t.Fatalf("ACK yiaddr %v, offered %v", got, a)
	}
	return a
}

func TestDORA(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	hw := mac(1)
	r, ok := exchange(t, s, msg(t, hw, dhcpv4.MessageTypeDiscover, withHostname("Laptop.example")))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	a := yiaddr(r)
	if !s.tab.dynamic(a) {
		t.Fatalf("offered %v, not a pool address", a)
	}
	checkOptions(t, r.msg, true)
	if r.kind != toHW || !bytes.Equal(r.hw, hw) || r.ip != a || r.src != serverIP {
		t.Errorf("offer destination %+v, want link-layer unicast to %v/%v", r, hw, a)
	}

	r, ok = exchange(t, s, msg(t, hw, dhcpv4.MessageTypeRequest, withServerID(serverIP), withRequested(a), withHostname("Laptop.example")))
	mustType(t, r, ok, dhcpv4.MessageTypeAck)
	checkOptions(t, r.msg, true)
	if got := yiaddr(r); got != a {
		t.Fatalf("ACK yiaddr %v, want %v", got, a)
	}

	leases := s.Leases()
	if len(leases) != 1 || leases[0].Addr != a || !bytes.Equal(leases[0].MAC, hw) ||
		leases[0].Hostname != "Laptop" || !leases[0].Expiry.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Leases() = %+v", leases)
	}
	for _, name := range []string{"laptop", "LAPTOP", "laptop.lan", "laptop.lan."} {
		if got, ok := s.Lookup(name); !ok || got != a {
			t.Errorf("Lookup(%q) = %v, %v; want %v", name, got, ok, a)
		}
	}
	if _, ok := s.Lookup("nobody"); ok {
		t.Error("Lookup(nobody) found something")
	}
	st := s.Stats()
	want := Stats{Discovers: 1, Offers: 1, Requests: 1, Acks: 1, LeasesActive: 1}
	if st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}

	// A second client gets another address.
	if b := dora(t, s, mac(2)); b == a {
		t.Errorf("second client got the same address %v", b)
	}
}

// checkOptions checks the configuration options of an OFFER/ACK.
func checkOptions(t testing.TB, m *dhcpv4.DHCPv4, lease bool) {
	t.Helper()
	if got := m.ServerIdentifier(); !got.Equal(serverIP.AsSlice()) {
		t.Errorf("server id %v", got)
	}
	if got := m.SubnetMask(); net.IP(got).String() != "255.255.255.0" {
		t.Errorf("mask %v", got)
	}
	if got := m.Router(); len(got) != 1 || !got[0].Equal(serverIP.AsSlice()) {
		t.Errorf("router %v", got)
	}
	if got := m.DNS(); len(got) != 1 || !got[0].Equal(serverIP.AsSlice()) {
		t.Errorf("dns %v", got)
	}
	if got := m.DomainName(); got != "lan" {
		t.Errorf("domain %q", got)
	}
	if got := m.BroadcastAddress(); net.IP(got).String() != "10.77.0.255" {
		t.Errorf("broadcast %v", got)
	}
	if lease {
		if got := m.IPAddressLeaseTime(0); got != time.Hour {
			t.Errorf("lease time %v", got)
		}
		if got := m.IPAddressRenewalTime(0); got != 30*time.Minute {
			t.Errorf("T1 %v", got)
		}
		if got := m.IPAddressRebindingTime(0); got != 52*time.Minute+30*time.Second {
			t.Errorf("T2 %v", got)
		}
	} else if m.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Error("lease time option present")
	}
}

func TestReplyDestination(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	a := dora(t, s, mac(1))
	bcast := dhcpv4.WithBroadcast(true)
	tests := []struct {
		name string
		m    *dhcpv4.DHCPv4
		typ  dhcpv4.MessageType
		kind destKind
		ip   netip.Addr
	}{
		{"discover broadcast flag", msg(t, mac(2), dhcpv4.MessageTypeDiscover, bcast), dhcpv4.MessageTypeOffer, toBroadcast, netip.Addr{}},
		{"renew with ciaddr", msg(t, mac(1), dhcpv4.MessageTypeRequest, withCIAddr(a)), dhcpv4.MessageTypeAck, toUnicast, a},
		{"rebind broadcast with ciaddr", msg(t, mac(1), dhcpv4.MessageTypeRequest, withCIAddr(a), bcast), dhcpv4.MessageTypeAck, toUnicast, a},
		{"nak", msg(t, mac(1), dhcpv4.MessageTypeRequest, withRequested(netip.MustParseAddr("192.168.1.5"))), dhcpv4.MessageTypeNak, toBroadcast, netip.Addr{}},
		{"non-ethernet chaddr", msg(t, net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8}, dhcpv4.MessageTypeDiscover), dhcpv4.MessageTypeOffer, toBroadcast, netip.Addr{}},
		{"inform without ciaddr", msg(t, mac(3), dhcpv4.MessageTypeInform), dhcpv4.MessageTypeAck, toBroadcast, netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := exchange(t, s, tt.m)
			mustType(t, r, ok, tt.typ)
			if r.kind != tt.kind || r.ip != tt.ip {
				t.Errorf("destination kind %v ip %v, want %v %v", r.kind, r.ip, tt.kind, tt.ip)
			}
		})
	}
}

func TestRenewRebind(t *testing.T) {
	for _, broadcast := range []bool{false, true} {
		t.Run(fmt.Sprintf("broadcast=%v", broadcast), func(t *testing.T) {
			s, clk := newServer(t, testConfig(t))
			a := dora(t, s, mac(1))
			clk.Advance(40 * time.Minute)
			r, ok := exchange(t, s, msg(t, mac(1), dhcpv4.MessageTypeRequest, withCIAddr(a), dhcpv4.WithBroadcast(broadcast)))
			mustType(t, r, ok, dhcpv4.MessageTypeAck)
			if yiaddr(r) != a || ip4(r.msg.ClientIPAddr) != a {
				t.Errorf("ACK yiaddr %v ciaddr %v, want %v", r.msg.YourIPAddr, r.msg.ClientIPAddr, a)
			}
			if l := s.Leases(); len(l) != 1 || !l[0].Expiry.Equal(clk.now.Add(time.Hour)) {
				t.Errorf("lease not extended: %+v", l)
			}
			// Another client claiming the address is refused.
			r, ok = exchange(t, s, msg(t, mac(2), dhcpv4.MessageTypeRequest, withCIAddr(a), dhcpv4.WithBroadcast(broadcast)))
			mustType(t, r, ok, dhcpv4.MessageTypeNak)
			// An address outside the subnet is refused.
			r, ok = exchange(t, s, msg(t, mac(1), dhcpv4.MessageTypeRequest, withCIAddr(netip.MustParseAddr("10.1.1.1"))))
			mustType(t, r, ok, dhcpv4.MessageTypeNak)
		})
	}
}

func TestSelectingOtherServer(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	r, ok := exchange(t, s, msg(t, mac(1), dhcpv4.MessageTypeDiscover))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	if len(s.tab.byAddr) != 1 {
		t.Fatalf("offer not held: %d bindings", len(s.tab.byAddr))
	}
	_, ok = exchange(t, s, msg(t, mac(1), dhcpv4.MessageTypeRequest,
		withServerID(netip.MustParseAddr("10.77.0.254")), withRequested(yiaddr(r))))
	if ok {
		t.Fatal("replied to a REQUEST for another server")
	}
	if len(s.tab.byAddr) != 0 {
		t.Errorf("offer not forgotten: %d bindings", len(s.tab.byAddr))
	}
}

func TestInitReboot(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	a := dora(t, s, mac(1))
	other := dora(t, s, mac(2))
	tests := []struct {
		name   string
		hw     net.HardwareAddr
		req    netip.Addr
		want   dhcpv4.MessageType // MessageTypeNone: silence
		wantIP netip.Addr
	}{
		{"own lease", mac(1), a, dhcpv4.MessageTypeAck, a},
		{"wrong subnet", mac(1), netip.MustParseAddr("192.168.1.20"), dhcpv4.MessageTypeNak, netip.Addr{}},
		{"wrong subnet unknown client", mac(9), netip.MustParseAddr("192.168.1.20"), dhcpv4.MessageTypeNak, netip.Addr{}},
		{"another client's lease", mac(1), other, dhcpv4.MessageTypeNak, netip.Addr{}},
		{"free address, not its lease", mac(1), netip.MustParseAddr("10.77.0.109"), dhcpv4.MessageTypeNak, netip.Addr{}},
		{"unknown client", mac(9), netip.MustParseAddr("10.77.0.108"), dhcpv4.MessageTypeNone, netip.Addr{}},
		{"reservation", reservedHW, reservedIP, dhcpv4.MessageTypeAck, reservedIP},
		{"reserved client, other address", reservedHW, netip.MustParseAddr("10.77.0.107"), dhcpv4.MessageTypeNak, netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := exchange(t, s, msg(t, tt.hw, dhcpv4.MessageTypeRequest, withRequested(tt.req)))
			if tt.want == dhcpv4.MessageTypeNone {
				if ok {
					t.Fatalf("replied %v, want silence", r.msg.MessageType())
				}
				return
			}
			mustType(t, r, ok, tt.want)
			if yiaddr(r) != tt.wantIP && !(tt.want == dhcpv4.MessageTypeNak && yiaddr(r).IsUnspecified()) {
				t.Errorf("yiaddr %v, want %v", yiaddr(r), tt.wantIP)
			}
		})
	}
}

func TestReleaseKeepsAddressForClient(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	a := dora(t, s, mac(1))
	if _, ok := exchange(t, s, msg(t, mac(1), dhcpv4.MessageTypeRelease, withCIAddr(a), withServerID(serverIP))); ok {
		t.Fatal("replied to RELEASE")
	}
	if l := s.Leases(); len(l) != 0 {
		t.Fatalf("lease still active after RELEASE: %+v", l)
	}
	// Others do not get it while free addresses remain; the client does.
	if b := dora(t, s, mac(2)); b == a {
		t.Errorf("released address %v given to another client while the pool has free ones", a)
	}
	if b := dora(t, s, mac(1)); b != a {
		t.Errorf("client got %v after release, want its previous %v", b, a)
	}
	// A RELEASE from someone else does nothing.
	exchange(t, s, msg(t, mac(3), dhcpv4.MessageTypeRelease, withCIAddr(a)))
	if l := s.Leases(); len(l) != 2 {
		t.Errorf("foreign RELEASE ended a lease: %+v", l)
	}
	if st := s.Stats(); st.Releases != 2 {
		t.Errorf("Releases = %d, want 2", st.Releases)
	}
}

func TestDecline(t *testing.T) {
	cfg := testConfig(t)
	cfg.RangeEnd = cfg.RangeStart // one-address pool
	s, clk := newServer(t, cfg)
	a := dora(t, s, mac(1))
	// Not the decliner's address: ignored.
	exchange(t, s, msg(t, mac(2), dhcpv4.MessageTypeDecline, withRequested(a), withServerID(serverIP)))
	if l := s.Leases(); len(l) != 1 {
		t.Fatalf("foreign DECLINE removed the lease: %+v", l)
	}
	if _, ok := exchange(t, s, msg(t, mac(1), dhcpv4.MessageTypeDecline, withRequested(a), withServerID(serverIP))); ok {
		t.Fatal("replied to DECLINE")
	}
	if l := s.Leases(); len(l) != 0 {
		t.Fatalf("declined lease still active: %+v", l)
	}
	for _, hw := range []net.HardwareAddr{mac(1), mac(2)} {
		if r, ok := exchange(t, s, msg(t, hw, dhcpv4.MessageTypeDiscover)); ok {
			t.Fatalf("declined address offered: %v", yiaddr(r))
		}
	}
	clk.Advance(declineHold + time.Second)
	if b := dora(t, s, mac(2)); b != a {
		t.Errorf("after the hold got %v, want %v", b, a)
	}
	if st := s.Stats(); st.Declines != 2 || st.PoolExhausted != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestInform(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	ci := netip.MustParseAddr("10.77.0.20")
	r, ok := exchange(t, s, msg(t, mac(1), dhcpv4.MessageTypeInform, withCIAddr(ci)))
	mustType(t, r, ok, dhcpv4.MessageTypeAck)
	checkOptions(t, r.msg, false)
	if y := yiaddr(r); !y.IsUnspecified() {
		t.Errorf("yiaddr %v, want 0.0.0.0", y)
	}
	if r.kind != toUnicast || r.ip != ci {
		t.Errorf("destination %v %v, want unicast to %v", r.kind, r.ip, ci)
	}
	if l := s.Leases(); len(l) != 0 {
		t.Errorf("INFORM created a lease: %+v", l)
	}
	if st := s.Stats(); st.Informs != 1 || st.Acks != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestReservation(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	// Resolvable before the client ever asks.
	if got, ok := s.Lookup("Printer"); !ok || got != reservedIP {
		t.Errorf("Lookup(Printer) = %v, %v", got, ok)
	}
	// The reserved client gets its address whatever it requests, under the
	// reservation's name.
	r, ok := exchange(t, s, msg(t, reservedHW, dhcpv4.MessageTypeDiscover, withRequested(netip.MustParseAddr("10.77.0.105"))))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	if yiaddr(r) != reservedIP {
		t.Fatalf("reserved client offered %v, want %v", yiaddr(r), reservedIP)
	}
	if a := dora(t, s, reservedHW, withHostname("whatever")); a != reservedIP {
		t.Fatalf("reserved client got %v, want %v", a, reservedIP)
	}
	if l := s.Leases(); len(l) != 1 || l[0].Hostname != "printer" {
		t.Errorf("Leases = %+v", l)
	}
	// Nobody else gets it.
	r, ok = exchange(t, s, msg(t, mac(1), dhcpv4.MessageTypeDiscover, withRequested(reservedIP)))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	if yiaddr(r) == reservedIP {
		t.Error("reserved address offered to another client")
	}
	r, ok = exchange(t, s, msg(t, mac(1), dhcpv4.MessageTypeRequest, withServerID(serverIP), withRequested(reservedIP)))
	mustType(t, r, ok, dhcpv4.MessageTypeNak)
}

func TestClientIdentifier(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	id := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{0xff, 1, 2, 3, 4}))
	a := dora(t, s, mac(1), id)
	// Same client identifier, new NIC: same client.
	r, ok := exchange(t, s, msg(t, mac(2), dhcpv4.MessageTypeDiscover, id))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	if yiaddr(r) != a {
		t.Errorf("client id not honoured: offered %v, want %v", yiaddr(r), a)
	}
	if got := r.msg.Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(got, []byte{0xff, 1, 2, 3, 4}) {
		t.Errorf("client id not echoed (RFC 6842): %x", got)
	}
	// Same MAC without client identifier: another client.
	r, ok = exchange(t, s, msg(t, mac(1), dhcpv4.MessageTypeDiscover))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	if yiaddr(r) == a {
		t.Errorf("client without id got the address of the client with id")
	}
}

func TestPoolExhaustion(t *testing.T) {
	s, clk := newServer(t, testConfig(t))
	seen := map[netip.Addr]bool{}
	for i := range 10 {
		a := dora(t, s, mac(byte(10+i)))
		if seen[a] {
			t.Fatalf("address %v given twice", a)
		}
		seen[a] = true
	}
	for range 3 {
		if r, ok := exchange(t, s, msg(t, mac(50), dhcpv4.MessageTypeDiscover)); ok {
			t.Fatalf("offer %v from an exhausted pool", yiaddr(r))
		}
	}
	r, ok := exchange(t, s, msg(t, mac(50), dhcpv4.MessageTypeRequest, withServerID(serverIP), withRequested(netip.MustParseAddr("10.77.0.100"))))
	mustType(t, r, ok, dhcpv4.MessageTypeNak)
	if st := s.Stats(); st.PoolExhausted != 3 || st.LeasesActive != 10 {
		t.Errorf("Stats = %+v", st)
	}
	// Once leases expire, addresses are reused, oldest first.
	clk.Advance(2 * time.Hour)
	if a := dora(t, s, mac(50)); !seen[a] {
		t.Errorf("got %v, not a pool address", a)
	}
}

func TestBoundedMemory(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	for i := range 5000 {
		hw := net.HardwareAddr{0x02, 0, byte(i >> 16), byte(i >> 8), byte(i), 1}
		exchange(t, s, msg(t, hw, dhcpv4.MessageTypeDiscover))
		exchange(t, s, msg(t, hw, dhcpv4.MessageTypeRequest, withServerID(serverIP), withRequested(netip.MustParseAddr("10.77.0.100"))))
	}
	if n, limit := len(s.tab.byAddr), 10+1; n > limit {
		t.Errorf("%d bindings, want at most %d", n, limit)
	}
	if n := len(s.tab.byClient); n > 11 {
		t.Errorf("%d clients, want at most 11", n)
	}
}

func TestPersistence(t *testing.T) {
	cfg := testConfig(t)
	cfg.LeaseFile = filepath.Join(t.TempDir(), "dhcp.leases")
	s, _ := newServer(t, cfg)
	a := dora(t, s, mac(1), withHostname("alpha"))
	b := dora(t, s, mac(2), dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 0x77, 0, 0, 0, 2})))
	dora(t, s, reservedHW)
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(cfg.LeaseFile)
	if err != nil {
		t.Fatal(err)
	}
	exp := t0.Add(time.Hour).Unix()
	want := fmt.Sprintf("%d 02:77:00:00:00:99 10.77.0.50 printer *\n", exp)
	lines := map[netip.Addr]string{
		a: fmt.Sprintf("%d 02:77:00:00:00:01 %v alpha *\n", exp, a),
		b: fmt.Sprintf("%d 02:77:00:00:00:02 %v * 01:02:77:00:00:00:02\n", exp, b),
	}
	for _, k := range slices.SortedFunc(func(yield func(netip.Addr) bool) {
		for k := range lines {
			if !yield(k) {
				return
			}
		}
	}, netip.Addr.Compare) {
		want += lines[k]
	}
	if string(data) != want {
		t.Errorf("lease file:\n%s\nwant:\n%s", data, want)
	}
	if ents, _ := os.ReadDir(filepath.Dir(cfg.LeaseFile)); len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}

	// Restart: the leases are back and the clients renew to the same
	// addresses.
	s2, clk := newServer(t, cfg)
	if got, want := s2.Leases(), s.Leases(); !slices.EqualFunc(got, want, leaseEqual) {
		t.Fatalf("after restart Leases = %+v, want %+v", got, want)
	}
	if got, ok := s2.Lookup("alpha"); !ok || got != a {
		t.Errorf("Lookup(alpha) after restart = %v, %v", got, ok)
	}
	clk.Advance(30 * time.Minute)
	r, ok := exchange(t, s2, msg(t, mac(1), dhcpv4.MessageTypeRequest, withCIAddr(a)))
	mustType(t, r, ok, dhcpv4.MessageTypeAck)
	r, ok = exchange(t, s2, msg(t, mac(1), dhcpv4.MessageTypeRequest, withRequested(a))) // INIT-REBOOT
	mustType(t, r, ok, dhcpv4.MessageTypeAck)
	r, ok = exchange(t, s2, msg(t, mac(2), dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 0x77, 0, 0, 0, 2}))))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	if yiaddr(r) != b {
		t.Errorf("after restart client 2 offered %v, want %v", yiaddr(r), b)
	}
}

func leaseEqual(a, b Lease) bool {
	return a.Addr == b.Addr && bytes.Equal(a.MAC, b.MAC) && a.Hostname == b.Hostname &&
		bytes.Equal(a.ClientID, b.ClientID) && a.Expiry.Equal(b.Expiry)
}

func TestLeaseFileTolerance(t *testing.T) {
	cfg := testConfig(t)
	cfg.LeaseFile = filepath.Join(t.TempDir(), "dhcp.leases")
	exp := t0.Add(time.Hour).Unix()
	content := strings.Join([]string{
		fmt.Sprintf("%d 02:77:00:00:00:01 10.77.0.101 one *", exp),
		"garbage",
		"",
		"# comment",
		"duid 00:01:00:01:2b:2c:2d:2e:02:77:00:00:00:01",
		fmt.Sprintf("%d 02:77:00:00:00:02 10.77.0.300 two *", exp),         // bad address
		fmt.Sprintf("%d 02:77:00:00:00:03 10.77.0.103 two * extra", exp),   // 6 fields
		fmt.Sprintf("x%d 02:77:00:00:00:04 10.77.0.104 four *", exp),       // bad expiry
		fmt.Sprintf("%d 02:77:00:00:00:05 192.168.9.9 five *", exp),        // outside the subnet
		fmt.Sprintf("%d 02:77:00:00:00:06 10.77.0.50 six *", exp),          // someone else's reservation
		fmt.Sprintf("%d zz:77:00:00:00:07 10.77.0.107 seven *", exp),       // bad MAC
		fmt.Sprintf("%d 02:77:00:00:00:08 10.77.0.108 b@d *", exp),         // bad name
		fmt.Sprintf("%d 02:77:00:00:00:09 10.77.0.101 dup *", exp-10),      // older duplicate address
		fmt.Sprintf("%d 02:77:00:00:00:0a 10.77.0.109 ten 01:02:03", exp),  // good, with client id
		strings.Repeat("x", 10000),                                         // overlong
		fmt.Sprintf("%d 02:77:00:00:00:0b 10.77.0.106 eleven *", exp-7200), // expired: record only
		fmt.Sprintf("%d 02:77:00:00:00:0c 10.77.0.105 twelve *", exp),      // no final newline
	}, "\n")
	if err := os.WriteFile(cfg.LeaseFile, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := newServer(t, cfg)
	var got []string
	for _, l := range s.Leases() {
		got = append(got, l.Addr.String()+"="+l.Hostname)
	}
	want := []string{"10.77.0.101=one", "10.77.0.105=twelve", "10.77.0.109=ten"}
	if !slices.Equal(got, want) {
		t.Errorf("loaded %v, want %v", got, want)
	}
	// The expired record still gives its client the same address.
	r, ok := exchange(t, s, msg(t, mac(0x0b), dhcpv4.MessageTypeDiscover))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	if yiaddr(r) != netip.MustParseAddr("10.77.0.106") {
		t.Errorf("expired record not reused: offered %v", yiaddr(r))
	}

	// A missing file is fine; an unreadable path is an error.
	cfg.LeaseFile = filepath.Join(t.TempDir(), "absent")
	if _, err := New(cfg); err != nil {
		t.Errorf("missing lease file: %v", err)
	}
	cfg.LeaseFile = t.TempDir() // a directory
	if _, err := New(cfg); err == nil {
		t.Error("lease file that is a directory: no error")
	}
}

func TestReconfigure(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	var addrs []netip.Addr
	for i := range 4 {
		addrs = append(addrs, dora(t, s, mac(byte(i+1))))
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	cfg := testConfig(t)
	cfg.RangeStart, cfg.RangeEnd = netip.MustParseAddr("10.77.0.100"), netip.MustParseAddr("10.77.0.199")
	// A new reservation takes over a leased address.
	cfg.Reservations = append(cfg.Reservations, Reservation{MAC: mac(0x42), Addr: addrs[0]})
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	var got []netip.Addr
	for _, l := range s.Leases() {
		got = append(got, l.Addr)
	}
	if !slices.Equal(got, addrs[1:]) {
		t.Errorf("after Reconfigure leases %v, want %v", got, addrs[1:])
	}
	if a := dora(t, s, mac(0x42)); a != addrs[0] {
		t.Errorf("new reservation got %v, want %v", a, addrs[0])
	}
	// An invalid configuration is refused and the old one stays.
	bad := cfg
	bad.RangeEnd = netip.MustParseAddr("10.78.0.1")
	if err := s.Reconfigure(bad); err == nil {
		t.Error("Reconfigure accepted a pool outside the subnet")
	}
	if l := s.Leases(); len(l) != 4 {
		t.Errorf("failed Reconfigure changed leases: %+v", l)
	}
}

func TestConfigValidation(t *testing.T) {
	mod := func(f func(*Config)) Config {
		c := testConfig(t)
		f(&c)
		return c
	}
	bad := map[string]Config{
		"no interface":        mod(func(c *Config) { c.Interface = "" }),
		"server outside":      mod(func(c *Config) { c.ServerAddr = netip.MustParseAddr("10.1.0.1") }),
		"ipv6 subnet":         mod(func(c *Config) { c.Subnet = netip.MustParsePrefix("fd00::/64") }),
		"range reversed":      mod(func(c *Config) { c.RangeStart, c.RangeEnd = c.RangeEnd, c.RangeStart }),
		"range has broadcast": mod(func(c *Config) { c.RangeEnd = netip.MustParseAddr("10.77.0.255") }),
		"pool too big": mod(func(c *Config) {
			c.Subnet = netip.MustParsePrefix("10.0.0.0/8")
			c.RangeEnd = netip.MustParseAddr("10.200.0.1")
		}),
		"short lease": mod(func(c *Config) { c.LeaseTime = time.Second }),
		"bad domain":  mod(func(c *Config) { c.Domain = "a b" }),
		"dup reservation MAC": mod(func(c *Config) {
			c.Reservations = append(c.Reservations, Reservation{MAC: reservedHW, Addr: netip.MustParseAddr("10.77.0.51")})
		}),
		"dup reservation addr":  mod(func(c *Config) { c.Reservations = append(c.Reservations, Reservation{MAC: mac(5), Addr: reservedIP}) }),
		"reservation is server": mod(func(c *Config) { c.Reservations[0].Addr = serverIP }),
		"reservation bad name":  mod(func(c *Config) { c.Reservations[0].Hostname = "a.b" }),
		"ipv6 dns":              mod(func(c *Config) { c.DNS = []netip.Addr{netip.MustParseAddr("::1")} }),
	}
	for name, cfg := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg); err == nil {
				t.Errorf("New accepted %s", name)
			}
		})
	}
	s, err := New(Config{Interface: "lan0", ServerAddr: serverIP, Subnet: netip.MustParsePrefix("10.77.0.0/24"),
		RangeStart: netip.MustParseAddr("10.77.0.1"), RangeEnd: netip.MustParseAddr("10.77.0.2"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.LeaseTime != DefaultLeaseTime || s.cfg.Router != serverIP || !slices.Equal(s.cfg.DNS, []netip.Addr{serverIP}) {
		t.Errorf("defaults not applied: %+v", s.cfg)
	}
	// ServerAddr inside the pool is skipped.
	s.now = func() time.Time { return t0 }
	if a := dora(t, s, mac(1)); a != netip.MustParseAddr("10.77.0.2") {
		t.Errorf("got %v, want 10.77.0.2 (the server address is in the pool)", a)
	}
	if r, ok := exchange(t, s, msg(t, mac(2), dhcpv4.MessageTypeDiscover)); ok {
		t.Errorf("offered %v: the server's own address?", yiaddr(r))
	}
}

func TestBadPackets(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	reply := msg(t, mac(1), dhcpv4.MessageTypeOffer)
	reply.OpCode = dhcpv4.OpcodeBootReply
	relayed := msg(t, mac(1), dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(net.IPv4(10, 9, 9, 1)))
	bootp := msg(t, mac(1), dhcpv4.MessageTypeDiscover)
	bootp.Options.Del(dhcpv4.OptionDHCPMessageType)
	inputs := [][]byte{nil, {1}, bytes.Repeat([]byte{0xff}, 300), reply.ToBytes(), relayed.ToBytes(), bootp.ToBytes(),
		msg(t, mac(1), dhcpv4.MessageTypeRequest).ToBytes()} // REQUEST with nothing to request
	for i, b := range inputs {
		if r, ok := s.handlePacket(b); ok {
			t.Errorf("input %d: replied %v", i, r.msg.Summary())
		}
	}
	if st := s.Stats(); st.BadPackets != uint64(len(inputs)) {
		t.Errorf("BadPackets = %d, want %d", st.BadPackets, len(inputs))
	}
}

func TestBuildIPv4UDP(t *testing.T) {
	payload := []byte("hello, dhcp client") // odd length on purpose
	payload = append(payload, 'x')
	b := buildIPv4UDP([]byte{0xaa}, serverIP, netip.MustParseAddr("10.77.0.100"), 67, 68, payload)
	if b[0] != 0xaa {
		t.Fatal("prefix overwritten")
	}
	b = b[1:]
	if len(b) != 28+len(payload) {
		t.Fatalf("length %d", len(b))
	}
	if c := checksum(0, b[:20]); c != 0xffff {
		t.Errorf("IP header checksum does not verify: %#x", c)
	}
	pseudo := append(append([]byte{}, b[12:20]...), 0, 17, b[24], b[25])
	if c := checksum(checksum(0, pseudo), b[20:]); c != 0xffff {
		t.Errorf("UDP checksum does not verify: %#x", c)
	}
	if !bytes.Equal(b[28:], payload) || b[9] != 17 || b[20] != 0 || b[21] != 67 || b[23] != 68 {
		t.Errorf("bad packet % x", b)
	}
}

// TestDiscoverFloodCannotHoldPool: a host sending DISCOVERs from made-up
// MACs, never answering the offers, used to hold the whole pool for 30 s
// at a time. Unanswered offers now give way when the pool runs out: a real
// client still gets an address at once; leases are never taken.
func TestDiscoverFloodCannotHoldPool(t *testing.T) {
	s, _ := newServer(t, testConfig(t))
	leased := dora(t, s, mac(1)) // one real lease before the flood
	for i := range 1000 {
		hw := net.HardwareAddr{0x02, 0xee, 0, 0, byte(i >> 8), byte(i)}
		r, ok := exchange(t, s, msg(t, hw, dhcpv4.MessageTypeDiscover))
		mustType(t, r, ok, dhcpv4.MessageTypeOffer)
		if yiaddr(r) == leased {
			t.Fatalf("flood DISCOVER %d was offered the leased address %v", i, leased)
		}
	}
	// A real client in the middle of the flood: DISCOVER, REQUEST, ACK.
	a := dora(t, s, mac(2))
	if a == leased {
		t.Fatalf("new client got the leased address %v", a)
	}
	// The flood goes on; the new lease and the old one stay.
	for i := range 100 {
		hw := net.HardwareAddr{0x02, 0xef, 0, 0, 0, byte(i)}
		r, ok := exchange(t, s, msg(t, hw, dhcpv4.MessageTypeDiscover))
		mustType(t, r, ok, dhcpv4.MessageTypeOffer)
		if got := yiaddr(r); got == leased || got == a {
			t.Fatalf("flood offered leased address %v", got)
		}
	}
	// A client whose offer was given away gets a NAK and starts over.
	victim := mac(3)
	r, ok := exchange(t, s, msg(t, victim, dhcpv4.MessageTypeDiscover))
	mustType(t, r, ok, dhcpv4.MessageTypeOffer)
	offered := yiaddr(r)
	for i := range 20 {
		exchange(t, s, msg(t, net.HardwareAddr{0x02, 0xf0, 0, 0, 0, byte(i)}, dhcpv4.MessageTypeDiscover))
	}
	r, ok = exchange(t, s, msg(t, victim, dhcpv4.MessageTypeRequest, withServerID(serverIP), withRequested(offered)))
	mustType(t, r, ok, dhcpv4.MessageTypeNak)
	if b := dora(t, s, victim); b == leased || b == a {
		t.Fatalf("after the NAK the client got leased address %v", b)
	}
	st := s.Stats()
	if st.LeasesActive != 3 || st.PoolExhausted != 0 || st.OffersGivenAway == 0 {
		t.Errorf("Stats = %+v, want 3 leases, no exhaustion, offers given away", st)
	}
	t.Logf("1,120 flood DISCOVERs against a 10-address pool: %d offers given away, 3 real clients leased", st.OffersGivenAway)
	// With every address leased the pool is exhausted as before.
	for i := range 7 {
		dora(t, s, mac(byte(10+i)))
	}
	if r, ok := exchange(t, s, msg(t, mac(60), dhcpv4.MessageTypeDiscover)); ok {
		t.Fatalf("offer %v with every address leased", yiaddr(r))
	}
}
