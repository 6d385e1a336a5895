package flowtable

import "testing"

const benchFlows = 100_000

// benchTable returns a table holding benchFlows TCP/UDP flows over 4
// uplinks, each flow with its own NAT mapping.
func benchTable(b *testing.B) (*Table, []*Entry) {
	b.Helper()
	tab := newTable(b, Config{Capacity: 2 * benchFlows, Ports: PortRange{1024, 65535}, MaxUplinks: 4})
	ents := make([]*Entry, benchFlows)
	for i := range ents {
		k := keyN(i, ProtoTCP)
		if i%2 == 1 {
			k.Proto = ProtoUDP
		}
		ents[i] = mustCreate(b, tab, k, uint8(i%4), 0)
	}
	return tab, ents
}

func BenchmarkLookup(b *testing.B) {
	tab, ents := benchTable(b)
	keys := make([]Key, len(ents))
	for i, e := range ents {
		keys[i] = e.Key
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if tab.Lookup(keys[i]) == nil {
			b.Fatal("miss")
		}
		if i++; i == len(keys) {
			i = 0
		}
	}
}

func BenchmarkLookupMiss(b *testing.B) {
	tab, ents := benchTable(b)
	keys := make([]Key, len(ents))
	for i, e := range ents {
		keys[i] = e.Key
		keys[i].DstPort = 1
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if tab.Lookup(keys[i]) != nil {
			b.Fatal("hit")
		}
		if i++; i == len(keys) {
			i = 0
		}
	}
}

func BenchmarkLookupReply(b *testing.B) {
	tab, ents := benchTable(b)
	rks := make([]ReplyKey, len(ents))
	for i, e := range ents {
		rks[i] = e.ReplyKey()
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if tab.LookupReply(rks[i]) == nil {
			b.Fatal("miss")
		}
		if i++; i == len(rks) {
			i = 0
		}
	}
}

func BenchmarkTouch(b *testing.B) {
	tab, ents := benchTable(b)
	b.ReportAllocs()
	b.ResetTimer()
	i, now := 0, int64(0)
	for b.Loop() {
		now++
		tab.Touch(ents[i], Dir(i&1), TCPFlagACK, 1400, now)
		if i++; i == len(ents) {
			i = 0
		}
	}
}

// BenchmarkCreateRemove is a steady-state create/remove cycle on a table
// holding benchFlows flows.
func BenchmarkCreateRemove(b *testing.B) {
	tab, _ := benchTable(b)
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

// BenchmarkCreateEvict creates flows into a full table: every Create evicts.
func BenchmarkCreateEvict(b *testing.B) {
	tab := newTable(b, Config{Capacity: benchFlows, Ports: PortRange{1024, 65535}, MaxUplinks: 4})
	b.ReportAllocs()
	i := 0
	for range 2 * benchFlows {
		if _, err := tab.Create(keyN(i%(4*benchFlows), ProtoUDP), uint8(i&3), natA, int64(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := tab.Create(keyN(i%(4*benchFlows), ProtoUDP), uint8(i&3), natA, int64(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMemoryPerFlow reports heap bytes per flow for benchFlows flows,
// each with its own NAT mapping (the worst case).
func BenchmarkMemoryPerFlow(b *testing.B) {
	var v float64
	for b.Loop() {
		v = flowsBytes(b, benchFlows)
	}
	b.ReportMetric(v, "bytes/flow")
}
