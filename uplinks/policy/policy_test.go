package policy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func up(name string, tier int, weight uint32) Uplink {
	return Uplink{Name: name, Tier: tier, Weight: weight, Available: true}
}

func mustNew(t testing.TB, us []Uplink, a Affinity, rules []Rule) *Policy {
	t.Helper()
	p, err := New(us, a, rules)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// randomFlows returns n pseudo-random flows from a fixed seed, so that every
// run of the tests sees the same keys.
func randomFlows(n int, seed uint64) []Flow {
	r := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	fs := make([]Flow, n)
	for i := range fs {
		s, d := r.Uint32(), r.Uint32()
		fs[i] = Flow{
			Proto:   []uint8{ProtoTCP, ProtoUDP}[r.IntN(2)],
			Src:     [4]byte{10, 77, byte(s >> 8), byte(s)},
			Dst:     [4]byte{byte(d >> 24), byte(d >> 16), byte(d >> 8), byte(d)},
			SrcPort: uint16(r.Uint32()),
			DstPort: uint16(r.Uint32()),
		}
	}
	return fs
}

// choice returns the chosen uplink's name, "" for none.
func choice(p *Policy, f Flow) string {
	d := p.Choose(f)
	if d.Uplink < 0 {
		return ""
	}
	return p.uplinks[d.Uplink].Name
}

// TestWeightedShares checks the weighted split. Criterion: with weights
// 8/6/3 in one tier and 100,000 random flow keys, each uplink's share got
// must satisfy |got-want|/want <= 0.02, want = weight/17.
func TestWeightedShares(t *testing.T) {
	weights := []uint32{8, 6, 3}
	var total uint32
	us := make([]Uplink, len(weights))
	for i, w := range weights {
		us[i] = up(fmt.Sprintf("up%d", i+1), 1, w)
		total += w
	}
	for _, aff := range []Affinity{AffinityFlow, AffinitySrcDst} {
		t.Run(aff.String(), func(t *testing.T) {
			p := mustNew(t, us, aff, nil)
			const n = 100000
			counts := make([]int, len(us))
			for _, f := range randomFlows(n, 1) {
				d := p.Choose(f)
				if d.Reason != ReasonWeighted {
					t.Fatalf("Choose(%v).Reason = %v, want weighted", f, d.Reason)
				}
				counts[d.Uplink]++
			}
			for i, c := range counts {
				got := float64(c) / n
				want := float64(weights[i]) / float64(total)
				rel := math.Abs(got-want) / want
				t.Logf("%s weight %d: share %.4f, want %.4f, relative error %.4f", us[i].Name, weights[i], got, want, rel)
				if rel > 0.02 {
					t.Errorf("%s: share %.4f, want %.4f ±2%% relative (got %.2f%%)", us[i].Name, got, want, 100*rel)
				}
			}
		})
	}
}

func TestEqualWeightsPairs(t *testing.T) {
	// Two equal-weight uplinks must split evenly whatever their names:
	// a check that the per-uplink hashes are independent.
	pairs := [][2]string{{"adsl", "4g"}, {"a", "b"}, {"up1", "up2"}, {"wan0", "wan1"}}
	for _, pr := range pairs {
		p := mustNew(t, []Uplink{up(pr[0], 1, 1), up(pr[1], 1, 1)}, AffinityFlow, nil)
		const n = 100000
		c := 0
		for _, f := range randomFlows(n, 7) {
			if p.Choose(f).Uplink == 0 {
				c++
			}
		}
		if rel := math.Abs(float64(c)/n-0.5) / 0.5; rel > 0.02 {
			t.Errorf("%v: first share %.4f, want 0.5 ±2%%", pr, float64(c)/n)
		}
	}
}

func TestDeterminism(t *testing.T) {
	us := []Uplink{up("adsl", 1, 8), up("4g", 1, 6), up("3g", 1, 3)}
	p1 := mustNew(t, us, AffinityFlow, nil)
	p2 := mustNew(t, append([]Uplink(nil), us...), AffinityFlow, nil)
	// Reordered uplinks: ids change, the chosen name must not.
	p3 := mustNew(t, []Uplink{us[2], us[0], us[1]}, AffinityFlow, nil)
	for _, f := range randomFlows(10000, 3) {
		a, b, c, again := choice(p1, f), choice(p2, f), choice(p3, f), choice(p1, f)
		if a != b || a != c || a != again {
			t.Fatalf("flow %v: %q, rebuilt %q, reordered %q, again %q", f, a, b, c, again)
		}
	}
}

// TestGolden pins the hash (cross-checked against an independent Python
// implementation of the formulas documented in hash.go): these values must
// never change between versions, or flows move to another uplink across an
// upgrade.
func TestGolden(t *testing.T) {
	if got, want := NameHash("adsl"), uint64(goldenNameHash); got != want {
		t.Errorf("NameHash(adsl) = %#x, want %#x", got, want)
	}
	f0 := Flow{ProtoTCP, [4]byte{10, 77, 0, 10}, [4]byte{203, 0, 113, 10}, 40000, 443}
	if got, want := KeyHash(AffinityFlow, &f0), uint64(goldenKey); got != want {
		t.Errorf("KeyHash(flow, %v) = %#x, want %#x", f0, got, want)
	}
	// Flow i: tcp 10.77.0.(10+i%4):(40000+i) -> 203.0.113.10:443; one letter
	// per flow: the first letter of the chosen uplink.
	p := mustNew(t, []Uplink{up("adsl", 1, 8), up("4g", 1, 6), up("3g", 1, 3)}, AffinityFlow, nil)
	var b strings.Builder
	for i := 0; i < 48; i++ {
		f := Flow{ProtoTCP, [4]byte{10, 77, 0, byte(10 + i%4)}, [4]byte{203, 0, 113, 10}, uint16(40000 + i), 443}
		b.WriteString(choice(p, f)[:1])
	}
	if got := b.String(); got != goldenChoices {
		t.Errorf("choices\n got %s\nwant %s", got, goldenChoices)
	}
}

const (
	goldenNameHash = 0xc2b8f4f08d002eca
	goldenKey      = 0x1e2b84566bb575f6
	goldenChoices  = "a4333444aa4aa43aa4444a3a444a433a3443a344444aa34a"
)

func TestTiers(t *testing.T) {
	fs := randomFlows(2000, 4)
	tests := []struct {
		name    string
		uplinks []Uplink
		want    map[string]bool // uplinks that may be chosen
	}{
		{"tier 1 up", []Uplink{up("a", 1, 1), up("b", 1, 1), up("c", 2, 5), up("d", 3, 5)}, map[string]bool{"a": true, "b": true}},
		{"tier 1 half down", []Uplink{up("a", 1, 1), {Name: "b", Tier: 1, Weight: 1}, up("c", 2, 5)}, map[string]bool{"a": true}},
		{"tier 1 down", []Uplink{{Name: "a", Tier: 1, Weight: 1}, {Name: "b", Tier: 1, Weight: 1}, up("c", 2, 5), up("e", 2, 1), up("d", 3, 5)}, map[string]bool{"c": true, "e": true}},
		{"tiers 1,2 down", []Uplink{{Name: "a", Tier: 1, Weight: 1}, {Name: "c", Tier: 2, Weight: 1}, up("d", 3, 5)}, map[string]bool{"d": true}},
		{"weight 0 never", []Uplink{up("a", 1, 0), up("b", 1, 1), up("c", 2, 1)}, map[string]bool{"b": true}},
		{"weight 0 tier skipped", []Uplink{up("a", 1, 0), up("c", 2, 1), up("d", 2, 1)}, map[string]bool{"c": true, "d": true}},
		{"tier order not slice order", []Uplink{up("low", 3, 9), up("high", 1, 1)}, map[string]bool{"high": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, tt.uplinks, AffinityFlow, nil)
			seen := map[string]int{}
			for _, f := range fs {
				d := p.Choose(f)
				n := choice(p, f)
				if !tt.want[n] {
					t.Fatalf("Choose(%v) = %q (%+v), want one of %v", f, n, d, tt.want)
				}
				if d.Tier != p.uplinks[d.Uplink].Tier {
					t.Fatalf("Decision.Tier = %d, uplink tier %d", d.Tier, p.uplinks[d.Uplink].Tier)
				}
				seen[n]++
			}
			for n := range tt.want {
				if seen[n] == 0 {
					t.Errorf("%s never chosen (seen %v)", n, seen)
				}
			}
		})
	}
}

