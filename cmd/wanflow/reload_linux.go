//go:build linux

package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
	"github.com/wanflow/wanflow/cmd/wanflow/control"
	"github.com/wanflow/wanflow/uplinks/events"
)

// Reload implements control.Backend, and SIGHUP: it reads the config file
// again and applies what changed without touching a flow. New weights,
// tiers, rules and affinity apply to new flows (the policy is replaced;
// existing flows keep their uplink); probes, hooks and failure actions
// apply from now on; the DHCP server and the DNS forwarder take their new
// settings in place. A file that does not validate, or a change that
// needs a restart (config.Diff's Restart), changes nothing.
func (d *daemon) Reload() (control.ReloadReply, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	old := d.conf()
	next, err := config.Load(d.cfgPath)
	if err != nil {
		d.ring.Add(events.Event{Kind: events.KindConfig, Cause: "reload refused", Err: err.Error()})
		return control.ReloadReply{}, control.Conflict("reload %s: %v", d.cfgPath, err)
	}
	diff, err := config.Diff(old, next)
	if err != nil {
		return control.ReloadReply{}, err
	}
	if len(diff.Restart) > 0 {
		err := fmt.Errorf("changes that need a restart: %s (nothing was applied)", strings.Join(diff.Restart, ", "))
		d.ring.Add(events.Event{Kind: events.KindConfig, Cause: "reload refused", Err: err.Error()})
		return control.ReloadReply{}, control.Conflict("reload %s: %v", d.cfgPath, err)
	}
	now := time.Now()
	reply := control.ReloadReply{Config: d.cfgPath, Loaded: now, Changed: diff.Changed}
	if reply.Changed == nil {
		reply.Changed = []string{}
	}
	if len(diff.Changed) == 0 {
		return reply, nil
	}
	// next validated as a whole: what follows fails only on a bug or a
	// failing kernel, and reports it.
	lan := d.lanPrefix
	d.cfgp.Store(next)
	d.mu.Lock()
	d.loaded = now
	learned := d.learnedDNS
	d.mu.Unlock()
	var errs []string
	for i, changed := range diff.Uplinks {
		if !changed {
			continue
		}
		u := next.Uplinks[i]
		if err := d.sup.Reconfigure(i, superviseUplink(u, i, knownDNS(u, i, learned))); err != nil {
			errs = append(errs, err.Error())
		}
	}
	// Tiers and weights also order the fail-open fallback rules.
	if fb := fallbackTables(next); !slices.Equal(fb, fallbackTables(old)) {
		if err := d.steer.SetFallback(fb); err != nil {
			errs = append(errs, "fallback rules: "+err.Error())
		}
	}
	// The policy (weights, tiers, rules, affinity) and MTUs are rebuilt
	// from the new config by republishing the current views.
	if err := d.applyViews(nil, nil); err != nil {
		errs = append(errs, err.Error())
	}
	if diff.DHCP && d.dhcp != nil {
		if err := d.dhcp.Reconfigure(d.dhcpConfig(next, lan)); err != nil {
			errs = append(errs, "dhcp: "+err.Error())
		}
	}
	if diff.DNS && d.dns != nil {
		if err := d.dns.Reconfigure(d.dnsConfig(next, lan)); err != nil {
			errs = append(errs, "dns: "+err.Error())
		}
	}
	d.setDNSUpstreams()
	ev := events.Event{Kind: events.KindConfig, Cause: "reloaded " + d.cfgPath, Detail: strings.Join(diff.Changed, ", ")}
	if len(errs) > 0 {
		ev.Err = strings.Join(errs, "; ")
	}
	d.ring.Add(ev)
	if len(errs) > 0 {
		return reply, fmt.Errorf("reload %s: applied with errors: %s", d.cfgPath, strings.Join(errs, "; "))
	}
	return reply, nil
}
