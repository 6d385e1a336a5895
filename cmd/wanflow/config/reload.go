package config

import (
	"encoding"
	"errors"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// ReloadDiff is what changed between a running configuration and a newly
// loaded one, and what the running daemon can do about it (Diff).
//
// A reload never moves an existing flow: new weights, tiers, rules and
// probes apply to new flows; flows change uplink only through the usual
// on_failure and balance.preempt handling of health changes.
type ReloadDiff struct {
	// Changed lists the keys whose values differ, as config paths like
	// "uplinks[adsl].weight", "rules", "balance.affinity",
	// "lan.dns.hedge_after" or "probes.interval"; sorted, each once.
	// Uplinks are named by name, not index. Lists of mappings other than
	// uplinks (rules, lan.dhcp.reservations) and lists of values are
	// reported as one key. A section that is added or removed
	// (lan.dhcp, lan.dns) is reported as one key; the uplink list is
	// reported as "uplinks" when uplinks are added, removed, renamed or
	// reordered. A change of the global probes is also reported under
	// every uplink that inherits the key ("uplinks[adsl].probes.interval").
	Changed []string
	// Restart lists the keys of Changed that the running daemon cannot
	// apply (sorted): the new configuration takes effect only after a
	// restart. Non-empty Restart means the reload should be refused (or
	// the daemon restarted), not partly applied.
	Restart []string
	// Uplinks has one entry per uplink of the new configuration, by index:
	// true when the uplink, present under the same name in the old one,
	// changed in a live-appliable setting: weight, tier, dns, resolv_file,
	// mtu, on_failure, a hook (on_down, on_up, while_down, retry,
	// hook_timeout, hook_shell) or its effective probes (those written
	// under the uplink or inherited from the global probes). An uplink
	// that is new is covered by the "uplinks" key of Restart.
	Uplinks []bool
	// Policy reports that the uplink policy must be rebuilt: an uplink's
	// weight or tier, the rules or balance.affinity changed.
	Policy bool
	// DHCP reports that the running DHCP server's settings changed
	// (lan.dhcp.* or lan.domain, with lan.dhcp in both configurations):
	// give the server the new settings (its Reconfigure takes them all).
	DHCP bool
	// DNS reports that the running DNS forwarder's settings changed
	// (lan.dns.* other than listen, or lan.domain, with lan.dns in both
	// configurations). The forwarder's upstreams follow the uplinks
	// (their dns, tier and weight) and are reported under Uplinks.
	DNS bool
}

// Reload classes of every setting, by key path template: the path with
// "[]" after a list of mappings ("uplinks[].weight"), as
// docs/configuration.md writes keys.
//
// reloadRestart lists what the running daemon cannot apply: the kernel
// objects, sockets, devices and dataplane sizing made at start.
// reloadLive lists what it applies on reload. A key in neither is treated
// as live (so that adding a setting never makes reloads refuse it by
// mistake), but TestReloadClassification fails until the key is put in
// one of them: whoever adds a setting decides.
var (
	reloadRestart = setOf(
		// Uplink ids are indexes: table, rule priority, sockets and the
		// dataplane's per-uplink state are set up at start.
		"uplinks", // added, removed, renamed or reordered uplinks
		"uplinks[].name",
		"uplinks[].interface",
		"uplinks[].gateway",
		"lan.interface",
		"lan.dhcp", // the section added or removed
		"lan.dns",  // the section added or removed
		"lan.dns.listen",
		"control.socket",
		"control.metrics",
		"control.events",
		"dataplane.tun",
		"dataplane.mtu",
		"dataplane.workers",
		"dataplane.nat_ports",
		"dataplane.flows.capacity",
		"dataplane.flows.per_host",
		"dataplane.flows.timeouts.udp",
		"dataplane.flows.timeouts.tcp_established",
		"dataplane.flows.timeouts.tcp_transitory",
		"dataplane.flows.timeouts.icmp",
		"kernel.table_base",
		"kernel.rule_priority",
		"kernel.route_protocol",
		"kernel.nft_table",
	)
	reloadLive = setOf(
		// Checks and the default of lan.dns.allow only (reported as
		// lan.dns.allow when it changes the forwarder's clients).
		"lan.prefixes",
		"dataplane.restart_hold", // read when the daemon stops
		"lan.domain",
		"lan.dhcp.range",
		"lan.dhcp.lease_time",
		"lan.dhcp.lease_file",
		"lan.dhcp.router",
		"lan.dhcp.dns",
		"lan.dhcp.reservations",
		"lan.dns.cache_size",
		"lan.dns.hedge_after",
		"lan.dns.timeout",
		"lan.dns.serve_stale",
		"lan.dns.rate_limit",
		"lan.dns.allow",
		"uplinks[].tier",
		"uplinks[].weight",
		"uplinks[].dns",
		"uplinks[].mtu",
		"uplinks[].resolv_file",
		"uplinks[].on_failure.tcp",
		"uplinks[].on_failure.udp",
		"uplinks[].on_down",
		"uplinks[].on_up",
		"uplinks[].while_down",
		"uplinks[].retry",
		"uplinks[].hook_timeout",
		"uplinks[].hook_shell",
		"uplinks[].probes.targets",
		"uplinks[].probes.min_ok",
		"uplinks[].probes.interval",
		"uplinks[].probes.timeout",
		"uplinks[].probes.down_after",
		"uplinks[].probes.up_after",
		"uplinks[].probes.latency_max",
		"uplinks[].probes.loss_max",
		"uplinks[].probes.loss_window",
		"uplinks[].probes.degraded_after",
		"uplinks[].probes.recover_after",
		"uplinks[].probes.degraded",
		"uplinks[].probes.initial",
		"balance.affinity",
		"balance.preempt",
		"rules",
		// The global probes matter only through the uplinks' effective
		// probes, which are compared (and reported) per uplink.
		"probes.targets",
		"probes.min_ok",
		"probes.interval",
		"probes.timeout",
		"probes.down_after",
		"probes.up_after",
		"probes.latency_max",
		"probes.loss_max",
		"probes.loss_window",
		"probes.degraded_after",
		"probes.recover_after",
		"probes.degraded",
		"probes.initial",
	)
	// reloadPolicy lists the live keys the uplink policy is built from
	// (Config.Policy).
	reloadPolicy = setOf("uplinks[].weight", "uplinks[].tier", "rules", "balance.affinity")
	// reloadKeyed lists the lists of mappings whose entries are matched by
	// a key (the yaml key of a string field) rather than compared as a
	// whole; paths name an entry by its key: "uplinks[adsl].weight".
	reloadKeyed = map[string]string{"uplinks": "name"}
)

func setOf(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		if m[k] {
			panic("config: reload table lists " + k + " twice")
		}
		m[k] = true
	}
	return m
}

