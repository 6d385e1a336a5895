package flowtable

import (
	"math/bits"
	"testing"
	"time"
)

var natA = [4]byte{100, 64, 1, 2}

func newTable(tb testing.TB, cfg Config) *Table {
	tb.Helper()
	if cfg.Capacity == 0 {
		cfg.Capacity = 1024
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	if cfg.MaxUplinks == 0 {
		cfg.MaxUplinks = 4
	}
	tab, err := New(cfg)
	if err != nil {
		tb.Fatalf("New(%+v): %v", cfg, err)
	}
	return tab
}

func mustCreate(tb testing.TB, tab *Table, k Key, uplink uint8, now int64) *Entry {
	tb.Helper()
	e, err := tab.Create(k, uplink, natA, now)
	if err != nil {
		tb.Fatalf("Create(%+v, %d): %v", k, uplink, err)
	}
	return e
}

func tcpKey(host byte, sport uint16, dst byte, dport uint16) Key {
	return Key{Src: [4]byte{10, 77, 0, host}, Dst: [4]byte{203, 0, 113, dst}, SrcPort: sport, DstPort: dport, Proto: ProtoTCP}
}

func udpKey(host byte, sport uint16, dst byte, dport uint16) Key {
	k := tcpKey(host, sport, dst, dport)
	k.Proto = ProtoUDP
	return k
}

func icmpKey(host byte, id uint16, dst byte) Key {
	return Key{Src: [4]byte{10, 77, 0, host}, Dst: [4]byte{203, 0, 113, dst}, SrcPort: id, Proto: ProtoICMP}
}

// keyN returns the n-th of many distinct keys (distinct LAN endpoints).
func keyN(n int, proto uint8) Key {
	return Key{
		Src:     [4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)},
		Dst:     [4]byte{203, 0, 113, byte(n % 20)},
		SrcPort: uint16(1024 + n%40000), DstPort: 443, Proto: proto,
	}
}

func sec(s float64) int64 { return int64(s * float64(time.Second)) }

type portOwner struct {
	uplink, proto uint8
	port          uint16
}

type lanEndpoint struct {
	src  [4]byte
	port uint16
}

