package flowtable

import (
	"errors"
	"testing"
)

func TestNewRejectsNegativeHostLimit(t *testing.T) {
	_, err := New(Config{Capacity: 8, Workers: 1, MaxUplinks: 1, MaxFlowsPerHost: -1})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New(MaxFlowsPerHost -1) = %v, want ErrInvalidConfig", err)
	}
}

// TestHostLimit: a host at its limit cannot create flows while other hosts
// can; every way a flow ends (Remove, Expire, eviction) gives its host room
// again, and Repin keeps the count.
func TestHostLimit(t *testing.T) {
	const limit = 3
	tab := newTable(t, Config{Capacity: 8, MaxFlowsPerHost: limit, MaxUplinks: 2, Timeouts: Timeouts{UDP: 100}})
	a, b := [4]byte{10, 77, 0, 1}, [4]byte{10, 77, 0, 2}
	var ents []*Entry
	for i := range limit {
		ents = append(ents, mustCreate(t, tab, udpKey(1, 20000+uint16(i), 1, 53), 0, 0))
	}
	if got := tab.HostLen(a); got != limit {
		t.Fatalf("HostLen = %d, want %d", got, limit)
	}
	if e, err := tab.Create(udpKey(1, 20010, 1, 53), 0, natA, 0); !errors.Is(err, ErrHostLimit) || e != nil {
		t.Fatalf("Create over the limit = %v, %v; want ErrHostLimit", e, err)
	}
	if got := tab.Stats().HostLimited; got != 1 {
		t.Errorf("Stats.HostLimited = %d, want 1", got)
	}
	mustCreate(t, tab, udpKey(2, 20000, 1, 53), 0, 0)
	checkInvariants(t, tab)

	// Repin moves a flow, not its host.
	if err := tab.Repin(ents[0], 1, natA); err != nil {
		t.Fatal(err)
	}
	if got := tab.HostLen(a); got != limit {
		t.Fatalf("HostLen after Repin = %d, want %d", got, limit)
	}

	// Remove.
	tab.Remove(ents[0])
	e := mustCreate(t, tab, udpKey(1, 20010, 1, 53), 0, 1)
	checkInvariants(t, tab)

	// Expire: host a's flows (now 0 and 1) go at 100 and 101; b's too.
	if n := tab.Expire(101); n != limit+1 {
		t.Fatalf("Expire = %d, want %d", n, limit+1)
	}
	if tab.HostLen(a) != 0 || tab.HostLen(b) != 0 || tab.hosts.n != 0 {
		t.Fatalf("after Expire: HostLen a %d b %d, %d hosts counted", tab.HostLen(a), tab.HostLen(b), tab.hosts.n)
	}
	_ = e
	for i := range limit {
		mustCreate(t, tab, udpKey(1, 20000+uint16(i), 1, 53), 0, 200)
	}
	checkInvariants(t, tab)

	// Eviction: other hosts fill the table; host a's flows are evicted (the
	// least recently seen) and a may open flows again.
	for h := byte(10); h < 18; h++ {
		mustCreate(t, tab, udpKey(h, 20000, 1, 53), 0, 300)
	}
	if got := tab.HostLen(a); got != 0 {
		t.Fatalf("HostLen after eviction = %d, want 0", got)
	}
	mustCreate(t, tab, udpKey(1, 20000, 1, 53), 0, 400)
	checkInvariants(t, tab)
}

// TestHostLimitNotEvicting: a host at its limit in a full table is refused
// without evicting another host's flow.
func TestHostLimitNotEvicting(t *testing.T) {
	tab := newTable(t, Config{Capacity: 4, MaxFlowsPerHost: 2})
	mustCreate(t, tab, udpKey(1, 20000, 1, 53), 0, 0)
	mustCreate(t, tab, udpKey(1, 20001, 1, 53), 0, 0)
	mustCreate(t, tab, udpKey(2, 20000, 1, 53), 0, 0)
	mustCreate(t, tab, udpKey(3, 20000, 1, 53), 0, 0)
	if _, err := tab.Create(udpKey(1, 20002, 1, 53), 0, natA, 1); !errors.Is(err, ErrHostLimit) {
		t.Fatalf("Create = %v, want ErrHostLimit", err)
	}
	if s := tab.Stats(); s.Evicted != 0 || s.Flows != 4 {
		t.Fatalf("Stats = %+v, want 4 flows and nothing evicted", s)
	}
	checkInvariants(t, tab)
}

// TestHostCountsChurn creates and removes flows of many hosts in random
// order, so probe runs collide and backward-shift deletion is exercised.
func TestHostCountsChurn(t *testing.T) {
	tab := newTable(t, Config{Capacity: 300, MaxFlowsPerHost: 4, Ports: PortRange{1024, 65535}})
	var live []*Entry
	x := uint32(1)
	for i := range 20000 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		if len(live) > 0 && (x%3 == 0 || len(live) == 300) {
			j := int(x>>8) % len(live)
			tab.Remove(live[j])
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
		} else {
			k := udpKey(byte(x>>8), uint16(1024+x>>16%4000), byte(x>>4), 53)
			k.Src[2] = byte(x >> 24 % 2)
			if e, err := tab.Create(k, 0, natA, int64(i)); err == nil {
				live = append(live, e)
			} else if !errors.Is(err, ErrHostLimit) && !errors.Is(err, ErrExists) {
				t.Fatal(err)
			}
		}
		if i%500 == 0 {
			checkInvariants(t, tab)
		}
	}
	checkInvariants(t, tab)
}

// TestHostLimitZeroAllocs: with a per-host limit, creating, refusing and
// removing flows allocates nothing once the table is warm.
func TestHostLimitZeroAllocs(t *testing.T) {
	tab := newTable(t, Config{Capacity: 4096, MaxFlowsPerHost: 2, Ports: PortRange{1024, 65535}})
	mustCreate(t, tab, udpKey(1, 3000, 1, 53), 0, 0)
	mustCreate(t, tab, udpKey(1, 3001, 1, 53), 0, 0)
	i := 0
	fn := func() {
		i++
		e, err := tab.Create(keyN(i%1000, ProtoUDP), 0, natA, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tab.Create(udpKey(1, 3002, 1, 53), 0, natA, 0); !errors.Is(err, ErrHostLimit) {
			t.Fatalf("Create = %v, want ErrHostLimit", err)
		}
		tab.Remove(e)
	}
	for range 2000 {
		fn()
	}
	if got := testing.AllocsPerRun(1000, fn); got != 0 {
		t.Errorf("%v allocs/op, want 0", got)
	}
	checkInvariants(t, tab)
}

// BenchmarkCreateRemoveHostLimit is BenchmarkCreateRemove with a per-host
// limit: the cost of counting flows per host.
func BenchmarkCreateRemoveHostLimit(b *testing.B) {
	tab := newTable(b, Config{Capacity: 2 * benchFlows, Ports: PortRange{1024, 65535}, MaxUplinks: 4, MaxFlowsPerHost: 64})
	for i := range benchFlows {
		k := keyN(i, ProtoTCP)
		if i%2 == 1 {
			k.Proto = ProtoUDP
		}
		mustCreate(b, tab, k, uint8(i%4), 0)
	}
	keys := make([]Key, 4096)
	for i := range keys {
		keys[i] = keyN(benchFlows+i, ProtoUDP)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		e, err := tab.Create(keys[i&4095], uint8(i&3), natA, int64(i))
		if err != nil {
			b.Fatal(err)
		}
		tab.Remove(e)
		i++
	}
}