// reloadShape says how Diff compares a setting.
type reloadShape int

const (
	// shapeValue: compared as one value (scalars, lists of scalars, lists
	// of mappings that are not keyed).
	shapeValue reloadShape = iota
	// shapeSection: an optional mapping (a pointer): its presence is
	// compared at its own path, then its keys.
	shapeSection
	// shapeMapping: a mapping that is always there: only its keys are
	// compared.
	shapeMapping
	// shapeKeyed: a list of mappings in reloadKeyed: the sequence of keys
	// is compared at its own path, then the entries present in both.
	shapeKeyed
)

var (
	reloadUnmarshaler     = reflect.TypeFor[yaml.Unmarshaler]()
	reloadTextUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// isScalarType reports whether values of t are written as one YAML scalar:
// types with their own unmarshaler (durations, addresses, ranges,
// affinity) and the plain kinds.
func isScalarType(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	if pt.Implements(reloadUnmarshaler) || pt.Implements(reloadTextUnmarshaler) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Pointer:
		return false
	}
	return true
}

// shapeOf returns how the setting of type t at template path tmpl is
// compared.
func shapeOf(t reflect.Type, tmpl string) reloadShape {
	switch {
	case isScalarType(t):
		return shapeValue
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct && !isScalarType(t.Elem()):
		return shapeSection
	case t.Kind() == reflect.Struct:
		return shapeMapping
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && reloadKeyed[tmpl] != "":
		return shapeKeyed
	}
	return shapeValue
}

// Diff compares a running configuration with a newly loaded one, both
// returned by Parse or Load (validated, defaults applied), and says which
// keys changed, which of those need a restart and which running parts must
// be given the new settings. It walks the Config structs by their yaml
// keys, so a setting added later is compared without changes here; see
// reloadRestart for how it is classified. Diff returns an error only when
// a configuration is nil. It does not modify old or new.
func Diff(old, new *Config) (ReloadDiff, error) {
	if old == nil || new == nil {
		return ReloadDiff{}, errors.New("config: diff: nil configuration")
	}
	w := &differ{
		changed: map[string]bool{},
		restart: map[string]bool{},
		uplink:  -1,
		dhcp:    old.LAN.DHCP != nil && new.LAN.DHCP != nil,
		dns:     old.LAN.DNS != nil && new.LAN.DNS != nil,
	}
	w.d.Uplinks = make([]bool, len(new.Uplinks))
	w.mapping(reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem(), "", "")
	w.d.Changed = sortedKeys(w.changed)
	w.d.Restart = sortedKeys(w.restart)
	return w.d, nil
}

