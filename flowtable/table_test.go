package flowtable

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestNewValidation(t *testing.T) {
	ok := Config{Capacity: 10, Workers: 2, Worker: 1, MaxUplinks: 4}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"valid", func(*Config) {}, true},
		{"zero capacity", func(c *Config) { c.Capacity = 0 }, false},
		{"huge capacity", func(c *Config) { c.Capacity = MaxCapacity + 1 }, false},
		{"zero workers", func(c *Config) { c.Workers = 0 }, false},
		{"worker out of range", func(c *Config) { c.Worker = 2 }, false},
		{"negative worker", func(c *Config) { c.Worker = -1 }, false},
		{"zero uplinks", func(c *Config) { c.MaxUplinks = 0 }, false},
		{"257 uplinks", func(c *Config) { c.MaxUplinks = 257 }, false},
		{"256 uplinks", func(c *Config) { c.MaxUplinks = 256 }, true},
		{"port lo 0", func(c *Config) { c.Ports = PortRange{0, 10} }, false},
		{"port lo > hi", func(c *Config) { c.Ports = PortRange{20, 10} }, false},
		{"empty partition", func(c *Config) { c.Ports = PortRange{10, 10} }, false}, // 10%2 != 1
		{"single port partition", func(c *Config) { c.Ports = PortRange{11, 11} }, true},
		{"full port range", func(c *Config) { c.Ports = PortRange{1, 65535} }, true},
		{"negative timeout", func(c *Config) { c.Timeouts.UDP = -time.Second }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			tab, err := New(cfg)
			if tt.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || tab != nil {
				t.Fatalf("New = %v, %v; want nil, ErrInvalidConfig", tab, err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	tab := newTable(t, Config{Timeouts: Timeouts{UDP: time.Minute}})
	got := tab.Config()
	want := DefaultTimeouts()
	want.UDP = time.Minute
	if got.Timeouts != want {
		t.Errorf("Timeouts = %+v, want %+v", got.Timeouts, want)
	}
	if got.Ports != DefaultPorts() {
		t.Errorf("Ports = %v, want %v", got.Ports, DefaultPorts())
	}
}

func TestCreateLookupBothDirections(t *testing.T) {
	tests := []struct {
		name string
		key  Key
	}{
		{"tcp", tcpKey(10, 40000, 10, 443)},
		{"udp", udpKey(10, 5353, 11, 53)},
		{"icmp", icmpKey(10, 0x1234, 12)},
	}
	tab := newTable(t, Config{Ports: PortRange{1024, 65535}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tab.Create(tt.key, 2, natA, sec(1))
			if err != nil {
				t.Fatal(err)
			}
			if e.Key != tt.key || e.Uplink != 2 || e.NATAddr != natA || e.State != StateNew || e.Created != sec(1) || e.LastSeen != sec(1) {
				t.Errorf("entry = %+v", e)
			}
			if got := tab.Lookup(tt.key); got != e {
				t.Errorf("Lookup = %p, want %p", got, e)
			}
			rk := ReplyKey{Remote: tt.key.Dst, RemotePort: tt.key.DstPort, NATPort: e.NATPort, Uplink: 2, Proto: tt.key.Proto}
			if e.ReplyKey() != rk {
				t.Errorf("ReplyKey = %+v, want %+v", e.ReplyKey(), rk)
			}
			if got := tab.LookupReply(rk); got != e {
				t.Errorf("LookupReply = %p, want %p", got, e)
			}
			if e.NATPort != tt.key.SrcPort {
				t.Errorf("NATPort = %d, want preserved %d", e.NATPort, tt.key.SrcPort)
			}
			checkInvariants(t, tab)
		})
	}
	if tab.Len() != len(tests) {
		t.Errorf("Len = %d, want %d", tab.Len(), len(tests))
	}
	if s := tab.Stats(); s.Created != 3 || s.Flows != 3 || s.PortsInUse != 3 || s.PortsPreserved != 3 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestCreateErrors(t *testing.T) {
	tab := newTable(t, Config{MaxUplinks: 2})
	k := tcpKey(1, 20000, 1, 80)
	mustCreate(t, tab, k, 0, 0)
	gre := k
	gre.Proto = 47
	tests := []struct {
		name   string
		key    Key
		uplink uint8
		want   error
	}{
		{"duplicate", k, 0, ErrExists},
		{"duplicate other uplink", k, 1, ErrExists},
		{"bad proto", gre, 0, ErrProto},
		{"bad uplink", tcpKey(2, 20000, 1, 80), 2, ErrUplink},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tab.Create(tt.key, tt.uplink, natA, 0)
			if !errors.Is(err, tt.want) || e != nil {
				t.Errorf("Create = %v, %v; want nil, %v", e, err, tt.want)
			}
			checkInvariants(t, tab)
		})
	}
}

