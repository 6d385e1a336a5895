//go:build linux

package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wanflow/wanflow/dataplane"
	"github.com/wanflow/wanflow/uplinks/health"
)

// collector reads the daemon's figures at scrape time: nothing is counted
// twice, and the dataplane keeps its own counters.
type collector struct{ d *daemon }

var (
	descUplinkUp     = prometheus.NewDesc("wanflow_uplink_up", "1 if the uplink may carry new flows.", []string{"uplink"}, nil)
	descUplinkHealth = prometheus.NewDesc("wanflow_uplink_health_state", "Probe verdict: 0 down, 1 degraded, 2 up.", []string{"uplink"}, nil)
	descProbeRTT     = prometheus.NewDesc("wanflow_uplink_probe_rtt_seconds", "RTT of the last successful probe round.", []string{"uplink"}, nil)
	descProbeLoss    = prometheus.NewDesc("wanflow_uplink_probe_loss_ratio", "Share of probes lost over the loss window.", []string{"uplink"}, nil)
	descUplinkPkts   = prometheus.NewDesc("wanflow_uplink_packets_total", "Packets through the uplink, by direction (out: LAN to internet).", []string{"uplink", "direction"}, nil)
	descUplinkBytes  = prometheus.NewDesc("wanflow_uplink_bytes_total", "Bytes (IP packets) through the uplink, by direction (out: LAN to internet).", []string{"uplink", "direction"}, nil)
	descUplinkFlows  = prometheus.NewDesc("wanflow_uplink_flows", "Flows pinned to the uplink.", []string{"uplink"}, nil)
	descFlows        = prometheus.NewDesc("wanflow_flows_active", "Flows in the flow table.", nil, nil)
	descFlowsEvicted = prometheus.NewDesc("wanflow_flows_evicted_total", "Flows evicted because the table was full.", nil, nil)
	descFlowsExpired = prometheus.NewDesc("wanflow_flows_expired_total", "Flows ended by their idle timeout.", nil, nil)
	descNATPorts     = prometheus.NewDesc("wanflow_nat_ports_in_use", "NAT ports held by flows.", nil, nil)
	descBuffers      = prometheus.NewDesc("wanflow_dataplane_buffers", "Packet buffers allocated (in use or free), about 64 KiB each; released after a burst.", nil, nil)
	descDNS          = prometheus.NewDesc("wanflow_dns_queries_total", "DNS queries by outcome.", []string{"outcome"}, nil)
	descDNSUpstream  = prometheus.NewDesc("wanflow_dns_upstream_queries_total", "Queries sent to an upstream, by uplink and result.", []string{"uplink", "server", "result"}, nil)
	descDHCP         = prometheus.NewDesc("wanflow_dhcp_messages_total", "DHCP messages by type.", []string{"type"}, nil)
	descDHCPLeases   = prometheus.NewDesc("wanflow_dhcp_leases_active", "Active DHCP leases.", nil, nil)
	descDataplane    [dataplane.NumCounters]*prometheus.Desc
)

