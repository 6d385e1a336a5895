package flowtable

import (
	"runtime"
	"testing"
	"unsafe"
)

func TestZeroAllocs(t *testing.T) {
	const n = 5000
	tab := newTable(t, Config{Capacity: 2 * n, Ports: PortRange{1024, 65535}})
	keys := make([]Key, n)
	ents := make([]*Entry, n)
	for i := range keys {
		keys[i] = keyN(i, ProtoTCP)
		if i%3 == 1 {
			keys[i].Proto = ProtoUDP
		}
		ents[i] = mustCreate(t, tab, keys[i], uint8(i%4), 0)
	}
	i := 0
	now := int64(0)
	tests := []struct {
		name string
		fn   func()
	}{
		{"Lookup", func() { i++; _ = tab.Lookup(keys[i%n]) }},
		{"Lookup miss", func() { i++; k := keys[i%n]; k.DstPort++; _ = tab.Lookup(k) }},
		{"LookupReply", func() { i++; _ = tab.LookupReply(ents[i%n].ReplyKey()) }},
		{"Touch", func() {
			i++
			now++
			// Cycles TCP flows through every class.
			tab.Touch(ents[i%n], Dir(i%2), []uint8{syn, synack, ack, psh, fin, rst}[i%6], 1500, now)
		}},
		{"Create+Remove", func() {
			i++
			e, err := tab.Create(keyN(n+i%1000, uint8(ProtoTCP)), uint8(i%4), natA, now)
			if err != nil {
				t.Fatal(err)
			}
			tab.Remove(e)
		}},
		{"Expire none", func() { _ = tab.Expire(now) }},
		{"Repin", func() { i++; _ = tab.Repin(ents[i%n], uint8(i%4), natA) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn() // warm up (first use of a pool or index size)
			for range 2000 {
				tt.fn()
			}
			if got := testing.AllocsPerRun(1000, tt.fn); got != 0 {
				t.Errorf("%s: %v allocs/op, want 0", tt.name, got)
			}
		})
	}
	checkInvariants(t, tab)
}

// TestCreateRemoveSteadyStateAtCapacity checks that a full table evicting
// on every Create does not allocate either.
func TestCreateAtCapacityZeroAllocs(t *testing.T) {
	const n = 3000
	tab := newTable(t, Config{Capacity: n, Ports: PortRange{1024, 65535}})
	i := 0
	create := func() {
		i++
		if _, err := tab.Create(keyN(i%(3*n), ProtoUDP), 0, natA, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 * n {
		create()
	}
	if got := testing.AllocsPerRun(5000, create); got != 0 {
		t.Errorf("Create at capacity: %v allocs/op, want 0", got)
	}
	if tab.Len() != n {
		t.Errorf("Len %d, want %d", tab.Len(), n)
	}
	checkInvariants(t, tab)
}

// flowsBytes creates n flows (each with its own NAT mapping: the worst case)
// and returns the heap bytes per flow, table included.
func flowsBytes(tb testing.TB, n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tab := newTable(tb, Config{Capacity: n, Ports: PortRange{1024, 65535}, MaxUplinks: 4})
	for i := range n {
		k := keyN(i, ProtoTCP)
		if i%2 == 1 {
			k.Proto = ProtoUDP
		}
		if _, err := tab.Create(k, uint8(i%4), natA, int64(i)); err != nil {
			tb.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(tab)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

func TestMemoryPerFlow(t *testing.T) {
	if got := flowsBytes(t, 100_000); got > 200 {
		t.Errorf("%.1f bytes/flow, want <= 200", got)
	} else {
		t.Logf("%.1f bytes/flow", got)
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"Key", unsafe.Sizeof(Key{}), 16},
		{"ReplyKey", unsafe.Sizeof(ReplyKey{}), 12},
		{"Entry", unsafe.Sizeof(Entry{}), 104},
		{"mapping", unsafe.Sizeof(mapping{}), 16},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("Sizeof(%s) = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
}