func TestReplyFiltering(t *testing.T) {
	tab := newTable(t, Config{})
	e := mustCreate(t, tab, udpKey(1, 20001, 1, 53), 1, 0)
	good := e.ReplyKey()
	tests := []struct {
		name string
		mod  func(*ReplyKey)
	}{
		{"other remote address", func(r *ReplyKey) { r.Remote[3]++ }},
		{"other remote port", func(r *ReplyKey) { r.RemotePort++ }},
		{"other NAT port", func(r *ReplyKey) { r.NATPort++ }},
		{"other uplink", func(r *ReplyKey) { r.Uplink = 0 }},
		{"other proto", func(r *ReplyKey) { r.Proto = ProtoTCP }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rk := good
			tt.mod(&rk)
			if got := tab.LookupReply(rk); got != nil {
				t.Errorf("LookupReply(%+v) = %+v, want nil", rk, got)
			}
		})
	}
	if tab.LookupReply(good) != e {
		t.Error("LookupReply(good) lost the flow")
	}
}

func TestEIMSharingAndRelease(t *testing.T) {
	tab := newTable(t, Config{Ports: PortRange{20000, 20100}})
	// 10.77.0.1:30000 is outside the range, so its port is allocated.
	a := mustCreate(t, tab, udpKey(1, 30000, 1, 53), 0, 0)
	b := mustCreate(t, tab, udpKey(1, 30000, 2, 123), 0, 0)
	c := mustCreate(t, tab, udpKey(1, 30000, 1, 54), 0, 0)
	if a.NATPort != b.NATPort || a.NATPort != c.NATPort {
		t.Fatalf("same LAN endpoint got ports %d %d %d, want one shared port", a.NATPort, b.NATPort, c.NATPort)
	}
	other := mustCreate(t, tab, udpKey(2, 30000, 1, 53), 0, 0)
	if other.NATPort == a.NATPort {
		t.Fatalf("different LAN hosts share NAT port %d", a.NATPort)
	}
	up1 := mustCreate(t, tab, udpKey(1, 30000, 3, 53), 1, 0)
	tcp := mustCreate(t, tab, tcpKey(1, 30000, 1, 53), 0, 0)
	if got := tab.Stats().PortsInUse; got != 4 {
		t.Fatalf("PortsInUse = %d, want 4 (shared, other host, uplink 1, tcp)", got)
	}
	_, _ = up1, tcp
	shared := a.NATPort
	checkInvariants(t, tab)

	tab.Remove(a)
	tab.Remove(b)
	if got := tab.Stats().PortsInUse; got != 4 {
		t.Fatalf("after removing 2 of 3 sharers PortsInUse = %d, want 4", got)
	}
	if c.NATPort != shared || tab.LookupReply(c.ReplyKey()) != c {
		t.Fatal("remaining sharer lost its mapping")
	}
	tab.Remove(c)
	if got := tab.Stats().PortsInUse; got != 3 {
		t.Fatalf("after removing last sharer PortsInUse = %d, want 3", got)
	}
	checkInvariants(t, tab)
	// The released port is free again: a new endpoint asking for it by port
	// preservation gets it.
	d := mustCreate(t, tab, udpKey(9, shared, 1, 53), 0, 0)
	if d.NATPort != shared {
		t.Errorf("released port %d not reusable (got %d)", shared, d.NATPort)
	}
	checkInvariants(t, tab)
}

