//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
	"github.com/wanflow/wanflow/dataplane"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/lan/dhcp"
	"github.com/wanflow/wanflow/lan/dns"
	"github.com/wanflow/wanflow/lan/steer"
	"github.com/wanflow/wanflow/uplinks"
	"github.com/wanflow/wanflow/uplinks/events"
	"github.com/wanflow/wanflow/uplinks/health"
	"github.com/wanflow/wanflow/uplinks/hooks"
	"github.com/wanflow/wanflow/uplinks/nftguard"
	"github.com/wanflow/wanflow/uplinks/policy"
	"github.com/wanflow/wanflow/uplinks/supervise"
)

// daemon wires the packages together: the TUN device, the LAN steering, the
// uplink manager, wanflow's nftables table and the dataplane.
type daemon struct {
	cfgp   atomic.Pointer[config.Config] // replaced by a reload: use conf()
	log    *slog.Logger
	h      *netlink.Handle
	nft    *nftables.Conn
	steer  *steer.Steering
	mgr    *uplinks.Manager
	engine *dataplane.Engine
	ports  flowtable.PortRange

	ring    *events.Ring
	sup     *supervise.Supervisor
	dhcp    *dhcp.Server
	dns     *dns.Forwarder
	dnsMu   sync.Mutex // serialises setDNSUpstreams
	stopLog context.CancelFunc
	wg      sync.WaitGroup // the daemon's goroutines

	mu         sync.Mutex // serialises applyViews and guards what follows
	lastAddr   []netip.Addr
	views      []supervise.View
	status     []uplinks.Status
	learnedDNS [][]netip.Addr // per uplink: servers read from its resolv file
	linkHdr    map[int]string // uplink index → link-layer header last published
	loaded     time.Time      // when the config in force was loaded

	cfgPath   string       // the config file, read again by Reload
	started   time.Time    // when start began
	lanPrefix netip.Prefix // the LAN interface's address and prefix
	rates     rates        // per-uplink traffic rates (routineRates)
	reloadMu  sync.Mutex   // serialises Reload
}

func runDaemon(path string, cfg *config.Config, log *slog.Logger) error {
	d := &daemon{log: log, cfgPath: path, started: time.Now(), loaded: time.Now()}
	d.cfgp.Store(cfg)
	// SIGTERM (systemctl stop or restart, an upgrade) hands the flows over
	// to the next start; SIGINT (Ctrl-C) stops for good and removes
	// everything. See handover_linux.go.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var handoverStop atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case sig := <-sigs:
			handoverStop.Store(sig == syscall.SIGTERM)
			stop()
		case <-ctx.Done():
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	sd := newNotifier()
	err := d.start(ctx)
	if err == nil {
		log.Info("wanflow running", "tun", cfg.Dataplane.TUN, "uplinks", len(cfg.Uplinks), "workers", d.engine.Workers(),
			"control", cfg.Control.Socket)
		sd.send("READY=1\nSTATUS=routing")
		wctx, wstop := context.WithCancel(ctx)
		defer wstop()
		// The watchdog is fed only while every worker answers between two
		// batches: a hung packet path gets the daemon restarted.
		go sd.routineWatchdog(wctx, watchdogInterval(), func() bool { d.engine.FlowsPerUplink(); return true })
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-hup:
				sd.send("RELOADING=1")
				r, err := d.Reload()
				sd.send("READY=1")
				if err != nil {
					log.Error("SIGHUP: reload", "err", err)
				} else {
					log.Info("SIGHUP: config reloaded", "config", path, "changed", strings.Join(r.Changed, ","))
				}
			}
		}
		log.Info("wanflow stopping", "handover", handoverStop.Load())
		sd.send("STOPPING=1")
	}
	if serr := d.stop(err == nil && handoverStop.Load()); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// conf returns the config in force. What needs a restart to change is the
// same in every config a reload can install; the rest may differ between
// two calls.
func (d *daemon) conf() *config.Config { return d.cfgp.Load() }