func init() {
	for i := range descDataplane {
		name := "wanflow_" + dataplane.Counter(i).String() + "_total"
		descDataplane[i] = prometheus.NewDesc(name, "Dataplane counter "+dataplane.Counter(i).String()+".", nil, nil)
	}
}

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	st := d.engine.Stats()
	for i, v := range st.Counters {
		ch <- prometheus.MustNewConstMetric(descDataplane[i], prometheus.CounterValue, float64(v))
	}
	var evicted, expired, ports uint64
	for _, fs := range st.FlowStats {
		evicted += fs.Evicted
		expired += fs.Expired
		ports += fs.PortsInUse
	}
	ch <- prometheus.MustNewConstMetric(descFlows, prometheus.GaugeValue, float64(st.Flows))
	ch <- prometheus.MustNewConstMetric(descFlowsEvicted, prometheus.CounterValue, float64(evicted))
	ch <- prometheus.MustNewConstMetric(descFlowsExpired, prometheus.CounterValue, float64(expired))
	ch <- prometheus.MustNewConstMetric(descNATPorts, prometheus.GaugeValue, float64(ports))
	ch <- prometheus.MustNewConstMetric(descBuffers, prometheus.GaugeValue, float64(st.Buffers))
	traffic, perUplink := d.engine.Traffic(), d.engine.FlowsPerUplink()
	for i, u := range d.conf().Uplinks {
		var t dataplane.Traffic
		if i < len(traffic) {
			t = traffic[i]
		}
		n := 0
		if i < len(perUplink) {
			n = perUplink[i]
		}
		ch <- prometheus.MustNewConstMetric(descUplinkPkts, prometheus.CounterValue, float64(t.PacketsOut), u.Name, "out")
		ch <- prometheus.MustNewConstMetric(descUplinkPkts, prometheus.CounterValue, float64(t.PacketsIn), u.Name, "in")
		ch <- prometheus.MustNewConstMetric(descUplinkBytes, prometheus.CounterValue, float64(t.BytesOut), u.Name, "out")
		ch <- prometheus.MustNewConstMetric(descUplinkBytes, prometheus.CounterValue, float64(t.BytesIn), u.Name, "in")
		ch <- prometheus.MustNewConstMetric(descUplinkFlows, prometheus.GaugeValue, float64(n), u.Name)
	}
	for i, v := range d.sup.Views() {
		up := 0.0
		if v.Available {
			up = 1
		}
		name := d.conf().Uplinks[i].Name
		ch <- prometheus.MustNewConstMetric(descUplinkUp, prometheus.GaugeValue, up, name)
		ch <- prometheus.MustNewConstMetric(descUplinkHealth, prometheus.GaugeValue, healthValue(v.Health), name)
		if p := d.sup.Prober(i); p != nil {
			ps := p.Stats()
			ch <- prometheus.MustNewConstMetric(descProbeRTT, prometheus.GaugeValue, ps.LastRTT.Seconds(), name)
			ch <- prometheus.MustNewConstMetric(descProbeLoss, prometheus.GaugeValue, ps.Loss, name)
		}
	}
	if d.dns != nil {
		s := d.dns.Stats()
		for _, o := range []struct {
			name string
			v    uint64
		}{{"all", s.Queries}, {"cache_hit", s.CacheHits}, {"cache_miss", s.CacheMisses}, {"local", s.Local}, {"hedged", s.Hedged},
			{"stale", s.StaleServed}, {"servfail", s.ServFail}, {"refused", s.Refused}, {"rate_limited", s.RateLimited},
			{"overloaded", s.Overloaded}, {"bad", s.BadPackets}} {
			ch <- prometheus.MustNewConstMetric(descDNS, prometheus.CounterValue, float64(o.v), o.name)
		}
		for _, u := range s.Upstreams {
			ch <- prometheus.MustNewConstMetric(descDNSUpstream, prometheus.CounterValue, float64(u.Queries-min(u.Failures, u.Queries)), u.Uplink, u.Addr.String(), "ok")
			ch <- prometheus.MustNewConstMetric(descDNSUpstream, prometheus.CounterValue, float64(u.Failures), u.Uplink, u.Addr.String(), "failed")
		}
	}
	if d.dhcp != nil {
		s := d.dhcp.Stats()
		for _, o := range []struct {
			name string
			v    uint64
		}{{"discover", s.Discovers}, {"offer", s.Offers}, {"request", s.Requests}, {"ack", s.Acks}, {"nak", s.Naks},
			{"release", s.Releases}, {"decline", s.Declines}, {"inform", s.Informs}, {"pool_exhausted", s.PoolExhausted}, {"offer_given_away", s.OffersGivenAway}, {"bad", s.BadPackets}} {
			ch <- prometheus.MustNewConstMetric(descDHCP, prometheus.CounterValue, float64(o.v), o.name)
		}
		ch <- prometheus.MustNewConstMetric(descDHCPLeases, prometheus.GaugeValue, float64(s.LeasesActive))
	}
}

func healthValue(s health.State) float64 {
	switch s {
	case health.StateUp:
		return 2
	case health.StateDegraded:
		return 1
	}
	return 0
}

// startMetrics serves Prometheus metrics on control.metrics until ctx
// ends. A port it cannot bind is logged, not fatal: routing matters more.
func (d *daemon) startMetrics(ctx context.Context) {
	addr := d.conf().Control.Metrics.AddrPort
	if !addr.IsValid() {
		return
	}
	reg := prometheus.NewRegistry()
	// The Go runtime's and the process's own metrics (go_goroutines,
	// go_memstats_*, process_open_fds, process_resident_memory_bytes...)
	// show leaks and memory next to the router's figures.
	reg.MustRegister(collector{d}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		d.log.Error("metrics: listen", "addr", addr, "err", err)
		return
	}
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server stopped", "err", err)
		}
	}()
	go func() {
		defer d.wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	d.log.Info("metrics", "addr", "http://"+addr.String()+"/metrics", "names", strings.Join([]string{"wanflow_uplink_*", "wanflow_dataplane_*", "wanflow_flows_*", "wanflow_dns_*", "wanflow_dhcp_*"}, " "))
}