func TestNoUplink(t *testing.T) {
	p := mustNew(t, []Uplink{{Name: "a", Tier: 1, Weight: 1}, up("b", 2, 0)}, AffinityFlow, nil)
	d := p.Choose(randomFlows(1, 5)[0])
	if want := (Decision{Uplink: -1, Rule: -1, Reason: ReasonNoUplink}); d != want {
		t.Errorf("Choose = %+v, want %+v", d, want)
	}
}

// TestMinimalDisruption: removing one uplink (from the configuration, or by
// marking it unavailable) moves only the flows that were on it, and those
// spread over the others by weight; adding one moves flows only onto it.
func TestMinimalDisruption(t *testing.T) {
	all := []Uplink{up("adsl", 1, 8), up("4g", 1, 6), up("3g", 1, 3), up("sat", 1, 3)}
	before := mustNew(t, all, AffinityFlow, nil)
	removed := mustNew(t, []Uplink{all[0], all[1], all[3]}, AffinityFlow, nil) // without 3g
	down, err := before.WithAvailability([]bool{true, true, false, true})
	if err != nil {
		t.Fatal(err)
	}
	fs := randomFlows(50000, 6)
	for _, after := range []*Policy{removed, down} {
		moved, was := 0, 0
		dest := map[string]int{}
		for _, f := range fs {
			b, a := choice(before, f), choice(after, f)
			if b == "3g" {
				was++
				dest[a]++
				continue
			}
			if a != b {
				moved++
			}
		}
		if moved != 0 {
			t.Errorf("%d flows not on 3g moved", moved)
		}
		if dest["3g"] != 0 || dest[""] != 0 {
			t.Errorf("flows of 3g went to %v", dest)
		}
		// Its flows spread by weight: adsl 8/17, 4g 6/17, sat 3/17 (loose
		// bound: these are only ~9,000 flows).
		for n, w := range map[string]float64{"adsl": 8, "4g": 6, "sat": 3} {
			got, want := float64(dest[n])/float64(was), w/17
			if math.Abs(got-want)/want > 0.1 {
				t.Errorf("3g's flows to %s: %.3f, want %.3f ±10%%", n, got, want)
			}
		}
	}
	// Adding an uplink back moves flows only onto it.
	for _, f := range fs {
		a, b := choice(removed, f), choice(before, f)
		if a != b && b != "3g" {
			t.Fatalf("flow %v moved from %s to %s when 3g was added", f, a, b)
		}
	}
}