// checkInvariants verifies every internal invariant of tab.
func checkInvariants(tb testing.TB, tab *Table) {
	tb.Helper()
	cfg := tab.cfg
	if tab.n < 0 || tab.n > cfg.Capacity {
		tb.Fatalf("Len %d outside [0, %d]", tab.n, cfg.Capacity)
	}
	if tab.fwd.n != tab.n || tab.rev.n != tab.n {
		tb.Fatalf("index sizes fwd %d rev %d, want %d", tab.fwd.n, tab.rev.n, tab.n)
	}
	owners := map[portOwner]lanEndpoint{}
	refs := map[int32]int32{}
	count := 0
	perUp := make([]int, cfg.MaxUplinks)
	perHost := map[[4]byte]int{}
	defer func() {
		for i, n := range perUp {
			if got := tab.UplinkLen(i); got != n {
				tb.Fatalf("UplinkLen(%d) = %d, want %d", i, got, n)
			}
		}
	}()
	tab.Range(func(e *Entry) bool {
		count++
		perHost[e.Key.Src]++
		if int(e.Uplink) < len(perUp) {
			perUp[e.Uplink]++
		}
		if got := tab.Lookup(e.Key); got != e {
			tb.Fatalf("Lookup(%+v) = %p, want %p", e.Key, got, e)
		}
		if got := tab.LookupReply(e.ReplyKey()); got != e {
			tb.Fatalf("LookupReply(%+v) = %p, want %p", e.ReplyKey(), got, e)
		}
		if p := int(e.NATPort); p < int(cfg.Ports.Lo) || p > int(cfg.Ports.Hi) || p%cfg.Workers != cfg.Worker {
			tb.Fatalf("NATPort %d outside range %v or partition %d/%d", p, cfg.Ports, cfg.Worker, cfg.Workers)
		}
		if int(e.Uplink) >= cfg.MaxUplinks {
			tb.Fatalf("uplink %d >= %d", e.Uplink, cfg.MaxUplinks)
		}
		po := portOwner{e.Uplink, e.Key.Proto, e.NATPort}
		le := lanEndpoint{e.Key.Src, e.Key.SrcPort}
		if o, ok := owners[po]; ok && o != le {
			tb.Fatalf("port %+v used by %+v and %+v", po, o, le)
		}
		owners[po] = le
		m := tab.mappingAt(e.mapping)
		if m.src != e.Key.Src || m.srcPort != e.Key.SrcPort || m.proto != e.Key.Proto || m.uplink != e.Uplink || m.natPort != e.NATPort {
			tb.Fatalf("entry %+v has mapping %+v", e, m)
		}
		refs[e.mapping]++
		return true
	})
	if count != tab.n {
		tb.Fatalf("Range visited %d, Len %d", count, tab.n)
	}
	checkHostCounts(tb, tab, perHost)
	if len(refs) != tab.mappings || tab.mapIdx.n != tab.mappings {
		tb.Fatalf("mappings: %d referenced, %d counted, %d indexed", len(refs), tab.mappings, tab.mapIdx.n)
	}
	for mi, r := range refs {
		if got := tab.mappingAt(mi).refs; got != r {
			tb.Fatalf("mapping %d refs %d, want %d", mi, got, r)
		}
	}
	perPool := make([]int, len(tab.pools))
	for po := range owners {
		pi := int(po.uplink)*numProtoClasses + protoClass(po.proto)
		perPool[pi]++
		b := (int(po.port) - tab.first) / tab.workers
		if tab.pools[pi].bits[b>>6]&(1<<(b&63)) == 0 {
			tb.Fatalf("port %+v in use but free in pool", po)
		}
	}
	for pi := range tab.pools {
		pl := &tab.pools[pi]
		if pl.bits == nil {
			if perPool[pi] != 0 {
				tb.Fatalf("pool %d nil with %d ports", pi, perPool[pi])
			}
			continue
		}
		used := 0
		for _, w := range pl.bits {
			used += bits.OnesCount64(w)
		}
		used -= len(pl.bits)*64 - tab.span // padding bits
		if used != perPool[pi] || pl.free != tab.span-used {
			tb.Fatalf("pool %d: %d bits used, free %d, want %d used of %d", pi, used, pl.free, perPool[pi], tab.span)
		}
	}
	inLists := 0
	for c := range tab.lists {
		prev := int32(-1)
		last := int64(0)
		for i := tab.lists[c].head; i >= 0; i = tab.entry(i).next {
			e := tab.entry(i)
			if e.class != uint8(c) || e.prev != prev {
				tb.Fatalf("list %d: entry %d class %d prev %d, want prev %d", c, i, e.class, e.prev, prev)
			}
			if prev >= 0 && e.LastSeen > last {
				tb.Fatalf("list %d not sorted: %d after %d", c, e.LastSeen, last)
			}
			last = e.LastSeen
			prev = i
			inLists++
			if inLists > tab.n {
				tb.Fatalf("lists hold more than Len %d entries", tab.n)
			}
		}
		if tab.lists[c].tail != prev {
			tb.Fatalf("list %d tail %d, want %d", c, tab.lists[c].tail, prev)
		}
	}
	if inLists != tab.n {
		tb.Fatalf("lists hold %d entries, Len %d", inLists, tab.n)
	}
	free := 0
	for i := tab.free; i >= 0; i = tab.entry(i).next {
		if tab.entry(i).class != classFree {
			tb.Fatalf("free entry %d has class %d", i, tab.entry(i).class)
		}
		if free++; free > int(tab.hw) {
			tb.Fatalf("free list loops")
		}
	}
	freeMaps := 0
	for i := tab.mapFree; i >= 0; i = tab.mappingAt(i).refs {
		if _, live := refs[i]; live {
			tb.Fatalf("mapping %d is live and on the free list", i)
		}
		if freeMaps++; freeMaps > int(tab.mapHW) {
			tb.Fatalf("mapping free list loops")
		}
	}
	if freeMaps+tab.mappings != int(tab.mapHW) || tab.mapHW > tab.mapCap {
		tb.Fatalf("free mappings %d + live %d != high water %d (cap %d)", freeMaps, tab.mappings, tab.mapHW, tab.mapCap)
	}
	if free+tab.n != int(tab.hw) {
		tb.Fatalf("free %d + live %d != high water %d", free, tab.n, tab.hw)
	}
}

// checkHostCounts verifies the per-host flow counts against perHost, the
// flows per LAN host found by Range: each host's count is exact and within
// MaxFlowsPerHost, every counted host is found from its home slot, and no
// host without flows is counted.
func checkHostCounts(tb testing.TB, tab *Table, perHost map[[4]byte]int) {
	tb.Helper()
	if tab.hostMax == 0 {
		if tab.hosts.slots != nil || tab.hosts.n != 0 {
			tb.Fatalf("host counts kept without a per-host limit")
		}
		for h := range perHost {
			if got := tab.HostLen(h); got != 0 {
				tb.Fatalf("HostLen(%v) = %d without a limit, want 0", h, got)
			}
		}
		return
	}
	for h, n := range perHost {
		if n > tab.hostMax {
			tb.Fatalf("host %v has %d flows, limit %d", h, n, tab.hostMax)
		}
		if got := tab.HostLen(h); got != n {
			tb.Fatalf("HostLen(%v) = %d, want %d", h, got, n)
		}
	}
	used := 0
	for p, s := range tab.hosts.slots {
		if s == 0 {
			continue
		}
		used++
		a := uint32(s >> 32)
		h := [4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}
		if perHost[h] == 0 {
			tb.Fatalf("host %v counted %d with no flow", h, uint32(s))
		}
		if q, ok := tab.hostFind(a); !ok || q != uint32(p) {
			tb.Fatalf("host %v in slot %d not found from its home (got %d, %v)", h, p, q, ok)
		}
	}
	if used != len(perHost) || tab.hosts.n != used {
		tb.Fatalf("host counts: %d slots used, n %d, want %d hosts", used, tab.hosts.n, len(perHost))
	}
	if tab.hosts.n*4 > len(tab.hosts.slots)*3 {
		tb.Fatalf("host counts %d of %d slots: over 3/4 full", tab.hosts.n, len(tab.hosts.slots))
	}
}
