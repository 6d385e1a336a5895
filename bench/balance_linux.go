package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// BalanceTargetPP is the balance target: every uplink's share of the flows
// within this many percentage points of its weight's share.
const BalanceTargetPP = 2.0

// Host sets of the balance benchmark (BalanceResult.Hosts).
const (
	// HostsMany: the flows come from many LAN source addresses
	// (BalanceOptions.Sources), flow j from source j mod Sources.
	HostsMany = "many"
	// HostsOne: every flow comes from one LAN address.
	HostsOne = "one"
)

// BalanceOptions tune Balance. Zero fields take the defaults.
type BalanceOptions struct {
	// Flows is the number of flows of each case (default 10000): new UDP
	// flows, one datagram each (its echo tells the uplink), to the lab's
	// 20 servers, flow j to server j mod 20.
	Flows int
	// Weights are the uplinks' weights, one per uplink, 2..8 uplinks
	// (default 8, 6, 3: the reference setup's).
	Weights []int
	// Sources is the number of LAN source addresses of the HostsMany cases,
	// 2..252 (default 251: coprime to the 20 servers, so that the flows
	// cover Sources × 20 distinct source–server pairs).
	Sources int
	// Timeout bounds each reply (default 1s).
	Timeout time.Duration
	// Concurrency is the number of flows in progress at once (default 256).
	Concurrency int
	// Routers restricts the routers measured (RouterWanflow,
	// RouterKernelL3, RouterKernelL4); empty means all three.
	Routers []string
	// Affinities restricts wanflow's affinities (flow, src-dst, src);
	// empty means all three.
	Affinities []string
}

func (o *BalanceOptions) defaults() error {
	if o.Flows <= 0 {
		o.Flows = 10000
	}
	if len(o.Weights) == 0 {
		o.Weights = []int{8, 6, 3}
	}
	if len(o.Weights) < 2 || len(o.Weights) > 8 {
		return fmt.Errorf("bench: balance: %d uplinks, want 2..8", len(o.Weights))
	}
	for _, w := range o.Weights {
		if w < 1 || w > 256 {
			return fmt.Errorf("bench: balance: weight %d outside 1..256", w)
		}
	}
	if o.Sources == 0 {
		o.Sources = 251
	}
	if o.Sources < 2 || o.Sources > 252 {
		return fmt.Errorf("bench: balance: %d source addresses, want 2..252", o.Sources)
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 256
	}
	if len(o.Routers) == 0 {
		o.Routers = []string{RouterKernelL3, RouterKernelL4, RouterWanflow}
	}
	for _, r := range o.Routers {
		if r != RouterWanflow && r != RouterKernelL3 && r != RouterKernelL4 {
			return fmt.Errorf("bench: balance: unknown router %q", r)
		}
	}
	if len(o.Affinities) == 0 {
		o.Affinities = []string{"flow", "src-dst", "src"}
	}
	for _, a := range o.Affinities {
		if a != "flow" && a != "src-dst" && a != "src" {
			return fmt.Errorf("bench: balance: unknown affinity %q", a)
		}
	}
	return nil
}

