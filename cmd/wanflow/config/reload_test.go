package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// reloadBase is the running configuration of the reload tests: every
// section, two uplinks, a rule.
const reloadBase = `lan:
  interface: lan0
  prefixes: [10.77.0.0/24]
  domain: lan
  dhcp:
    range: 10.77.0.100-10.77.0.199
    lease_time: 12h
    reservations:
      - { mac: "02:00:00:00:00:50", addr: 10.77.0.50, hostname: phone }
  dns:
    listen: [10.77.0.1:53]
    hedge_after: 200ms
    cache_size: 10000
uplinks:
  - name: adsl
    interface: eth0
    gateway: 192.168.1.1
    weight: 8
    dns: [192.168.1.1]
    on_down: logger adsl down
  - name: lte
    interface: usb0
    tier: 2
    weight: 6
    probes:
      interval: 2s
balance:
  affinity: flow
rules:
  - { name: voip, src: [10.77.0.50/32], proto: udp, uplinks: [adsl] }
probes:
  targets: [1.1.1.1, 8.8.8.8]
  interval: 500ms
control:
  metrics: 127.0.0.1:9469
dataplane:
  workers: 2
  flows:
    capacity: 262144
    timeouts:
      udp: 5m
kernel:
  table_base: 7700
`

// reloadEdit returns reloadBase with each pair of edits applied: old (which
// must occur exactly once) replaced by new.
func reloadEdit(t *testing.T, edits ...string) string {
	t.Helper()
	if len(edits)%2 != 0 {
		t.Fatalf("reloadEdit: odd number of arguments")
	}
	s := reloadBase
	for i := 0; i < len(edits); i += 2 {
		if n := strings.Count(s, edits[i]); n != 1 {
			t.Fatalf("reloadEdit: %q occurs %d times in the base, want once", edits[i], n)
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	return s
}

func TestDiff(t *testing.T) {
	type want struct {
		changed, restart []string
		uplinks          []bool // nil: none changed
		policy, dhcp     bool
		dns              bool
	}
	tests := []struct {
		name  string
		edits []string
		want  want
	}{
		{name: "no change", want: want{}},
		{
			name:  "comments and layout only",
			edits: []string{"  - { name: voip, src: [10.77.0.50/32], proto: udp, uplinks: [adsl] }\n", "  # VoIP\n  - name: voip\n    src: [10.77.0.50/32]\n    proto: udp\n    uplinks: [adsl]\n"},
			want:  want{},
		},
		{
			name:  "a default written out",
			edits: []string{"  affinity: flow\n", "  affinity: flow\n  preempt: false\n"},
			want:  want{},
		},

		// Live: the policy.
		{
			name:  "weight",
			edits: []string{"    weight: 8\n", "    weight: 5\n"},
			want:  want{changed: []string{"uplinks[adsl].weight"}, uplinks: []bool{true, false}, policy: true},
		},
		{
			name:  "tier",
			edits: []string{"    tier: 2\n", "    tier: 3\n"},
			want:  want{changed: []string{"uplinks[lte].tier"}, uplinks: []bool{false, true}, policy: true},
		},
		{
			name:  "rules",
			edits: []string{"uplinks: [adsl] }", "uplinks: [lte] }"},
			want:  want{changed: []string{"rules"}, policy: true},
		},
		{
			name:  "rule added",
			edits: []string{"rules:\n", "rules:\n  - { dst: [203.0.113.0/24], uplinks: [lte] }\n"},
			want:  want{changed: []string{"rules"}, policy: true},
		},
		{
			name:  "affinity",
			edits: []string{"affinity: flow", "affinity: src-dst"},
			want:  want{changed: []string{"balance.affinity"}, policy: true},
		},
		{
			name:  "preempt",
			edits: []string{"  affinity: flow\n", "  affinity: flow\n  preempt: true\n"},
			want:  want{changed: []string{"balance.preempt"}},
		},

		// Live: uplink settings.
		{
			name:  "uplink dns and hooks",
			edits: []string{"dns: [192.168.1.1]", "dns: [192.168.1.254]", "on_down: logger adsl down", "on_down: logger adsl gone\n    hook_shell: true"},
			want: want{changed: []string{"uplinks[adsl].dns", "uplinks[adsl].hook_shell", "uplinks[adsl].on_down"},
				uplinks: []bool{true, false}},
		},
		{
			name: "uplink mtu, resolv_file, on_failure, while_down",
			edits: []string{"    tier: 2\n", "    tier: 2\n    mtu: 1430\n    resolv_file: /run/lte.resolv\n    on_failure: keep\n" +
				"    while_down: redial lte\n    retry: 10s\n    hook_timeout: 5s\n    on_up: logger up\n"},
			want: want{changed: []string{
				"uplinks[lte].hook_timeout", "uplinks[lte].mtu", "uplinks[lte].on_failure.tcp", "uplinks[lte].on_failure.udp",
				"uplinks[lte].on_up", "uplinks[lte].resolv_file", "uplinks[lte].retry", "uplinks[lte].while_down",
			}, uplinks: []bool{false, true}},
		},
		{
			name:  "uplink probes",
			edits: []string{"      interval: 2s\n", "      interval: 1s\n"},
			want:  want{changed: []string{"uplinks[lte].probes.interval"}, uplinks: []bool{false, true}},
		},
		{
			// lte overrides interval: only adsl inherits the change.
			name:  "global probe interval",
			edits: []string{"  interval: 500ms\n", "  interval: 250ms\n"},
			want:  want{changed: []string{"probes.interval", "uplinks[adsl].probes.interval"}, uplinks: []bool{true, false}},
		},
		{
			name:  "global probe targets",
			edits: []string{"targets: [1.1.1.1, 8.8.8.8]", "targets: [1.1.1.1, dns]"},
			want: want{changed: []string{"probes.targets", "uplinks[adsl].probes.targets", "uplinks[lte].probes.targets"},
				uplinks: []bool{true, true}},
		},
		{
			name:  "probing turned off",
			edits: []string{"targets: [1.1.1.1, 8.8.8.8]", "targets: []"},
			want: want{changed: []string{"probes.targets", "uplinks[adsl].probes.targets", "uplinks[lte].probes.targets"},
				uplinks: []bool{true, true}},
		},

		// Live: LAN services.
		{
			name:  "domain",
			edits: []string{"domain: lan", "domain: home.arpa"},
			want:  want{changed: []string{"lan.domain"}, dhcp: true, dns: true},
		},
		{
			name:  "dhcp",
			edits: []string{"lease_time: 12h", "lease_time: 1h", "hostname: phone", "hostname: tablet"},
			want:  want{changed: []string{"lan.dhcp.lease_time", "lan.dhcp.reservations"}, dhcp: true},
		},
		{
			name:  "dhcp lease file and router",
			edits: []string{"    lease_time: 12h\n", "    lease_time: 12h\n    lease_file: /var/lib/wanflow/other.leases\n    router: 10.77.0.2\n"},
			want:  want{changed: []string{"lan.dhcp.lease_file", "lan.dhcp.router"}, dhcp: true},
		},
		{
			name:  "dns",
			edits: []string{"hedge_after: 200ms", "hedge_after: 100ms", "cache_size: 10000", "cache_size: 500\n    rate_limit: 0"},
			want:  want{changed: []string{"lan.dns.cache_size", "lan.dns.hedge_after", "lan.dns.rate_limit"}, dns: true},
		},
		{
			// allow defaults to lan.prefixes.
			name:  "lan prefixes",
			edits: []string{"prefixes: [10.77.0.0/24]", "prefixes: [10.77.0.0/16]"},
			want:  want{changed: []string{"lan.dns.allow", "lan.prefixes"}, dns: true},
		},

		// Restart.
		{
			name:  "uplink interface and gateway",
			edits: []string{"interface: eth0", "interface: eth1", "gateway: 192.168.1.1", "gateway: 192.168.1.2"},
			want: want{changed: []string{"uplinks[adsl].gateway", "uplinks[adsl].interface"},
				restart: []string{"uplinks[adsl].gateway", "uplinks[adsl].interface"}},
		},
		{
			name:  "uplink renamed",
			edits: []string{"name: lte", "name: umts"},
			want:  want{changed: []string{"uplinks"}, restart: []string{"uplinks"}},
		},
		{
			name:  "uplink added",
			edits: []string{"balance:\n", "  - { name: dsl2, interface: eth2 }\nbalance:\n"},
			want:  want{changed: []string{"uplinks"}, restart: []string{"uplinks"}, uplinks: []bool{false, false, false}},
		},
		{
			// Reordered and reweighted: matched by name, so the weight
			// change is reported under the uplink's name and new index.
			name: "uplinks reordered",
			edits: []string{"  - name: adsl\n    interface: eth0\n    gateway: 192.168.1.1\n    weight: 8\n    dns: [192.168.1.1]\n    on_down: logger adsl down\n", "",
				"      interval: 2s\n", "      interval: 2s\n  - name: adsl\n    interface: eth0\n    gateway: 192.168.1.1\n    weight: 7\n    dns: [192.168.1.1]\n    on_down: logger adsl down\n"},
			want: want{changed: []string{"uplinks", "uplinks[adsl].weight"}, restart: []string{"uplinks"},
				uplinks: []bool{false, true}, policy: true},
		},
		{
			name:  "lan interface",
			edits: []string{"interface: lan0", "interface: lan1"},
			want:  want{changed: []string{"lan.interface"}, restart: []string{"lan.interface"}},
		},
		{
			name:  "dns listen",
			edits: []string{"listen: [10.77.0.1:53]", "listen: [10.77.0.1:53, 10.77.0.2]"},
			want:  want{changed: []string{"lan.dns.listen"}, restart: []string{"lan.dns.listen"}},
		},
		{
			name:  "dhcp removed",
			edits: []string{"  dhcp:\n    range: 10.77.0.100-10.77.0.199\n    lease_time: 12h\n    reservations:\n      - { mac: \"02:00:00:00:00:50\", addr: 10.77.0.50, hostname: phone }\n", ""},
			want:  want{changed: []string{"lan.dhcp"}, restart: []string{"lan.dhcp"}},
		},
		{
			// The section and a live key: the DNS flag stays off, there is
			// no running forwarder to give it to.
			name:  "dns removed, domain changed",
			edits: []string{"  dns:\n    listen: [10.77.0.1:53]\n    hedge_after: 200ms\n    cache_size: 10000\n", "", "domain: lan", "domain: home"},
			want:  want{changed: []string{"lan.dns", "lan.domain"}, restart: []string{"lan.dns"}, dhcp: true},
		},
		{
			name:  "control",
			edits: []string{"metrics: 127.0.0.1:9469", "metrics: 127.0.0.1:9470\n  events: 64\n  socket: /run/wf.sock"},
			want: want{changed: []string{"control.events", "control.metrics", "control.socket"},
				restart: []string{"control.events", "control.metrics", "control.socket"}},
		},
		{
			name:  "dataplane",
			edits: []string{"workers: 2", "workers: 4\n  mtu: 1400\n  tun: wf1\n  nat_ports: 40000-50000", "capacity: 262144", "capacity: 1024", "udp: 5m", "udp: 10m\n      icmp: 2m"},
			want: want{
				changed: []string{"dataplane.flows.capacity", "dataplane.flows.timeouts.icmp", "dataplane.flows.timeouts.udp",
					"dataplane.mtu", "dataplane.nat_ports", "dataplane.tun", "dataplane.workers"},
				restart: []string{"dataplane.flows.capacity", "dataplane.flows.timeouts.icmp", "dataplane.flows.timeouts.udp",
					"dataplane.mtu", "dataplane.nat_ports", "dataplane.tun", "dataplane.workers"},
			},
		},
		{
			name:  "kernel",
			edits: []string{"table_base: 7700", "table_base: 200\n  nft_table: wf"},
			want:  want{changed: []string{"kernel.nft_table", "kernel.table_base"}, restart: []string{"kernel.nft_table", "kernel.table_base"}},
		},
		{
			name:  "live and restart together",
			edits: []string{"weight: 6", "weight: 2", "table_base: 7700", "table_base: 7800\n  route_protocol: 99"},
			want: want{changed: []string{"kernel.route_protocol", "kernel.table_base", "uplinks[lte].weight"},
				restart: []string{"kernel.route_protocol", "kernel.table_base"}, uplinks: []bool{false, true}, policy: true},
		},
	}
	old := mustParse(t, reloadBase)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := mustParse(t, reloadEdit(t, tt.edits...))
			got, err := Diff(old, cur)
			if err != nil {
				t.Fatalf("Diff: %v", err)
			}
			w := tt.want
			if w.uplinks == nil {
				w.uplinks = make([]bool, len(cur.Uplinks))
			}
			if !slices.Equal(got.Changed, w.changed) {
				t.Errorf("Changed: got %q, want %q", got.Changed, w.changed)
			}
			if !slices.Equal(got.Restart, w.restart) {
				t.Errorf("Restart: got %q, want %q", got.Restart, w.restart)
			}
			if !slices.Equal(got.Uplinks, w.uplinks) {
				t.Errorf("Uplinks: got %v, want %v", got.Uplinks, w.uplinks)
			}
			if got.Policy != w.policy || got.DHCP != w.dhcp || got.DNS != w.dns {
				t.Errorf("Policy, DHCP, DNS: got %v, %v, %v, want %v, %v, %v", got.Policy, got.DHCP, got.DNS, w.policy, w.dhcp, w.dns)
			}
			// The reverse direction reports the same keys.
			back, err := Diff(cur, old)
			if err != nil {
				t.Fatalf("Diff back: %v", err)
			}
			if !slices.Equal(back.Changed, got.Changed) || !slices.Equal(back.Restart, got.Restart) {
				t.Errorf("Diff back: got changed %q, restart %q; want those of Diff", back.Changed, back.Restart)
			}
		})
	}
}

