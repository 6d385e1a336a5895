package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"go.uber.org/goleak"
)

// fakeTransport is an in-memory transport: the test writes requests to in
// and reads what the server sent from out.
type fakeTransport struct {
	ifname string
	in     chan []byte
	out    chan fakeSent
	closed chan struct{}
	once   sync.Once
}

type fakeSent struct {
	payload []byte
	dst     netip.AddrPort // UDP destination, or dst:68 for sendHW
	hw      net.HardwareAddr
}

func newFakeTransport(ifname string) *fakeTransport {
	return &fakeTransport{ifname: ifname, in: make(chan []byte), out: make(chan fakeSent, 16), closed: make(chan struct{})}
}

func (f *fakeTransport) readFrom(b []byte) (int, error) {
	select {
	case p := <-f.in:
		return copy(b, p), nil
	case <-f.closed:
		return 0, net.ErrClosed
	}
}

func (f *fakeTransport) sendUDP(p []byte, dst netip.AddrPort) error {
	f.out <- fakeSent{payload: append([]byte(nil), p...), dst: dst}
	return nil
}

func (f *fakeTransport) sendHW(p []byte, hw net.HardwareAddr, src, dst netip.Addr) error {
	f.out <- fakeSent{payload: append([]byte(nil), p...), dst: netip.AddrPortFrom(dst, clientPort), hw: hw}
	return nil
}

func (f *fakeTransport) close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeTransport) roundTrip(t *testing.T, m *dhcpv4.DHCPv4) (fakeSent, *dhcpv4.DHCPv4) {
	t.Helper()
	select {
	case f.in <- m.ToBytes():
	case <-time.After(5 * time.Second):
		t.Fatal("server not reading")
	}
	select {
	case s := <-f.out:
		r, err := dhcpv4.FromBytes(s.payload)
		if err != nil {
			t.Fatal(err)
		}
		return s, r
	case <-time.After(5 * time.Second):
		t.Fatal("no reply")
	}
	return fakeSent{}, nil
}

func TestServeWithFakeTransport(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	cfg.LeaseFile = filepath.Join(t.TempDir(), "leases")
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan *fakeTransport, 4)
	s.open = func(ifname string, _ *slog.Logger) (transport, error) {
		if ifname == "missing0" {
			return nil, errors.New("no such interface")
		}
		ft := newFakeTransport(ifname)
		opened <- ft
		return ft, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	ft := <-opened
	if ft.ifname != "lan0" {
		t.Errorf("opened %q, want lan0", ft.ifname)
	}
	if err := s.Serve(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Serve: %v", err)
	}

	hw := mac(1)
	sent, offer := ft.roundTrip(t, msg(t, hw, dhcpv4.MessageTypeDiscover))
	a := ip4(offer.YourIPAddr)
	if offer.MessageType() != dhcpv4.MessageTypeOffer || sent.dst != netip.AddrPortFrom(a, 68) || sent.hw.String() != hw.String() {
		t.Fatalf("offer %v sent to %v/%v", offer.Summary(), sent.dst, sent.hw)
	}
	sent, ack := ft.roundTrip(t, msg(t, hw, dhcpv4.MessageTypeRequest, withServerID(serverIP), withRequested(a), dhcpv4.WithBroadcast(true)))
	if ack.MessageType() != dhcpv4.MessageTypeAck || sent.dst.String() != "255.255.255.255:68" {
		t.Fatalf("ack %v sent to %v", ack.Summary(), sent.dst)
	}

	// A new interface makes Serve reopen its sockets.
	cfg.Interface = "lan1"
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	select {
	case ft = <-opened:
		if ft.ifname != "lan1" {
			t.Errorf("reopened %q, want lan1", ft.ifname)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sockets not reopened after the interface changed")
	}
	// An interface that cannot be opened is retried; the next
	// Reconfigure wakes the retry.
	cfg.Interface = "missing0"
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	cfg.Interface = "lan2"
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	select {
	case ft = <-opened:
		if ft.ifname != "lan2" {
			t.Errorf("reopened %q, want lan2", ft.ifname)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("sockets not reopened after a failed open and another Reconfigure")
	}
	sent, ack = ft.roundTrip(t, msg(t, hw, dhcpv4.MessageTypeRequest, withCIAddr(a)))
	if ack.MessageType() != dhcpv4.MessageTypeAck || sent.dst != netip.AddrPortFrom(a, 68) {
		t.Fatalf("renew ack %v sent to %v", ack.Summary(), sent.dst)
	}

	// The lease file is written within about a second, and on return.
	deadline := time.Now().Add(3 * time.Second)
	for {
		b, _ := os.ReadFile(cfg.LeaseFile)
		if strings.Contains(string(b), a.String()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease file not written: %q", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ft.in <- msg(t, hw, dhcpv4.MessageTypeRelease, withCIAddr(a)).ToBytes()
	// Messages are handled in order: once the INFORM is answered, the
	// RELEASE has been handled.
	if _, r := ft.roundTrip(t, msg(t, hw, dhcpv4.MessageTypeInform, withCIAddr(a))); r.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("inform: %v", r.Summary())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	if b, _ := os.ReadFile(cfg.LeaseFile); len(b) != 0 {
		t.Errorf("release not flushed when Serve returned: %q", b)
	}
}

func TestServeMissingInterface(t *testing.T) {
	cfg := testConfig(t)
	cfg.Interface = "wfnosuch0"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Serve(ctx); err == nil || !strings.Contains(err.Error(), "wfnosuch0") {
		t.Errorf("Serve on a missing interface: %v", err)
	}
}