func TestAffinity(t *testing.T) {
	us := []Uplink{up("a", 1, 1), up("b", 1, 1), up("c", 1, 1), up("d", 1, 1)}
	r := rand.New(rand.NewPCG(9, 9))
	t.Run("src-dst", func(t *testing.T) {
		p := mustNew(t, us, AffinitySrcDst, nil)
		used := map[string]bool{}
		for pair := 0; pair < 200; pair++ {
			src := [4]byte{10, 77, 0, byte(pair)}
			dst := [4]byte{203, 0, 113, byte(r.IntN(256))}
			first := ""
			for i := 0; i < 50; i++ {
				f := Flow{Proto: []uint8{ProtoTCP, ProtoUDP, ProtoICMP}[i%3], Src: src, Dst: dst, SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32())}
				got := choice(p, f)
				if first == "" {
					first = got
				} else if got != first {
					t.Fatalf("pair %v->%v: %s then %s", src, dst, first, got)
				}
			}
			used[first] = true
		}
		if len(used) != len(us) {
			t.Errorf("only %v used over 200 pairs", used)
		}
	})
	t.Run("src", func(t *testing.T) {
		p := mustNew(t, us, AffinitySrc, nil)
		used := map[string]bool{}
		for h := 0; h < 200; h++ {
			src := [4]byte{10, 77, byte(h >> 8), byte(h)}
			first := ""
			for i := 0; i < 50; i++ {
				d := r.Uint32()
				f := Flow{Proto: ProtoTCP, Src: src, Dst: [4]byte{byte(d >> 24), byte(d >> 16), byte(d >> 8), byte(d)}, SrcPort: uint16(r.Uint32()), DstPort: 443}
				got := choice(p, f)
				if first == "" {
					first = got
				} else if got != first {
					t.Fatalf("src %v: %s then %s", src, first, got)
				}
			}
			used[first] = true
		}
		if len(used) != len(us) {
			t.Errorf("only %v used over 200 sources", used)
		}
	})
	t.Run("flow spreads ports", func(t *testing.T) {
		p := mustNew(t, us, AffinityFlow, nil)
		used := map[string]bool{}
		for port := 0; port < 200; port++ {
			used[choice(p, Flow{Proto: ProtoTCP, Src: [4]byte{10, 77, 0, 10}, Dst: [4]byte{203, 0, 113, 10}, SrcPort: uint16(40000 + port), DstPort: 443})] = true
		}
		if len(used) != len(us) {
			t.Errorf("one src/dst pair used only %v with flow affinity", used)
		}
	})
}

