package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// scrape fetches the daemon's metrics from inside the router namespace and
// parses them with the Prometheus text parser.
func scrape(t *testing.T, l *lab.Lab) map[string]*dto.MetricFamily {
	t.Helper()
	var c net.Conn
	if err := l.Router.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp4", "127.0.0.1:9469", 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return c, nil }}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://127.0.0.1:9469/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of f's first metric that has every one of
// labels as a label value ("" matches any).
func value(f *dto.MetricFamily, labels ...string) float64 {
	if f == nil {
		return -1
	}
	labels = slices.DeleteFunc(slices.Clone(labels), func(l string) bool { return l == "" })
	for _, m := range f.Metric {
		match := 0
		for _, want := range labels {
			for _, lp := range m.Label {
				if lp.GetValue() == want {
					match++
					break
				}
			}
		}
		if match < len(labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return -1
}

// TestMetrics: the metrics scrape parses, and the counters move with
// traffic.
func TestMetrics(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{}))
	sleep(300 * time.Millisecond)
	before := scrape(t, l)
	flows := run(t, l.Hosts[0], labclient.Config{TCPFlows: 50, UDPFlows: 50, Messages: 5})
	checkSticky(t, flows)
	after := scrape(t, l)
	for _, name := range []string{"wanflow_dataplane_out_packets_total", "wanflow_dataplane_in_packets_total", "wanflow_dataplane_out_flows_created_total"} {
		b, a := value(before[name], ""), value(after[name], "")
		t.Logf("%s: %v → %v", name, b, a)
		if a-b < 100 {
			t.Errorf("%s moved by %v over 100 flows", name, a-b)
		}
	}
	if v := value(after["wanflow_flows_active"], ""); v < 100 {
		t.Errorf("wanflow_flows_active = %v, want ≥ 100", v)
	}
	var upPackets float64
	for _, u := range l.Uplinks {
		if v := value(after["wanflow_uplink_up"], u.Name); v != 1 {
			t.Errorf("wanflow_uplink_up{uplink=%q} = %v", u.Name, v)
		}
		for _, dir := range []string{"out", "in"} {
			b, a := value(before["wanflow_uplink_packets_total"], u.Name, dir), value(after["wanflow_uplink_packets_total"], u.Name, dir)
			upPackets += a - b
		}
		if n := value(after["wanflow_uplink_flows"], u.Name); n <= 0 {
			t.Errorf("wanflow_uplink_flows{uplink=%q} = %v", u.Name, n)
		}
	}
	// 100 flows × 5 messages, each message one packet out and one in at
	// least (TCP adds its handshake and ACKs).
	var dp float64
	for _, name := range []string{"wanflow_dataplane_out_packets_total", "wanflow_dataplane_in_packets_total"} {
		dp += value(after[name]) - value(before[name])
	}
	// The dataplane's packet counters also count what the router itself
	// sends a LAN host (ICMP errors, resets), which no uplink carried.
	if upPackets > dp || upPackets < dp*0.99 {
		t.Errorf("wanflow_uplink_packets_total moved by %v, the dataplane's packet counters by %v", upPackets, dp)
	}
	if upPackets < 1000 {
		t.Errorf("wanflow_uplink_packets_total moved by %v over the uplinks, want ≥ 1000", upPackets)
	}
}