// BalanceResult is how one router with one affinity spread one case's new
// flows over the uplinks.
type BalanceResult struct {
	// Router is RouterWanflow, RouterKernelL3 or RouterKernelL4.
	Router string `json:"router"`
	// Affinity is wanflow's affinity (flow, src-dst, src); for the kernel,
	// the fields its hash covers: src-dst (policy 0) or flow (policy 1).
	Affinity string `json:"affinity"`
	// Hosts is HostsMany or HostsOne; Sources the number of LAN source
	// addresses.
	Hosts   string `json:"hosts"`
	Sources int    `json:"sources"`
	// Flows is the number of flows counted (answered through an uplink);
	// Failed those that were not.
	Flows  int `json:"flows"`
	Failed int `json:"failed"`
	// Weights are the uplinks' weights; WantPct their shares in percent.
	Weights []int     `json:"weights"`
	WantPct []float64 `json:"want_pct"`
	// PerUplink counts the flows per uplink (index = uplink index);
	// SharePct are their shares in percent.
	PerUplink []int     `json:"per_uplink"`
	SharePct  []float64 `json:"share_pct"`
	// MaxDevPP is the largest |share - weight share| in percentage points.
	MaxDevPP float64 `json:"max_dev_pp"`
	// ChiSquare is Pearson's statistic of PerUplink against the weights,
	// with DF = uplinks-1 degrees of freedom; PValue is the probability
	// that a fair weighted choice per flow deviates at least as much. It
	// treats flows as independent: see Keys.
	ChiSquare float64 `json:"chi_square"`
	DF        int     `json:"df"`
	PValue    float64 `json:"p_value"`
	// Keys is the number of distinct affinity keys among the flows (the
	// independent choices the router made): the 5-tuple for affinity flow,
	// the source–destination pair for src-dst, the source for src.
	// KeysPerUplink counts them per uplink and KeyPValue is the chi-square
	// p-value of those counts against the weights: whether the choices
	// themselves are fair, however few.
	Keys          int     `json:"keys"`
	KeysPerUplink []int   `json:"keys_per_uplink"`
	KeyPValue     float64 `json:"key_p_value"`
	// SigmaPP is the standard deviation, in percentage points, of the
	// largest uplink share when Keys independent fair choices carry equal
	// numbers of flows: the spread to expect from the key count alone.
	SigmaPP float64 `json:"sigma_pp"`
	// WithinTarget reports MaxDevPP <= BalanceTargetPP.
	WithinTarget bool `json:"within_target"`
	// Note explains a result that the target does not fit (too few keys
	// for ±2 points to be expected; one key: one uplink by design).
	Note string `json:"note,omitempty"`
	// FirstError is the first failed flow's error, empty when none failed.
	FirstError string `json:"first_error,omitempty"`
}

// BalanceHeader is the header of the table whose rows Row returns
// (tab-separated columns, for a text/tabwriter).
const BalanceHeader = "router\taffinity\thosts\tflows\tfailed\tkeys\tshares %\tweights %\tmax dev pp\tchi²\tp\tkey p\t1σ pp\t±2 pp\t"

// Row formats the result as a table row under BalanceHeader.
func (r BalanceResult) Row() string {
	within := "yes"
	if !r.WithinTarget {
		within = "no"
		if r.Note != "" {
			within = "no (expected)"
		}
	}
	return fmt.Sprintf("%s\t%s\t%s (%d)\t%d\t%d\t%d\t%s\t%s\t%.2f\t%.1f\t%.3f\t%.3f\t%.2f\t%s\t",
		r.Router, r.Affinity, r.Hosts, r.Sources, r.Flows, r.Failed, r.Keys, balPcts(r.SharePct), balPcts(r.WantPct),
		r.MaxDevPP, r.ChiSquare, r.PValue, r.KeyPValue, r.SigmaPP, within)
}

// String formats the result on one line.
func (r BalanceResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s affinity %s, %s (%d sources): %d flows (%d failed), %d keys; shares %s%% for weights %s%%; max deviation %.2f pp (target ±%.0f: %v); chi²=%.2f df=%d p=%.3f; key p=%.3f; 1σ %.2f pp",
		r.Router, r.Affinity, balHosts(r.Hosts), r.Sources, r.Flows, r.Failed, r.Keys, balPcts(r.SharePct), balPcts(r.WantPct),
		r.MaxDevPP, BalanceTargetPP, r.WithinTarget, r.ChiSquare, r.DF, r.PValue, r.KeyPValue, r.SigmaPP)
	if r.Note != "" {
		fmt.Fprintf(&b, "; %s", r.Note)
	}
	if r.FirstError != "" {
		fmt.Fprintf(&b, "; first error: %s", r.FirstError)
	}
	return b.String()
}

// balHosts names a host set in prose.
func balHosts(hosts string) string {
	if hosts == HostsOne {
		return "one host"
	}
	return hosts + " hosts"
}

// balPcts formats percentages as a/b/c.
func balPcts(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(s, "/")
}