func TestRules(t *testing.T) {
	us := []Uplink{up("adsl", 1, 8), up("4g", 2, 6), up("3g", 3, 3), up("vpn", 1, 1)}
	rules := []Rule{
		{Name: "voip", Src: []netip.Prefix{netip.MustParsePrefix("10.77.0.50/32")}, Proto: ProtoUDP,
			DstPorts: []PortRange{{5060, 5060}, {10000, 20000}}, Uplinks: []string{"adsl"}},
		{Name: "bank", Dst: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, Uplinks: []string{"4g", "3g"}},
		{Name: "guests", Src: []netip.Prefix{netip.MustParsePrefix("10.77.1.0/24")}, Uplinks: []string{"adsl", "4g"}},
		{Name: "web", DstPorts: []PortRange{{443, 443}}, Uplinks: []string{"vpn"}},
	}
	p := mustNew(t, us, AffinityFlow, rules)
	a := func(s string) [4]byte { return netip.MustParseAddr(s).As4() }
	tests := []struct {
		name   string
		f      Flow
		rule   int
		allow  []string
		reason Reason
	}{
		{"voip sip", Flow{ProtoUDP, a("10.77.0.50"), a("203.0.113.10"), 5060, 5060}, 0, []string{"adsl"}, ReasonRuleOnlyCandidate},
		{"voip rtp", Flow{ProtoUDP, a("10.77.0.50"), a("203.0.113.10"), 30000, 15000}, 0, []string{"adsl"}, ReasonRuleOnlyCandidate},
		{"voip wrong port", Flow{ProtoUDP, a("10.77.0.50"), a("203.0.113.10"), 30000, 9999}, -1, nil, ReasonWeighted},
		{"voip wrong proto", Flow{ProtoTCP, a("10.77.0.50"), a("203.0.113.10"), 30000, 5060}, -1, nil, ReasonWeighted},
		{"voip wrong src", Flow{ProtoUDP, a("10.77.0.51"), a("203.0.113.10"), 30000, 5060}, -1, nil, ReasonWeighted},
		{"bank any proto", Flow{ProtoICMP, a("10.77.0.9"), a("198.51.100.7"), 1, 0}, 1, []string{"4g"}, ReasonRuleOnlyCandidate},
		{"guests", Flow{ProtoTCP, a("10.77.1.9"), a("203.0.113.10"), 1000, 80}, 2, []string{"adsl"}, ReasonRuleOnlyCandidate},
		{"web tcp", Flow{ProtoTCP, a("10.77.0.9"), a("203.0.113.10"), 1000, 443}, 3, []string{"vpn"}, ReasonRuleOnlyCandidate},
		{"web quic", Flow{ProtoUDP, a("10.77.0.9"), a("203.0.113.10"), 1000, 443}, 3, []string{"vpn"}, ReasonRuleOnlyCandidate},
		{"port rule skips icmp", Flow{ProtoICMP, a("10.77.0.9"), a("203.0.113.10"), 1000, 443}, -1, nil, ReasonWeighted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Choose(tt.f)
			if d.Rule != tt.rule || d.Reason != tt.reason {
				t.Errorf("Choose(%v) = %+v, want rule %d reason %v", tt.f, d, tt.rule, tt.reason)
			}
			if tt.allow != nil {
				got := choice(p, tt.f)
				ok := false
				for _, n := range tt.allow {
					ok = ok || n == got
				}
				if !ok {
					t.Errorf("Choose(%v) = %s, want one of %v", tt.f, got, tt.allow)
				}
			}
		})
	}
	t.Run("weighted within rule", func(t *testing.T) {
		p := mustNew(t, []Uplink{up("a", 1, 1), up("b", 1, 1), up("c", 1, 1)}, AffinityFlow,
			[]Rule{{Name: "ab", Uplinks: []string{"a", "b"}, Proto: ProtoTCP}})
		seen := map[string]bool{}
		for _, f := range randomFlows(1000, 8) {
			d := p.Choose(f)
			want := ReasonWeighted
			if f.Proto == ProtoTCP {
				want = ReasonRuleWeighted
				seen[choice(p, f)] = true
			}
			if d.Reason != want {
				t.Fatalf("Choose(%v).Reason = %v, want %v", f, d.Reason, want)
			}
		}
		if !seen["a"] || !seen["b"] || seen["c"] {
			t.Errorf("rule ab chose %v", seen)
		}
	})
	t.Run("allowed uplinks down", func(t *testing.T) {
		q, err := p.WithAvailability([]bool{false, true, true, true})
		if err != nil {
			t.Fatal(err)
		}
		f := tests[0].f
		if d, want := q.Choose(f), (Decision{Uplink: -1, Rule: 0, Reason: ReasonNoUplink}); d != want {
			t.Errorf("Choose(%v) with adsl down = %+v, want %+v", f, d, want)
		}
		// A rule falls back through its own uplinks' tiers.
		q, _ = p.WithAvailability([]bool{true, false, true, true})
		f = tests[5].f
		if got := choice(q, f); got != "3g" {
			t.Errorf("bank with 4g down: %s, want 3g", got)
		}
	})
}