func (d *daemon) start(ctx context.Context) error {
	cfg := d.conf()
	d.ports = flowtable.PortRange{Lo: cfg.Dataplane.NATPorts.Lo, Hi: cfg.Dataplane.NATPorts.Hi}
	if err := checkEphemeralPorts(d.ports); err != nil {
		return err
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	d.h = h
	if d.nft, err = nftables.New(); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	lanPrefix, err := d.waitLANAddress(ctx, h, cfg.LAN.Interface)
	if err != nil {
		return err
	}
	routerAddr := lanPrefix.Addr()
	d.lanPrefix = lanPrefix

	tunDev, err := tun.CreateTUN(cfg.Dataplane.TUN, cfg.Dataplane.MTU)
	if err != nil {
		return fmt.Errorf("create TUN %s: %w", cfg.Dataplane.TUN, err)
	}
	// The TUN device carries IPv4 only: without IPv6 on it the kernel does
	// not send its router solicitations and MLD reports into the dataplane.
	// (No IPv6 in the kernel: nothing to turn off.)
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+cfg.Dataplane.TUN+"/disable_ipv6", []byte("1"), 0)
	link, err := h.LinkByName(cfg.Dataplane.TUN)
	if err == nil {
		err = h.LinkSetUp(link)
	}
	if err != nil {
		tunDev.Close()
		return fmt.Errorf("bring up %s: %w", cfg.Dataplane.TUN, err)
	}

	fc := flowtable.Config{
		Capacity:        cfg.Dataplane.Flows.Capacity,
		MaxFlowsPerHost: min(cfg.Dataplane.Flows.PerHost, cfg.Dataplane.Flows.Capacity),
		Ports:           d.ports,
		Timeouts: flowtable.Timeouts{
			UDP:            time.Duration(cfg.Dataplane.Flows.Timeouts.UDP),
			TCPEstablished: time.Duration(cfg.Dataplane.Flows.Timeouts.TCPEstablished),
			TCPTransitory:  time.Duration(cfg.Dataplane.Flows.Timeouts.TCPTransitory),
			ICMP:           time.Duration(cfg.Dataplane.Flows.Timeouts.ICMP),
		},
	}
	lanIO, err := dataplane.NewTUNIO(tunDev)
	if err != nil {
		tunDev.Close()
		return err
	}
	d.engine, err = dataplane.New(dataplane.Config{
		TUN:        lanIO,
		OpenUplink: dataplane.OpenUplinkSocket,
		Workers:    cfg.Dataplane.Workers,
		Flows:      fc,
		RouterAddr: routerAddr,
		// A LAN packet from outside the LAN prefixes is spoofed: dropped.
		LANPrefixes: lanPrefixes(cfg, lanPrefix),
		Logger:      d.log,
	})
	if err != nil {
		tunDev.Close()
		return err
	}

	d.steer = steer.New(h, steerConfig(cfg))
	if err := d.steer.Apply(); err != nil {
		return err
	}
	d.mgr = uplinks.NewManager(h, managerConfig(cfg), d.log)
	d.ring = events.NewRing(cfg.Control.Events)
	sups, err := supervision(cfg)
	if err != nil {
		return err
	}
	// Before the dataplane starts: the flows a planned restart handed over.
	taken := d.takeHandover()
	applyHandoverHealth(sups, taken)
	d.handoverEvent(taken)
	d.sup, err = supervise.New(sups, d.log, d.ring, func(v []supervise.View, c []supervise.Change) {
		if err := d.applyViews(v, c); err != nil {
			d.log.Error("apply uplink state", "err", err)
		}
	})
	if err != nil {
		return err
	}
	logCtx, logDone := context.WithCancel(context.Background())
	d.stopLog = logDone
	go d.routineLogEvents(logCtx)
	st, err := d.mgr.Reconcile()
	if err != nil {
		// Partial kernel state is retried on the next event; a missing
		// uplink device is normal (ppp0 before it dials).
		d.log.Warn("uplinks: reconcile", "err", err)
	}
	d.sup.Kernel(st)
	d.sup.Flush()
	d.engine.Start()
	d.endHold()
	if err := d.startDHCP(ctx, lanPrefix); err != nil {
		return err
	}
	if err := d.startDNS(ctx, lanPrefix); err != nil {
		return err
	}
	d.startMetrics(ctx)
	if err := d.startControl(ctx); err != nil {
		return err
	}
	d.wg.Add(5)
	go func() { defer d.wg.Done(); d.routineRates(ctx) }()
	go func() { defer d.wg.Done(); d.routineNeighbors(ctx) }()
	go func() { defer d.wg.Done(); d.routineResolv(ctx) }()
	go func() { defer d.wg.Done(); d.sup.Run(ctx) }()
	go func() {
		defer d.wg.Done()
		if err := d.mgr.Run(ctx, d.sup.Kernel); err != nil && ctx.Err() == nil {
			d.log.Error("uplink monitor stopped", "err", err)
		}
	}()
	return nil
}

