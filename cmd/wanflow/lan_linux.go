//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
	"github.com/wanflow/wanflow/lan/dhcp"
	"github.com/wanflow/wanflow/lan/dns"
)

// startDHCP starts the LAN's DHCP server when the config has one. It runs
// until ctx ends; d.wg waits for it.
func (d *daemon) startDHCP(ctx context.Context, lan netip.Prefix) error {
	cfg := d.conf()
	if cfg.LAN.DHCP == nil {
		return nil
	}
	srv, err := dhcp.New(d.dhcpConfig(cfg, lan))
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	d.dhcp = srv
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := srv.Serve(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("dhcp server stopped", "err", err)
		}
	}()
	return nil
}

// dhcpConfig is the DHCP server's configuration from cfg (which has a
// lan.dhcp) on the LAN prefix lan.
func (d *daemon) dhcpConfig(cfg *config.Config, lan netip.Prefix) dhcp.Config {
	c := cfg.LAN.DHCP
	dc := dhcp.Config{
		Interface:  cfg.LAN.Interface,
		ServerAddr: lan.Addr(),
		Subnet:     lan.Masked(),
		RangeStart: c.Range.First,
		RangeEnd:   c.Range.Last,
		LeaseTime:  time.Duration(c.LeaseTime),
		Router:     c.Router.Addr,
		Domain:     cfg.LAN.Domain,
		LeaseFile:  c.LeaseFile,
		Logger:     d.log.With("service", "dhcp"),
	}
	for _, a := range c.DNS {
		dc.DNS = append(dc.DNS, a.Addr)
	}
	for _, r := range c.Reservations {
		dc.Reservations = append(dc.Reservations, dhcp.Reservation{MAC: r.MAC.HardwareAddr, Addr: r.Addr.Addr, Hostname: r.Hostname})
	}
	return dc
}

// startDNS starts the LAN's DNS forwarder when the config has one; its
// upstreams follow the uplinks (setDNSUpstreams).
func (d *daemon) startDNS(ctx context.Context, lan netip.Prefix) error {
	if d.conf().LAN.DNS == nil {
		return nil
	}
	f, err := dns.New(d.dnsConfig(d.conf(), lan))
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	d.dns = f
	d.setDNSUpstreams()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := f.Serve(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("dns forwarder stopped", "err", err)
		}
	}()
	return nil
}

// dnsConfig is the DNS forwarder's configuration from cfg (which has a
// lan.dns) on the LAN prefix lan.
func (d *daemon) dnsConfig(cfg *config.Config, lan netip.Prefix) dns.Config {
	c := cfg.LAN.DNS
	fc := dns.Config{
		Domain:        cfg.LAN.Domain,
		CacheSize:     c.CacheSize,
		HedgeAfter:    time.Duration(c.HedgeAfter),
		Timeout:       time.Duration(c.Timeout),
		ServeStale:    time.Duration(c.ServeStale),
		RatePerClient: c.RateLimit,
		Logger:        d.log.With("service", "dns"),
	}
	if c.ServeStale == 0 {
		fc.ServeStale = -1
	}
	if c.CacheSize == 0 {
		fc.CacheSize = -1 // 0 in the config: no cache
	}
	if c.RateLimit == 0 {
		fc.RatePerClient = -1
	}
	for _, a := range c.Listen {
		fc.Listen = append(fc.Listen, a.AddrPort)
	}
	for _, p := range c.Allow {
		fc.AllowedNets = append(fc.AllowedNets, p.Prefix)
	}
	if len(fc.AllowedNets) == 0 {
		fc.AllowedNets = []netip.Prefix{lan.Masked()}
	}
	if d.dhcp != nil {
		fc.Local = d.dhcp.Lookup
	}
	return fc
}

// setDNSUpstreams gives the forwarder the DNS servers of the available
// uplinks, in preference order (tier, then weight), each to be queried
// through its own uplink. A down uplink's servers are left out at once.
func (d *daemon) setDNSUpstreams() {
	if d.dns == nil {
		return
	}
	d.dnsMu.Lock() // the last caller reads the latest views and sets last
	defer d.dnsMu.Unlock()
	d.mu.Lock()
	views := d.views
	learned := d.learnedDNS
	d.mu.Unlock()
	cfg := d.conf()
	type cand struct {
		i, tier int
		weight  uint32
	}
	var cs []cand
	for _, v := range views {
		i := v.Index
		if !v.Available || i < 0 || i >= len(cfg.Uplinks) {
			continue
		}
		cs = append(cs, cand{i, cfg.Uplinks[i].Tier, cfg.Uplinks[i].Weight})
	}
	sort.SliceStable(cs, func(a, b int) bool {
		if cs[a].tier != cs[b].tier {
			return cs[a].tier < cs[b].tier
		}
		return cs[a].weight > cs[b].weight
	})
	var ups []dns.Upstream
	for _, c := range cs {
		v := views[c.i]
		servers := cfg.Uplinks[c.i].DNS
		var addrs []netip.Addr
		for _, a := range servers {
			addrs = append(addrs, a.Addr)
		}
		if len(addrs) == 0 && c.i < len(learned) {
			addrs = learned[c.i]
		}
		for _, a := range addrs {
			ups = append(ups, dns.Upstream{Uplink: v.Name, Addr: netip.AddrPortFrom(a, 53), Interface: v.Interface, Source: v.Addr})
		}
	}
	d.dns.SetUpstreams(ups)
}
