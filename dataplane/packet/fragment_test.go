package packet

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// fragments splits d at mtu and returns copies of the fragments.
func fragments(t testing.TB, d []byte, mtu int) [][]byte {
	t.Helper()
	out, sizes := makeBufs(256, mtu, 0)
	n, ok := Fragment(d, mtu, out, sizes, 0)
	if !ok {
		t.Fatalf("Fragment(%d bytes, mtu %d) failed", len(d), mtu)
	}
	fs := make([][]byte, n)
	for i := range fs {
		fs[i] = clone(out[i][:sizes[i]])
	}
	return fs
}

func payloadN(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i>>8)
	}
	return b
}

// add feeds fragment f and returns a copy of the datagram if it completed.
func add(t testing.TB, r *Reassembler, f []byte, now int64) []byte {
	t.Helper()
	var p Parsed
	p.Decode(f)
	w, done := r.Add(f, &p, now)
	if !done {
		return nil
	}
	if p.Kind == KindInvalid {
		t.Errorf("reassembled datagram decodes invalid: %v", p.Drop)
	}
	return clone(w)
}

func TestFragment(t *testing.T) {
	rr := header.IPv4SerializableRouterAlertOption{}      // copied flag set
	ex := header.IPv4SerializableExperimentOption{Tag: 7} // copied flag clear
	withOpts := ipOpts{id: 0x4242, options: header.IPv4OptionsSerializer{&ex, &rr}}
	tests := []struct {
		name       string
		d          []byte
		mtu        int
		n          int
		laterHdr   int
		fragmentMF bool
	}{
		{"udp 3000 at 1500", buildUDP(lanHost, server, 1, 2, payloadN(2972), true, ipOpts{id: 1}), 1500, 3, 20, false},
		{"tcp at 576", buildTCP(lanHost, server, tcpSeg{sport: 1, dport: 2, flags: TCPFlagACK, payload: payloadN(1400)}, ipOpts{id: 2}), 576, 3, 20, false},
		{"icmp at 68", buildICMP(lanHost, server, 8, 0, 1, payloadN(100), ipOpts{id: 3}), 68, 3, 20, false},
		{"options", buildUDP(lanHost, server, 1, 2, payloadN(2000), true, withOpts), 1000, 3, 24, false},
		{"a fragment", buildIPv4(17, lanHost, server, ipOpts{id: 4, flags: header.IPv4FlagMoreFragments, fragOff: 1480}, payloadN(1480)), 600, 3, 20, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := fragments(t, tt.d, tt.mtu)
			if len(fs) != tt.n {
				t.Fatalf("%d fragments, want %d", len(fs), tt.n)
			}
			var op Parsed
			op.Decode(tt.d)
			var data []byte
			for i, f := range fs {
				checkIP(t, "fragment", f)
				if len(f) > tt.mtu {
					t.Errorf("fragment %d: %d bytes > mtu %d", i, len(f), tt.mtu)
				}
				p := decode(t, f, KindFragment)
				if p.ID != op.ID || p.TTL != op.TTL || p.Proto != op.Proto || p.Src != op.Src || p.Dst != op.Dst || p.DF {
					t.Errorf("fragment %d header: %+v", i, p)
				}
				last := i == len(fs)-1
				if p.MF != (!last || tt.fragmentMF) {
					t.Errorf("fragment %d: MF = %v", i, p.MF)
				}
				if int(p.FragOff) != int(op.FragOff)+len(data) {
					t.Errorf("fragment %d: offset %d, want %d", i, p.FragOff, int(op.FragOff)+len(data))
				}
				if !last && (p.TotalLen-p.IPHLen)%8 != 0 {
					t.Errorf("fragment %d: data length %d not a multiple of 8", i, p.TotalLen-p.IPHLen)
				}
				if i == 0 && !bytes.Equal(f[20:p.IPHLen], tt.d[20:op.IPHLen]) {
					t.Errorf("first fragment lost its options")
				}
				if i > 0 && p.IPHLen != tt.laterHdr {
					t.Errorf("fragment %d: header %d bytes, want %d", i, p.IPHLen, tt.laterHdr)
				}
				data = append(data, f[p.IPHLen:]...)
			}
			if !bytes.Equal(data, tt.d[op.IPHLen:]) {
				t.Errorf("fragment data differs from the datagram's")
			}
			if tt.fragmentMF {
				return
			}
			r := NewReassembler(4, 65535, time.Second)
			for _, order := range []string{"in order", "reversed", "shuffled"} {
				fs := append([][]byte(nil), fs...)
				switch order {
				case "reversed":
					for i, j := 0, len(fs)-1; i < j; i, j = i+1, j-1 {
						fs[i], fs[j] = fs[j], fs[i]
					}
				case "shuffled":
					rand.New(rand.NewPCG(1, 2)).Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
				}
				var whole []byte
				for i, f := range fs {
					w := add(t, r, f, 0)
					if (w != nil) != (i == len(fs)-1) {
						t.Fatalf("%s: fragment %d: done = %v", order, i, w != nil)
					}
					whole = w
				}
				if !bytes.Equal(whole, tt.d) {
					t.Errorf("%s: reassembled datagram differs:\n got % x\nwant % x", order, whole[:40], tt.d[:40])
				}
			}
		})
	}
}