// supervision builds each uplink's health, degraded and hook settings from
// the config.
func supervision(cfg *config.Config) ([]supervise.Uplink, error) {
	var out []supervise.Uplink
	for i, u := range cfg.Uplinks {
		servers := uplinkDNS(u)
		if len(servers) == 0 && usesUplinkDNS(u) {
			slog.Warn("probe target dns: no DNS server known for the uplink yet", "uplink", u.Name, "resolv_file", u.ResolvFile)
		}
		out = append(out, superviseUplink(u, i, servers))
	}
	return out, nil
}

// superviseUplink is uplink u's (index i) supervision: probes (the target
// "dns" expands to servers), degraded action, hooks.
func superviseUplink(u config.Uplink, i int, servers []netip.Addr) supervise.Uplink {
	su := supervise.Uplink{
		Name: u.Name,
		Hooks: hooks.Spec{
			OnDown: u.OnDown, OnUp: u.OnUp, WhileDown: u.WhileDown,
			Retry: time.Duration(u.Retry), Timeout: time.Duration(u.HookTimeout), Shell: u.HookShell,
		},
	}
	switch u.Probes.Degraded {
	case config.DegradedWeight:
		su.Degraded = supervise.DegradedWeight
	case config.DegradedDown:
		su.Degraded = supervise.DegradedDown
	}
	su.Health = healthConfig(u, i, servers)
	su.Probe = len(su.Health.Targets) > 0
	return su
}

// healthConfig is uplink u's (index i) probe configuration; the target
// "dns" expands to servers, the uplink's DNS servers.
func healthConfig(u config.Uplink, i int, servers []netip.Addr) health.Config {
	p := u.Probes
	hc := health.Config{
		MinOK:         p.MinOK,
		Interval:      time.Duration(p.Interval),
		Timeout:       time.Duration(p.Timeout),
		DownAfter:     p.DownAfter,
		UpAfter:       p.UpAfter,
		LatencyMax:    time.Duration(p.LatencyMax),
		LossMax:       float64(p.LossMax),
		LossWindow:    p.LossWindow,
		DegradedAfter: p.DegradedAfter,
		RecoverAfter:  p.RecoverAfter,
		EchoID:        uint16(100 + i),
	}
	if p.Initial == config.InitialUp {
		hc.Initial = health.StateUp
	}
	for _, t := range p.Targets {
		switch t.Kind {
		case config.ProbeICMP:
			hc.Targets = append(hc.Targets, health.Target{Kind: health.KindICMP, Addr: t.Addr})
		case config.ProbeHTTP:
			if !t.Addr.IsValid() {
				// The probes do not resolve names (it would have to be
				// through the probed uplink): such a target is left out.
				slog.Warn("probe target left out: its URL names a host, probes need an IPv4 address", "uplink", u.Name, "url", t.URL)
				continue
			}
			hc.Targets = append(hc.Targets, health.Target{Kind: health.KindHTTP, Addr: t.Addr, URL: t.URL})
		case config.ProbeDNS:
			if !t.UplinkDNS {
				hc.Targets = append(hc.Targets, health.Target{Kind: health.KindDNS, Addr: t.Addr})
				continue
			}
			for _, a := range servers {
				hc.Targets = append(hc.Targets, health.Target{Kind: health.KindDNS, Addr: netip.AddrPortFrom(a, 53)})
			}
		}
	}
	hc.MinOK = min(hc.MinOK, len(hc.Targets))
	return hc
}

