package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab/labtest"
)

// TestBalanceStats checks the statistics on known numbers: Pearson's
// statistic by hand, and the chi-square upper tail against its tabulated
// 5% and 1% critical values and closed forms (df 2: e^(-x/2); df 1:
// erfc(sqrt(x/2))).
func TestBalanceStats(t *testing.T) {
	for _, tt := range []struct {
		obs, w []int
		chi2   float64
		df     int
	}{
		{[]int{50, 30, 20}, []int{5, 3, 2}, 0, 2},
		{[]int{60, 20, 20}, []int{1, 1, 1}, 32, 2},
		{[]int{10, 30}, []int{1, 3}, 0, 1},
		{[]int{20, 20}, []int{1, 3}, 40.0 / 3, 1}, // (20-10)²/10 + (20-30)²/30
		{[]int{0, 0, 0}, []int{8, 6, 3}, 0, 2},
	} {
		chi2, df := balChiSquare(tt.obs, tt.w)
		if math.Abs(chi2-tt.chi2) > 1e-9 || df != tt.df {
			t.Errorf("balChiSquare(%v, %v) = %v, %d; want %v, %d", tt.obs, tt.w, chi2, df, tt.chi2, tt.df)
		}
	}
	for _, tt := range []struct {
		x    float64
		df   int
		want float64
	}{
		{3.841458820694124, 1, 0.05},
		{6.634896601021214, 1, 0.01},
		{5.991464547107979, 2, 0.05},
		{9.21034037197618, 2, 0.01},
		{7.814727903251178, 3, 0.05},
		{9.487729036781154, 4, 0.05},
		{18.307038053275146, 10, 0.05},
		{1, 1, math.Erfc(math.Sqrt(0.5))},
		{0.5, 1, math.Erfc(0.5)},
		{10, 2, math.Exp(-5)},
		{46666.7, 2, math.Exp(-46666.7 / 2)},
		{0, 3, 1},
		{2, 4, 2 * math.Exp(-1)}, // df 4: e^(-x/2)(1 + x/2)
		{30, 4, 16 * math.Exp(-15)},
	} {
		got := balChiSquareP(tt.x, tt.df)
		if math.Abs(got-tt.want) > 1e-9*math.Max(1, tt.want) && math.Abs(got-tt.want)/tt.want > 1e-6 {
			t.Errorf("balChiSquareP(%v, %d) = %.12g, want %.12g", tt.x, tt.df, got, tt.want)
		}
	}

	// The derived figures of a result.
	r := BalanceResult{Weights: []int{8, 6, 3}, PerUplink: []int{50000, 30000, 20000}, Flows: 100000, Keys: 100000, KeysPerUplink: []int{50000, 30000, 20000}}
	balStats(&r)
	want := []float64{100 * 8.0 / 17, 100 * 6.0 / 17, 100 * 3.0 / 17}
	for i := range want {
		if math.Abs(r.WantPct[i]-want[i]) > 1e-9 {
			t.Errorf("WantPct = %v, want %v", r.WantPct, want)
		}
	}
	if dev := want[1] - 100*0.3; math.Abs(r.MaxDevPP-dev) > 1e-9 { // 30% for 35.29%
		t.Errorf("MaxDevPP = %v, want %v", r.MaxDevPP, dev)
	}
	if chi2, _ := balChiSquare(r.PerUplink, r.Weights); r.ChiSquare != chi2 || r.DF != 2 || r.PValue != balChiSquareP(chi2, 2) {
		t.Errorf("chi² %v df %d p %v, want %v, 2, %v", r.ChiSquare, r.DF, r.PValue, chi2, balChiSquareP(chi2, 2))
	}
	if sigma := 100 * math.Sqrt(8.0/17*9.0/17/100000); math.Abs(r.SigmaPP-sigma) > 1e-9 {
		t.Errorf("SigmaPP = %v, want %v", r.SigmaPP, sigma)
	}
	if r.WithinTarget || r.Note != "" {
		t.Errorf("5.29 pp off with 100,000 keys: WithinTarget %v, Note %q; want false and no excuse", r.WithinTarget, r.Note)
	}
	few := BalanceResult{Weights: []int{8, 6, 3}, PerUplink: []int{500, 300, 200}, Flows: 1000, Keys: 1000, KeysPerUplink: []int{500, 300, 200}}
	balStats(&few)
	if few.WithinTarget || few.Note == "" {
		t.Errorf("5.29 pp off with 1,000 keys (1σ 1.6 pp): WithinTarget %v, Note %q; want false and a note", few.WithinTarget, few.Note)
	}
	one := BalanceResult{Weights: []int{8, 6, 3}, PerUplink: []int{0, 0, 1000}, Flows: 1000, Keys: 1, KeysPerUplink: []int{0, 0, 1}}
	balStats(&one)
	if one.WithinTarget || one.Note == "" || one.PValue > 1e-9 {
		t.Errorf("one key: WithinTarget %v, Note %q, p %v; want false, a note, p ≈ 0", one.WithinTarget, one.Note, one.PValue)
	}
	if _, err := json.Marshal([]BalanceResult{r, one}); err != nil {
		t.Errorf("results do not marshal: %v", err)
	}
}