func TestPortPreservation(t *testing.T) {
	tab := newTable(t, Config{Ports: PortRange{20000, 20999}, Workers: 4, Worker: 2})
	tests := []struct {
		name     string
		key      Key
		uplink   uint8
		preserve bool
	}{
		{"in range and partition", udpKey(1, 20002, 1, 53), 0, true},
		{"same port other host", udpKey(2, 20002, 1, 53), 0, false},
		{"same port other uplink", udpKey(2, 20002, 2, 53), 1, true},
		{"same port other proto", tcpKey(2, 20002, 1, 53), 0, true},
		{"wrong partition", udpKey(3, 20001, 1, 53), 0, false},
		{"below range", udpKey(4, 1026, 1, 53), 0, false},
		{"above range", udpKey(5, 40002, 1, 53), 0, false},
		{"icmp id", icmpKey(6, 20006, 1), 0, true},
		{"icmp id other host", icmpKey(7, 20006, 1), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustCreate(t, tab, tt.key, tt.uplink, 0)
			if got := e.NATPort == tt.key.SrcPort; got != tt.preserve {
				t.Errorf("NATPort %d for SrcPort %d: preserved %v, want %v", e.NATPort, tt.key.SrcPort, got, tt.preserve)
			}
			if e.NATPort%4 != 2 || e.NATPort < 20000 || e.NATPort > 20999 {
				t.Errorf("NATPort %d outside partition", e.NATPort)
			}
			checkInvariants(t, tab)
		})
	}
}

// TestPartitionProperty checks NATPort % Workers == Worker and the range
// for many random keys, worker counts and ranges.
func TestPartitionProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, workers := range []int{1, 2, 3, 4, 7, 16} {
		for worker := range workers {
			lo := uint16(1 + rng.IntN(40000))
			hi := lo + uint16(workers+rng.IntN(3000))
			tab := newTable(t, Config{Capacity: 5000, Workers: workers, Worker: worker, Ports: PortRange{lo, hi}})
			for range 3000 {
				k := Key{
					Src:     [4]byte{10, 77, byte(rng.IntN(4)), byte(rng.IntN(256))},
					Dst:     [4]byte{203, 0, 113, byte(rng.IntN(256))},
					SrcPort: uint16(rng.Uint32()), DstPort: uint16(rng.Uint32()),
					Proto: []uint8{ProtoTCP, ProtoUDP, ProtoICMP}[rng.IntN(3)],
				}
				e, err := tab.Create(k, uint8(rng.IntN(4)), natA, 0)
				if errors.Is(err, ErrPortsExhausted) || errors.Is(err, ErrExists) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if int(e.NATPort)%workers != worker || e.NATPort < lo || e.NATPort > hi {
					t.Fatalf("workers %d worker %d range %d-%d: NATPort %d", workers, worker, lo, hi, e.NATPort)
				}
			}
			checkInvariants(t, tab)
		}
	}
}

func TestPortsExhausted(t *testing.T) {
	// Partition of worker 0 of 2 in 1000-1003: ports 1000 and 1002.
	tab := newTable(t, Config{Ports: PortRange{1000, 1003}, Workers: 2, Worker: 0, MaxUplinks: 2})
	a := mustCreate(t, tab, udpKey(1, 5000, 1, 53), 0, 0)
	mustCreate(t, tab, udpKey(2, 5000, 1, 53), 0, 0)
	if _, err := tab.Create(udpKey(3, 5000, 1, 53), 0, natA, 0); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("third mapping: err %v, want ErrPortsExhausted", err)
	}
	// Sharing an existing mapping needs no new port.
	mustCreate(t, tab, udpKey(1, 5000, 2, 53), 0, 0)
	// Other pools are independent.
	mustCreate(t, tab, udpKey(4, 5000, 1, 53), 1, 0)
	mustCreate(t, tab, tcpKey(3, 5000, 1, 53), 0, 0)
	mustCreate(t, tab, icmpKey(3, 5000, 1), 0, 0)
	if s := tab.Stats(); s.PortsExhausted != 1 {
		t.Errorf("PortsExhausted = %d, want 1", s.PortsExhausted)
	}
	tab.Remove(a)
	if _, err := tab.Create(udpKey(3, 5000, 1, 53), 0, natA, 0); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("port still shared: err %v, want ErrPortsExhausted", err)
	}
	tab.Remove(tab.Lookup(udpKey(1, 5000, 2, 53)))
	e := mustCreate(t, tab, udpKey(3, 5000, 1, 53), 0, 0)
	if e.NATPort != 1000 && e.NATPort != 1002 {
		t.Errorf("NATPort %d", e.NATPort)
	}
	if s := tab.Stats(); s.PortsExhausted != 2 {
		t.Errorf("PortsExhausted = %d, want 2", s.PortsExhausted)
	}
	checkInvariants(t, tab)
}