// Balance measures how each router spreads new flows over the uplinks
// against their weights, in one lab of len(o.Weights) uplinks: for the
// kernel's multipath route (RouterKernelL3, RouterKernelL4) and for wanflow
// (bin; probes off) with each affinity, o.Flows new UDP flows from many LAN
// source addresses (HostsMany: one LAN host with o.Sources addresses) and
// o.Flows from one address (HostsOne). wanflow is started afresh for each
// case, so that every case starts with empty flow table and NAT port pools.
// Affinity src with one host puts every flow on one uplink by design; the
// result says so in its Note.
//
// Progress lines go to w. Balance needs root; it removes the lab and stops
// the daemon also on error and when ctx ends.
func Balance(ctx context.Context, bin string, o BalanceOptions, w io.Writer) ([]BalanceResult, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: balance needs root: it builds network namespaces")
	}
	const extra = 150 // lab.Config.ExtraHostAddrs' maximum
	l, err := lab.Up(ctx, lab.Config{Uplinks: make([]lab.UplinkSpec, len(o.Weights)), ExtraHostAddrs: min(extra, o.Sources-1)})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	sources := append([]netip.Addr{l.HostAddrs[0]}, l.HostExtraAddrs...)
	if n := o.Sources - len(sources); n > 0 {
		free := l.FreeLANAddrs()
		if n > len(free) {
			return nil, fmt.Errorf("bench: balance: %d source addresses, the LAN has room for %d", o.Sources, len(sources)+len(free))
		}
		if err := l.AddHostAddrs(0, free[:n]); err != nil {
			return nil, err
		}
		sources = append(sources, free[:n]...)
	}
	if err := l.StartServers(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "  lab: %d uplinks, weights %v; %d UDP flows per case, from %d LAN addresses or from one\n", len(o.Weights), o.Weights, o.Flows, len(sources))

	hostSets := []struct {
		name string
		srcs []netip.Addr
	}{{HostsMany, sources}, {HostsOne, sources[:1]}}
	var out []BalanceResult
	measure := func(router, affinity string, srcs []netip.Addr, hosts string) error {
		fmt.Fprintf(w, "  %s affinity %s, %s: %d flows...\n", router, affinity, balHosts(hosts), o.Flows)
		flows, err := labclient.Run(ctx, l.Hosts[0], labclient.Config{
			UDPFlows:    o.Flows,
			Sources:     srcs,
			Timeout:     o.Timeout,
			Concurrency: o.Concurrency,
		})
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		r := balCount(l, flows, o.Weights, affinity)
		r.Router, r.Hosts, r.Sources = router, hosts, len(srcs)
		fmt.Fprintf(w, "    %v\n", r)
		out = append(out, r)
		return nil
	}
	for _, router := range o.Routers {
		switch router {
		case RouterKernelL3, RouterKernelL4:
			mode, affinity := lab.BaselineMultipathL3, "src-dst"
			if router == RouterKernelL4 {
				mode, affinity = lab.BaselineMultipathL4, "flow"
			}
			for _, hs := range hostSets {
				undo, err := l.KernelBaseline(mode, o.Weights)
				if err != nil {
					return out, err
				}
				err = measure(router, affinity, hs.srcs, hs.name)
				if uerr := undo(); uerr != nil && err == nil {
					err = uerr
				}
				if err != nil {
					return out, fmt.Errorf("bench: balance: %s: %w", router, err)
				}
			}
		case RouterWanflow:
			for _, affinity := range o.Affinities {
				for _, hs := range hostSets {
					d, err := startStickDaemon(ctx, l, bin, labrouter.Options{Weights: o.Weights, Affinity: affinity})
					if err != nil {
						return out, err
					}
					err = measure(router, affinity, hs.srcs, hs.name)
					if serr := d.stop(); serr != nil && err == nil {
						err = serr
					}
					if err != nil {
						return out, fmt.Errorf("bench: balance: %s affinity %s: %w", router, affinity, err)
					}
				}
			}
		}
	}
	return out, nil
}

// balKey returns flow f's affinity key.
func balKey(f *labclient.Flow, affinity string) string {
	switch affinity {
	case "src":
		return f.Local.Addr().String()
	case "src-dst":
		return f.Local.Addr().String() + ">" + f.Target.Addr().String()
	}
	return string(f.Proto) + " " + f.Local.String() + ">" + f.Target.String()
}

// balCount counts the flows per uplink (by the source address the server
// saw) and computes the statistics.
func balCount(l *lab.Lab, flows []labclient.Flow, weights []int, affinity string) BalanceResult {
	r := BalanceResult{Affinity: affinity, Weights: slices.Clone(weights), PerUplink: make([]int, len(weights)), KeysPerUplink: make([]int, len(weights))}
	keys := map[string]bool{}
	for i := range flows {
		f := &flows[i]
		up := -1
		if f.OK() && len(f.Seen) > 0 {
			up = slices.IndexFunc(l.Uplinks, func(u lab.UplinkInfo) bool { return u.Addr == f.Seen[0].Addr() })
		}
		if up < 0 {
			r.Failed++
			if r.FirstError == "" {
				if f.Err != nil {
					r.FirstError = f.Err.Error()
				} else {
					r.FirstError = fmt.Sprintf("%s flow %d: seen from %v, not an uplink address", f.Proto, f.Index, f.Seen)
				}
			}
			continue
		}
		r.Flows++
		r.PerUplink[up]++
		if k := balKey(f, affinity); !keys[k] {
			keys[k] = true
			r.Keys++
			r.KeysPerUplink[up]++
		}
	}
	balStats(&r)
	return r
}

