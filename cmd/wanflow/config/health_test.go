package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// healthExample uses every key of issue 3: probes, degraded, failure
// actions, preempt, hooks, resolv files, the event ring.
const healthExample = `lan:
  interface: lan0
uplinks:
  - name: adsl
    interface: eth0
    gateway: 100.64.1.1
    dns: [100.64.1.1]
    on_failure: keep
    on_down: logger -t wanflow "adsl down"
    on_up: logger -t wanflow 'adsl up'
    hook_timeout: 10s
    probes:
      targets: [dns, "dns:9.9.9.9:5353", "https://example.com/generate_204"]
      min_ok: 2
      loss_max: 0.25
      degraded: down
  - name: 4g
    interface: usb0
    tier: 2
    resolv_file: /run/usb0.resolv
    on_failure: { udp: reset }
    probes:
      targets: []
  - name: 3g
    interface: ppp0
    tier: 3
    resolv_file: /etc/ppp/resolv.conf
    on_failure: { tcp: migrate, udp: keep }
    while_down: wvdial 3g >/dev/null 2>&1
    retry: 1m
    hook_shell: true
    probes:
      targets:
      initial: down
balance:
  preempt: true
probes:
  targets: [1.1.1.1, icmp:8.8.8.8, "http://203.0.113.10:8080/"]
  min_ok: 1
  interval: 200ms
  latency_max: 150ms
  loss_max: 20%
  loss_window: 50
  degraded_after: 4
  recover_after: 6
  degraded: weight
  initial: up
control:
  events: 4096
`

