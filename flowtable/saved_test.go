package flowtable

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSaveRestoreRoundTrip: every flow of a busy table, saved and restored
// into a fresh table of the same partition, comes back identical — key,
// uplink, NAT port, state, TCP memory, timers, counters — with the NAT
// mappings shared as before, and behaves the same afterwards: replies find
// it, its timers expire it when the original would have expired.
func TestSaveRestoreRoundTrip(t *testing.T) {
	cfg := Config{Workers: 2, Worker: 1, Capacity: 4096, MaxFlowsPerHost: 100}
	src := newTable(t, cfg)
	rng := rand.New(rand.NewPCG(1, 2))
	now := sec(10)
	for i := range 1500 {
		proto := []uint8{ProtoTCP, ProtoUDP, ProtoICMP}[i%3]
		k := Key{Src: [4]byte{10, 77, 0, byte(10 + i%40)}, Dst: [4]byte{203, 0, 113, byte(i % 7)},
			SrcPort: uint16(40000 + i%300), DstPort: uint16(80 + i%5), Proto: proto}
		if proto == ProtoICMP {
			k.DstPort = 0
		}
		if src.Lookup(k) != nil {
			continue
		}
		now += int64(rng.IntN(1000000))
		e, err := src.Create(k, uint8(i%3), natA, now)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		e.Decision, e.RemoteSeq = uint32(i), uint32(i*7)
		switch i % 5 {
		case 0:
			src.Touch(e, DirOut, TCPFlagSYN, 60, now)
			src.Touch(e, DirIn, TCPFlagSYN|TCPFlagACK, 60, now)
			src.Touch(e, DirOut, TCPFlagACK, 52, now)
		case 1:
			src.Touch(e, DirOut, TCPFlagACK, 1000, now)
			src.Touch(e, DirIn, TCPFlagACK|TCPFlagFIN, 52, now)
		case 2:
			src.Touch(e, DirOut, TCPFlagRST, 40, now)
		}
	}
	var saved []Saved
	src.Range(func(e *Entry) bool { saved = append(saved, e.Save()); return true })
	slices.SortFunc(saved, func(a, b Saved) int { return int(a.LastSeen - b.LastSeen) })

	dst := newTable(t, cfg)
	for _, s := range saved {
		if _, err := dst.Restore(s); err != nil {
			t.Fatalf("Restore(%+v): %v", s, err)
		}
	}
	checkInvariants(t, dst)
	if dst.Len() != src.Len() || dst.Stats().PortsInUse != src.Stats().PortsInUse {
		t.Fatalf("restored %d flows, %d mappings; saved %d, %d", dst.Len(), dst.Stats().PortsInUse, src.Len(), src.Stats().PortsInUse)
	}
	for i := range 3 {
		if dst.UplinkLen(i) != src.UplinkLen(i) {
			t.Errorf("uplink %d: %d flows, want %d", i, dst.UplinkLen(i), src.UplinkLen(i))
		}
	}
	src.Range(func(e *Entry) bool {
		d := dst.Lookup(e.Key)
		if d == nil {
			t.Fatalf("flow %+v not restored", e.Key)
		}
		if d.Save() != e.Save() || d.class != e.class {
			t.Fatalf("restored %+v (class %d), want %+v (class %d)", d.Save(), d.class, e.Save(), e.class)
		}
		if dst.LookupReply(e.ReplyKey()) != d {
			t.Fatalf("reply key of %+v finds nothing", e.Key)
		}
		if dst.HostLen(e.Key.Src) != src.HostLen(e.Key.Src) {
			t.Fatalf("host %v: %d flows, want %d", e.Key.Src, dst.HostLen(e.Key.Src), src.HostLen(e.Key.Src))
		}
		return true
	})
	// Same expiry: both tables lose the same flows at the same instants.
	for _, at := range []int64{now + sec(30), now + sec(70), now + sec(250), now + sec(400), now + sec(9000)} {
		a, b := src.Expire(at), dst.Expire(at)
		if a != b {
			t.Fatalf("Expire(%d): source %d, restored %d", at, a, b)
		}
	}
	if dst.Len() != 0 || dst.Stats().PortsInUse != 0 {
		t.Fatalf("after expiry: %d flows, %d mappings", dst.Len(), dst.Stats().PortsInUse)
	}
	checkInvariants(t, dst)
}