// balStats fills in the shares and statistics of r from r.Weights,
// r.PerUplink, r.Keys and r.KeysPerUplink.
func balStats(r *BalanceResult) {
	wsum := 0
	for _, w := range r.Weights {
		wsum += w
	}
	r.WantPct = make([]float64, len(r.Weights))
	r.SharePct = make([]float64, len(r.Weights))
	r.MaxDevPP, r.SigmaPP = 0, 0
	for i, w := range r.Weights {
		p := float64(w) / float64(wsum)
		r.WantPct[i] = 100 * p
		if r.Flows > 0 {
			r.SharePct[i] = 100 * float64(r.PerUplink[i]) / float64(r.Flows)
		}
		r.MaxDevPP = max(r.MaxDevPP, math.Abs(r.SharePct[i]-r.WantPct[i]))
		if r.Keys > 0 {
			r.SigmaPP = max(r.SigmaPP, 100*math.Sqrt(p*(1-p)/float64(r.Keys)))
		}
	}
	r.ChiSquare, r.DF = balChiSquare(r.PerUplink, r.Weights)
	r.PValue = balChiSquareP(r.ChiSquare, r.DF)
	kchi, kdf := balChiSquare(r.KeysPerUplink, r.Weights)
	r.KeyPValue = balChiSquareP(kchi, kdf)
	r.WithinTarget = r.Flows > 0 && r.MaxDevPP <= BalanceTargetPP
	r.Note = ""
	switch {
	case r.Keys == 1:
		r.Note = "one affinity key: every flow on one uplink, as designed"
	case !r.WithinTarget && 2*r.SigmaPP > BalanceTargetPP:
		r.Note = fmt.Sprintf("only %d affinity keys: a share's 1σ is %.1f pp, so ±%.0f pp is not to be expected", r.Keys, r.SigmaPP, BalanceTargetPP)
	}
}

// balChiSquare returns Pearson's chi-square statistic of the observed counts
// against the shares of weights (one entry per category, all positive),
// and its degrees of freedom, len(observed)-1.
func balChiSquare(observed, weights []int) (chi2 float64, df int) {
	n, wsum := 0, 0
	for i := range observed {
		n += observed[i]
		wsum += weights[i]
	}
	if n == 0 || wsum == 0 {
		return 0, len(observed) - 1
	}
	for i, o := range observed {
		e := float64(n) * float64(weights[i]) / float64(wsum)
		d := float64(o) - e
		chi2 += d * d / e
	}
	return chi2, len(observed) - 1
}

// balChiSquareP returns the upper tail P(X >= x) of the chi-square
// distribution with df degrees of freedom: the regularized upper incomplete
// gamma function Q(df/2, x/2).
func balChiSquareP(x float64, df int) float64 {
	if df <= 0 {
		return 1 // one category: no deviation possible
	}
	return balGammaQ(float64(df)/2, x/2)
}

// balGammaQ is the regularized upper incomplete gamma function Q(a, x), by its
// series for x < a+1 and its continued fraction otherwise (Numerical
// Recipes §6.2).
func balGammaQ(a, x float64) float64 {
	const (
		eps   = 1e-15
		tiny  = 1e-300
		iters = 1000
	)
	if x <= 0 {
		return 1
	}
	lg, _ := math.Lgamma(a)
	front := math.Exp(-x + a*math.Log(x) - lg)
	if x < a+1 {
		sum, del, ap := 1/a, 1/a, a
		for range iters {
			ap++
			del *= x / ap
			sum += del
			if math.Abs(del) < math.Abs(sum)*eps {
				break
			}
		}
		return max(0, 1-sum*front)
	}
	b := x + 1 - a
	c, d := 1/tiny, 1/b
	h := d
	for i := 1; i <= iters; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = b + an/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < eps {
			break
		}
	}
	return front * h
}