// TestBalanceShort runs every case of the balance benchmark with 2,000
// flows each and checks what must hold whatever the hash: the counts add
// up, the statistics match the counts, affinity src from one host uses one
// uplink, src-dst from one host has one key per server, and wanflow with
// affinity flow matches its weights within 4.5 standard deviations of a
// share over 2,000 independent choices (about 5 points).
func TestBalanceShort(t *testing.T) {
	labtest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	start := time.Now()
	const flows = 2000
	res, err := Balance(ctx, wanflowBin, BalanceOptions{Flows: flows}, &progress)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("balance took %v", time.Since(start))
	if len(res) != 10 {
		t.Fatalf("%d results, want 10 (kernel l3 and l4, wanflow flow, src-dst and src; many hosts and one)", len(res))
	}
	for _, r := range res {
		t.Log(r.Row())
		if r.Flows+r.Failed != flows {
			t.Errorf("%v: %d counted + %d failed flows, want %d", r, r.Flows, r.Failed, flows)
		}
		if r.Failed*100 > flows {
			t.Errorf("%v: more than 1%% of the flows failed", r)
		}
		sum := 0
		for i, n := range r.PerUplink {
			sum += n
			if r.SharePct[i] < 0 || r.SharePct[i] > 100 {
				t.Errorf("%v: share %v outside [0,100]", r, r.SharePct[i])
			}
		}
		if sum != r.Flows {
			t.Errorf("%v: per-uplink counts add up to %d, want %d", r, sum, r.Flows)
		}
		if chi2, df := balChiSquare(r.PerUplink, r.Weights); math.Abs(chi2-r.ChiSquare) > 1e-9 || df != 2 {
			t.Errorf("%v: chi² %v df %d, want %v df 2", r, r.ChiSquare, r.DF, chi2)
		}
		if r.PValue < 0 || r.PValue > 1 || r.KeyPValue < 0 || r.KeyPValue > 1 {
			t.Errorf("%v: p-values outside [0,1]", r)
		}
		switch {
		case r.Hosts == HostsOne && r.Affinity == "src":
			if r.Keys != 1 || r.Note == "" || (r.PerUplink[0] != r.Flows && r.PerUplink[1] != r.Flows && r.PerUplink[2] != r.Flows) {
				t.Errorf("%v: want every flow on one uplink, one key and a note saying so", r)
			}
		case r.Hosts == HostsOne && r.Affinity == "src-dst":
			if r.Keys != 20 {
				t.Errorf("%v: %d keys, want one per server (20)", r, r.Keys)
			}
		case r.Hosts == HostsMany && r.Sources < 200:
			t.Errorf("%v: %d source addresses, want at least 200", r, r.Sources)
		}
		if r.Router == RouterWanflow && r.Affinity == "flow" {
			for i, w := range r.WantPct {
				p := w / 100
				tol := 4.5 * 100 * math.Sqrt(p*(1-p)/float64(r.Flows))
				if d := math.Abs(r.SharePct[i] - w); d > tol {
					t.Errorf("%v: uplink %d share %.2f%%, want %.2f%% ± %.2f", r, i, r.SharePct[i], w, tol)
				}
			}
		}
	}
}
