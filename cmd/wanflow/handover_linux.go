//go:build linux

package main

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
	"github.com/wanflow/wanflow/cmd/wanflow/handover"
	"github.com/wanflow/wanflow/dataplane"
	"github.com/wanflow/wanflow/flowtable"
	"github.com/wanflow/wanflow/uplinks/events"
	"github.com/wanflow/wanflow/uplinks/nftguard"
	"github.com/wanflow/wanflow/uplinks/supervise"
)

// A planned restart (SIGTERM: systemctl restart, an upgrade) hands the flow
// table over to the next start:
//
//  1. the stopping daemon holds the LAN (nftguard.Hold: the kernel forwards
//     nothing from the LAN to the uplinks for dataplane.restart_hold),
//     closes the dataplane, writes every flow and each uplink's health to
//     handoverPath and exits, leaving its routes, rules and nftables table
//     in place as a crash would;
//  2. the next start takes the file, restores the flows into the new
//     dataplane's shards with their NAT ports, starts each uplink in the
//     health it had, starts the dataplane and ends the hold.
//
// Meanwhile the TUN device is gone and LAN packets are dropped; TCP
// retransmits them to the new dataplane, which carries them on with the same
// NAT mappings, so established connections survive. If no start comes
// within the hold, the hold times out in the kernel and the fail-open
// fallback takes over. SIGINT (Ctrl-C) stops for good: everything is
// removed.

// handoverPath is the handover file: next to the control socket, in the
// runtime directory (/run/wanflow), which outlives the process but not a
// reboot.
func handoverPath(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Control.Socket), "handover.state")
}

// handoverStop is the planned-restart stop: hold, close the dataplane,
// write the flows. The kernel objects stay.
func (d *daemon) handoverStop() error {
	cfg := d.conf()
	hold := time.Duration(cfg.Dataplane.RestartHold)
	var errs []error
	d.mu.Lock()
	addrs := append([]netip.Addr(nil), d.lastAddr...)
	d.mu.Unlock()
	if err := nftguard.Hold(d.nft, nftguard.HoldConfig{
		Table: cfg.Kernel.NFTTable, LAN: []string{cfg.LAN.Interface}, Uplinks: uplinkInterfaces(cfg),
		Addrs: addrs, Ports: [2]uint16{d.ports.Lo, d.ports.Hi}, Timeout: hold,
	}); err != nil {
		errs = append(errs, fmt.Errorf("hold the LAN: %w", err))
	}
	errs = append(errs, d.engine.Close())
	d.logStats()
	st := d.handoverState()
	path := handoverPath(cfg)
	start := time.Now()
	if err := handover.Write(path, st); err != nil {
		errs = append(errs, err)
	} else {
		d.log.Info("handover: flows written for the next start", "flows", len(st.Flows), "file", path,
			"took", time.Since(start).Round(time.Microsecond), "hold", hold)
	}
	return errors.Join(errs...)
}

// handoverState is the state handed over: every flow, with its times turned
// into ages, oldest first, and each uplink's name, address and health.
func (d *daemon) handoverState() *handover.State {
	cfg := d.conf()
	now, wall := dataplane.Now(), time.Now()
	st := &handover.State{Written: wall, Workers: d.engine.Workers(), Ports: d.ports}
	d.mu.Lock()
	for i, u := range cfg.Uplinks {
		hu := handover.Uplink{Name: u.Name}
		for _, v := range d.views {
			if v.Index == i {
				hu.Addr, hu.Health = v.Addr, uint8(v.Health)
			}
		}
		st.Uplinks = append(st.Uplinks, hu)
	}
	d.mu.Unlock()
	d.engine.SaveFlows(func(s flowtable.Saved) {
		if int(s.Uplink) >= len(st.Uplinks) {
			return
		}
		s.Created, s.LastSeen = max(now-s.Created, 0), max(now-s.LastSeen, 0)
		st.Flows = append(st.Flows, s)
	})
	// Oldest first: the order the next start restores them in.
	slices.SortFunc(st.Flows, func(a, b flowtable.Saved) int { return cmp.Compare(b.LastSeen, a.LastSeen) })
	return st
}

// takeHandover restores the flows of a handover file into the engine, which
// must not have started, and returns what it did. A file whose hold has
// ended is discarded: the fail-open fallback has carried the LAN since.
func (d *daemon) takeHandover() restored {
	cfg := d.conf()
	path := handoverPath(cfg)
	st, err := handover.Take(path)
	if err != nil {
		d.log.Warn("handover: file not used", "file", path, "err", err)
		return restored{}
	}
	if st == nil {
		return restored{}
	}
	r := restored{age: max(time.Since(st.Written), 0)}
	// Once the hold has timed out, the fail-open fallback has carried the
	// LAN (masqueraded, with other source ports): the flows are stale.
	holding, _, err := nftguard.Holding(d.nft, cfg.Kernel.NFTTable)
	if hold := time.Duration(cfg.Dataplane.RestartHold); err != nil || !holding || r.age > hold {
		d.log.Warn("handover: the hold had ended (the fail-open fallback carried the LAN), flows not restored",
			"file", path, "age", r.age.Round(time.Millisecond), "hold", hold, "err", err)
		return restored{}
	}
	names := make([]string, len(cfg.Uplinks))
	for i, u := range cfg.Uplinks {
		names[i] = u.Name
	}
	r = restoreFlows(st, names, r.age, dataplane.Now(), d.engine.RestoreFlow)
	d.log.Info("handover: "+r.String(), "file", path, "workers_before", st.Workers, "workers", d.engine.Workers())
	return r
}

// applyHandoverHealth starts each probed uplink in the health it had at the
// handover instead of probes.initial: an uplink that was up carries its
// flows at once, one that was down gets no new flows before its probes
// answer.
func applyHandoverHealth(sups []supervise.Uplink, r restored) {
	for i := range sups {
		if st, ok := r.health[sups[i].Name]; ok && sups[i].Probe {
			sups[i].Health.Initial = st
		}
	}
}

// handoverEvent records the restart in the event ring.
func (d *daemon) handoverEvent(r restored) {
	if r.ok {
		d.ring.Add(events.Event{Kind: events.KindConfig, Cause: "restart: handover", Detail: r.String()})
	}
}

// endHold ends a hold left by the daemon before this one: its dataplane is
// replaced by ours.
func (d *daemon) endHold() {
	if err := nftguard.Unhold(d.nft, d.conf().Kernel.NFTTable); err != nil {
		d.log.Warn("handover: end the hold", "err", err)
	}
}

// removeHandover removes a handover file nobody will take (a stop for good,
// wanflow cleanup).
func removeHandover(cfg *config.Config) {
	if err := os.Remove(handoverPath(cfg)); err != nil && !errors.Is(err, os.ErrNotExist) {
		slog.Warn("handover: remove file", "err", err)
	}
}