func TestFragmentRefusals(t *testing.T) {
	d := buildUDP(lanHost, server, 1, 2, payloadN(2000), true, ipOpts{})
	df := buildUDP(lanHost, server, 1, 2, payloadN(2000), true, ipOpts{flags: header.IPv4FlagDontFragment})
	out, sizes := makeBufs(8, 1500, 16)
	for _, o := range out {
		copy(o, bytes.Repeat([]byte{0xee}, 16))
	}
	n, ok := Fragment(d, 1500, out, sizes, 16)
	if !ok || n != 2 || sizes[0] != 1500 {
		t.Fatalf("headroom: n=%d ok=%v sizes=%v", n, ok, sizes[:2])
	}
	for i := range n {
		if !bytes.Equal(out[i][:16], bytes.Repeat([]byte{0xee}, 16)) {
			t.Errorf("fragment %d: headroom overwritten", i)
		}
		decode(t, out[i][16:16+sizes[i]], KindFragment)
	}
	big, bigSizes := makeBufs(1, 3000, 0)
	if n, ok := Fragment(d, 3000, big, bigSizes, 0); !ok || n != 1 || !bytes.Equal(big[0][:bigSizes[0]], d) {
		t.Errorf("fitting datagram not copied unchanged")
	}
	if _, ok := Fragment(d, 3000, out, sizes, 0); ok {
		t.Errorf("fitting datagram copied into a short buffer")
	}
	cases := []struct {
		name string
		b    []byte
		mtu  int
		out  [][]byte
	}{
		{"df", df, 1500, out},
		{"mtu too small", d, 27, out},
		{"too few buffers", d, 1500, out[:1]},
		{"buffers too small", d, 1600, out},
		{"garbage", []byte{0x45, 0}, 1500, out},
		{"bad total length", d[:100], 68, out},
	}
	for _, c := range cases {
		if _, ok := Fragment(c.b, c.mtu, c.out, sizes, 0); ok {
			t.Errorf("%s: ok", c.name)
		}
	}
}