func usesUplinkDNS(u config.Uplink) bool {
	for _, t := range u.Probes.Targets {
		if t.UplinkDNS {
			return true
		}
	}
	return false
}

// uplinkDNS returns uplink u's DNS servers: configured, else the
// nameserver lines of its resolv file.
func uplinkDNS(u config.Uplink) []netip.Addr {
	var out []netip.Addr
	for _, a := range u.DNS {
		out = append(out, a.Addr)
	}
	if len(out) > 0 || u.ResolvFile == "" {
		return out
	}
	b, err := os.ReadFile(u.ResolvFile)
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil && a.Is4() {
				out = append(out, a)
			}
		}
	}
	return out
}

// knownDNS returns uplink u's (index i) DNS servers: configured, else those
// routineResolv last learned (learned, by uplink index), else its resolv
// file read now (before routineResolv's first reading).
func knownDNS(u config.Uplink, i int, learned [][]netip.Addr) []netip.Addr {
	if len(u.DNS) == 0 && i < len(learned) {
		return learned[i]
	}
	return uplinkDNS(u)
}

// routineResolv re-reads the uplinks' resolv files every two seconds (a PPP
// or DHCP client rewrites them when it connects) and re-targets the "dns"
// probes of an uplink whose servers changed.
func (d *daemon) routineResolv(ctx context.Context) {
	last := make([][]netip.Addr, len(d.conf().Uplinks))
	for i, u := range d.conf().Uplinks {
		last[i] = uplinkDNS(u)
	}
	d.mu.Lock()
	d.learnedDNS = append([][]netip.Addr(nil), last...)
	d.mu.Unlock()
	d.setDNSUpstreams()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for i, u := range d.conf().Uplinks {
			if u.ResolvFile == "" || len(u.DNS) > 0 {
				continue
			}
			cur := uplinkDNS(u)
			if equalAddrs(cur, last[i]) {
				continue
			}
			last[i] = cur
			d.mu.Lock()
			d.learnedDNS = append([][]netip.Addr(nil), last...)
			d.mu.Unlock()
			d.setDNSUpstreams()
			d.ring.Add(events.Event{Kind: "dns", Uplink: u.Name, Cause: "resolv file " + u.ResolvFile + " changed", Detail: fmt.Sprint(cur)})
			if usesUplinkDNS(u) {
				if err := d.sup.SetHealth(i, healthConfig(u, i, cur)); err != nil {
					d.log.Error("re-target dns probes", "uplink", u.Name, "err", err)
				}
			}
		}
	}
}

// routineLogEvents logs every event of the ring, one line each.
func (d *daemon) routineLogEvents(ctx context.Context) {
	for e := range d.ring.Subscribe(ctx, 256) {
		events.Log(ctx, d.log, e)
	}
}

