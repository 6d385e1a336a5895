package main

import (
	"testing"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/lan/steer"
)

func TestEphemeralOverlap(t *testing.T) {
	for _, tc := range []struct {
		r     flowtable.PortRange
		proc  string
		wantE bool
	}{
		{flowtable.PortRange{Lo: 20000, Hi: 32767}, "32768\t60999\n", false},
		{flowtable.PortRange{Lo: 20000, Hi: 32768}, "32768\t60999\n", true},
		{flowtable.PortRange{Lo: 61000, Hi: 65535}, "32768\t60999\n", false},
		{flowtable.PortRange{Lo: 40000, Hi: 41000}, "32768\t60999\n", true},
		{flowtable.PortRange{Lo: 20000, Hi: 32767}, "garbage", true},
	} {
		if err := ephemeralOverlap(tc.r, tc.proc); (err != nil) != tc.wantE {
			t.Errorf("%v vs %q: err %v, want error %v", tc.r, tc.proc, err, tc.wantE)
		}
	}
}

// TestPlanMatchesSteer: the plan's rule priorities are the ones lan/steer
// installs.
func TestPlanMatchesSteer(t *testing.T) {
	k := config.Default().Kernel
	if k.LookupRulePriority() != k.RulePriority+steer.LookupOffset || k.FallbackRulePriority(2) != k.RulePriority+steer.FallbackOffset+2 {
		t.Errorf("plan priorities %d, %d; steer installs %d, %d", k.LookupRulePriority(), k.FallbackRulePriority(2),
			k.RulePriority+steer.LookupOffset, k.RulePriority+steer.FallbackOffset+2)
	}
}
