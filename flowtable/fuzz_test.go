package flowtable

import (
	"errors"
	"testing"
)

// FuzzTable runs random operation sequences against a small table and
// checks after every operation that nothing panicked and every invariant
// holds: Len <= Capacity, every flow findable by Lookup and LookupReply,
// NAT ports unique per (uplink, proto) and inside this worker's partition,
// mapping refcounts, pool bitmaps and timeout lists consistent, per-host
// flow counts exact and within MaxFlowsPerHost.
func FuzzTable(f *testing.F) {
	f.Add([]byte{7, 1, 0, 10, 20, 1, 0, 1, 2, 3, 2, 0, 0, 0, 4, 5, 6, 7})
	f.Add([]byte{3, 3, 2, 0, 5, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9, 9, 9, 5, 255, 255, 255, 255, 255})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 16, 1, 2, 3, 4, 5, 32, 1, 2, 3, 4, 5, 48, 1, 2, 3, 4, 5, 64, 1, 2, 3, 4, 5})
	f.Add([]byte{9, 0, 0, 0, 30, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 1, 0, 0, 3, 0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0, 1, 0, 0, 5, 0, 3, 0, 200, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 6 {
			return
		}
		workers := 1 + int(data[1]%4)
		lo := uint16(1000) + uint16(data[3])
		cfg := Config{
			Capacity:   1 + int(data[0]%32),
			Workers:    workers,
			Worker:     int(data[2]) % workers,
			Ports:      PortRange{lo, lo + uint16(workers) + uint16(data[4]%40)},
			MaxUplinks: 1 + int(data[5]%3),
			// 0 (no limit) to 4 flows per host, hosts being a%4 below
			MaxFlowsPerHost: int(data[5]/4) % 5,
			Timeouts:        Timeouts{UDP: 50, TCPEstablished: 200, TCPTransitory: 30, ICMP: 20, TCPClosed: 10},
		}
		tab, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		data = data[6:]
		now := int64(0)
		var held []*Entry // possibly stale pointers
		protos := [...]uint8{ProtoTCP, ProtoUDP, ProtoICMP, 47}
		for len(data) >= 6 {
			op, a, b, c, d, e := data[0], data[1], data[2], data[3], data[4], data[5]
			data = data[6:]
			k := Key{
				Src:     [4]byte{10, 77, 0, a % 4},
				Dst:     [4]byte{203, 0, 113, b % 3},
				SrcPort: 990 + uint16(c%60),
				DstPort: 80 + uint16(d%2),
				Proto:   protos[(a>>2)%4],
			}
			if k.Proto == ProtoICMP {
				k.DstPort = 0
			}
			uplink := e % 4
			now += int64(d >> 4)
			switch op % 9 {
			case 0, 1:
				ent, err := tab.Create(k, uplink, natA, now)
				switch {
				case err == nil:
					if ent.Key != k || ent.Uplink != uplink || ent.State != StateNew {
						t.Fatalf("Create returned %+v for %+v", ent, k)
					}
					held = append(held, ent)
				case errors.Is(err, ErrExists):
					if tab.Lookup(k) == nil {
						t.Fatalf("ErrExists for absent %+v", k)
					}
				case errors.Is(err, ErrHostLimit):
					if cfg.MaxFlowsPerHost == 0 || tab.HostLen(k.Src) < cfg.MaxFlowsPerHost {
						t.Fatalf("ErrHostLimit for %+v: host has %d flows, limit %d", k, tab.HostLen(k.Src), cfg.MaxFlowsPerHost)
					}
				case errors.Is(err, ErrProto), errors.Is(err, ErrUplink), errors.Is(err, ErrPortsExhausted):
				default:
					t.Fatalf("Create: %v", err)
				}
			case 2, 3:
				if ent := tab.Lookup(k); ent != nil {
					tab.Touch(ent, Dir(b%2), e, int(c)-10, now)
				}
			case 4:
				tab.Remove(tab.Lookup(k))
			case 5:
				now += int64(e)
				before := tab.Len()
				n := tab.ExpireN(now, int(b%8))
				if n > int(b%8) || tab.Len() != before-n {
					t.Fatalf("ExpireN(limit %d) = %d, Len %d -> %d", b%8, n, before, tab.Len())
				}
			case 6:
				if ent := tab.Lookup(k); ent != nil {
					_ = tab.Repin(ent, uplink, [4]byte{100, 64, uplink, 2})
				}
			case 7:
				rk := ReplyKey{Remote: k.Dst, RemotePort: k.DstPort, NATPort: cfg.Ports.Lo + uint16(e%48), Uplink: uplink, Proto: k.Proto}
				if ent := tab.LookupReply(rk); ent != nil && ent.ReplyKey() != rk {
					t.Fatalf("LookupReply(%+v) = %+v", rk, ent)
				}
			case 8:
				// Stale or live pointers: must never corrupt the table.
				if len(held) > 0 {
					ent := held[int(c)%len(held)]
					switch e % 3 {
					case 0:
						tab.Touch(ent, Dir(b), a, int(d), now)
					case 1:
						tab.Remove(ent)
					case 2:
						_ = tab.Repin(ent, uplink, natA)
					}
				}
				if len(held) > 64 {
					held = held[32:]
				}
			}
			checkInvariants(t, tab)
		}
	})
}