func TestNewErrors(t *testing.T) {
	ok := []Uplink{up("a", 1, 1), up("b", 2, 1)}
	many := make([]Uplink, MaxUplinks+1)
	for i := range many {
		many[i] = up(fmt.Sprint("u", i), 1, 1)
	}
	tests := []struct {
		name    string
		uplinks []Uplink
		aff     Affinity
		rules   []Rule
		want    string
	}{
		{"no uplinks", nil, AffinityFlow, nil, "no uplinks"},
		{"too many", many, AffinityFlow, nil, "at most 64"},
		{"empty name", []Uplink{up("", 1, 1)}, AffinityFlow, nil, "empty name"},
		{"duplicate", []Uplink{up("a", 1, 1), up("a", 2, 1)}, AffinityFlow, nil, `name "a" already used`},
		{"affinity", ok, Affinity(9), nil, "invalid affinity"},
		{"unknown uplink", ok, AffinityFlow, []Rule{{Name: "r", Uplinks: []string{"c"}}}, `rule 0 (r): unknown uplink "c"`},
		{"no uplinks in rule", ok, AffinityFlow, []Rule{{Name: "r"}}, "no allowed uplinks"},
		{"ipv6 prefix", ok, AffinityFlow, []Rule{{Src: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, Uplinks: []string{"a"}}}, "not IPv4"},
		{"invalid prefix", ok, AffinityFlow, []Rule{{Dst: []netip.Prefix{{}}, Uplinks: []string{"a"}}}, "not IPv4"},
		{"reversed ports", ok, AffinityFlow, []Rule{{DstPorts: []PortRange{{10, 5}}, Uplinks: []string{"a"}}}, "reversed"},
		{"ports with icmp", ok, AffinityFlow, []Rule{{Proto: ProtoICMP, DstPorts: []PortRange{{10, 50}}, Uplinks: []string{"a"}}}, "need protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.uplinks, tt.aff, tt.rules)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want error containing %q", err, tt.want)
			}
		})
	}
	p := mustNew(t, ok, AffinityFlow, nil)
	if _, err := p.WithAvailability([]bool{true}); err == nil {
		t.Error("WithAvailability with the wrong length: no error")
	}
}

