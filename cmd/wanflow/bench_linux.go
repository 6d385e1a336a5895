//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/wanflow/wanflow/bench"
	"github.com/wanflow/wanflow/bench/plot"
)

// benchScenarios are `wanflow bench`'s scenarios, in the order they run.
var benchScenarios = []string{"stickiness", "balance", "failover", "throughput", "dns", "restart"}

// benchResults is what `wanflow bench --json` prints and --out writes.
type benchResults struct {
	Machine    benchMachine             `json:"machine"`
	Stickiness []bench.StickinessResult `json:"stickiness,omitempty"`
	Balance    []bench.BalanceResult    `json:"balance,omitempty"`
	Failover   []bench.FailoverResult   `json:"failover,omitempty"`
	Throughput []bench.ThroughputResult `json:"throughput,omitempty"`
	Latency    []bench.LatencyResult    `json:"latency,omitempty"`
	FlowRate   []bench.FlowRateResult   `json:"flow_rate,omitempty"`
	Memory     *bench.MemoryResult      `json:"memory,omitempty"`
	DNS        []bench.DNSResult        `json:"dns,omitempty"`
	DNSPerf    []bench.DNSPerfResult    `json:"dnsperf,omitempty"`
	Restart    []bench.RestartResult    `json:"restart,omitempty"`
	Seconds    map[string]float64       `json:"seconds"` // run time per scenario
}