func TestParseHealth(t *testing.T) {
	c := mustParse(t, healthExample)
	if len(c.Warnings) != 0 {
		t.Errorf("Warnings = %q", c.Warnings)
	}
	icmp := func(s string) ProbeTarget {
		return ProbeTarget{Kind: ProbeICMP, Addr: netip.AddrPortFrom(netip.MustParseAddr(s), 0)}
	}
	global := Probes{
		Targets: []ProbeTarget{icmp("1.1.1.1"), icmp("8.8.8.8"),
			{Kind: ProbeHTTP, Addr: netip.MustParseAddrPort("203.0.113.10:8080"), URL: "http://203.0.113.10:8080/"}},
		MinOK: 1, Interval: Duration(200 * time.Millisecond), Timeout: Duration(400 * time.Millisecond),
		DownAfter: 3, UpAfter: 5, LatencyMax: Duration(150 * time.Millisecond), LossMax: 0.2,
		LossWindow: 50, DegradedAfter: 4, RecoverAfter: 6, Degraded: DegradedWeight, Initial: InitialUp,
	}
	if !reflect.DeepEqual(c.Probes, global) {
		t.Errorf("Probes = %+v\nwant %+v", c.Probes, global)
	}
	adsl := global
	adsl.Targets = []ProbeTarget{
		{Kind: ProbeDNS, UplinkDNS: true},
		{Kind: ProbeDNS, Addr: netip.MustParseAddrPort("9.9.9.9:5353")},
		{Kind: ProbeHTTP, URL: "https://example.com/generate_204"},
	}
	adsl.MinOK, adsl.LossMax, adsl.Degraded = 2, 0.25, DegradedDown
	g4 := global
	g4.Targets = []ProbeTarget{}
	g3 := global
	g3.Initial = InitialDown // "targets:" with no value inherits the global targets
	for i, want := range []Probes{adsl, g4, g3} {
		if got := c.Uplinks[i].Probes; !reflect.DeepEqual(got, want) {
			t.Errorf("uplinks[%d].Probes = %+v\nwant %+v", i, got, want)
		}
	}
	if c.Uplinks[1].Probes.Probing() || !c.Uplinks[0].Probes.Probing() || !c.Uplinks[0].Probes.DegradeChecks() {
		t.Error("Probing/DegradeChecks wrong")
	}
	for i, want := range []FailureActions{{"keep", "keep"}, {"reset", "reset"}, {"migrate", "keep"}} {
		if got := c.Uplinks[i].OnFailure; got != want {
			t.Errorf("uplinks[%d].OnFailure = %+v, want %+v", i, got, want)
		}
	}
	a, g, p := c.Uplinks[0], c.Uplinks[1], c.Uplinks[2]
	if a.OnDown != `logger -t wanflow "adsl down"` || a.OnUp != `logger -t wanflow 'adsl up'` || time.Duration(a.HookTimeout) != 10*time.Second || a.HookShell {
		t.Errorf("adsl hooks = %+v", a)
	}
	if g.ResolvFile != "/run/usb0.resolv" || p.ResolvFile != "/etc/ppp/resolv.conf" {
		t.Errorf("resolv files %q %q", g.ResolvFile, p.ResolvFile)
	}
	if p.WhileDown != "wvdial 3g >/dev/null 2>&1" || time.Duration(p.Retry) != time.Minute || !p.HookShell || time.Duration(p.HookTimeout) != time.Minute {
		t.Errorf("3g hooks = %+v", p)
	}
	if !c.Balance.Preempt || c.Control.Events != 4096 {
		t.Errorf("Preempt %v Events %d", c.Balance.Preempt, c.Control.Events)
	}
	// Per-uplink target lists are copies.
	c.Uplinks[2].Probes.Targets[0] = ProbeTarget{}
	if c.Probes.Targets[0] != icmp("1.1.1.1") {
		t.Error("uplink targets share the global slice")
	}

	plan := mustParse(t, healthExample).Plan()
	for _, want := range []string{
		"      probes dns, dns:9.9.9.9:5353, https://example.com/generate_204 (2 of 3 must answer) every 200ms, timeout 400ms, down after 3, up after 5, initially up\n",
		"      degraded after 4 rounds with latency over 150ms or loss over 25% of 50 rounds, recovers after 6: down (counts as down)\n",
		"      on failure: tcp keep, udp keep (udp covers icmp)\n",
		"      on down: \"logger -t wanflow \\\"adsl down\\\"\"\n      on up: \"logger -t wanflow 'adsl up'\"\n      hooks run without a shell (split into words, no expansion), timeout 10s\n",
		"      dns from the nameserver lines of /run/usb0.resolv\n      probes: none (targets: []); health is carrier and address only\n      on failure: tcp reset, udp reset",
		"      probes icmp:1.1.1.1, icmp:8.8.8.8, http://203.0.113.10:8080/ (1 of 3 must answer) every 200ms, timeout 400ms, down after 3, up after 5, initially down\n",
		"loss over 20% of 50 rounds, recovers after 6: weight (carries half its weight)\n",
		"      while down: \"wvdial 3g >/dev/null 2>&1\", every 1m0s\n      hooks run with /bin/sh -c, timeout 1m0s\n",
		"  preempt: when a preferred uplink returns, flows on less preferred uplinks move back to it (udp re-pinned, tcp reset)\n",
		", event ring 4096\n",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("Plan() lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("plan:\n%s", plan)
	}
}

func TestProbeTarget(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		in   string
		want ProbeTarget
		str  string
	}{
		{"1.1.1.1", ProbeTarget{Kind: ProbeICMP, Addr: ap("1.1.1.1:0")}, "icmp:1.1.1.1"},
		{"icmp:9.9.9.9", ProbeTarget{Kind: ProbeICMP, Addr: ap("9.9.9.9:0")}, "icmp:9.9.9.9"},
		{"dns", ProbeTarget{Kind: ProbeDNS, UplinkDNS: true}, "dns"},
		{"dns:9.9.9.9", ProbeTarget{Kind: ProbeDNS, Addr: ap("9.9.9.9:53")}, "dns:9.9.9.9"},
		{"dns:9.9.9.9:53", ProbeTarget{Kind: ProbeDNS, Addr: ap("9.9.9.9:53")}, "dns:9.9.9.9"},
		{"dns:9.9.9.9:5353", ProbeTarget{Kind: ProbeDNS, Addr: ap("9.9.9.9:5353")}, "dns:9.9.9.9:5353"},
		{"http://1.1.1.1/", ProbeTarget{Kind: ProbeHTTP, Addr: ap("1.1.1.1:80"), URL: "http://1.1.1.1/"}, "http://1.1.1.1/"},
		{"https://1.1.1.1/x?y=1", ProbeTarget{Kind: ProbeHTTP, Addr: ap("1.1.1.1:443"), URL: "https://1.1.1.1/x?y=1"}, "https://1.1.1.1/x?y=1"},
		{"http://1.1.1.1:8080", ProbeTarget{Kind: ProbeHTTP, Addr: ap("1.1.1.1:8080"), URL: "http://1.1.1.1:8080"}, "http://1.1.1.1:8080"},
		{"HTTPS://connectivitycheck.gstatic.com/generate_204", ProbeTarget{Kind: ProbeHTTP, URL: "HTTPS://connectivitycheck.gstatic.com/generate_204"}, "HTTPS://connectivitycheck.gstatic.com/generate_204"},
		{"http://example.com.:81/", ProbeTarget{Kind: ProbeHTTP, URL: "http://example.com.:81/"}, "http://example.com.:81/"},
		{"http://[2001:db8::1]/", ProbeTarget{Kind: ProbeHTTP, Addr: ap("[2001:db8::1]:80"), URL: "http://[2001:db8::1]/"}, "http://[2001:db8::1]/"}, // IPv6 refused by Parse
	}
	for _, tt := range tests {
		var pt ProbeTarget
		if err := pt.UnmarshalYAML(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: tt.in, Line: 1}); err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if pt != tt.want || pt.String() != tt.str {
			t.Errorf("%q = %+v (%s), want %+v (%s)", tt.in, pt, pt, tt.want, tt.str)
		}
	}
	if s := (ProbeTarget{}).String(); s != "<none>" {
		t.Errorf("zero String() = %q", s)
	}
}