// applyViews publishes the uplinks' state to the dataplane, keeps
// wanflow's nftables table in step with the uplink addresses, and carries
// out the failure actions of the uplinks that changed.
//
// nil views republishes the current ones (with fresh link headers).
func (d *daemon) applyViews(views []supervise.View, changes []supervise.Change) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if views == nil {
		views = d.views
	}
	cfg := d.conf()
	pus := cfg.PolicyUplinks()
	ups := make([]dataplane.Uplink, 0, len(views))
	var addrs []netip.Addr
	st := make([]uplinks.Status, 0, len(views))
	for _, v := range views {
		s := v.Status
		if s.Index < 0 || s.Index >= len(pus) {
			continue
		}
		st = append(st, s)
		pus[s.Index].Available = v.Available
		if v.WeightFactor < 1 {
			pus[s.Index].Weight = max(1, uint32(float64(pus[s.Index].Weight)*v.WeightFactor))
		}
		mtu := s.MTU
		if m := cfg.Uplinks[s.Index].MTU; m > 0 && (mtu <= 0 || m < mtu) {
			mtu = m // the configured MTU caps the link's, never raises it
		}
		ups = append(ups, dataplane.Uplink{
			Index: s.Index, Name: s.Name, Ifindex: s.Ifindex, Addr: s.Addr, MTU: mtu, Available: v.Available,
			LinkHeader: d.linkHeader(s),
		})
		if s.Available && s.Addr.IsValid() {
			addrs = append(addrs, s.Addr)
		}
	}
	d.views = views
	d.status = st
	pol, err := policy.New(pus, cfg.Balance.Affinity, cfg.PolicyRules())
	if err != nil {
		return err
	}
	if !equalAddrs(addrs, d.lastAddr) || d.lastAddr == nil {
		nc := nftguard.Config{Table: cfg.Kernel.NFTTable, Ports: [2]uint16{d.ports.Lo, d.ports.Hi},
			LANPrefixes: lanPrefixes(cfg, d.lanPrefix), Interfaces: uplinkInterfaces(cfg),
			TUN: cfg.Dataplane.TUN, LookupMark: steer.DefaultLookupMark}
		if err := nftguard.Apply(d.nft, nc, addrs); err != nil {
			return err
		}
		d.lastAddr = append([]netip.Addr{}, addrs...)
	}
	if err := d.engine.Update(ups, pol); err != nil {
		return err
	}
	for _, c := range changes {
		d.act(cfg, c)
	}
	if len(changes) > 0 {
		go d.setDNSUpstreams() // takes d.mu, held here
	}
	return nil
}

// act carries out what an uplink's change means for its flows.
func (d *daemon) act(cfg *config.Config, c supervise.Change) {
	u := cfg.Uplinks[c.Index]
	if c.Lost {
		tcp, _ := dataplane.ParseAction(u.OnFailure.TCP)
		udp, _ := dataplane.ParseAction(u.OnFailure.UDP)
		start := time.Now()
		r := d.engine.FailUplink(c.Index, false, tcp, udp)
		d.ring.Add(events.Event{Kind: events.KindFailover, Uplink: u.Name, Cause: c.Cause, Duration: time.Since(start),
			Detail: fmt.Sprintf("tcp %s, udp %s: %d reset, %d migrated, %d kept, %d ended", tcp, udp, r.Reset, r.Migrated, r.Kept, r.Ended)})
		d.dropParked(c.Index)
		return
	}
	if c.Readdressed {
		// The old address's NAT mappings are dead: end them (TCP) or
		// place them again (UDP), whatever the failure actions say.
		r := d.engine.FailUplink(c.Index, true, dataplane.ActionReset, dataplane.ActionMigrate)
		d.ring.Add(events.Event{Kind: events.KindFailover, Uplink: u.Name, Cause: c.Cause,
			Detail: fmt.Sprintf("readdressed: %d reset, %d migrated", r.Reset, r.Migrated)})
	}
	if c.Gained && cfg.Balance.Preempt {
		r := d.engine.Rebalance(dataplane.ActionReset, dataplane.ActionMigrate)
		d.ring.Add(events.Event{Kind: events.KindFailover, Uplink: u.Name, Cause: "preempt: " + c.Cause,
			Detail: fmt.Sprintf("%d reset, %d migrated back", r.Reset, r.Migrated)})
	}
}

