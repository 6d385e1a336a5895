package events

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func seqs(es []Event) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRingCapacityAndSince(t *testing.T) {
	r := NewRing(3)
	if got := r.Since(0); len(got) != 0 {
		t.Fatalf("empty ring Since(0) = %v, want none", got)
	}
	for i := 1; i <= 5; i++ {
		e := r.Add(Event{Kind: KindState, Uplink: "3g"})
		if e.Seq != uint64(i) {
			t.Fatalf("Add #%d: Seq = %d, want %d", i, e.Seq, i)
		}
		if e.Time.IsZero() {
			t.Fatalf("Add #%d: Time not set", i)
		}
	}
	tests := []struct {
		since uint64
		want  []uint64
	}{
		{0, []uint64{3, 4, 5}},
		{2, []uint64{3, 4, 5}},
		{3, []uint64{4, 5}},
		{4, []uint64{5}},
		{5, []uint64{}},
		{99, []uint64{}},
	}
	for _, tt := range tests {
		if got := seqs(r.Since(tt.since)); !equalSeqs(got, tt.want) {
			t.Errorf("Since(%d) = %v, want %v", tt.since, got, tt.want)
		}
	}
	if got := r.Last(); got != 5 {
		t.Errorf("Last() = %d, want 5", got)
	}
	if got := NewRing(0).Cap(); got != DefaultCapacity {
		t.Errorf("NewRing(0).Cap() = %d, want %d", got, DefaultCapacity)
	}
}

func TestAddKeepsGivenSeqAndTime(t *testing.T) {
	r := NewRing(4)
	at := time.Date(2017, 1, 29, 17, 4, 52, 0, time.UTC)
	if e := r.Add(Event{Seq: 10, Time: at}); e.Seq != 10 || !e.Time.Equal(at) {
		t.Fatalf("Add(Seq 10) = seq %d time %v, want 10 %v", e.Seq, e.Time, at)
	}
	// A Seq that does not increase is replaced.
	if e := r.Add(Event{Seq: 3}); e.Seq != 11 {
		t.Fatalf("Add(Seq 3) after 10: Seq = %d, want 11", e.Seq)
	}
}

func TestSubscribe(t *testing.T) {
	r := NewRing(8)
	r.Add(Event{Kind: KindConfig}) // before the subscription: not delivered
	ctx, cancel := context.WithCancel(t.Context())
	ch := r.Subscribe(ctx, 4)
	r.Add(Event{Kind: KindState, To: "down"})
	r.Add(Event{Kind: KindState, To: "up"})
	for _, want := range []uint64{2, 3} {
		select {
		case e := <-ch:
			if e.Seq != want {
				t.Fatalf("received Seq %d, want %d", e.Seq, want)
			}
		case <-time.After(time.Second):
			t.Fatalf("no event %d", want)
		}
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after cancel, want closed channel")
		}
	case <-time.After(time.Second):
		t.Fatal("channel not closed after cancel")
	}
	r.Add(Event{}) // no subscriber left: must not panic on the closed channel
	if got := r.Dropped(); got != 0 {
		t.Errorf("Dropped() = %d, want 0", got)
	}
}

func TestSlowSubscriberDrops(t *testing.T) {
	r := NewRing(100)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	slow := r.Subscribe(ctx, 2)
	fast := r.Subscribe(ctx, 100)
	done := make(chan struct{})
	go func() {
		// Add must not block even though nobody reads slow.
		for range 10 {
			r.Add(Event{Kind: KindHook})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Add blocked on a slow subscriber")
	}
	if got := r.Dropped(); got != 8 {
		t.Errorf("Dropped() = %d, want 8 (10 events, buffer 2)", got)
	}
	if got := len(fast); got != 10 {
		t.Errorf("fast subscriber has %d events, want 10", got)
	}
	if e := <-slow; e.Seq != 1 {
		t.Errorf("slow subscriber first Seq = %d, want 1 (oldest kept)", e.Seq)
	}
}

func TestConcurrentAdd(t *testing.T) {
	const writers, each = 8, 500
	r := NewRing(64)
	ctx, cancel := context.WithCancel(t.Context())
	ch := r.Subscribe(ctx, 16)
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { // a subscriber that keeps checking order
		defer readers.Done()
		var last uint64
		for e := range ch {
			if e.Seq <= last {
				t.Errorf("subscriber got Seq %d after %d", e.Seq, last)
			}
			last = e.Seq
		}
	}()
	go func() { // a reader polling Since
		defer readers.Done()
		for ctx.Err() == nil {
			es := r.Since(0)
			for i := 1; i < len(es); i++ {
				if es[i].Seq <= es[i-1].Seq {
					t.Errorf("Since out of order: %d after %d", es[i].Seq, es[i-1].Seq)
					return
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				r.Add(Event{Kind: KindState, Uplink: string(rune('a' + w))})
			}
		}()
	}
	wg.Wait()
	cancel()
	readers.Wait()
	if got := r.Last(); got != writers*each {
		t.Errorf("Last() = %d, want %d", got, writers*each)
	}
	got := seqs(r.Since(0))
	if len(got) != 64 || got[0] != writers*each-63 || got[63] != writers*each {
		t.Errorf("ring after %d adds holds %d events %d…%d, want 64 ending at %d",
			writers*each, len(got), got[0], got[len(got)-1], writers*each)
	}
}

func TestLog(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	Log(t.Context(), l, Event{Seq: 7, Kind: KindState, Uplink: "adsl", Interface: "eth0",
		From: "up", To: "down", Cause: "3 probes lost", Duration: 90 * time.Second})
	Log(t.Context(), l, Event{Seq: 8, Kind: KindHook, Uplink: "3g", Hook: "while_down", Exit: 0})
	Log(t.Context(), nil, Event{}) // nil logger: no-op
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for _, want := range []string{"level=WARN", `msg="uplink event"`, "seq=7", "kind=state", "uplink=adsl",
		"interface=eth0", "from=up", "to=down", `cause="3 probes lost"`, "duration=1m30s"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line %q lacks %q", lines[0], want)
		}
	}
	for _, want := range []string{"level=INFO", "hook=while_down", "exit=0"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("line %q lacks %q", lines[1], want)
		}
	}
	if strings.Contains(lines[1], "from=") || strings.Contains(lines[1], "err=") {
		t.Errorf("line %q has empty fields", lines[1])
	}
}