// differ is Diff's walk of two configurations.
type differ struct {
	d                ReloadDiff
	changed, restart map[string]bool
	// uplink is the index in the new configuration of the uplink being
	// walked, -1 outside the uplinks.
	uplink int
	// dhcp and dns report that the section is in both configurations.
	dhcp, dns bool
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// mapping compares the settings of the structs o and n (same type) at path,
// whose template is tmpl.
func (w *differ) mapping(o, n reflect.Value, path, tmpl string) {
	keys, index := yamlFields(o.Type())
	for _, k := range keys {
		i := index[k]
		w.setting(o.Field(i), n.Field(i), join(path, k), join(tmpl, k))
	}
}

// setting compares one setting of the old and new configuration.
func (w *differ) setting(o, n reflect.Value, path, tmpl string) {
	switch shapeOf(o.Type(), tmpl) {
	case shapeValue:
		if !equalSetting(o, n) {
			w.report(path, tmpl)
		}
	case shapeSection:
		if o.IsNil() != n.IsNil() {
			w.report(path, tmpl)
		}
		if !o.IsNil() && !n.IsNil() {
			w.mapping(o.Elem(), n.Elem(), path, tmpl)
		}
	case shapeMapping:
		w.mapping(o, n, path, tmpl)
	case shapeKeyed:
		w.keyed(o, n, path, tmpl)
	}
}

// keyed compares the keyed lists o and n: their sequence of keys, then each
// entry of n whose key is in o with that entry.
func (w *differ) keyed(o, n reflect.Value, path, tmpl string) {
	_, index := yamlFields(o.Type().Elem())
	fi, ok := index[reloadKeyed[tmpl]]
	if !ok {
		panic("config: reload: " + tmpl + " has no key " + reloadKeyed[tmpl]) // programmer error
	}
	key := func(v reflect.Value, i int) string { return v.Index(i).Field(fi).String() }
	old := make(map[string]int, o.Len())
	var oldKeys, newKeys []string
	for i := range o.Len() {
		k := key(o, i)
		oldKeys = append(oldKeys, k)
		if _, dup := old[k]; !dup {
			old[k] = i
		}
	}
	for i := range n.Len() {
		newKeys = append(newKeys, key(n, i))
	}
	if !slices.Equal(oldKeys, newKeys) {
		w.report(path, tmpl)
	}
	outer := w.uplink
	defer func() { w.uplink = outer }()
	for i, k := range newKeys {
		j, ok := old[k]
		if !ok {
			continue
		}
		if tmpl == "uplinks" {
			w.uplink = i
		}
		w.mapping(o.Index(j), n.Index(i), path+"["+k+"]", tmpl+"[]")
	}
}

// report records that the setting at path (template tmpl) changed.
func (w *differ) report(path, tmpl string) {
	w.changed[path] = true
	if reloadRestart[tmpl] {
		w.restart[path] = true
		return
	}
	if reloadPolicy[tmpl] {
		w.d.Policy = true
	}
	switch {
	case strings.HasPrefix(tmpl, "uplinks[]."):
		if w.uplink >= 0 {
			w.d.Uplinks[w.uplink] = true
		}
	case tmpl == "lan.domain":
		w.d.DHCP = w.d.DHCP || w.dhcp
		w.d.DNS = w.d.DNS || w.dns
	case strings.HasPrefix(tmpl, "lan.dhcp."):
		w.d.DHCP = w.d.DHCP || w.dhcp
	case strings.HasPrefix(tmpl, "lan.dns."):
		w.d.DNS = w.d.DNS || w.dns
	}
}

// equalSetting reports whether two values of a setting are the same: by
// their yaml keys for mappings (never by unexported fields such as the
// line a rule was written on), element by element for lists (an empty
// list equals an absent one), by == for scalars.
func equalSetting(a, b reflect.Value) bool {
	t := a.Type()
	if isScalarType(t) {
		if t.Comparable() {
			return a.Equal(b)
		}
		return reflect.DeepEqual(a.Interface(), b.Interface())
	}
	switch t.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalSetting(a.Elem(), b.Elem())
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalSetting(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		keys, index := yamlFields(t)
		for _, k := range keys {
			if !equalSetting(a.Field(index[k]), b.Field(index[k])) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}