func TestTimeoutsPerClass(t *testing.T) {
	to := Timeouts{UDP: 11 * time.Second, TCPEstablished: 13 * time.Second, TCPTransitory: 17 * time.Second, ICMP: 19 * time.Second, TCPClosed: 23 * time.Second}
	tests := []struct {
		name  string
		key   Key
		flags []uint8 // out, in, out, ... TCP flags; for UDP/ICMP any
		want  time.Duration
		state State
	}{
		{"udp new", udpKey(1, 1, 1, 1), nil, to.UDP, StateNew},
		{"udp out only", udpKey(1, 1, 1, 1), []uint8{0}, to.UDP, StateNew},
		{"udp replied", udpKey(1, 1, 1, 1), []uint8{0, 0}, to.UDP, StateActive},
		{"icmp", icmpKey(1, 1, 1), []uint8{0, 0}, to.ICMP, StateActive},
		{"tcp new", tcpKey(1, 1, 1, 1), nil, to.TCPTransitory, StateNew},
		{"tcp syn", tcpKey(1, 1, 1, 1), []uint8{TCPFlagSYN}, to.TCPTransitory, StateSynSent},
		{"tcp established", tcpKey(1, 1, 1, 1), []uint8{TCPFlagSYN, TCPFlagSYN | TCPFlagACK, TCPFlagACK}, to.TCPEstablished, StateEstablished},
		{"tcp fin", tcpKey(1, 1, 1, 1), []uint8{TCPFlagSYN, TCPFlagSYN | TCPFlagACK, TCPFlagACK | TCPFlagFIN}, to.TCPTransitory, StateFinWait},
		{"tcp rst", tcpKey(1, 1, 1, 1), []uint8{TCPFlagSYN, TCPFlagRST | TCPFlagACK}, to.TCPClosed, StateClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newTable(t, Config{Timeouts: to})
			e := mustCreate(t, tab, tt.key, 0, sec(100))
			now := sec(100)
			for i, f := range tt.flags {
				now += sec(1)
				tab.Touch(e, Dir(i%2), f, 60, now)
			}
			if e.State != tt.state {
				t.Fatalf("state %v, want %v", e.State, tt.state)
			}
			if got := tab.ExpiresAt(e); got != now+int64(tt.want) {
				t.Errorf("ExpiresAt = %d, want %d", got, now+int64(tt.want))
			}
			if n := tab.Expire(now + int64(tt.want) - 1); n != 0 || tab.Lookup(tt.key) != e {
				t.Fatalf("expired %d one ns early", n)
			}
			if n := tab.Expire(now + int64(tt.want)); n != 1 || tab.Lookup(tt.key) != nil {
				t.Fatalf("Expire at timeout removed %d, want 1", n)
			}
			if s := tab.Stats(); s.Expired != 1 || s.PortsInUse != 0 || s.Flows != 0 {
				t.Errorf("Stats = %+v", s)
			}
			checkInvariants(t, tab)
		})
	}
}

type pkt struct {
	dir   Dir
	flags uint8
	want  State
}

const (
	syn    = TCPFlagSYN
	synack = TCPFlagSYN | TCPFlagACK
	ack    = TCPFlagACK
	psh    = TCPFlagPSH | TCPFlagACK
	fin    = TCPFlagFIN | TCPFlagACK
	rst    = TCPFlagRST
	rstack = TCPFlagRST | TCPFlagACK
)