// TestRestoreRejects: a saved flow that cannot be put back as it was is
// refused with a reason and leaves the table as it was.
func TestRestoreRejects(t *testing.T) {
	cfg := Config{Workers: 2, Worker: 0, Capacity: 3, MaxFlowsPerHost: 2}
	base := Saved{Key: udpKey(10, 5000, 1, 53), Uplink: 1, State: StateActive, NATAddr: natA, NATPort: 20000, LastSeen: 5}
	tests := []struct {
		name string
		prep func(*Table)
		mod  func(*Saved)
		want error
	}{
		{"port of the other worker", nil, func(s *Saved) { s.NATPort = 20001 }, ErrConflict},
		{"port below the range", nil, func(s *Saved) { s.NATPort = 1000 }, ErrConflict},
		{"bad protocol", nil, func(s *Saved) { s.Key.Proto = 47 }, ErrProto},
		{"bad uplink", nil, func(s *Saved) { s.Uplink = 200 }, ErrUplink},
		{"TCP state for UDP", nil, func(s *Saved) { s.State = StateEstablished }, ErrInvalidConfig},
		{"UDP state for TCP", nil, func(s *Saved) { s.Key.Proto = ProtoTCP }, ErrInvalidConfig},
		{"unknown state", nil, func(s *Saved) { s.State = 99 }, ErrInvalidConfig},
		{"key taken", func(tab *Table) { restore(t, tab, base) }, nil, ErrExists},
		{"port held by another endpoint", func(tab *Table) {
			o := base
			o.Key.SrcPort = 6000
			restore(t, tab, o)
		}, func(s *Saved) { s.Key.Dst[3] = 2 }, ErrConflict},
		{"endpoint mapped to another port", func(tab *Table) {
			o := base
			o.NATPort = 20002
			o.Key.Dst[3] = 3
			restore(t, tab, o)
		}, nil, ErrConflict},
		{"host limit", func(tab *Table) {
			for i := range 2 {
				o := base
				o.Key.SrcPort, o.NATPort = uint16(7000+i), uint16(20010+2*i)
				restore(t, tab, o)
			}
		}, nil, ErrHostLimit},
		{"full", func(tab *Table) {
			for i := range 3 {
				o := base
				o.Key.Src[3], o.NATPort = byte(50+i), uint16(20010+2*i)
				restore(t, tab, o)
			}
		}, nil, ErrFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newTable(t, cfg)
			if tt.prep != nil {
				tt.prep(tab)
			}
			n, ports := tab.Len(), tab.Stats().PortsInUse
			s := base
			if tt.mod != nil {
				tt.mod(&s)
			}
			e, err := tab.Restore(s)
			if !errors.Is(err, tt.want) || e != nil {
				t.Fatalf("Restore = %v, %v; want nil, %v", e, err, tt.want)
			}
			if tab.Len() != n || tab.Stats().PortsInUse != ports {
				t.Fatalf("table changed: %d flows, %d mappings; was %d, %d", tab.Len(), tab.Stats().PortsInUse, n, ports)
			}
			checkInvariants(t, tab)
		})
	}
}

// TestRestoreKeepsListsOrdered: a flow restored out of LastSeen order is
// taken as seen as late as the newest of its class, never earlier, so the
// timeout lists stay sorted.
func TestRestoreKeepsListsOrdered(t *testing.T) {
	tab := newTable(t, Config{})
	a := Saved{Key: udpKey(10, 1, 1, 53), State: StateActive, NATPort: 20000, LastSeen: sec(100)}
	b := Saved{Key: udpKey(10, 2, 1, 53), State: StateActive, NATPort: 20001, LastSeen: sec(50)}
	restore(t, tab, a)
	e := restore(t, tab, b)
	if e.LastSeen != sec(100) {
		t.Fatalf("LastSeen %d, want %d", e.LastSeen, sec(100))
	}
	checkInvariants(t, tab)
	// Then new flows still come in at the head.
	n := mustCreate(t, tab, udpKey(11, 3, 1, 53), 0, sec(101))
	if tab.lists[classUDP].head != n.idx {
		t.Fatal("a created flow is not at the head of its list")
	}
}

// TestRestoreAllocs: restoring into tables whose chunks exist allocates
// nothing, like Create.
func TestRestoreAllocs(t *testing.T) {
	tab := newTable(t, Config{Capacity: 2048})
	var saved []Saved
	for i := range 1000 {
		e := mustCreate(t, tab, keyN(i, ProtoUDP), 0, int64(i))
		saved = append(saved, e.Save())
	}
	allocs := testing.AllocsPerRun(5, func() {
		tab.Range(func(e *Entry) bool { tab.Remove(e); return true })
		for _, s := range saved {
			if _, err := tab.Restore(s); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 1000 restores", allocs)
	}
}

func restore(tb testing.TB, tab *Table, s Saved) *Entry {
	tb.Helper()
	e, err := tab.Restore(s)
	if err != nil {
		tb.Fatalf("Restore(%+v): %v", s, err)
	}
	return e
}

// TestPortsRandomized: ports that are not preserved come from random
// positions of the partition (RFC 6056), not in sequence: an off-path
// attacker who sees one external port cannot tell the next.
func TestPortsRandomized(t *testing.T) {
	tab := newTable(t, Config{Workers: 2, Worker: 0})
	var ports []uint16
	for i := range 200 {
		// Source ports outside the NAT range: never preserved.
		e := mustCreate(t, tab, udpKey(byte(i%200), uint16(40000+i), 1, 53), 0, int64(i))
		ports = append(ports, e.NATPort)
	}
	next := 0
	for i := 1; i < len(ports); i++ {
		if ports[i] == ports[i-1]+2 {
			next++
		}
	}
	if next > 10 {
		t.Errorf("%d of 199 ports were the previous one's successor in the partition: sequential, not random (%v)", next, ports[:20])
	}
	// Another table starts elsewhere.
	other := newTable(t, Config{Workers: 2, Worker: 0})
	same := 0
	for i := range 20 {
		if e := mustCreate(t, other, udpKey(byte(i), uint16(40000+i), 1, 53), 0, int64(i)); e.NATPort == ports[i] {
			same++
		}
	}
	if same > 2 {
		t.Errorf("two tables handed out %d of the same first 20 ports", same)
	}
	// Randomness does not cost completeness: a pool still fills exactly.
	small := newTable(t, Config{Ports: PortRange{Lo: 30000, Hi: 30099}})
	seen := map[uint16]bool{}
	for i := range 100 {
		e := mustCreate(t, small, udpKey(byte(i), uint16(40000+i), 1, 53), 0, 0)
		if seen[e.NATPort] || e.NATPort < 30000 || e.NATPort > 30099 {
			t.Fatalf("port %d twice or out of range", e.NATPort)
		}
		seen[e.NATPort] = true
	}
	if _, err := small.Create(udpKey(1, 50000, 1, 53), 0, natA, 0); err != ErrPortsExhausted {
		t.Fatalf("Create on a full pool: %v, want ErrPortsExhausted", err)
	}
}