// dropParked discards the packets the kernel still holds for uplink idx
// after it lost its carrier. What the dataplane sent through the uplink
// between the carrier loss and the failover did not leave: the kernel
// evicts a device's neighbour entries on carrier loss, so each such packet
// waits behind an unresolved (INCOMPLETE) entry — the gateway's, or, once
// the uplink's routes are gone, the remote's own (a raw socket bound to a
// device treats an unrouted destination as on-link). If the carrier
// returns before the entry gives up (its last ARP probe, about 2 s later
// with the defaults mcast_solicit 3 and retrans_time 1 s), those packets
// leave late with NAT mappings the failover has released, and their
// replies are dropped as dataplane_in_drop_no_flow (or, once a port is
// reused, could reach another flow). Deleting an INCOMPLETE entry frees
// its queue. Called after FailUplink: every worker has then finished the
// batch it had under the old snapshot, so nothing more is sent through
// the uplink. d.mu is held (d.status, d.h).
func (d *daemon) dropParked(idx int) {
	var s uplinks.Status
	for _, st := range d.status {
		if st.Index == idx {
			s = st
		}
	}
	if s.Carrier || s.Ifindex <= 0 || !s.HasMAC || d.h == nil {
		return
	}
	neighs, err := d.h.NeighList(s.Ifindex, netlink.FAMILY_V4)
	if err != nil {
		d.log.Warn("list neighbours of a failed uplink", "uplink", s.Name, "err", err)
		return
	}
	n := 0
	for i := range neighs {
		if neighs[i].State&netlink.NUD_INCOMPLETE == 0 {
			continue
		}
		if err := d.h.NeighDel(&neighs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			d.log.Warn("drop parked packets", "uplink", s.Name, "neighbour", neighs[i].IP, "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		d.log.Debug("dropped packets parked behind unresolved neighbours", "uplink", s.Name, "neighbours", n)
	}
}

func equalAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// stop removes everything start installed, in reverse order, and reports
// every failure. With handover (a planned restart) it hands the flows over
// instead and leaves the kernel objects to the next start.
func (d *daemon) stop(handover bool) error {
	// The monitor, the supervisor (probers, hooks) and the neighbour
	// reader end with the signal's context; wait for them first, or the
	// monitor could reinstall what is removed below.
	d.wg.Wait()
	var errs []error
	if handover && d.engine != nil && d.nft != nil {
		errs = append(errs, d.handoverStop())
	} else {
		if d.engine != nil {
			errs = append(errs, d.engine.Close())
			d.logStats()
		}
		errs = append(errs, removeInstalled(d.steer, d.mgr, d.nft, d.conf())...)
	}
	if d.h != nil {
		d.h.Close()
	}
	if d.stopLog != nil {
		d.stopLog()
	}
	return errors.Join(errs...)
}

// removeInstalled removes, in reverse order of installation, what the
// daemon installs for cfg: the LAN steering, the uplinks' tables and rules,
// the nftables tables (the guard and a restart's hold) and, with them, the
// handover file. Nil parts are skipped. It returns every failure.
func removeInstalled(st *steer.Steering, mgr *uplinks.Manager, nft *nftables.Conn, cfg *config.Config) []error {
	var errs []error
	if st != nil {
		errs = append(errs, st.Remove())
	}
	if mgr != nil {
		errs = append(errs, mgr.Remove())
	}
	if nft != nil {
		errs = append(errs, nftguard.Remove(nft, cfg.Kernel.NFTTable), nftguard.Unhold(nft, cfg.Kernel.NFTTable))
		// Only once it got that far: a start that failed earlier leaves a
		// handover file to the next start.
		removeHandover(cfg)
	}
	return errs
}

// lanAddress is the first IPv4 address of the LAN interface, with its
// prefix length: the source of the ICMP errors the router sends to LAN
// hosts, and the DHCP server's address and subnet.
func lanAddress(h *netlink.Handle, name string) (netip.Prefix, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("lan interface %s: %w", name, err)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("lan interface %s: addresses: %w", name, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			ones, _ := a.Mask.Size()
			return netip.PrefixFrom(ip, ones), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("lan interface %s has no IPv4 address", name)
}

// lanWait bounds how long start waits for the LAN interface's address:
// below systemd's default start timeout (90 s).
const lanWait = 60 * time.Second

// waitLANAddress is lanAddress, waiting up to lanWait for the interface and
// its IPv4 address to appear: at boot the unit may start before the
// network configuration has set the LAN address.
func (d *daemon) waitLANAddress(ctx context.Context, h *netlink.Handle, name string) (netip.Prefix, error) {
	deadline := time.Now().Add(lanWait)
	logged := false
	for {
		p, err := lanAddress(h, name)
		if err == nil {
			if logged {
				d.log.Info("LAN address appeared", "interface", name, "addr", p)
			}
			return p, nil
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("%w (waited %v)", err, lanWait)
		}
		if !logged {
			d.log.Warn("waiting for the LAN interface's IPv4 address", "interface", name, "err", err, "up_to", lanWait)
			logged = true
		}
		select {
		case <-ctx.Done():
			return p, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkEphemeralPorts refuses a NAT port range that overlaps the kernel's
// ephemeral port range: the router's own connections (probes, DNS) would
// then collide with NAT mappings, and wanflow's nftables rule would drop
// their replies.
func checkEphemeralPorts(r flowtable.PortRange) error {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fmt.Errorf("read ip_local_port_range: %w", err)
	}
	return ephemeralOverlap(r, string(b))
}

// ephemeralOverlap checks r against the contents of ip_local_port_range.
func ephemeralOverlap(r flowtable.PortRange, procRange string) error {
	f := strings.Fields(procRange)
	if len(f) != 2 {
		return fmt.Errorf("ip_local_port_range: unexpected %q", procRange)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("ip_local_port_range: unexpected %q", procRange)
	}
	if int(r.Lo) <= hi && lo <= int(r.Hi) {
		return fmt.Errorf("dataplane.nat_ports %d-%d overlaps the kernel's ephemeral ports %d-%d (net.ipv4.ip_local_port_range): choose a NAT range outside it", r.Lo, r.Hi, lo, hi)
	}
	return nil
}

// logStats logs the dataplane's non-zero counters and flow-table figures,
// one line, at exit.
func (d *daemon) logStats() {
	st := d.engine.Stats()
	attrs := []any{"flows", st.Flows}
	for i, v := range st.Counters {
		if v != 0 {
			attrs = append(attrs, dataplane.Counter(i).String(), v)
		}
	}
	for _, fs := range st.FlowStats {
		attrs = append(attrs, fmt.Sprintf("worker%d", fs.Worker), fmt.Sprintf("created=%d expired=%d evicted=%d ports_exhausted=%d full=%d preserved=%d",
			fs.Created, fs.Expired, fs.Evicted, fs.PortsExhausted, fs.Full, fs.PortsPreserved))
	}
	d.log.Info("dataplane counters", attrs...)
}

// linkHeader returns the Ethernet header that reaches uplink s's gateway
// (from the kernel's neighbour table), an empty header for a device without
// MAC addresses, or nil while the gateway's MAC is unknown. It records what
// it returned, for routineNeighbors.
func (d *daemon) linkHeader(s uplinks.Status) []byte {
	hdr := d.currentLinkHeader(s)
	if d.linkHdr == nil {
		d.linkHdr = map[int]string{}
	}
	if hdr == nil {
		delete(d.linkHdr, s.Index)
	} else {
		d.linkHdr[s.Index] = string(hdr)
	}
	return hdr
}

// currentLinkHeader reads the link-layer header for uplink s from the
// kernel: see linkHeader.
func (d *daemon) currentLinkHeader(s uplinks.Status) []byte {
	switch {
	case !s.Available || s.Ifindex <= 0:
		return nil
	case !s.HasMAC:
		return []byte{}
	case s.Gateway.IsValid():
		return d.ethHeader(s.Ifindex, s.Gateway)
	}
	return nil
}

func (d *daemon) ethHeader(ifindex int, gw netip.Addr) []byte {
	link, err := d.h.LinkByIndex(ifindex)
	if err != nil || len(link.Attrs().HardwareAddr) != 6 {
		return nil
	}
	neighs, err := d.h.NeighList(ifindex, netlink.FAMILY_V4)
	if err != nil {
		return nil
	}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP.To4())
		if !ok || ip != gw || len(n.HardwareAddr) != 6 {
			continue
		}
		if n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE|netlink.NUD_NOARP) != 0 {
			return nil
		}
		hdr := make([]byte, 14)
		copy(hdr[0:6], n.HardwareAddr)
		copy(hdr[6:12], link.Attrs().HardwareAddr)
		hdr[12], hdr[13] = 0x08, 0x00
		return hdr
	}
	return nil
}

// routineNeighbors re-reads the gateways' MAC addresses every second and
// republishes the uplinks when one appears, changes or goes: the dataplane
// sends super-packets straight to the gateway's MAC, so it must follow the
// kernel's neighbour table.
func (d *daemon) routineNeighbors(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.mu.Lock()
		st := d.status
		changed := false
		for _, s := range st {
			cur := d.currentLinkHeader(s)
			old, had := d.linkHdr[s.Index]
			if (cur == nil) == had || (cur != nil && string(cur) != old) {
				changed = true
			}
		}
		d.mu.Unlock()
		if changed {
			if err := d.applyViews(nil, nil); err != nil {
				d.log.Error("apply uplink state", "err", err)
			}
		}
	}
}

// lanPrefixes are the LAN's prefixes: lan.prefixes, else the LAN
// interface's.
func lanPrefixes(cfg *config.Config, iface netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range cfg.LAN.Prefixes {
		out = append(out, p.Prefix)
	}
	if len(out) == 0 {
		out = append(out, iface.Masked())
	}
	return out
}

// steerConfig is the LAN steering of cfg.
func steerConfig(cfg *config.Config) steer.Config {
	return steer.Config{
		LANInterface: cfg.LAN.Interface,
		TUN:          cfg.Dataplane.TUN,
		Table:        cfg.Kernel.TableBase,
		Priority:     cfg.Kernel.RulePriority,
		Protocol:     cfg.Kernel.RouteProtocol,
		Fallback:     fallbackTables(cfg),
		LookupMark:   steer.DefaultLookupMark,
	}
}

// managerConfig is the uplink manager's configuration for cfg.
func managerConfig(cfg *config.Config) uplinks.Config {
	specs := make([]uplinks.Spec, len(cfg.Uplinks))
	for i, u := range cfg.Uplinks {
		specs[i] = uplinks.Spec{Index: i, Name: u.Name, Interface: u.Interface, Gateway: u.Gateway.Addr, MTU: u.MTU}
	}
	return uplinks.Config{
		Uplinks:   specs,
		TableBase: cfg.Kernel.TableBase,
		Priority:  cfg.Kernel.RulePriority,
		Protocol:  cfg.Kernel.RouteProtocol,
	}
}

// fallbackTables are the uplinks' routing tables in the order LAN traffic
// falls back to them when the TUN device is gone (fail-open after a crash):
// lower tier first, then higher weight, then configuration order.
func fallbackTables(cfg *config.Config) []int {
	idx := cfg.FallbackOrder()
	out := make([]int, len(idx))
	for j, i := range idx {
		out[j] = cfg.Kernel.UplinkTable(i)
	}
	return out
}

// uplinkInterfaces are the uplinks' interface names: the fail-open
// masquerade translates LAN traffic the kernel forwards out of them.
func uplinkInterfaces(cfg *config.Config) []string {
	out := make([]string, len(cfg.Uplinks))
	for i, u := range cfg.Uplinks {
		out[i] = u.Interface
	}
	return out
}