func TestReassembler(t *testing.T) {
	d := buildUDP(lanHost, server, 40000, 9000, payloadN(4000), true, ipOpts{id: 7})
	fs := fragments(t, d, 1000) // 5 fragments of 976 data bytes
	sec := int64(time.Second)

	t.Run("duplicate", func(t *testing.T) {
		r := NewReassembler(4, 65535, time.Second)
		add(t, r, fs[1], 0)
		add(t, r, fs[1], 0)
		add(t, r, fs[0], 0)
		add(t, r, fs[0], 0)
		var whole []byte
		for _, f := range fs[2:] {
			whole = add(t, r, f, 0)
		}
		if !bytes.Equal(whole, d) {
			t.Errorf("not reassembled after duplicates")
		}
		if s := r.Stats(); s.Duplicates != 2 || s.Completed != 1 || s.InFlight != 0 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("overlap discards the datagram", func(t *testing.T) {
		r := NewReassembler(4, 65535, time.Second)
		// A fragment covering the end of fs[0] and the start of fs[1].
		var p0 Parsed
		p0.Decode(fs[0])
		ov := buildIPv4(17, lanHost, server, ipOpts{id: 7, flags: header.IPv4FlagMoreFragments, fragOff: 960}, payloadN(64))
		add(t, r, fs[0], 0)
		add(t, r, ov, 0)
		for _, f := range fs[1:] {
			if add(t, r, f, 0) != nil {
				t.Fatalf("completed despite overlap")
			}
		}
		s := r.Stats()
		if s.Overlaps != 1 || s.Completed != 0 {
			t.Errorf("stats %+v", s)
		}
		// The fragments after the discard started a new datagram, which
		// completes once fs[0] is sent again.
		if w := add(t, r, fs[0], 0); !bytes.Equal(w, d) {
			t.Errorf("retransmitted datagram not reassembled")
		}
	})

	t.Run("contained overlap", func(t *testing.T) {
		r := NewReassembler(4, 65535, time.Second)
		inner := buildIPv4(17, lanHost, server, ipOpts{id: 7, flags: header.IPv4FlagMoreFragments, fragOff: 8}, payloadN(8))
		add(t, r, fs[0], 0)
		add(t, r, inner, 0)
		if s := r.Stats(); s.Overlaps != 1 || s.InFlight != 0 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		r := NewReassembler(4, 65535, time.Second)
		add(t, r, fs[0], 0)
		add(t, r, fs[1], sec/2)
		for _, f := range fs[2:] {
			if add(t, r, f, sec) != nil {
				t.Fatalf("completed after the timeout")
			}
		}
		if s := r.Stats(); s.Timeouts != 1 || s.InFlight != 1 {
			t.Errorf("stats %+v", s)
		}
		if n := r.Expire(sec + sec/2); n != 0 {
			t.Errorf("Expire before the second deadline = %d", n)
		}
		if n := r.Expire(2 * sec); n != 1 {
			t.Errorf("Expire = %d, want 1", n)
		}
		if s := r.Stats(); s.Timeouts != 2 || s.InFlight != 0 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("eviction when full", func(t *testing.T) {
		r := NewReassembler(2, 65535, time.Second)
		other := func(id uint16) [][]byte {
			return fragments(t, buildUDP(lanHost, server, 1, 2, payloadN(1500), true, ipOpts{id: id}), 1000)
		}
		a, b, c := other(1), other(2), other(3)
		add(t, r, a[0], 0)
		add(t, r, b[0], 1)
		add(t, r, c[0], 2) // evicts a, the oldest
		if s := r.Stats(); s.Evicted != 1 || s.InFlight != 2 {
			t.Errorf("stats %+v", s)
		}
		if add(t, r, a[1], 3) != nil {
			t.Errorf("evicted datagram completed")
		}
		if add(t, r, c[1], 3) == nil {
			t.Errorf("c not completed")
		}
	})

	t.Run("too big", func(t *testing.T) {
		r := NewReassembler(2, 2000, time.Second)
		add(t, r, fs[0], 0)
		add(t, r, fs[2], 0)
		if s := r.Stats(); s.TooBig != 1 || s.InFlight != 0 {
			t.Errorf("stats %+v", s)
		}
		// Exactly maxSize bytes fits.
		fit := buildUDP(lanHost, server, 1, 2, payloadN(2000-28), true, ipOpts{id: 9})
		var w []byte
		for _, f := range fragments(t, fit, 600) {
			w = add(t, r, f, 0)
		}
		if !bytes.Equal(w, fit) {
			t.Errorf("datagram of exactly maxSize not reassembled")
		}
		// With options the header grows past the bound at completion.
		rr := header.IPv4SerializableRouterAlertOption{}
		opt := buildUDP(lanHost, server, 1, 2, payloadN(2000-28), true, ipOpts{id: 10, options: header.IPv4OptionsSerializer{&rr}})
		for _, f := range fragments(t, opt, 600) {
			if add(t, r, f, 0) != nil {
				t.Errorf("oversized datagram returned")
			}
		}
		if s := r.Stats(); s.TooBig != 2 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("too many fragments", func(t *testing.T) {
		r := NewReassembler(2, 65535, time.Second)
		big := buildUDP(lanHost, server, 1, 2, payloadN(MaxFragments*8+100), true, ipOpts{id: 11})
		for _, f := range fragments(t, big, 28) {
			if add(t, r, f, 0) != nil {
				t.Fatalf("completed with more than MaxFragments")
			}
		}
		if s := r.Stats(); s.TooMany != 1 {
			t.Errorf("stats %+v", s)
		}
		ok := buildUDP(lanHost, server, 1, 2, payloadN(MaxFragments*8-8), true, ipOpts{id: 12})
		fs := fragments(t, ok, 28)
		if len(fs) != MaxFragments {
			t.Fatalf("%d fragments", len(fs))
		}
		var w []byte
		for _, f := range fs {
			w = add(t, r, f, 0)
		}
		if !bytes.Equal(w, ok) {
			t.Errorf("datagram in MaxFragments fragments not reassembled")
		}
	})

	t.Run("malformed", func(t *testing.T) {
		r := NewReassembler(2, 65535, time.Second)
		whole := buildUDP(lanHost, server, 1, 2, nil, true, ipOpts{})
		odd := buildIPv4(17, lanHost, server, ipOpts{id: 7, flags: header.IPv4FlagMoreFragments, fragOff: 976}, payloadN(13))
		empty := buildIPv4(17, lanHost, server, ipOpts{id: 7, flags: header.IPv4FlagMoreFragments, fragOff: 976}, nil)
		add(t, r, whole, 0)
		add(t, r, odd, 0)
		add(t, r, empty, 0)
		if s := r.Stats(); s.Malformed != 3 || s.InFlight != 0 {
			t.Errorf("stats %+v", s)
		}
		// Two different ends.
		last := fs[len(fs)-1]
		shortEnd := buildIPv4(17, lanHost, server, ipOpts{id: 7, fragOff: 976}, payloadN(8))
		add(t, r, last, 0)
		add(t, r, shortEnd, 0)
		// Data beyond the end.
		add(t, r, shortEnd, 0)
		add(t, r, fs[1], 0)
		if s := r.Stats(); s.Malformed != 5 || s.InFlight != 0 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("whole header fixed", func(t *testing.T) {
		r := NewReassembler(1, 65535, 0)
		var w []byte
		for _, f := range fs {
			w = add(t, r, f, 0)
		}
		ff := binary.BigEndian.Uint16(w[6:])
		if ff != 0 || int(binary.BigEndian.Uint16(w[2:])) != len(d) {
			t.Errorf("flags %#x length %d", ff, binary.BigEndian.Uint16(w[2:]))
		}
		checkAll(t, "whole", w)
	})
}
