package bench

import (
	"context"
	"io"
	"math"
	"os/exec"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab/labtest"
)

const dnsperfOutput = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 10.77.0.1 -d /tmp/x -l 10
Statistics:

  Queries sent:         412345
  Queries completed:    412300 (99.99%)
  Queries lost:         45 (0.01%)

  Response codes:       NOERROR 412300 (100.00%)
  Average packet size:  request 33, response 49
  Run time (s):         10.000123
  Queries per second:   41229.49

  Average Latency (s):  0.002345 (min 0.000101, max 0.031234)
  Latency StdDev (s):   0.001234
`

func TestParseDNSPerf(t *testing.T) {
	r, err := parseDNSPerf(DNSPerfResult{}, dnsperfOutput)
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !near(r.QPS, 41229.49) || !near(r.Lost, 0.0001) || !near(r.AvgMs, 2.345) || !near(r.MaxMs, 31.234) {
		t.Errorf("parsed %+v", r)
	}
	if _, err := parseDNSPerf(DNSPerfResult{}, "garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

// TestDNSPerfShort runs the dnsperf scenario for a second per case.
func TestDNSPerfShort(t *testing.T) {
	labtest.RequireRoot(t)
	if _, err := exec.LookPath("dnsperf"); err != nil {
		t.Skip("dnsperf not installed (apt-get install dnsperf; `make bench` installs it)")
	}
	res, err := DNSPerf(context.Background(), wanflowBin, DNSPerfOptions{Duration: time.Second, Clients: 2, Outstanding: 20}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("%+v", r)
		if r.QPS <= 0 || r.Lost > 0.05 {
			t.Errorf("%s: %.0f qps, %.1f%% lost", r.Case, r.QPS, 100*r.Lost)
		}
	}
	if len(res) != 2 {
		t.Fatalf("%d results, want cached and forwarded", len(res))
	}
}
