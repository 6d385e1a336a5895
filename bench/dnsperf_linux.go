package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// DNSPerfResult is the DNS forwarder's query rate in one case, measured
// with dnsperf from a LAN host.
type DNSPerfResult struct {
	// Case is "cached" (one name asked again and again: answered from the
	// cache) or "forwarded" (every name new: each query goes to an ISP's
	// DNS server through its uplink and back).
	Case string `json:"case"`
	// QPS is the queries answered per second; Lost the share of queries
	// without an answer.
	QPS  float64 `json:"qps"`
	Lost float64 `json:"lost"`
	// Latency of the answers, milliseconds.
	AvgMs float64 `json:"avg_ms"`
	MaxMs float64 `json:"max_ms"`
	// Clients is dnsperf's number of clients (-c) and Outstanding its
	// queries in flight (-q).
	Clients     int `json:"clients"`
	Outstanding int `json:"outstanding"`
}

// DNSPerfOptions tune DNSPerf.
type DNSPerfOptions struct {
	Duration    time.Duration // per case (default 10s)
	Clients     int           // dnsperf -c (default 4)
	Outstanding int           // dnsperf -q (default 100)
}

// DNSPerf measures the queries per second the DNS forwarder answers, from
// its cache and forwarded to the uplinks' DNS servers, with dnsperf
// (Debian's dnsperf package) in a LAN host of a two-uplink lab. The
// forwarder's per-client rate limit is off for the measurement.
func DNSPerf(ctx context.Context, bin string, o DNSPerfOptions, w io.Writer) ([]DNSPerfResult, error) {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Clients <= 0 {
		o.Clients = 4
	}
	if o.Outstanding <= 0 {
		o.Outstanding = 100
	}
	if _, err := exec.LookPath("dnsperf"); err != nil {
		return nil, errors.New("bench: dnsperf not found (apt-get install dnsperf)")
	}
	l, err := lab.Up(ctx, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if err := l.StartServers(ctx); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wanflow-dnsperf-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	yaml := labrouter.ConfigYAML(l, labrouter.Options{})
	yaml = strings.Replace(yaml, "lan:\n  interface: "+l.RouterLAN+"\n",
		"lan:\n  interface: "+l.RouterLAN+"\n  dns: { listen: [10.77.0.1], rate_limit: 0, cache_size: 10000 }\n", 1)
	for _, u := range l.Uplinks {
		yaml = strings.Replace(yaml, "  - name: "+u.Name+"\n", fmt.Sprintf("  - name: %s\n    dns: [%s]\n", u.Name, u.ISPDNS), 1)
	}
	r, err := labrouter.Start(l, bin, dir, yaml, nil, 15*time.Second)
	if err != nil {
		return nil, err
	}
	defer r.Stop()

	// Enough unique names that none repeats within the forwarded run.
	cached, forwarded := filepath.Join(dir, "cached"), filepath.Join(dir, "forwarded")
	if err := os.WriteFile(cached, []byte("cached.example. A\n"), 0o644); err != nil {
		return nil, err
	}
	if err := writeNames(forwarded, 2_000_000); err != nil {
		return nil, err
	}
	var out []DNSPerfResult
	for _, c := range []struct{ name, file string }{{"cached", cached}, {"forwarded", forwarded}} {
		fmt.Fprintf(w, "  dns %s: dnsperf -c %d -q %d for %v...\n", c.name, o.Clients, o.Outstanding, o.Duration)
		res, err := runDNSPerf(ctx, l, c.file, o)
		if err != nil {
			return out, fmt.Errorf("bench: dnsperf %s: %w", c.name, err)
		}
		res.Case = c.name
		fmt.Fprintf(w, "  dns %s: %.0f queries/s, %.2f%% lost, avg %.2f ms, max %.1f ms\n", c.name, res.QPS, 100*res.Lost, res.AvgMs, res.MaxMs)
		out = append(out, res)
	}
	return out, nil
}

func writeNames(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		fmt.Fprintf(bw, "n%d.example. A\n", i)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var (
	rePerfQPS  = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	rePerfLost = regexp.MustCompile(`Queries lost:\s+\d+ \(([0-9.]+)%\)`)
	rePerfLat  = regexp.MustCompile(`Average Latency \(s\):\s+([0-9.]+) \(min [0-9.]+, max ([0-9.]+)\)`)
)

func runDNSPerf(ctx context.Context, l *lab.Lab, file string, o DNSPerfOptions) (DNSPerfResult, error) {
	r := DNSPerfResult{Clients: o.Clients, Outstanding: o.Outstanding}
	secs := strconv.Itoa(max(1, int(o.Duration.Seconds())))
	out, err := l.Hosts[0].Command(ctx, "dnsperf", "-s", "10.77.0.1", "-d", file, "-l", secs,
		"-c", strconv.Itoa(o.Clients), "-q", strconv.Itoa(o.Outstanding), "-t", "2").CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("%w\n%s", err, out)
	}
	return parseDNSPerf(r, string(out))
}

// parseDNSPerf reads dnsperf's summary into r.
func parseDNSPerf(r DNSPerfResult, out string) (DNSPerfResult, error) {
	m := rePerfQPS.FindStringSubmatch(out)
	lat := rePerfLat.FindStringSubmatch(out)
	if m == nil || lat == nil {
		return r, fmt.Errorf("unexpected dnsperf output:\n%s", out)
	}
	r.QPS, _ = strconv.ParseFloat(m[1], 64)
	if lm := rePerfLost.FindStringSubmatch(out); lm != nil {
		pct, _ := strconv.ParseFloat(lm[1], 64)
		r.Lost = pct / 100
	}
	avg, _ := strconv.ParseFloat(lat[1], 64)
	mx, _ := strconv.ParseFloat(lat[2], 64)
	r.AvgMs, r.MaxMs = avg*1000, mx*1000
	return r, nil
}