func TestTCPStateTransitions(t *testing.T) {
	handshake := []pkt{{DirOut, syn, StateSynSent}, {DirIn, synack, StateSynRecv}, {DirOut, ack, StateEstablished}}
	cat := func(parts ...[]pkt) []pkt {
		var out []pkt
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name string
		pkts []pkt
	}{
		{"handshake", handshake},
		{"syn retransmit", []pkt{{DirOut, syn, StateSynSent}, {DirOut, syn, StateSynSent}, {DirIn, synack, StateSynRecv}, {DirIn, synack, StateSynRecv}, {DirOut, ack, StateEstablished}}},
		{"data both ways", cat(handshake, []pkt{{DirOut, psh, StateEstablished}, {DirIn, psh, StateEstablished}})},
		{"fin out then in", cat(handshake, []pkt{{DirOut, fin, StateFinWait}, {DirIn, ack, StateFinWait}, {DirIn, fin, StateTimeWait}, {DirOut, ack, StateTimeWait}})},
		{"fin in then out", cat(handshake, []pkt{{DirIn, fin, StateFinWait}, {DirOut, psh, StateFinWait}, {DirOut, fin, StateTimeWait}})},
		{"fin retransmit", cat(handshake, []pkt{{DirOut, fin, StateFinWait}, {DirOut, fin, StateFinWait}})},
		{"rst out", cat(handshake, []pkt{{DirOut, rst, StateClosed}})},
		{"rst in", cat(handshake, []pkt{{DirIn, rstack, StateClosed}})},
		{"rst answers syn", []pkt{{DirOut, syn, StateSynSent}, {DirIn, rstack, StateClosed}}},
		{"rst during close", cat(handshake, []pkt{{DirOut, fin, StateFinWait}, {DirIn, rst, StateClosed}, {DirIn, fin, StateClosed}})},
		{"reopen after time-wait", cat(handshake, []pkt{{DirOut, fin, StateFinWait}, {DirIn, fin, StateTimeWait}}, handshake)},
		{"reopen after rst", cat(handshake, []pkt{{DirIn, rst, StateClosed}}, handshake)},
		{"traffic after spoofed rst", cat(handshake, []pkt{{DirIn, rst, StateClosed}, {DirOut, psh, StateClosed}, {DirIn, ack, StateEstablished}})},
		{"one-sided traffic after rst", cat(handshake, []pkt{{DirIn, rst, StateClosed}, {DirIn, psh, StateClosed}, {DirIn, psh, StateClosed}})},
		{"loose pickup", []pkt{{DirOut, psh, StateNew}, {DirOut, ack, StateNew}, {DirIn, ack, StateEstablished}}},
		{"loose pickup of closing", []pkt{{DirOut, fin, StateFinWait}, {DirIn, fin, StateTimeWait}}},
		{"simultaneous open", []pkt{{DirOut, syn, StateSynSent}, {DirIn, syn, StateSynRecv}, {DirOut, synack, StateSynRecv}, {DirOut, ack, StateEstablished}}},
		{"syn in established ignored", cat(handshake, []pkt{{DirIn, syn, StateEstablished}, {DirOut, syn, StateEstablished}})},
		{"syn+rst is rst", []pkt{{DirOut, syn | rst, StateClosed}}},
		{"ack before syn-ack", []pkt{{DirOut, syn, StateSynSent}, {DirIn, ack, StateSynSent}, {DirOut, ack, StateEstablished}}},
	}
	to := Timeouts{UDP: 11 * time.Second, TCPEstablished: 13 * time.Second, TCPTransitory: 17 * time.Second, ICMP: 19 * time.Second, TCPClosed: 23 * time.Second}
	timeoutOf := map[State]time.Duration{
		StateNew: to.TCPTransitory, StateSynSent: to.TCPTransitory, StateSynRecv: to.TCPTransitory,
		StateEstablished: to.TCPEstablished, StateFinWait: to.TCPTransitory, StateTimeWait: to.TCPTransitory,
		StateClosed: to.TCPClosed,
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newTable(t, Config{Timeouts: to})
			e := mustCreate(t, tab, tcpKey(1, 20000, 1, 443), 0, 0)
			for i, p := range tt.pkts {
				now := sec(float64(i + 1))
				tab.Touch(e, p.dir, p.flags, 100, now)
				if e.State != p.want {
					t.Fatalf("packet %d (%v flags %#x): state %v, want %v", i, p.dir, p.flags, e.State, p.want)
				}
				if got, want := tab.ExpiresAt(e), now+int64(timeoutOf[p.want]); got != want {
					t.Fatalf("packet %d: state %v expires at %d, want %d", i, e.State, got, want)
				}
			}
			checkInvariants(t, tab)
		})
	}
}

