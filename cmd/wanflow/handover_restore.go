package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/wanflow/wanflow/cmd/wanflow/handover"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/health"
)

// restored is what the start took from a handover file.
type restored struct {
	ok      bool          // a usable file was there
	age     time.Duration // since it was written
	flows   int           // flows restored
	refused map[string]int
	health  map[string]health.State // by uplink name
}

func (r restored) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.refused)) {
		parts = append(parts, fmt.Sprintf("%d %s", r.refused[k], k))
	}
	s := fmt.Sprintf("%d flows restored from a handover written %v before", r.flows, r.age.Round(time.Millisecond))
	if len(parts) > 0 {
		s += "; refused: " + strings.Join(parts, ", ")
	}
	return s
}

// restoreFlows puts the flows of a handover written age ago back through
// restore (the new dataplane's RestoreFlow), oldest first as the file has
// them: each flow's uplink is found by name among names (the uplinks
// configured now, by index), its times are moved from ages to the clock
// now, and every refusal is counted by reason. It also returns each
// still-configured uplink's health at the handover.
func restoreFlows(st *handover.State, names []string, age time.Duration, now int64, restore func(flowtable.Saved) error) restored {
	r := restored{ok: true, age: age, refused: map[string]int{}, health: map[string]health.State{}}
	index := map[string]int{}
	for i, n := range names {
		index[n] = i
	}
	newIdx := make([]int, len(st.Uplinks))
	for i, u := range st.Uplinks {
		j, ok := index[u.Name]
		if !ok {
			j = -1
		} else if u.Health <= uint8(health.StateUp) {
			r.health[u.Name] = health.State(u.Health)
		}
		newIdx[i] = j
	}
	gap := int64(age)
	for _, s := range st.Flows {
		j := -1
		if int(s.Uplink) < len(newIdx) {
			j = newIdx[s.Uplink]
		}
		if j < 0 {
			r.refused["uplink no longer configured"]++
			continue
		}
		s.Uplink = uint8(j)
		s.Created, s.LastSeen = now-gap-s.Created, now-gap-s.LastSeen
		switch err := restore(s); {
		case err == nil:
			r.flows++
		case errors.Is(err, flowtable.ErrConflict):
			r.refused["NAT port of another worker or endpoint"]++
		case errors.Is(err, flowtable.ErrFull), errors.Is(err, flowtable.ErrHostLimit):
			r.refused["over capacity or per-host limit"]++
		default:
			r.refused["invalid"]++
		}
	}
	return r
}
