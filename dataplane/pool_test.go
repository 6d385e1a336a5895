package dataplane

import "testing"

// TestTrimmer: after a burst the buffers that stayed free for a whole
// window are released down to the floor; buffers in use, or used at any
// time during the window, are kept; the pool can grow again afterwards.
func TestTrimmer(t *testing.T) {
	p := newBufPool(1000)
	// A burst: 600 buffers in flight at once, then all back.
	var held [][]byte
	for range 600 {
		held = append(held, p.Get())
	}
	for _, b := range held {
		p.Put(b)
	}
	held = held[:0]
	tr := newTrimmer(p, 50, 4)
	if p.allocated() != 600 {
		t.Fatalf("allocated %d, want 600", p.allocated())
	}
	// First window: 100 buffers are used during it (the low-water mark
	// is 500 free), so 500-50 are released.
	tr.sample()
	for range 100 {
		held = append(held, p.Get())
	}
	tr.sample()
	for _, b := range held {
		p.Put(b)
	}
	held = held[:0]
	tr.sample()
	if n := tr.sample(); n != 450 {
		t.Fatalf("first window released %d, want 450", n)
	}
	if p.allocated() != 150 || len(p.free) != 150 {
		t.Fatalf("after the first window: %d allocated, %d free; want 150, 150", p.allocated(), len(p.free))
	}
	// Second window, idle: everything above the floor goes.
	for range 3 {
		if n := tr.sample(); n != 0 {
			t.Fatalf("released %d before the window ended", n)
		}
	}
	if n := tr.sample(); n != 100 {
		t.Fatalf("idle window released %d, want 100", n)
	}
	// Buffers in use are never released: 40 in use, 10 free, floor 50.
	for range 40 {
		held = append(held, p.Get())
	}
	for range 4 {
		tr.sample()
	}
	if p.allocated() != 50 {
		t.Fatalf("with 40 in use: %d allocated, want 50", p.allocated())
	}
	// The pool grows again up to its bound.
	for range 960 {
		if b := p.Get(); b == nil {
			t.Fatal("pool refused a buffer below its bound")
		} else {
			held = append(held, b)
		}
	}
	if p.Get() != nil || p.allocated() != 1000 {
		t.Fatalf("pool past its bound: %d allocated", p.allocated())
	}
}
