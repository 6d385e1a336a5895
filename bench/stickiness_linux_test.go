package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
)

// TestStickCount checks the classification on made-up flows: sticky, moved,
// failed, and the split by the uplink a flow was first seen on.
func TestStickCount(t *testing.T) {
	up1 := netip.MustParseAddrPort("100.64.1.2:20001")
	up2 := netip.MustParseAddrPort("100.64.2.2:20002")
	up2b := netip.MustParseAddrPort("100.64.2.2:20003") // same uplink, other NAT port
	ok := func(seen ...netip.AddrPort) labclient.Flow {
		return labclient.Flow{Proto: labclient.UDP, Seen: seen, Sent: 5, Replies: 5}
	}
	lost := func(seen ...netip.AddrPort) labclient.Flow {
		return labclient.Flow{Proto: labclient.UDP, Seen: seen, Sent: 5, Replies: 4, Lost: 1, Err: errors.New("timeout")}
	}
	flows := []labclient.Flow{
		ok(up1),       // removed uplink, sticky
		ok(up1, up2),  // removed uplink, moved
		lost(up1),     // removed uplink, failed
		ok(up2),       // kept, sticky
		ok(up2, up2b), // kept, sticky: one address
		lost(up2, up1),
		lost(), // never seen: kept, failed
		{Proto: labclient.TCP, Seen: []netip.AddrPort{up1}, Sent: 5, Replies: 5},
	}
	r := stickCount(flows, labclient.UDP, up1.Addr())
	want := StickinessGroup{Flows: 4, Sticky: 0.5, Moved: 0.25, Failed: 0.5, FirstError: "timeout"}
	if r.StickinessGroup != want {
		t.Errorf("kept: %+v, want %+v", r.StickinessGroup, want)
	}
	wantRm := StickinessGroup{Flows: 3, Sticky: 1.0 / 3, Moved: 1.0 / 3, Failed: 1.0 / 3, FirstError: "timeout"}
	if r.Removed == nil || *r.Removed != wantRm {
		t.Errorf("removed: %+v, want %+v", r.Removed, wantRm)
	}
	if r := stickCount(flows[:2], labclient.UDP, up1.Addr()); r.FirstError != "" || r.Removed.FirstError != "" {
		t.Errorf("first errors %q, %q without a failed flow", r.FirstError, r.Removed.FirstError)
	}
	all := stickCount(flows, labclient.UDP, netip.Addr{})
	if want := (StickinessGroup{Flows: 7, Sticky: 3.0 / 7, Moved: 2.0 / 7, Failed: 3.0 / 7, FirstError: "timeout"}); all.StickinessGroup != want || all.Removed != nil {
		t.Errorf("no removed uplink: %+v, removed %v; want %+v, nil", all.StickinessGroup, all.Removed, want)
	}
	if tcp := stickCount(flows, labclient.TCP, netip.Addr{}); tcp.Flows != 1 || tcp.Sticky != 1 {
		t.Errorf("tcp: %+v, want 1 sticky flow", tcp.StickinessGroup)
	}
}

// TestStickinessOptions checks the defaults and the refusals.
func TestStickinessOptions(t *testing.T) {
	var o StickinessOptions
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if o.Flows != 200 || o.Packets != 30 || len(o.Weights) != 3 || len(o.NewWeights) != 3 || len(o.Routers) != 4 {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range []StickinessOptions{
		{Weights: []int{1}},
		{Weights: []int{1, 2}, NewWeights: []int{1, 2, 3}},
		{Weights: []int{0, 1}},
		{Remove: 3},
		{Packets: 5},
		{Routers: []string{"pf"}},
	} {
		if err := bad.defaults(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// TestStickinessShort runs the stickiness benchmark small — 150 TCP and
// 150 UDP flows of 12 messages per phase, every router — and checks what
// must hold: wanflow keeps every flow that was not on the removed uplink on
// its uplink, with none failed, in every phase; the flows that were on it
// moved or failed; every figure of the kernel baselines is a share in [0,1]
// and reported.
func TestStickinessShort(t *testing.T) {
	labtest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	start := time.Now()
	const flows = 150
	res, err := Stickiness(ctx, wanflowBin, StickinessOptions{
		Flows:    flows,
		Packets:  12,
		Interval: 100 * time.Millisecond,
		EventAt:  400 * time.Millisecond,
		Outage:   400 * time.Millisecond,
	}, &progress)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stickiness took %v", time.Since(start))
	if _, err := json.Marshal(res); err != nil {
		t.Errorf("results do not marshal: %v", err)
	}
	type key struct{ router, phase, proto string }
	seen := map[key]bool{}
	for _, r := range res {
		t.Log(r.Row())
		seen[key{r.Router, r.Phase, r.Proto}] = true
		groups := []StickinessGroup{r.StickinessGroup}
		n := r.Flows
		if r.Phase == PhaseRemoveReadd {
			if r.Removed == nil {
				t.Errorf("%v: no count of the flows on the removed uplink", r)
				continue
			}
			groups = append(groups, *r.Removed)
			n += r.Removed.Flows
		} else if r.Removed != nil {
			t.Errorf("%v: a removed-uplink count outside %s", r, PhaseRemoveReadd)
		}
		if n != flows {
			t.Errorf("%v: %d flows counted, want %d", r, n, flows)
		}
		for _, g := range groups {
			for _, f := range []float64{g.Sticky, g.Moved, g.Failed} {
				if f < 0 || f > 1 {
					t.Errorf("%v: share %v outside [0,1]", r, f)
				}
			}
			if g.Sticky+g.Failed > 1+1e-9 || g.Sticky+g.Moved > 1+1e-9 {
				t.Errorf("%v: sticky flows counted as moved or failed too", r)
			}
		}
		if r.Event == "" {
			t.Errorf("%v: no event described", r)
		}
		if r.Router != RouterWanflow {
			if r.TargetMet != nil {
				t.Errorf("%v: the kernel has no target", r)
			}
			continue
		}
		if r.Sticky != 1 || r.Failed != 0 || r.Flows == 0 || r.TargetMet == nil || !*r.TargetMet {
			t.Errorf("wanflow %s %s: %v; want every flow sticky and none failed", r.Phase, r.Proto, r)
		}
		if r.Removed != nil && (r.Removed.Flows == 0 || r.Removed.Sticky != 0) {
			t.Errorf("wanflow %s %s: on the removed uplink %+v; want some flows, each moved (UDP) or reset (TCP)", r.Phase, r.Proto, *r.Removed)
		}
	}
	for _, router := range []string{RouterKernelL3, RouterKernelL4, RouterKernelConnmark, RouterWanflow} {
		for _, phase := range []string{PhaseSteady, PhaseRemoveReadd, PhaseReweight} {
			for _, proto := range []string{"tcp", "udp"} {
				if !seen[key{router, phase, proto}] {
					t.Errorf("no result for %s %s %s", router, phase, proto)
				}
			}
		}
	}
}
