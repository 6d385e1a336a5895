package dataplane

import (
	"container/heap"
	"net/netip"
	"slices"

	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/policy"
)

// This file answers questions about the dataplane's state for the control
// API: which flows exist, where a flow is pinned and why, where a new flow
// would go, how much went through each uplink. Every answer is read on the
// workers' goroutines between batches (worker.do), so it is consistent per
// shard and never races the packet path; none of it is on the packet path.

// FlowQuery selects flows for Engine.Flows.
type FlowQuery struct {
	// Match selects a flow; nil selects every flow. It runs on a worker
	// goroutine and must not keep the entry.
	Match func(*flowtable.Entry) bool
	// Less orders the flows returned; nil returns them in table order.
	// With Less, the Limit flows returned are the first in that order.
	Less func(a, b *flowtable.Entry) bool
	// Limit caps the number of flows returned (at least 1).
	Limit int
}

// Flows returns copies of the flows that q selects, at most q.Limit, and
// how many matched in all. Memory is bounded by q.Limit per worker.
func (e *Engine) Flows(q FlowQuery) (flows []flowtable.Entry, matched int) {
	limit := max(q.Limit, 1)
	for _, w := range e.workers {
		w.do(func() {
			h := &entryHeap{less: q.Less}
			w.ft.Range(func(ent *flowtable.Entry) bool {
				if q.Match != nil && !q.Match(ent) {
					return true
				}
				matched++
				switch {
				case len(h.e) < limit:
					heap.Push(h, *ent)
				case q.Less != nil && q.Less(ent, &h.e[0]):
					h.e[0] = *ent
					heap.Fix(h, 0)
				case q.Less == nil:
					// Table order and full: the rest only counts.
				}
				return true
			})
			flows = append(flows, h.e...)
		})
	}
	if q.Less != nil {
		slices.SortStableFunc(flows, func(a, b flowtable.Entry) int {
			switch {
			case q.Less(&a, &b):
				return -1
			case q.Less(&b, &a):
				return 1
			}
			return 0
		})
	}
	if len(flows) > limit {
		flows = flows[:limit]
	}
	return flows, matched
}

// entryHeap keeps the Limit best entries: its root is the worst kept one
// (a max-heap by Less), replaced when a better one comes.
type entryHeap struct {
	e    []flowtable.Entry
	less func(a, b *flowtable.Entry) bool
}

func (h *entryHeap) Len() int { return len(h.e) }
func (h *entryHeap) Less(i, j int) bool {
	if h.less == nil {
		return false
	}
	return h.less(&h.e[j], &h.e[i])
}
func (h *entryHeap) Swap(i, j int) { h.e[i], h.e[j] = h.e[j], h.e[i] }
func (h *entryHeap) Push(x any)    { h.e = append(h.e, x.(flowtable.Entry)) }
func (h *entryHeap) Pop() any {
	x := h.e[len(h.e)-1]
	h.e = h.e[:len(h.e)-1]
	return x
}

// Lookup returns a copy of the flow whose LAN-side key is k, if the flow
// table has it. For ICMP echo, k.SrcPort is the echo identifier and
// k.DstPort 0.
func (e *Engine) Lookup(k flowtable.Key) (flowtable.Entry, bool) {
	w := e.workers[e.endpointWorker(k.Src, k.SrcPort, k.Proto)]
	var ent flowtable.Entry
	var ok bool
	w.do(func() {
		if p := w.ft.Lookup(k); p != nil {
			ent, ok = *p, true
		}
	})
	return ent, ok
}

// Explain returns the policy's reasoning for a new flow f as the dataplane
// would decide it now, and whether a packet of f would be sent: false when
// no uplink is chosen or the chosen uplink has no socket (the packet is
// then answered with ICMP net-unreachable). ok is false before the first
// Update.
func (e *Engine) Explain(f policy.Flow) (x policy.Explanation, sent, ok bool) {
	s := e.snap.Load()
	if s == nil || s.policy == nil {
		return x, false, false
	}
	x = s.policy.Explain(f)
	d := x.Decision.Uplink
	sent = d >= 0 && d < len(s.uplinks) && s.uplinks[d].port != nil
	return x, sent, true
}

// Traffic returns each uplink's traffic since New, by uplink index (up to
// the highest index that saw any).
func (e *Engine) Traffic() []Traffic {
	var out []Traffic
	for _, w := range e.workers {
		for i := range w.traffic {
			c := &w.traffic[i]
			t := Traffic{c.v[0].Load(), c.v[1].Load(), c.v[2].Load(), c.v[3].Load()}
			if t == (Traffic{}) {
				continue
			}
			for len(out) <= i {
				out = append(out, Traffic{})
			}
			out[i].PacketsOut += t.PacketsOut
			out[i].BytesOut += t.BytesOut
			out[i].PacketsIn += t.PacketsIn
			out[i].BytesIn += t.BytesIn
		}
	}
	return out
}

// FlowsPerUplink returns the number of flows pinned to each uplink, by
// uplink index (up to the highest index with a flow). Each shard keeps its
// counts up to date, so this costs O(uplinks) per worker, whatever the
// number of flows.
func (e *Engine) FlowsPerUplink() []int {
	var out []int
	for _, w := range e.workers {
		w.do(func() {
			for i := range e.cfg.MaxUplinks {
				if n := w.ft.UplinkLen(i); n > 0 {
					for len(out) <= i {
						out = append(out, 0)
					}
					out[i] += n
				}
			}
		})
	}
	return out
}

// KeyOf builds a flow-table key from addresses and ports, as the
// dataplane keys LAN packets.
func KeyOf(proto uint8, src, dst netip.AddrPort) flowtable.Key {
	k := flowtable.Key{Src: src.Addr().As4(), Dst: dst.Addr().As4(), SrcPort: src.Port(), DstPort: dst.Port(), Proto: proto}
	if proto == flowtable.ProtoICMP {
		k.DstPort = 0
	}
	return k
}