// benchMachine describes where the benchmark ran.
type benchMachine struct {
	Date   string `json:"date"`
	CPU    string `json:"cpu"`
	CPUs   int    `json:"cpus"`
	Memory string `json:"memory"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Commit string `json:"wanflow"`
}

func machine() benchMachine {
	m := benchMachine{Date: time.Now().UTC().Format("2006-01-02"), CPUs: runtime.NumCPU(), Go: runtime.Version(), Commit: version}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 2 {
			var kb float64
			fmt.Sscan(f[1], &kb)
			m.Memory = fmt.Sprintf("%.0f GiB", kb/(1<<20))
		}
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		var b []byte
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		m.Kernel = string(b)
	}
	return m
}

func cmdBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: wanflow bench [flags] [%s]...   (default: all, in this order; root)\n", strings.Join(benchScenarios, "|"))
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print the results as JSON instead of tables")
	dur := fs.Duration("duration", 5*time.Second, "length of each throughput measurement")
	gro := fs.Bool("gro", true, "GRO on the lab's uplink veths")
	out := fs.String("out", "", "directory for results.json and the SVG charts (failover, dns, throughput)")
	doc := fs.String("doc", "", "markdown file whose generated section (between the wanflow-bench markers) gets the results")
	profile := fs.String("cpuprofile", "", "CPU profile of the wanflow daemon during the throughput benchmark, to this file")
	// Flags may come before and after the scenario names.
	var names []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		args = fs.Args()[1:]
	}
	scen := map[string]bool{}
	for _, a := range names {
		found := false
		for _, s := range benchScenarios {
			found = found || a == s
		}
		if !found {
			return fmt.Errorf("bench: unknown scenario %q (%s)", a, strings.Join(benchScenarios, ", "))
		}
		scen[a] = true
	}
	if len(scen) == 0 {
		for _, s := range benchScenarios {
			scen[s] = true
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("bench: needs root (it builds network namespaces)")
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res := benchResults{Machine: machine(), Seconds: map[string]float64{}}
	w := os.Stderr
	for _, name := range benchScenarios {
		if !scen[name] {
			continue
		}
		start := time.Now()
		fmt.Fprintf(w, "== %s\n", name)
		var err error
		switch name {
		case "stickiness":
			fmt.Fprintln(w, "  N flows × K messages through wanflow and the kernel baselines; an uplink removed and re-added, weights changed, while they run")
			res.Stickiness, err = bench.Stickiness(ctx, bin, bench.StickinessOptions{}, w)
		case "balance":
			fmt.Fprintln(w, "  10,000 new flows per case against weights 8/6/3, per affinity, many hosts and one")
			res.Balance, err = bench.Balance(ctx, bin, bench.BalanceOptions{}, w)
		case "failover":
			fmt.Fprintln(w, "  a new flow every 10 ms and 40 established flows around faults on uplink 1; the reference setup's kernel multipath vs wanflow")
			res.Failover, err = bench.Failover(ctx, bin, w)
		case "throughput":
			fmt.Fprintln(w, "  LAN host → internet server: kernel forwarding + masquerade vs wanflow, same lab")
			o := bench.ThroughputOptions{Duration: *dur, GRO: *gro}
			if *profile != "" {
				abs, err := filepath.Abs(*profile)
				if err != nil {
					return err
				}
				o.RunArgs = []string{"-cpuprofile", abs}
			}
			if res.Throughput, err = bench.Throughput(ctx, bin, o, w); err != nil {
				break
			}
			if res.Latency, err = bench.Latency(ctx, bin, bench.LatencyOptions{}, w); err != nil {
				break
			}
			if res.FlowRate, err = bench.FlowRate(ctx, bin, bench.FlowRateOptions{}, w); err != nil {
				break
			}
			var m bench.MemoryResult
			if m, err = bench.FlowMemory(ctx, bin, bench.MemoryOptions{}, w); err == nil {
				res.Memory = &m
			}
		case "dns":
			fmt.Fprintln(w, "  DNS answers through failover (wanflow's forwarder vs the reference setup's resolv.conf), then queries per second")
			if res.DNS, err = bench.DNSFailover(ctx, bin, bench.DNSOptions{}, w); err != nil {
				break
			}
			res.DNSPerf, err = bench.DNSPerf(ctx, bin, bench.DNSPerfOptions{}, w)
		case "restart":
			fmt.Fprintln(w, "  20 TCP and 20 UDP flows, and new flows every 10 ms, through a planned restart (SIGTERM), a stop for good (SIGINT) and a crash (kill -9), each followed by a start")
			res.Restart, err = bench.Restart(ctx, bin, bench.RestartOptions{}, w)
		}
		if err != nil {
			return fmt.Errorf("bench %s: %w", name, err)
		}
		res.Seconds[name] = time.Since(start).Seconds()
		fmt.Fprintf(w, "   %s done in %.0f s\n", name, res.Seconds[name])
	}

	if *out != "" && len(scen) < len(benchScenarios) {
		// A subset of the scenarios: the others' results of an earlier
		// run in the same directory are kept.
		if old, err := os.ReadFile(filepath.Join(*out, "results.json")); err == nil {
			var prev benchResults
			if json.Unmarshal(old, &prev) == nil {
				res = mergeBench(res, prev, scen)
			}
		}
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if *out != "" {
		if err := writeBenchOut(*out, res, b); err != nil {
			return err
		}
	}
	if *doc != "" {
		if err := writeBenchDoc(*doc, *out, res); err != nil {
			return err
		}
	}
	if *asJSON {
		fmt.Println(string(b))
		return nil
	}
	for _, t := range benchTables(res) {
		fmt.Printf("\n%s\n", t.title)
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, t.header)
		for _, r := range t.rows {
			fmt.Fprintln(tw, r)
		}
		tw.Flush()
	}
	return nil
}

// mergeBench returns cur with the results of the scenarios that did not
// run (not in ran) taken from prev.
func mergeBench(cur, prev benchResults, ran map[string]bool) benchResults {
	for name, secs := range prev.Seconds {
		if !ran[name] {
			cur.Seconds[name] = secs
		}
	}
	if !ran["stickiness"] {
		cur.Stickiness = prev.Stickiness
	}
	if !ran["balance"] {
		cur.Balance = prev.Balance
	}
	if !ran["failover"] {
		cur.Failover = prev.Failover
	}
	if !ran["throughput"] {
		cur.Throughput, cur.Latency, cur.FlowRate, cur.Memory = prev.Throughput, prev.Latency, prev.FlowRate, prev.Memory
	}
	if !ran["dns"] {
		cur.DNS, cur.DNSPerf = prev.DNS, prev.DNSPerf
	}
	if !ran["restart"] {
		cur.Restart = prev.Restart
	}
	return cur
}

// benchTable is one table of results: a header and rows of tab-separated
// cells, printed aligned on the terminal and as markdown in the docs.
type benchTable struct {
	title, header string
	rows          []string
}

func benchTables(r benchResults) []benchTable {
	var ts []benchTable
	if len(r.Stickiness) > 0 {
		t := benchTable{title: "Stickiness: share of flows whose packets all left through one uplink", header: bench.StickinessHeader}
		for _, x := range r.Stickiness {
			t.rows = append(t.rows, x.Row())
		}
		ts = append(ts, t)
	}
	if len(r.Balance) > 0 {
		t := benchTable{title: "Balance: flows per uplink against weights 8/6/3", header: bench.BalanceHeader}
		for _, x := range r.Balance {
			t.rows = append(t.rows, x.Row())
		}
		ts = append(ts, t)
	}
	if len(r.Failover) > 0 {
		t := benchTable{title: "Failover: new flows (one every 10 ms) and 40 established flows around a fault on uplink 1",
			header: "router\tfault\tnew flows settled after\tnew flows failed (3 s)\tfailback after\tsurvivors disturbed\tTCP on the faulty uplink reset\tUDP on it resumed\t"}
		for _, x := range r.Failover {
			t.rows = append(t.rows, fmt.Sprintf("%s\t%s\t%s\t%.1f%%\t%s\t%d of %d\t%d of %d\t%d of %d\t", x.Router, x.Fault, msOrNever(x.SettledMs), x.FailedPct,
				msOrNever(x.FailbackMs), x.SurvivorsDisturbed, x.Survivors, x.FaultyTCPReset, x.FaultyTCP, x.FaultyUDPresumed, x.FaultyUDP))
		}
		ts = append(ts, t)
	}
	if th := r.Throughput; len(th) > 0 {
		t := benchTable{title: "Throughput: LAN host → internet server", header: "router\tTCP 1 stream Gbit/s\tTCP 8 streams Gbit/s\tUDP 64 B kpps\tUDP loss\t"}
		for _, x := range th {
			t.rows = append(t.rows, fmt.Sprintf("%s\t%.2f\t%.2f\t%.0f\t%.1f%%\t", x.Router, x.TCP1Gbps, x.TCP8Gbps, x.UDPkpps, 100*x.UDPLoss))
		}
		if len(th) == 2 && th[0].TCP1Gbps > 0 && th[0].TCP8Gbps > 0 && th[0].UDPkpps > 0 {
			k, w := th[0], th[1]
			t.rows = append(t.rows, fmt.Sprintf("wanflow/kernel\t%.2f×\t%.2f×\t%.2f×\t\t", w.TCP1Gbps/k.TCP1Gbps, w.TCP8Gbps/k.TCP8Gbps, w.UDPkpps/k.UDPkpps))
		}
		ts = append(ts, t)
	}
	if len(r.Latency) > 0 {
		t := benchTable{title: "Latency: request/response round trips, one at a time", header: "router\tproto\tsamples\tmean µs\tp50 µs\tp99 µs\tadded p50 µs\tadded p99 µs\t"}
		for _, x := range r.Latency {
			t.rows = append(t.rows, fmt.Sprintf("%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t", x.Router, x.Proto, x.Samples, x.MeanUs, x.P50Us, x.P99Us, x.AddedP50Us, x.AddedP99Us))
		}
		ts = append(ts, t)
	}
	if len(r.FlowRate) > 0 {
		t := benchTable{title: "New flows per second", header: "router\tproto\tflows\tfailed\tper second\twanflow/kernel\t"}
		for _, x := range r.FlowRate {
			ratio := ""
			if x.Ratio > 0 {
				ratio = fmt.Sprintf("%.2f×", x.Ratio)
			}
			t.rows = append(t.rows, fmt.Sprintf("%s\t%s\t%d\t%d\t%.0f\t%s\t", x.Router, x.Proto, x.Flows, x.Failed, x.PerSecond, ratio))
		}
		ts = append(ts, t)
	}
	if m := r.Memory; m != nil {
		t := benchTable{title: fmt.Sprintf("Memory of the daemon per flow (%d workers): %.0f bytes per flow; 1M flows in ≤ 256 MiB: %s", m.Workers, m.BytesPerFlow, m.Target),
			header: "flows\tRSS MiB\tanonymous MiB\tfill rate flows/s\t"}
		for _, p := range m.Points {
			t.rows = append(t.rows, fmt.Sprintf("%d\t%.1f\t%.1f\t%.0f\t", p.Flows, float64(p.RSSBytes)/(1<<20), float64(p.AnonBytes)/(1<<20), p.FillPerSecond))
		}
		ts = append(ts, t)
	}
	if len(r.DNS) > 0 {
		t := benchTable{title: "DNS through failover: a new name every 20 ms from a LAN host",
			header: "router\tresolver\tphase\tqueries\tfailed\tfrom ISP 1\tfrom ISP 2\tp50 ms\tp99 ms\tmax ms\t"}
		for _, x := range r.DNS {
			for _, p := range x.Phases {
				t.rows = append(t.rows, fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t", x.Router, x.Resolver, p.Name, p.Queries, p.Failed, p.ISP1, p.ISP2, p.P50Ms, p.P99Ms, p.MaxMs))
			}
		}
		ts = append(ts, t)
	}
	if len(r.DNSPerf) > 0 {
		t := benchTable{title: "DNS forwarder queries per second (dnsperf from a LAN host)", header: "case\tqueries/s\tlost\tavg ms\tmax ms\tclients × outstanding\t"}
		for _, x := range r.DNSPerf {
			t.rows = append(t.rows, fmt.Sprintf("%s\t%.0f\t%.2f%%\t%.2f\t%.1f\t%d × %d\t", x.Case, x.QPS, 100*x.Lost, x.AvgMs, x.MaxMs, x.Clients, x.Outstanding))
		}
		ts = append(ts, t)
	}
	if len(r.Restart) > 0 {
		t := benchTable{title: "Restart: long-lived flows and new flows through three ways of restarting wanflow",
			header: "stop	down ms	up ms	no new flow for ms	new flows via the kernel	TCP alive	TCP same mapping	UDP alive	UDP same mapping	flows restored	"}
		names := map[string]string{"handover": "SIGTERM (planned restart)", "sigint": "SIGINT (for good), start", "crash": "kill -9, start"}
		for _, x := range r.Restart {
			t.rows = append(t.rows, fmt.Sprintf("%s	%.0f	%.0f	%.0f	%d	%d of %d	%d of %d	%d of %d	%d of %d	%d	", names[x.Mode], x.DownMs, x.UpMs, x.NewFlowGapMs, x.ViaKernel,
				x.TCPAlive, x.TCP, x.TCPSame, x.TCP, x.UDPAlive, x.UDP, x.UDPSame, x.UDP, x.Restored))
		}
		ts = append(ts, t)
	}
	return ts
}

func msOrNever(v float64) string {
	if v < 0 {
		return "never"
	}
	return fmt.Sprintf("%.0f ms", v)
}

// writeBenchOut writes results.json and the charts into dir.
func writeBenchOut(dir string, r benchResults, js []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{"results.json": append(js, '\n')}
	chart := func(name string, fn func(io.Writer) error) error {
		var b bytes.Buffer
		if err := fn(&b); err != nil {
			return fmt.Errorf("bench: chart %s: %w", name, err)
		}
		files[name] = b.Bytes()
		return nil
	}
	if len(r.Failover) > 0 {
		if err := chart("failover.svg", func(w io.Writer) error { return plot.Timeline(w, failoverChart(r.Failover)) }); err != nil {
			return err
		}
	}
	if len(r.DNS) > 0 {
		if err := chart("dns.svg", func(w io.Writer) error { return plot.Timeline(w, bench.DNSTimeline(r.DNS)) }); err != nil {
			return err
		}
	}
	if len(r.Throughput) == 2 {
		if err := chart("throughput.svg", func(w io.Writer) error { return plot.Bars(w, throughputChart(r.Throughput)) }); err != nil {
			return err
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// failoverChart draws each router's new flows around each fault: one row
// per router and fault, coloured by the uplink that carried the flow.
func failoverChart(rs []bench.FailoverResult) plot.TimelineChart {
	c := plot.TimelineChart{Title: "New flows around a fault on up1 (one every 10 ms; red: no answer)", XLabel: "ms after the fault"}
	for _, r := range rs {
		s := plot.Series{Name: r.Router + ", " + r.Fault}
		for _, p := range r.Timeline {
			s.Samples = append(s.Samples, plot.Sample{Ms: p.Ms, OK: p.Uplink != "", Uplink: p.Uplink})
		}
		c.Series = append(c.Series, s)
		if r.SettledMs >= 0 {
			c.Events = append(c.Events, plot.Event{Ms: r.SettledMs, Label: "settled", Series: s.Name})
		}
	}
	if len(rs) > 0 {
		c.Events = append(c.Events, plot.Event{Ms: 0, Label: "fault"}, plot.Event{Ms: rs[0].RepairMs, Label: "repair"})
	}
	return c
}

func throughputChart(th []bench.ThroughputResult) plot.BarChart {
	k, w := th[0], th[1]
	return plot.BarChart{
		Title:  "Throughput through the router: kernel forwarding + masquerade vs wanflow, same lab, same run",
		Series: []string{k.Router, w.Router},
		Groups: []plot.Group{
			{Name: "TCP, 1 stream", Unit: "Gbit/s", Values: []float64{k.TCP1Gbps, w.TCP1Gbps}, Note: plot.RatioNote(w.TCP1Gbps, k.TCP1Gbps)},
			{Name: "TCP, 8 streams", Unit: "Gbit/s", Values: []float64{k.TCP8Gbps, w.TCP8Gbps}, Note: plot.RatioNote(w.TCP8Gbps, k.TCP8Gbps)},
			{Name: "UDP, 64 B", Unit: "kpps", Values: []float64{k.UDPkpps, w.UDPkpps}, Note: plot.RatioNote(w.UDPkpps, k.UDPkpps)},
		},
	}
}

// The generated section of the benchmarks document lies between these.
const (
	benchDocBegin = "<!-- wanflow bench: begin (generated by `make bench`; edits inside are overwritten) -->"
	benchDocEnd   = "<!-- wanflow bench: end -->"
)

// writeBenchDoc replaces the generated section of the markdown file doc
// with the machine, the tables and links to the charts in outDir.
func writeBenchDoc(doc, outDir string, r benchResults) error {
	old, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	i, j := bytes.Index(old, []byte(benchDocBegin)), bytes.Index(old, []byte(benchDocEnd))
	if i < 0 || j < i {
		return fmt.Errorf("bench: %s has no generated section (%q … %q)", doc, benchDocBegin, benchDocEnd)
	}
	var b bytes.Buffer
	b.WriteString(benchDocBegin + "\n\n")
	m := r.Machine
	fmt.Fprintf(&b, "Run on %s: %s, %d CPUs, %s, Linux %s, %s, wanflow %s. Run time:", m.Date, m.CPU, m.CPUs, m.Memory, m.Kernel, m.Go, m.Commit)
	for _, s := range benchScenarios {
		if v, ok := r.Seconds[s]; ok {
			fmt.Fprintf(&b, " %s %.0f s,", s, v)
		}
	}
	b.Truncate(b.Len() - 1)
	b.WriteString(".\n")
	rel := func(name string) string {
		p := filepath.Join(outDir, name)
		if rp, err := filepath.Rel(filepath.Dir(doc), p); err == nil {
			return rp
		}
		return p
	}
	for _, t := range benchTables(r) {
		fmt.Fprintf(&b, "\n**%s**\n\n", t.title)
		cells := func(line string) []string { return strings.Split(strings.TrimSuffix(line, "\t"), "\t") }
		h := cells(t.header)
		fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(h, " | "), strings.Repeat("---|", len(h)))
		for _, row := range t.rows {
			c := cells(row)
			for len(c) < len(h) {
				c = append(c, "")
			}
			fmt.Fprintf(&b, "| %s |\n", strings.Join(c, " | "))
		}
		if outDir != "" {
			switch {
			case strings.HasPrefix(t.title, "Failover") && len(r.Failover) > 0:
				fmt.Fprintf(&b, "\n![failover timeline](%s)\n", rel("failover.svg"))
			case strings.HasPrefix(t.title, "Throughput") && len(r.Throughput) == 2:
				fmt.Fprintf(&b, "\n![throughput](%s)\n", rel("throughput.svg"))
			case strings.HasPrefix(t.title, "DNS through") && len(r.DNS) > 0:
				fmt.Fprintf(&b, "\n![DNS through failover](%s)\n", rel("dns.svg"))
			}
		}
	}
	b.WriteString("\n")
	out := append(append(append([]byte{}, old[:i]...), b.Bytes()...), old[j:]...)
	return os.WriteFile(doc, out, 0o644)
}
