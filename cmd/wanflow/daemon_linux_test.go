package main

import (
	"testing"

	"github.com/wanflow/wanflow/flowtable"
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