func TestTouchCounters(t *testing.T) {
	tab := newTable(t, Config{})
	e := mustCreate(t, tab, udpKey(1, 20000, 1, 53), 0, sec(1))
	tab.Touch(e, DirOut, 0, 100, sec(2))
	tab.Touch(e, DirOut, 0, 50, sec(3))
	tab.Touch(e, DirIn, 0, 1000, sec(4))
	tab.Touch(e, DirIn, 0, -5, sec(5)) // negative size counts as 0 bytes
	tab.Touch(e, Dir(7), 0, 1, sec(6)) // unknown direction counts as out
	if e.PacketsOut != 3 || e.BytesOut != 151 || e.PacketsIn != 2 || e.BytesIn != 1000 {
		t.Errorf("counters out %d/%d in %d/%d", e.PacketsOut, e.BytesOut, e.PacketsIn, e.BytesIn)
	}
	if e.LastSeen != sec(6) || e.Created != sec(1) || e.State != StateActive {
		t.Errorf("LastSeen %d Created %d State %v", e.LastSeen, e.Created, e.State)
	}
}

func TestTouchMovesToHead(t *testing.T) {
	tab := newTable(t, Config{Timeouts: Timeouts{UDP: 10 * time.Second}})
	a := mustCreate(t, tab, udpKey(1, 20000, 1, 53), 0, sec(0))
	b := mustCreate(t, tab, udpKey(2, 20000, 1, 53), 0, sec(1))
	c := mustCreate(t, tab, udpKey(3, 20000, 1, 53), 0, sec(2))
	tab.Touch(a, DirOut, 0, 1, sec(5))
	if n := tab.Expire(sec(11)); n != 1 || tab.Lookup(b.Key) != nil || tab.Lookup(a.Key) != a {
		t.Fatalf("Expire(11s) = %d; want only b expired", n)
	}
	// ExpireN bounds the work.
	if n := tab.ExpireN(sec(100), 1); n != 1 || tab.Len() != 1 {
		t.Fatalf("ExpireN(limit 1) = %d, Len %d", n, tab.Len())
	}
	if tab.Lookup(c.Key) != nil {
		t.Fatal("ExpireN removed the newer flow first")
	}
	if n := tab.Expire(sec(100)); n != 1 || tab.Len() != 0 {
		t.Fatalf("Expire = %d, Len %d", n, tab.Len())
	}
	if s := tab.Stats(); s.Expired != 3 {
		t.Errorf("Expired = %d, want 3", s.Expired)
	}
}

func TestClockClamp(t *testing.T) {
	tab := newTable(t, Config{Timeouts: Timeouts{UDP: 10 * time.Second}})
	a := mustCreate(t, tab, udpKey(1, 20000, 1, 53), 0, sec(50))
	b := mustCreate(t, tab, udpKey(2, 20000, 1, 53), 0, sec(40)) // clock went back
	tab.Touch(a, DirOut, 0, 1, sec(30))
	if b.LastSeen != sec(50) || a.LastSeen != sec(50) || b.Created != sec(40) {
		t.Errorf("LastSeen a %d b %d, want both clamped to %d", a.LastSeen, b.LastSeen, sec(50))
	}
	checkInvariants(t, tab)
	if n := tab.Expire(sec(59)); n != 0 {
		t.Errorf("Expire(59s) = %d, want 0", n)
	}
	if n := tab.Expire(sec(60)); n != 2 {
		t.Errorf("Expire(60s) = %d, want 2", n)
	}
}