// TestDiffSameConfig diffs each example configuration of the package with
// itself, parsed twice: nothing changed.
func TestDiffSameConfig(t *testing.T) {
	for _, src := range []string{reloadBase, designExample, raspberryPi, lanServices} {
		a, b := mustParse(t, src), mustParse(t, src)
		d, err := Diff(a, b)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Changed) != 0 || len(d.Restart) != 0 || d.Policy || d.DHCP || d.DNS || slices.Contains(d.Uplinks, true) {
			t.Errorf("Diff of a configuration with itself: %+v", d)
		}
		if len(d.Uplinks) != len(b.Uplinks) {
			t.Errorf("Uplinks: got %d entries, want %d", len(d.Uplinks), len(b.Uplinks))
		}
	}
}

func TestDiffNil(t *testing.T) {
	c := mustParse(t, reloadBase)
	for _, pair := range [][2]*Config{{nil, c}, {c, nil}, {nil, nil}} {
		if _, err := Diff(pair[0], pair[1]); err == nil {
			t.Errorf("Diff(%p, %p): no error", pair[0], pair[1])
		}
	}
}

// TestDiffDoesNotModify checks that Diff leaves its arguments alone.
func TestDiffDoesNotModify(t *testing.T) {
	a, b := mustParse(t, reloadBase), mustParse(t, reloadEdit(t, "weight: 8", "weight: 1"))
	a0, b0 := mustParse(t, reloadBase), mustParse(t, reloadEdit(t, "weight: 8", "weight: 1"))
	if _, err := Diff(a, b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, a0) || !reflect.DeepEqual(b, b0) {
		t.Error("Diff modified a configuration")
	}
}