func TestNewCopiesInputs(t *testing.T) {
	us := []Uplink{up("a", 1, 1), up("b", 1, 1)}
	rules := []Rule{{Name: "r", Uplinks: []string{"a"}, Proto: ProtoTCP}}
	p := mustNew(t, us, AffinityFlow, rules)
	f := randomFlows(1, 2)[0]
	before := p.Choose(f)
	us[0].Available, us[1].Available = false, false
	rules[0].Uplinks[0] = "b"
	if got := p.Choose(f); got != before {
		t.Errorf("Choose changed after the caller modified its inputs: %+v, was %+v", got, before)
	}
}

func TestParseAffinity(t *testing.T) {
	for _, a := range []Affinity{AffinityFlow, AffinitySrcDst, AffinitySrc} {
		got, err := ParseAffinity(a.String())
		if err != nil || got != a {
			t.Errorf("ParseAffinity(%q) = %v, %v; want %v", a.String(), got, err, a)
		}
		var u Affinity
		b, _ := a.MarshalText()
		if err := u.UnmarshalText(b); err != nil || u != a {
			t.Errorf("text round trip of %v: %v, %v", a, u, err)
		}
	}
	for _, s := range []string{"", "Flow", "dst", "src_dst"} {
		if _, err := ParseAffinity(s); err == nil {
			t.Errorf("ParseAffinity(%q): no error", s)
		}
	}
	if s := Affinity(7).String(); s != "Affinity(7)" {
		t.Errorf("Affinity(7).String() = %q", s)
	}
	if s := ReasonRuleWeighted.String(); s != "rule-weighted" {
		t.Errorf("ReasonRuleWeighted.String() = %q", s)
	}
}

func TestExplain(t *testing.T) {
	us := []Uplink{up("adsl", 1, 8), up("4g", 1, 6), {Name: "3g", Tier: 1, Weight: 3}, up("sat", 2, 3), up("zero", 1, 0)}
	rules := []Rule{{Name: "no-sat", Proto: ProtoICMP, Uplinks: []string{"adsl", "4g", "3g", "zero"}}}
	p := mustNew(t, us, AffinityFlow, rules)
	for _, f := range randomFlows(500, 11) {
		e := p.Explain(f)
		d := p.Choose(f)
		if e.Decision != d {
			t.Fatalf("Explain(%v).Decision = %+v, Choose = %+v", f, e.Decision, d)
		}
		if len(e.Candidates) != len(us) {
			t.Fatalf("%d candidates, want %d", len(e.Candidates), len(us))
		}
		w := e.Candidates[d.Uplink]
		if w.Verdict != VerdictChosen {
			t.Fatalf("winner verdict %v", w.Verdict)
		}
		for _, c := range e.Candidates {
			if c.Verdict == VerdictLowerScore && c.Score >= w.Score {
				t.Fatalf("%s lost with score %v >= winner %v", c.Name, c.Score, w.Score)
			}
		}
		want := map[string]Verdict{"3g": VerdictUnavailable, "zero": VerdictZeroWeight, "sat": VerdictHigherTier}
		if f.Proto == ProtoICMP {
			want["sat"] = VerdictNotAllowed
		}
		for _, c := range e.Candidates {
			if v, ok := want[c.Name]; ok && c.Verdict != v {
				t.Fatalf("%s verdict %v, want %v", c.Name, c.Verdict, v)
			}
		}
	}
	e := p.Explain(Flow{ProtoTCP, [4]byte{10, 77, 0, 10}, [4]byte{203, 0, 113, 10}, 40000, 443})
	s := e.String()
	for _, want := range []string{"flow tcp 10.77.0.10:40000 -> 203.0.113.10:443", "no rule matched", "highest flow score in tier 1", "unavailable", "weight 0", "higher tier"} {
		if !strings.Contains(s, want) {
			t.Errorf("Explanation.String() lacks %q:\n%s", want, s)
		}
	}
	down, _ := p.WithAvailability([]bool{false, false, false, true, true})
	e = down.Explain(Flow{ProtoTCP, [4]byte{10, 77, 0, 10}, [4]byte{203, 0, 113, 10}, 40000, 443})
	if why := e.Why(); !strings.Contains(why, "every lower tier is unavailable; sat is the only eligible uplink in tier 2") {
		t.Errorf("Why() = %q", why)
	}
	e = down.Explain(Flow{Proto: ProtoICMP})
	if why := e.Why(); !strings.Contains(why, "rule 0 (no-sat) matched; no allowed uplink") {
		t.Errorf("Why() = %q", why)
	}
}