func TestEvictionOrder(t *testing.T) {
	tab := newTable(t, Config{Capacity: 7})
	now := int64(0)
	mk := func(k Key, flags ...uint8) *Entry {
		now += sec(1)
		e := mustCreate(t, tab, k, 0, now)
		for i, f := range flags {
			tab.Touch(e, Dir(i%2), f, 1, now)
		}
		return e
	}
	// Created newest-first within each class's priority so that eviction
	// order differs from creation order.
	est2 := mk(tcpKey(1, 1, 1, 1), syn, synack, ack)
	est1 := mk(tcpKey(2, 1, 1, 1), syn, synack, ack)
	udp := mk(udpKey(3, 1, 1, 1), 0)
	icmp := mk(icmpKey(4, 1, 1), 0)
	trans := mk(tcpKey(5, 1, 1, 1), syn)
	closed := mk(tcpKey(6, 1, 1, 1), syn, rst)
	fin := mk(tcpKey(7, 1, 1, 1), syn, synack, fin)
	tab.Touch(est2, DirOut, ack, 1, now+sec(1)) // est1 is now the older one
	want := []*Entry{closed, trans, fin, icmp, udp, est1, est2}
	wantKeys := make([]Key, len(want))
	for i, e := range want {
		wantKeys[i] = e.Key
	}
	for i, k := range wantKeys {
		if tab.Lookup(k) == nil {
			t.Fatalf("step %d: %+v already gone", i, k)
		}
		// The filler becomes established at once, and newer than est1
		// and est2, so it is never the one evicted.
		fill := mustCreate(t, tab, tcpKey(100+byte(i), 2, 1, 1), 1, now+sec(10))
		for j, f := range []uint8{syn, synack, ack} {
			tab.Touch(fill, Dir(j%2), f, 1, now+sec(10+float64(i)))
		}
		if tab.Len() != 7 {
			t.Fatalf("Len %d, want 7", tab.Len())
		}
		if tab.Lookup(k) != nil {
			t.Fatalf("step %d: %+v not evicted", i, k)
		}
		checkInvariants(t, tab)
	}
	if s := tab.Stats(); s.Evicted != 7 || s.Full != 0 {
		t.Errorf("Evicted %d Full %d, want 7, 0", s.Evicted, s.Full)
	}
}

// TestEvictionKeepsSharedMapping evicts the only other user of the mapping
// a new flow is about to share.
func TestEvictionKeepsSharedMapping(t *testing.T) {
	tab := newTable(t, Config{Capacity: 1})
	a := mustCreate(t, tab, udpKey(1, 40000, 1, 53), 0, 0)
	port := a.NATPort
	b := mustCreate(t, tab, udpKey(1, 40000, 2, 53), 0, 0)
	if b.NATPort != port || tab.Len() != 1 || tab.Stats().PortsInUse != 1 {
		t.Fatalf("NATPort %d (want %d), Len %d", b.NATPort, port, tab.Len())
	}
	checkInvariants(t, tab)
}

func TestRepin(t *testing.T) {
	natB := [4]byte{100, 64, 2, 2}
	tab := newTable(t, Config{MaxUplinks: 2, Ports: PortRange{20000, 20001}})
	e := mustCreate(t, tab, udpKey(1, 20000, 1, 53), 0, 0)
	sib := mustCreate(t, tab, udpKey(1, 20000, 2, 53), 0, 0)
	oldRK := e.ReplyKey()
	// Another LAN endpoint holds 20000 on uplink 1, so e cannot keep its port.
	holder := mustCreate(t, tab, udpKey(2, 20000, 1, 53), 1, 0)
	if err := tab.Repin(e, 1, natB); err != nil {
		t.Fatal(err)
	}
	if e.Uplink != 1 || e.NATAddr != natB || e.NATPort != 20001 {
		t.Fatalf("after Repin: uplink %d addr %v port %d", e.Uplink, e.NATAddr, e.NATPort)
	}
	if tab.LookupReply(oldRK) != nil || tab.LookupReply(e.ReplyKey()) != e || tab.Lookup(e.Key) != e {
		t.Fatal("lookups wrong after Repin")
	}
	checkInvariants(t, tab)
	// Sibling follows and shares the new mapping (EIM on uplink 1).
	if err := tab.Repin(sib, 1, natB); err != nil || sib.NATPort != e.NATPort {
		t.Fatalf("Repin sibling: %v, port %d want %d", err, sib.NATPort, e.NATPort)
	}
	if got := tab.Stats().PortsInUse; got != 2 {
		t.Fatalf("PortsInUse %d, want 2 (old mapping released)", got)
	}
	// Same uplink: only the address changes.
	if err := tab.Repin(e, 1, natA); err != nil || e.NATAddr != natA || e.NATPort != 20001 {
		t.Fatalf("Repin same uplink: %v %+v", err, e)
	}
	// Uplink 1 pool is full for a new endpoint: Repin fails, flow unchanged.
	other := mustCreate(t, tab, udpKey(3, 20000, 1, 53), 0, 0)
	before := *other
	if err := tab.Repin(other, 1, natB); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("Repin into full pool: %v", err)
	}
	if *other != before || tab.LookupReply(other.ReplyKey()) != other {
		t.Fatal("failed Repin changed the flow")
	}
	if err := tab.Repin(other, 2, natB); !errors.Is(err, ErrUplink) {
		t.Fatalf("Repin bad uplink: %v", err)
	}
	tab.Remove(holder)
	if err := tab.Repin(holder, 0, natB); !errors.Is(err, ErrNoEntry) {
		t.Fatalf("Repin removed: %v", err)
	}
	if s := tab.Stats(); s.Repinned != 2 || s.PortsExhausted != 1 {
		t.Errorf("Repinned %d PortsExhausted %d", s.Repinned, s.PortsExhausted)
	}
	checkInvariants(t, tab)
}