func TestFraction(t *testing.T) {
	for in, want := range map[string]Fraction{"20%": 0.2, "0.2": 0.2, "0": 0, "100%": 1, "1": 1, "12.5 %": 0.125, "0%": 0} {
		var f Fraction
		if err := f.UnmarshalYAML(&yaml.Node{Kind: yaml.ScalarNode, Value: in, Line: 1}); err != nil || f != want {
			t.Errorf("%q = %v, %v; want %v", in, f, err, want)
		}
	}
	if s := Fraction(0.125).String(); s != "12.5%" {
		t.Errorf("String() = %q", s)
	}
}

func TestHookWarnings(t *testing.T) {
	c := mustParse(t, okHead+"  - name: 3g\n    interface: ppp0\n    while_down: wvdial 3g '>/dev/null'\n    on_up: echo '$HOME'\n"+
		"  - name: b\n    interface: e1\n    hook_shell: true\n    on_down: echo $HOME | logger\n"+
		"  - name: c\n    interface: e2\n    dns: [100.64.3.1]\n    resolv_file: /run/e2.resolv\n")
	want := []string{
		"test.yaml: line 16: uplinks[3].resolv_file: not read: uplinks[3].dns is set",
	}
	if len(c.Warnings) != len(want) {
		t.Fatalf("Warnings = %q, want %d", c.Warnings, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(c.Warnings[i], w) {
			t.Errorf("Warnings[%d] = %q, want prefix %q", i, c.Warnings[i], w)
		}
	}
	// Unquoted shell syntax without hook_shell is refused, as the hook
	// runner refuses it.
	_, err := Parse([]byte(okHead+"  - name: 3g\n    interface: ppp0\n    while_down: wvdial 3g >/dev/null\n    on_up: echo $HOME\n"), "test.yaml")
	for _, w := range []string{"line 7: uplinks[1].while_down: unquoted '>'", "line 8: uplinks[1].on_up: unquoted '$'"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}

func TestBadHealthConfigs(t *testing.T) {
	up := okHead + "  - name: 3g\n    interface: ppp0\n" // keys appended to uplinks[1] start at line 7
	tests := []struct {
		name string
		src  string
		want string // the whole first problem
	}{
		// probes.targets
		{"bad target", okHead + "probes:\n  targets: [1.1.1.1, pong]\n",
			`test.yaml: line 6: probes.targets[1]: want a probe target (ADDR, icmp:ADDR, dns, dns:ADDR[:PORT], http://... or https://...), got "pong"`},
		{"bad icmp target", okHead + "probes:\n  targets:\n    - icmp:1.1.1\n",
			`test.yaml: line 7: probes.targets[0]: want icmp:ADDR, got "icmp:1.1.1"`},
		{"bad dns target", okHead + "probes:\n  targets:\n    - dns:9.9.9.9:0\n",
			`test.yaml: line 7: probes.targets[0]: want dns, dns:ADDR or dns:ADDR:PORT (port 1..65535), got "dns:9.9.9.9:0"`},
		{"dns name target", okHead + "probes: { targets: [\"dns:dns.quad9.net\"] }\n",
			`test.yaml: line 5: probes.targets[0]: want dns, dns:ADDR or dns:ADDR:PORT (port 1..65535), got "dns:dns.quad9.net"`},
		{"bad url", okHead + "probes: { targets: [\"http:/1.1.1.1/\"] }\n",
			`test.yaml: line 5: probes.targets[0]: want a URL like http://1.1.1.1/ or https://example.com/, got "http:/1.1.1.1/"`},
		{"url without host", okHead + "probes: { targets: [\"https:///x\"] }\n",
			`test.yaml: line 5: probes.targets[0]: want a URL like http://1.1.1.1/ or https://example.com/, got "https:///x"`},
		{"url bad port", okHead + "probes: { targets: [\"http://1.1.1.1:0/\"] }\n",
			`test.yaml: line 5: probes.targets[0]: want a port 1..65535 in "http://1.1.1.1:0/"`},
		{"url bad host", okHead + "probes: { targets: [\"http://a..b/\"] }\n",
			`test.yaml: line 5: probes.targets[0]: want an IPv4 address or a host name in "http://a..b/", got "a..b"`},
		{"url numeric host", okHead + "probes: { targets: [\"http://1.1.1.300/\"] }\n",
			`test.yaml: line 5: probes.targets[0]: want an IPv4 address or a host name in "http://1.1.1.300/", got "1.1.1.300"`},
		{"url ipv6", okHead + "probes: { targets: [\"http://[2001:db8::1]/\"] }\n",
			"test.yaml: line 5: probes.targets[0]: want an IPv4 address, got 2001:db8::1"},
		{"ipv6 target", okHead + "probes:\n  targets: ['2001:db8::1']\n",
			"test.yaml: line 6: probes.targets[0]: want an IPv4 address, got 2001:db8::1"},
		{"multicast dns target", okHead + "probes:\n  targets: [\"dns:224.0.0.251:5353\"]\n",
			"test.yaml: line 6: probes.targets[0]: want a unicast IPv4 address, got 224.0.0.251"},
		{"loopback target", okHead + "probes:\n  targets:\n    - 127.0.0.1\n",
			"test.yaml: line 7: probes.targets[0]: 127.0.0.1 is a loopback address: the router itself would answer"},
		{"duplicate target", okHead + "probes:\n  targets:\n    - 1.1.1.1\n    - icmp:1.1.1.1\n",
			"test.yaml: line 8: probes.targets[1]: target icmp:1.1.1.1 listed twice (first at line 7)"},
		{"target not a string", okHead + "probes:\n  targets: [{a: 1}]\n",
			"test.yaml: line 6: probes.targets[0]: want " + probeTargetSyntax + ", got a mapping"},
		{"uplink bad target", up + "    probes:\n      targets: [\"dns:x\"]\n",
			`test.yaml: line 8: uplinks[1].probes.targets[0]: want dns, dns:ADDR or dns:ADDR:PORT (port 1..65535), got "dns:x"`},
		// probes.min_ok
		{"min_ok 0", okHead + "probes:\n  min_ok: 0\n", "test.yaml: line 6: probes.min_ok: must be at least 1, got 0"},
		{"min_ok above targets", okHead + "probes:\n  min_ok: 3\n", "test.yaml: line 6: probes.min_ok: min_ok 3 is more than the 2 targets"},
		{"min_ok not int", okHead + "probes:\n  min_ok: half\n", `test.yaml: line 6: probes.min_ok: want an integer, got "half"`},
		{"uplink min_ok above inherited targets", up + "    probes: { min_ok: 3 }\n",
			"test.yaml: line 7: uplinks[1].probes.min_ok: min_ok 3 is more than the 2 targets"},
		{"uplink targets below inherited min_ok", okHead + "  - name: 3g\n    interface: ppp0\n    probes:\n      targets: [1.1.1.1]\nprobes: { min_ok: 2 }\n",
			"test.yaml: line 8: uplinks[1].probes.targets: min_ok 2 is more than the 1 targets"},
		// thresholds
		{"latency_max", okHead + "probes:\n  latency_max: 1m\n", "test.yaml: line 6: probes.latency_max: must be 1ms..30s, got 1m0s"},
		{"latency_max bad", okHead + "probes:\n  latency_max: fast\n", `test.yaml: line 6: probes.latency_max: want a duration like "500ms" or "2h4m", got "fast"`},
		{"loss_max percent", okHead + "probes:\n  loss_max: 120%\n", `test.yaml: line 6: probes.loss_max: want a percentage like "20%" or a fraction 0..1 like 0.2, got "120%"`},
		{"loss_max fraction", okHead + "probes:\n  loss_max: 20\n", `test.yaml: line 6: probes.loss_max: want a percentage like "20%" or a fraction 0..1 like 0.2, got "20"`},
		{"loss_max negative", up + "    probes:\n      loss_max: -0.1\n", `test.yaml: line 8: uplinks[1].probes.loss_max: want a percentage like "20%" or a fraction 0..1 like 0.2, got "-0.1"`},
		{"loss_max nan", okHead + "probes:\n  loss_max: .nan\n", `test.yaml: line 6: probes.loss_max: want a percentage like "20%" or a fraction 0..1 like 0.2, got ".nan"`},
		{"loss_window", okHead + "probes:\n  loss_window: 0\n", "test.yaml: line 6: probes.loss_window: must be 1..1000, got 0"},
		{"degraded_after", okHead + "probes:\n  degraded_after: 101\n", "test.yaml: line 6: probes.degraded_after: must be 1..100, got 101"},
		{"recover_after", up + "    probes: { recover_after: 0 }\n", "test.yaml: line 7: uplinks[1].probes.recover_after: must be 1..100, got 0"},
		{"degraded", okHead + "probes:\n  degraded: slow\n", `test.yaml: line 6: probes.degraded: want keep, weight or down, got "slow"`},
		{"uplink degraded", up + "    probes:\n      degraded: Down\n", `test.yaml: line 8: uplinks[1].probes.degraded: want keep, weight or down, got "Down"`},
		{"initial", okHead + "probes:\n  initial: unknown\n", `test.yaml: line 6: probes.initial: want up or down, got "unknown"`},
		{"initial bool", okHead + "probes:\n  initial: [up]\n", "test.yaml: line 6: probes.initial: want a string, got a list"},
		// on_failure
		{"on_failure scalar", up + "    on_failure: drop\n",
			`test.yaml: line 7: uplinks[1].on_failure: want reset, migrate or keep (or a mapping {tcp: ..., udp: ...}), got "drop"`},
		{"on_failure empty", up + "    on_failure: ''\n",
			`test.yaml: line 7: uplinks[1].on_failure: want reset, migrate or keep (or a mapping {tcp: ..., udp: ...}), got ""`},
		{"on_failure mapping value", up + "    on_failure:\n      tcp: reset\n      udp: rst\n",
			`test.yaml: line 9: uplinks[1].on_failure.udp: want reset, migrate or keep, got "rst"`},
		{"on_failure unknown key", up + "    on_failure: { icmp: keep }\n",
			"test.yaml: line 7: uplinks[1].on_failure.icmp: unknown key (want one of: tcp, udp)"},
		{"on_failure list", up + "    on_failure: [reset]\n",
			"test.yaml: line 7: uplinks[1].on_failure: want a mapping, got a list"},
		// preempt
		{"preempt", okHead + "balance:\n  preempt: yes\n", `test.yaml: line 6: balance.preempt: want true or false, got "yes"`},
		// hooks
		{"on_down_every is gone", up + "    on_down: wvdial 3g\n    on_down_every: 30s\n",
			"test.yaml: line 8: uplinks[1].on_down_every: unknown key (replaced by while_down (the command) and retry (its period))"},
		{"unbalanced quote", up + "    on_down: logger 'adsl down\n",
			"test.yaml: line 7: uplinks[1].on_down: unterminated single quote at byte 7 (hook_shell is false: the command runs without a shell; quote the character or set hook_shell: true)"},
		{"unbalanced double quote", up + "    while_down: \"wvdial \\\"3g\"\n",
			"test.yaml: line 7: uplinks[1].while_down: unterminated double quote"},
		{"trailing backslash", up + "    on_up: 'ip link set ppp0 up \\'\n",
			"test.yaml: line 7: uplinks[1].on_up: backslash at end of line at byte 20 (hook_shell is false: the command runs without a shell; quote the character or set hook_shell: true)"},
		{"empty command", up + "    on_up: '  '\n", "test.yaml: line 7: uplinks[1].on_up: empty command"},
		{"empty command name", up + "    on_up: \"'' x\"\n", "test.yaml: line 7: uplinks[1].on_up: empty command"},
		{"empty shell command", up + "    hook_shell: true\n    on_down: ' '\n", "test.yaml: line 8: uplinks[1].on_down: empty command"},
		{"nul byte", up + "    on_down: \"a\\0b\"\n", "test.yaml: line 7: uplinks[1].on_down: contains a NUL byte"},
		{"hook not a string", up + "    on_down: [wvdial, 3g]\n", "test.yaml: line 7: uplinks[1].on_down: want a string, got a list"},
		{"retry without while_down", up + "    on_down: wvdial 3g\n    retry: 30s\n",
			"test.yaml: line 8: uplinks[1].retry: needs while_down (the command it re-runs)"},
		{"retry too short", up + "    while_down: wvdial 3g\n    retry: 500ms\n", "test.yaml: line 8: uplinks[1].retry: must be 1s..24h0m0s, got 500ms"},
		{"retry too long", up + "    while_down: wvdial 3g\n    retry: 25h\n", "test.yaml: line 8: uplinks[1].retry: must be 1s..24h0m0s, got 25h0m0s"},
		{"hook_timeout", up + "    hook_timeout: 2h\n", "test.yaml: line 7: uplinks[1].hook_timeout: must be 1s..1h0m0s, got 2h0m0s"},
		{"hook_timeout zero", up + "    hook_timeout: 0s\n", "test.yaml: line 7: uplinks[1].hook_timeout: must be 1s..1h0m0s, got 0s"},
		{"hook_shell", up + "    hook_shell: sh\n", `test.yaml: line 7: uplinks[1].hook_shell: want true or false, got "sh"`},
		// resolv_file
		{"resolv_file relative", up + "    resolv_file: ppp0.resolv\n", `test.yaml: line 7: uplinks[1].resolv_file: want an absolute path, got "ppp0.resolv"`},
		{"resolv_file empty", up + "    resolv_file: ''\n", `test.yaml: line 7: uplinks[1].resolv_file: want an absolute path, got ""`},
		// control.events
		{"events small", okHead + "control:\n  events: 15\n", "test.yaml: line 6: control.events: must be 16..1000000, got 15"},
		{"events big", okHead + "control: { events: 1000001 }\n", "test.yaml: line 5: control.events: must be 16..1000000, got 1000001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.src), "test.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error %q", c, tt.want)
			}
			first := strings.SplitN(err.Error(), "\n", 2)[0]
			if !strings.HasPrefix(first, tt.want) {
				t.Errorf("Parse error\n got %q\nwant %q\n(all: %v)", first, tt.want, err)
			}
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Errorf("error %T is not a *Error with problems", err)
			}
		})
	}
}

// TestHealthTypesAlone checks that ProbeTarget and Fraction keep their line
// when decoded by yaml.v3 itself, outside Parse.
func TestHealthTypesAlone(t *testing.T) {
	var v struct {
		T []ProbeTarget `yaml:"t"`
		F Fraction      `yaml:"f"`
	}
	if err := yaml.Unmarshal([]byte("t: [dns, 1.1.1.1, \"http://1.1.1.1/\"]\nf: 5%\n"), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.T) != 3 || v.T[0].String() != "dns" || v.T[1].String() != "icmp:1.1.1.1" || v.F != 0.05 {
		t.Errorf("decoded %+v", v)
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "t:\n    - dns\n    - icmp:1.1.1.1\n    - http://1.1.1.1/\nf: 5%\n" {
		t.Errorf("Marshal = %q, %v", out, err)
	}
	for _, src := range []string{"\n\nt: [x]\n", "\n\nf: 2\n", "\n\nt: [\"dns:\"]\n", "\n\nt: [\"https://\"]\n"} {
		if err := yaml.Unmarshal([]byte(src), &v); err == nil || !strings.Contains(err.Error(), "line 3: ") {
			t.Errorf("Unmarshal(%q) = %v, want an error at line 3", src, err)
		}
	}
}
