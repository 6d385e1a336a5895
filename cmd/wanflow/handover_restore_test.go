package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/wanflow/wanflow/cmd/wanflow/handover"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/health"
)

// TestRestoreFlows: flows go back by uplink name (the new config may list
// the uplinks in another order or drop one), with their ages turned into
// the new clock, and every refusal is counted by its reason.
func TestRestoreFlows(t *testing.T) {
	st := &handover.State{
		Uplinks: []handover.Uplink{
			{Name: "adsl", Health: uint8(health.StateUp)},
			{Name: "4g", Health: uint8(health.StateDegraded)},
			{Name: "3g", Health: uint8(health.StateDown)},
			{Name: "broken", Health: 99},
		},
	}
	flow := func(port uint16, uplink uint8) flowtable.Saved {
		return flowtable.Saved{Key: flowtable.Key{SrcPort: port, Proto: flowtable.ProtoUDP}, Uplink: uplink,
			Created: int64(10 * time.Second), LastSeen: int64(2 * time.Second)}
	}
	st.Flows = []flowtable.Saved{
		flow(1, 0), flow(2, 1), // restored
		flow(3, 2), flow(4, 2), // gone: 3g is not configured now
		flow(5, 0), flow(6, 0), flow(7, 1), // refused by the dataplane
		flow(8, 9), // an index the file does not name
	}
	refuse := map[uint16]error{
		5: fmt.Errorf("wrapped: %w", flowtable.ErrConflict),
		6: flowtable.ErrHostLimit,
		7: flowtable.ErrProto,
	}
	// The new config: 4g first, then adsl, then broken; no 3g.
	names := []string{"4g", "adsl", "broken"}
	const now = int64(100 * time.Second)
	age := 300 * time.Millisecond
	got := map[uint16]flowtable.Saved{}
	r := restoreFlows(st, names, age, now, func(s flowtable.Saved) error {
		if err := refuse[s.Key.SrcPort]; err != nil {
			return err
		}
		got[s.Key.SrcPort] = s
		return nil
	})
	if r.flows != 2 {
		t.Errorf("restored %d flows, want 2 (%v)", r.flows, r)
	}
	// adsl was index 0, now 1; 4g was 1, now 0.
	if got[1].Uplink != 1 || got[2].Uplink != 0 {
		t.Errorf("uplinks after the reorder: flow 1 on %d (want 1), flow 2 on %d (want 0)", got[1].Uplink, got[2].Uplink)
	}
	wantLast := now - int64(age) - int64(2*time.Second)
	if got[1].LastSeen != wantLast || got[1].Created != now-int64(age)-int64(10*time.Second) {
		t.Errorf("times: created %d last seen %d; want %d and %d", got[1].Created, got[1].LastSeen, now-int64(age)-int64(10*time.Second), wantLast)
	}
	want := map[string]int{
		"uplink no longer configured":            3, // 3g's two flows and the unnamed index
		"NAT port of another worker or endpoint": 1,
		"over capacity or per-host limit":        1,
		"invalid":                                1,
	}
	for k, v := range want {
		if r.refused[k] != v {
			t.Errorf("refused %q: %d, want %d (%v)", k, r.refused[k], v, r.refused)
		}
	}
	if len(r.refused) != len(want) {
		t.Errorf("refusals %v, want %v", r.refused, want)
	}
	if r.health["adsl"] != health.StateUp || r.health["4g"] != health.StateDegraded {
		t.Errorf("health %v", r.health)
	}
	if _, ok := r.health["3g"]; ok {
		t.Error("health kept for an uplink no longer configured")
	}
	if _, ok := r.health["broken"]; ok {
		t.Error("an unknown health state was kept")
	}
	const line = "2 flows restored from a handover written 300ms before; refused: 1 NAT port of another worker or endpoint, 1 invalid, 1 over capacity or per-host limit, 3 uplink no longer configured"
	if r.String() != line {
		t.Errorf("log line %q, want %q", r.String(), line)
	}
}