func TestRemoveStaleAndForeign(t *testing.T) {
	tab := newTable(t, Config{})
	other := newTable(t, Config{})
	e := mustCreate(t, tab, udpKey(1, 20000, 1, 53), 0, 0)
	f := mustCreate(t, other, udpKey(1, 20000, 1, 53), 0, 0)
	tab.Remove(f)   // foreign: ignored
	tab.Remove(nil) // ignored
	if tab.Len() != 1 || other.Len() != 1 {
		t.Fatal("foreign Remove changed a table")
	}
	tab.Touch(f, DirIn, 0, 1, 5)
	tab.Remove(e)
	tab.Remove(e) // stale: ignored
	tab.Touch(e, DirIn, 0, 1, 5)
	if s := tab.Stats(); s.Removed != 1 || s.Flows != 0 || s.PortsInUse != 0 {
		t.Errorf("Stats %+v", s)
	}
	if tab.ExpiresAt(e) != 0 {
		t.Error("ExpiresAt of removed entry")
	}
	checkInvariants(t, tab)
	checkInvariants(t, other)
}

func TestRange(t *testing.T) {
	tab := newTable(t, Config{Capacity: 3000})
	for i := range 2500 {
		mustCreate(t, tab, keyN(i, ProtoUDP), 0, 0)
	}
	seen := 0
	tab.Range(func(e *Entry) bool {
		seen++
		if e.Key.Src[3]%2 == 0 {
			tab.Remove(e) // removing while ranging is allowed
		}
		return true
	})
	if seen != 2500 || tab.Len() != 1250 {
		t.Fatalf("visited %d, Len %d", seen, tab.Len())
	}
	n := 0
	tab.Range(func(*Entry) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("Range did not stop: %d", n)
	}
	checkInvariants(t, tab)
}

func TestStrings(t *testing.T) {
	for s, want := range map[State]string{StateNew: "new", StateEstablished: "established", StateClosed: "closed", State(99): "invalid"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
	if DirIn.String() != "in" || DirOut.String() != "out" {
		t.Error("Dir.String")
	}
}

// TestIndexChurn exercises index growth and backward-shift deletion with a
// tiny table under heavy create/remove churn.
func TestIndexChurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tab := newTable(t, Config{Capacity: 300, Ports: PortRange{1, 65535}})
	live := map[Key]bool{}
	for i := range 20000 {
		k := keyN(rng.IntN(600), ProtoUDP)
		if live[k] {
			tab.Remove(tab.Lookup(k))
			delete(live, k)
		} else if len(live) < 300 {
			mustCreate(t, tab, k, 0, int64(i))
			live[k] = true
		}
		if i%1000 == 0 {
			checkInvariants(t, tab)
		}
	}
	for k := range live {
		if tab.Lookup(k) == nil {
			t.Fatalf("lost %+v", k)
		}
	}
	checkInvariants(t, tab)
}
