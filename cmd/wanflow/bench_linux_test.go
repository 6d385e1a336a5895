//go:build linux

package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanflow/wanflow/bench"
)

func testBenchResults() benchResults {
	return benchResults{
		Machine: benchMachine{Date: "2026-11-24", CPU: "Test CPU", CPUs: 2, Memory: "24 GiB", Kernel: "6.1.0", Go: "go1.26.8", Commit: "dev"},
		Failover: []bench.FailoverResult{
			{Router: "kernel", Fault: "isp-death", SettledMs: -1, FailedPct: 54.7, FailbackMs: 13, RepairMs: 3000,
				Timeline: []bench.TimelinePoint{{Ms: -10, Uplink: "up1"}, {Ms: 0, Uplink: ""}, {Ms: 10, Uplink: "up2"}}},
			{Router: "wanflow", Fault: "isp-death", SettledMs: 978, FailedPct: 32.7, FailbackMs: 987, RepairMs: 3001, Survivors: 21,
				FaultyTCP: 9, FaultyTCPReset: 9, FaultyUDP: 10, FaultyUDPresumed: 10,
				Timeline: []bench.TimelinePoint{{Ms: -10, Uplink: "up1"}, {Ms: 990, Uplink: "up2"}}},
		},
		Throughput: []bench.ThroughputResult{{Router: "kernel", TCP1Gbps: 15, TCP8Gbps: 20, UDPkpps: 130}, {Router: "wanflow", TCP1Gbps: 9.5, TCP8Gbps: 11, UDPkpps: 70}},
		DNSPerf:    []bench.DNSPerfResult{{Case: "cached", QPS: 55000, Clients: 4, Outstanding: 100}},
		Seconds:    map[string]float64{"failover": 60, "throughput": 40, "dns": 30},
	}
}

// TestBenchOutAndDoc: --out writes results.json and charts that parse as
// XML; --doc replaces only the generated section, with every table.
func TestBenchOutAndDoc(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bench")
	r := testBenchResults()
	if err := writeBenchOut(out, r, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"results.json", "failover.svg", "throughput.svg"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".svg") {
			var v struct{ XMLName xml.Name }
			if err := xml.Unmarshal(b, &v); err != nil || v.XMLName.Local != "svg" {
				t.Errorf("%s: not an SVG document: %v", f, err)
			}
		}
	}
	doc := filepath.Join(dir, "benchmarks.md")
	before, after := "# Benchmarks\n\nhand-written intro\n\n", "\n## Notes\n\nhand-written notes\n"
	if err := os.WriteFile(doc, []byte(before+benchDocBegin+"\nold results\n"+benchDocEnd+after), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := writeBenchDoc(doc, out, r); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(doc)
	s := string(b)
	for _, want := range []string{before, after, "Test CPU, 2 CPUs", "| router | fault | new flows settled after",
		"| wanflow | isp-death | 978 ms | 32.7% | 987 ms | 0 of 21 | 9 of 9 | 10 of 10 |", "| wanflow/kernel | 0.63× | 0.55× | 0.54× |  |",
		"![failover timeline](bench/failover.svg)", "![throughput](bench/throughput.svg)", "| cached | 55000 |"} {
		if !strings.Contains(s, want) {
			t.Errorf("doc lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "old results") || strings.Count(s, benchDocBegin) != 1 {
		t.Errorf("generated section not replaced exactly once:\n%s", s)
	}
	if err := writeBenchDoc(filepath.Join(dir, "missing.md"), out, r); err == nil {
		t.Error("a missing doc was accepted")
	}
	os.WriteFile(doc, []byte("no markers\n"), 0o644)
	if err := writeBenchDoc(doc, out, r); err == nil {
		t.Error("a doc without markers was accepted")
	}
}

func TestMergeBench(t *testing.T) {
	prev := testBenchResults()
	cur := benchResults{Seconds: map[string]float64{"dns": 5}, DNSPerf: []bench.DNSPerfResult{{Case: "forwarded", QPS: 1}}}
	m := mergeBench(cur, prev, map[string]bool{"dns": true})
	if len(m.Failover) != 2 || len(m.Throughput) != 2 || m.Seconds["failover"] != 60 {
		t.Errorf("scenarios not run were not kept: %+v", m)
	}
	if len(m.DNSPerf) != 1 || m.DNSPerf[0].Case != "forwarded" || m.Seconds["dns"] != 5 {
		t.Errorf("the scenario run was overwritten by the old results: %+v", m.DNSPerf)
	}
}