func TestChooseZeroAllocs(t *testing.T) {
	us := []Uplink{up("adsl", 1, 8), up("4g", 1, 6), up("3g", 2, 3)}
	rules := []Rule{{Name: "voip", Src: []netip.Prefix{netip.MustParsePrefix("10.77.0.50/32")}, Proto: ProtoUDP, DstPorts: []PortRange{{5060, 5060}}, Uplinks: []string{"adsl"}}}
	p := mustNew(t, us, AffinityFlow, rules)
	fs := randomFlows(64, 12)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		_ = p.Choose(fs[i%len(fs)])
		i++
	})
	if allocs != 0 {
		t.Errorf("Choose: %v allocs per run, want 0", allocs)
	}
}

var sink Decision

func BenchmarkChoose(b *testing.B) {
	cases := []struct {
		name  string
		us    []Uplink
		rules []Rule
	}{
		{"3uplinks", []Uplink{up("adsl", 1, 8), up("4g", 1, 6), up("3g", 1, 3)}, nil},
		{"3tiers", []Uplink{up("adsl", 1, 8), up("4g", 2, 6), up("3g", 3, 3)}, nil},
		{"3uplinks+4rules", []Uplink{up("adsl", 1, 8), up("4g", 1, 6), up("3g", 1, 3)}, []Rule{
			{Src: []netip.Prefix{netip.MustParsePrefix("10.77.9.0/24")}, Uplinks: []string{"adsl"}},
			{Dst: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, Uplinks: []string{"4g"}},
			{Proto: ProtoUDP, DstPorts: []PortRange{{5060, 5060}}, Uplinks: []string{"adsl"}},
			{Proto: ProtoICMP, Uplinks: []string{"3g"}},
		}},
	}
	var big []Uplink
	for i := 0; i < 32; i++ {
		big = append(big, up(fmt.Sprint("u", i), 1, uint32(i+1)))
	}
	cases = append(cases, struct {
		name  string
		us    []Uplink
		rules []Rule
	}{"32uplinks", big, nil})
	fs := randomFlows(1024, 13)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			p := mustNew(b, c.us, AffinityFlow, c.rules)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sink = p.Choose(fs[i&1023])
				i++
			}
		})
	}
}

// TestLn checks the portable logarithm against math.Log over the whole
// range of unitInterval.
func TestLn(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(u float64) {
		got, want := ln(u), math.Log(u)
		if ulps := math.Abs(got-want) / math.Abs(math.Nextafter(want, 0)-want); ulps > 1 {
			t.Fatalf("ln(%v) = %v, math.Log = %v (%v ulp)", u, got, want, ulps)
		}
	}
	check(unitInterval(0))
	check(unitInterval(math.MaxUint64))
	check(0.5)
	check(math.Sqrt2 / 2)
	for i := 0; i < 1000000; i++ {
		check(unitInterval(r.Uint64()))
		check(unitInterval(r.Uint64() >> r.UintN(64))) // small u too
	}
}