// reloadTemplates returns the key path template of every setting Diff
// compares and reports on its own (the way Diff walks the type t), with
// its shape.
func reloadTemplates(t reflect.Type, tmpl string, out map[string]reloadShape) {
	keys, index := yamlFields(t)
	for _, k := range keys {
		p := join(tmpl, k)
		ft := t.Field(index[k]).Type
		switch s := shapeOf(ft, p); s {
		case shapeValue:
			out[p] = s
		case shapeSection:
			out[p] = s
			reloadTemplates(ft.Elem(), p, out)
		case shapeMapping:
			reloadTemplates(ft, p, out)
		case shapeKeyed:
			out[p] = s
			reloadTemplates(ft.Elem(), p+"[]", out)
		}
	}
}

// TestReloadClassification fails when a configuration key is not
// classified for reload: each key Diff reports must be in exactly one of
// reloadRestart and reloadLive, and those tables must name only keys that
// exist. Adding a setting to Config makes this test fail until the setting
// is put in one of the tables (and docs/configuration.md's Reload section
// says which).
func TestReloadClassification(t *testing.T) {
	tmpls := map[string]reloadShape{}
	reloadTemplates(reflect.TypeFor[Config](), "", tmpls)
	if len(tmpls) < 60 {
		t.Fatalf("found only %d settings; the reflection walk is broken: %v", len(tmpls), tmpls)
	}
	for _, p := range sortedKeys(toSet(tmpls)) {
		switch r, l := reloadRestart[p], reloadLive[p]; {
		case r && l:
			t.Errorf("%s is in both reloadRestart and reloadLive", p)
		case !r && !l:
			t.Errorf("%s is not classified: add it to reloadRestart (needs a restart) or reloadLive (applied on reload) in reload.go", p)
		}
	}
	for _, table := range []map[string]bool{reloadRestart, reloadLive, reloadPolicy} {
		for p := range table {
			if _, ok := tmpls[p]; !ok {
				t.Errorf("reload table names %s, which is not a setting Diff compares", p)
			}
		}
	}
	for p := range reloadPolicy {
		if !reloadLive[p] {
			t.Errorf("policy key %s is not live", p)
		}
	}
	for p := range reloadKeyed {
		if tmpls[p] != shapeKeyed {
			t.Errorf("keyed list %s is not a list of mappings", p)
		}
	}

	// Every key of the reference (docs_test.go's walk) is covered: compared
	// itself, or part of a list compared as a whole (rules[].name is part
	// of rules), or a mapping that is always there (only its keys count).
	for _, p := range yamlKeyPaths(reflect.TypeFor[Config](), "") {
		if _, ok := tmpls[p]; ok {
			continue
		}
		covered := false
		for q, s := range tmpls {
			if s == shapeValue && strings.HasPrefix(p, q+"[].") {
				covered = true
			}
		}
		if !covered && !isMappingPath(p) {
			t.Errorf("key %s of the reference is not covered by Diff", p)
		}
	}
}

func toSet(m map[string]reloadShape) map[string]bool {
	s := make(map[string]bool, len(m))
	for k := range m {
		s[k] = true
	}
	return s
}

// isMappingPath reports whether the key path p (docs_test.go's form) names
// a mapping that is always present, by walking Config's type.
func isMappingPath(p string) bool {
	t := reflect.TypeFor[Config]()
	for k := range strings.SplitSeq(p, ".") {
		list := strings.HasSuffix(k, "[]")
		k = strings.TrimSuffix(k, "[]")
		_, index := yamlFields(t)
		i, ok := index[k]
		if !ok {
			return false
		}
		t = t.Field(i).Type
		if list {
			if t.Kind() != reflect.Slice {
				return false
			}
			t = t.Elem()
		}
	}
	return t.Kind() == reflect.Struct && !isScalarType(t)
}
