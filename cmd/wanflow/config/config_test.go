package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wanflow/wanflow/uplinks/policy"
)

// designExample is the configuration of DESIGN.md, plus a rule.
const designExample = `lan:
  interface: lan0
  dhcp: { range: 10.77.0.100-10.77.0.199, lease_time: 12h, lease_file: /var/lib/wanflow/dhcp.leases }
  dns:  { listen: [10.77.0.1:53] }
uplinks:
  - { name: adsl, interface: eth0, gateway: 192.168.1.1, tier: 1, weight: 8, dns: [192.168.1.1] }
  - { name: 4g,   interface: usb0, tier: 2, weight: 6 }
  - { name: 3g,   interface: ppp0, tier: 3, weight: 3, on_down: "wvdial 3g" }
balance: { affinity: flow }     # flow | src-dst | src
rules:
  - { name: voip, src: [10.77.0.50/32], dst: [], proto: udp, dst_ports: ["5060", "10000-20000"], uplinks: [adsl] }
probes:  { targets: [1.1.1.1, 8.8.8.8], interval: 500ms, timeout: 1s, down_after: 3, up_after: 5 }
control: { socket: /run/wanflow/wanflow.sock, metrics: 127.0.0.1:9469 }
`

// raspberryPi is the reference box: LAN 192.168.1.0/24 on eth0 (router
// 192.168.1.5), the ADSL modem 192.168.1.1 on the same segment, a USB 4G
// modem on usb0 via 192.168.42.129 and a 3G PPP dongle on ppp0.
const raspberryPi = `# wanflow on the reference Raspberry Pi
lan:
  interface: eth0
  prefixes: [192.168.1.0/24]
  dhcp:
    range: 192.168.1.100-192.168.1.199
  dns:
    listen: [192.168.1.5:53]
uplinks:
  - name: adsl
    interface: eth0            # the modem is on the LAN switch
    gateway: 192.168.1.1
    weight: 8
    dns: [192.168.1.1]
  - name: 4g
    interface: usb0
    gateway: 192.168.42.129
    tier: 2
    weight: 6
    mtu: 1430
    probes: { interval: 2s, down_after: 2 }
  - name: 3g
    interface: ppp0
    tier: 3
    weight: 3
    while_down: wvdial 3g
    retry: 30s
balance:
  affinity: src-dst
dataplane:
  workers: 4
kernel:
  table_base: 200
`

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func addr(s string) Addr { return Addr{netip.MustParseAddr(s)} }

func TestParseDesignExample(t *testing.T) {
	c := mustParse(t, designExample)
	if got, want := c.LAN.Interface, "lan0"; got != want {
		t.Errorf("LAN.Interface = %q, want %q", got, want)
	}
	if c.LAN.DHCP == nil || c.LAN.DHCP.Range.String() != "10.77.0.100-10.77.0.199" ||
		time.Duration(c.LAN.DHCP.LeaseTime) != 12*time.Hour || c.LAN.DHCP.LeaseFile != "/var/lib/wanflow/dhcp.leases" {
		t.Errorf("LAN.DHCP = %+v", c.LAN.DHCP)
	}
	if c.LAN.DNS == nil || len(c.LAN.DNS.Listen) != 1 || c.LAN.DNS.Listen[0].String() != "10.77.0.1:53" {
		t.Errorf("LAN.DNS = %+v", c.LAN.DNS)
	}
	if len(c.LAN.Prefixes) != 0 {
		t.Errorf("LAN.Prefixes = %v, want none (learned)", c.LAN.Prefixes)
	}
	wantUplinks := []struct {
		name, iface, gw string
		tier            int
		weight          uint32
		onDown          string
	}{
		{"adsl", "eth0", "192.168.1.1", 1, 8, ""},
		{"4g", "usb0", "invalid IP", 2, 6, ""},
		{"3g", "ppp0", "invalid IP", 3, 3, "wvdial 3g"},
	}
	if len(c.Uplinks) != len(wantUplinks) {
		t.Fatalf("%d uplinks, want %d", len(c.Uplinks), len(wantUplinks))
	}
	for i, w := range wantUplinks {
		u := c.Uplinks[i]
		if u.Name != w.name || u.Interface != w.iface || u.Gateway.String() != w.gw || u.Tier != w.tier || u.Weight != w.weight || u.OnDown != w.onDown {
			t.Errorf("uplinks[%d] = %+v, want %+v", i, u, w)
		}
		if !reflect.DeepEqual(u.Probes, c.Probes) {
			t.Errorf("uplinks[%d].Probes = %+v, want the global %+v", i, u.Probes, c.Probes)
		}
		if u.Line() != 6+i {
			t.Errorf("uplinks[%d].Line() = %d, want %d", i, u.Line(), 6+i)
		}
	}
	if got := c.Uplinks[0].DNS; len(got) != 1 || got[0] != addr("192.168.1.1") {
		t.Errorf("adsl DNS = %v", got)
	}
	r := c.Rules
	if len(r) != 1 || r[0].Name != "voip" || r[0].Proto != Proto(policy.ProtoUDP) ||
		!reflect.DeepEqual(r[0].DstPorts, []PortRange{{5060, 5060}, {10000, 20000}}) ||
		len(r[0].Src) != 1 || r[0].Src[0].String() != "10.77.0.50/32" || len(r[0].Dst) != 0 ||
		!reflect.DeepEqual(r[0].Uplinks, []string{"adsl"}) || r[0].Line() != 11 {
		t.Errorf("Rules = %+v", r)
	}
	// Everything not in the file has its default.
	def := Default()
	if c.Dataplane != def.Dataplane {
		t.Errorf("Dataplane = %+v, want defaults %+v", c.Dataplane, def.Dataplane)
	}
	if c.Kernel != def.Kernel {
		t.Errorf("Kernel = %+v, want defaults %+v", c.Kernel, def.Kernel)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("Warnings = %q", c.Warnings)
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, "lan: {interface: lan0}\nuplinks: [{name: a, interface: eth0}]\n")
	d := c.Dataplane
	if d.TUN != "wf0" || d.MTU != 1500 || d.Workers != 0 || d.NATPorts != (PortRange{20000, 32767}) || d.Flows.Capacity != 262144 {
		t.Errorf("Dataplane = %+v", d)
	}
	to := d.Flows.Timeouts
	if time.Duration(to.UDP) != 5*time.Minute || time.Duration(to.TCPEstablished) != 2*time.Hour+4*time.Minute ||
		time.Duration(to.TCPTransitory) != 4*time.Minute || time.Duration(to.ICMP) != 60*time.Second {
		t.Errorf("Timeouts = %+v", to)
	}
	if k := c.Kernel; k != (Kernel{TableBase: 7700, RulePriority: 7690, RouteProtocol: 167, NFTTable: "wanflow"}) {
		t.Errorf("Kernel = %+v", k)
	}
	if k := c.Kernel; k.LANTable() != 7700 || k.UplinkTable(0) != 7701 || k.UplinkTable(2) != 7703 ||
		k.SuppressRulePriority() != 7690 || k.LANRulePriority() != 7700 || k.UplinkRulePriority(0) != 7800 || k.UplinkRulePriority(3) != 7830 {
		t.Errorf("kernel ids do not follow the contract: %+v", k)
	}
	if c.Balance.Affinity != policy.AffinityFlow {
		t.Errorf("Affinity = %v, want flow", c.Balance.Affinity)
	}
	if u := c.Uplinks[0]; u.Tier != 1 || u.Weight != 1 || u.Gateway.IsValid() || u.MTU != 0 {
		t.Errorf("uplink defaults = %+v", u)
	}
	wantProbes := Probes{
		Targets: []ProbeTarget{
			{Kind: ProbeICMP, Addr: netip.MustParseAddrPort("1.1.1.1:0")},
			{Kind: ProbeICMP, Addr: netip.MustParseAddrPort("8.8.8.8:0")},
		},
		MinOK: 1, Interval: Duration(200 * time.Millisecond), Timeout: Duration(400 * time.Millisecond),
		DownAfter: 3, UpAfter: 5, LossWindow: 20, DegradedAfter: 3, RecoverAfter: 5,
		Degraded: DegradedKeep, Initial: InitialUp,
	}
	if !reflect.DeepEqual(c.Probes, wantProbes) {
		t.Errorf("Probes = %+v\nwant %+v", c.Probes, wantProbes)
	}
	if !reflect.DeepEqual(c.Uplinks[0].Probes, wantProbes) {
		t.Errorf("uplink Probes = %+v\nwant %+v", c.Uplinks[0].Probes, wantProbes)
	}
	if u := c.Uplinks[0]; u.OnFailure != (FailureActions{TCP: "reset", UDP: "migrate"}) || time.Duration(u.Retry) != 30*time.Second ||
		time.Duration(u.HookTimeout) != time.Minute || u.HookShell || u.ResolvFile != "" || u.OnDown != "" || u.OnUp != "" || u.WhileDown != "" {
		t.Errorf("uplink hook/failure defaults = %+v", u)
	}
	if c.Balance.Preempt {
		t.Error("Preempt defaults to true")
	}
	if c.Control.Socket != "/run/wanflow/wanflow.sock" || c.Control.Metrics.String() != "127.0.0.1:9469" || c.Control.Events != 1024 {
		t.Errorf("Control = %+v", c.Control)
	}
	if c.LAN.DHCP != nil || c.LAN.DNS != nil {
		t.Errorf("DHCP/DNS enabled without being configured: %+v %+v", c.LAN.DHCP, c.LAN.DNS)
	}
	if c.Name() != "test.yaml" {
		t.Errorf("Name() = %q", c.Name())
	}
}

func TestParseRaspberryPi(t *testing.T) {
	c := mustParse(t, raspberryPi)
	if c.LAN.Interface != "eth0" || len(c.LAN.Prefixes) != 1 || c.LAN.Prefixes[0].String() != "192.168.1.0/24" {
		t.Errorf("LAN = %+v", c.LAN)
	}
	if h := c.LAN.DHCP; h == nil || time.Duration(h.LeaseTime) != 12*time.Hour || h.LeaseFile != "/var/lib/wanflow/dhcp.leases" {
		t.Errorf("DHCP defaults = %+v", h)
	}
	adsl, g4, g3 := c.Uplinks[0], c.Uplinks[1], c.Uplinks[2]
	if adsl.Interface != c.LAN.Interface || adsl.Gateway != addr("192.168.1.1") || adsl.Tier != 1 || adsl.Weight != 8 {
		t.Errorf("adsl = %+v", adsl)
	}
	if g4.Gateway != addr("192.168.42.129") || g4.Tier != 2 || g4.MTU != 1430 {
		t.Errorf("4g = %+v", g4)
	}
	// Per-uplink probes override the keys they give, inherit the others.
	if time.Duration(g4.Probes.Interval) != 2*time.Second || g4.Probes.DownAfter != 2 ||
		g4.Probes.UpAfter != 5 || time.Duration(g4.Probes.Timeout) != 400*time.Millisecond || len(g4.Probes.Targets) != 2 {
		t.Errorf("4g probes = %+v", g4.Probes)
	}
	if g3.Gateway.IsValid() || g3.WhileDown != "wvdial 3g" || g3.OnDown != "" || time.Duration(g3.Retry) != 30*time.Second {
		t.Errorf("3g = %+v", g3)
	}
	if c.Balance.Affinity != policy.AffinitySrcDst || c.Dataplane.Workers != 4 || c.Kernel.UplinkTable(2) != 203 {
		t.Errorf("balance %v workers %d tables %d", c.Balance.Affinity, c.Dataplane.Workers, c.Kernel.UplinkTable(2))
	}
	p, err := c.Policy()
	if err != nil {
		t.Fatal(err)
	}
	f := policy.Flow{Proto: policy.ProtoTCP, Src: [4]byte{192, 168, 1, 20}, Dst: [4]byte{203, 0, 113, 10}, SrcPort: 40000, DstPort: 443}
	if d := p.Choose(f); d.Uplink != 0 || d.Reason != policy.ReasonOnlyCandidate {
		t.Errorf("Choose = %+v, want adsl (the only tier-1 uplink)", d)
	}
	q, _ := p.WithAvailability([]bool{false, true, true})
	if d := q.Choose(f); d.Uplink != 1 {
		t.Errorf("with adsl down: Choose = %+v, want 4g", d)
	}
	plan := c.Plan()
	for _, want := range []string{
		"  ip rule add priority 7700 iif eth0 lookup 200 protocol 167\n",
		"  [0] adsl: interface eth0, tier 1, weight 8, table 201\n      on the LAN segment",
		"      ip route replace default via 192.168.42.129 dev usb0 onlink table 202 proto 167\n",
		"      ip route replace default [via <gateway learned on ppp0> onlink] dev ppp0 table 203 proto 167\n",
		"      while down: \"wvdial 3g\", every 30s\n      hooks run without a shell (split into words, no expansion), timeout 1m0s\n",
		"      probes icmp:1.1.1.1, icmp:8.8.8.8 (1 of 2 must answer) every 2s, timeout 400ms, down after 2, up after 5, initially up\n",
		"      degraded: off (no latency_max or loss_max)\n",
		"      on failure: tcp reset, udp migrate (udp covers icmp)\n",
		"  workers: 4\n",
		"  affinity src-dst\n",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("Plan() lacks %q:\n%s", want, plan)
		}
	}
}

func TestPlan(t *testing.T) {
	c := mustParse(t, designExample)
	plan := c.Plan()
	for _, want := range []string{
		"wanflow plan for test.yaml\n",
		"  device wf0, mtu 1500\n",
		"  ip route replace default dev wf0 table 7700 proto 167\n",
		"  ip rule add priority 7690 lookup main suppress_prefixlength 0 protocol 167\n",
		"  ip rule add priority 7700 iif lan0 lookup 7700 protocol 167\n",
		"  [0] adsl: interface eth0, tier 1, weight 8, table 7701\n",
		"      ip rule add priority 7800 from <eth0 address> lookup 7701 protocol 167\n",
		"      ip route replace default via 192.168.1.1 dev eth0 onlink table 7701 proto 167\n",
		"      ip rule add priority 7810 from <usb0 address> lookup 7702 protocol 167\n",
		"      ip rule add priority 7820 from <ppp0 address> lookup 7703 protocol 167\n",
		"  table ip wanflow {\n",
		"    chain prerouting { type filter hook prerouting priority raw; policy accept;\n",
		"    set uplink_addrs { type ipv4_addr; elements = { <eth0 address>, <usb0 address>, <ppp0 address> } }\n",
		"      ip daddr @uplink_addrs tcp dport 20000-32767 fib saddr . mark 0x77f10000 oifname wf0 counter drop\n",
		"      ip daddr @uplink_addrs udp dport 20000-32767 fib saddr . mark 0x77f10000 oifname wf0 counter drop\n",
		"  workers: GOMAXPROCS at start\n",
		"  NAT ports 20000-32767 (12768 ports)",
		"  flows: capacity 262144, at most 16384 per LAN host; timeouts udp 5m0s, tcp_established 2h4m0s, tcp_transitory 4m0s, icmp 1m0s\n",
		"  affinity flow\n",
		"  tier 1 (while up): adsl weight 8 (100.0%)\n",
		"  tier 2 (only while every lower tier is down): 4g weight 6 (100.0%)\n",
		"    0 voip: src 10.77.0.50/32 proto udp dst_ports 5060, 10000-20000 -> adsl\n",
		"  socket /run/wanflow/wanflow.sock, metrics 127.0.0.1:9469, event ring 1024\n",
		"  no preempt: when a preferred uplink returns, only new flows use it; existing flows stay where they are\n",
		"      on down: \"wvdial 3g\"\n      hooks run without a shell (split into words, no expansion), timeout 1m0s\n",
		"      dns 192.168.1.1\n",
		"  dhcp range 10.77.0.100-10.77.0.199, lease 12h0m0s",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("Plan() lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("plan:\n%s", plan)
	}
	// Shares within a tier.
	c = mustParse(t, "lan: {interface: lan0}\nuplinks:\n- {name: a, interface: e0, weight: 8}\n- {name: b, interface: e1, weight: 6}\n- {name: c, interface: e2, weight: 3}\n")
	if want := "  tier 1 (while up): a weight 8 (47.1%), b weight 6 (35.3%), c weight 3 (17.6%)\n"; !strings.Contains(c.Plan(), want) {
		t.Errorf("Plan() lacks %q:\n%s", want, c.Plan())
	}
}

func TestWarnings(t *testing.T) {
	c := mustParse(t, `lan: {interface: lan0}
uplinks: [{name: a, interface: eth0}]
dataplane:
  flows:
    timeouts:
      udp: 30s
      tcp_established: 1h
      tcp_transitory: 4m
      icmp: 10s
`)
	want := []string{
		"test.yaml: line 6: dataplane.flows.timeouts.udp: 30s is below the 2m0s that RFC 4787 REQ-5 requires",
		"test.yaml: line 7: dataplane.flows.timeouts.tcp_established: 1h0m0s is below the 2h4m0s that RFC 5382 REQ-5 requires",
		"test.yaml: line 9: dataplane.flows.timeouts.icmp: 10s is below the 1m0s that RFC 5508 REQ-1 requires",
	}
	if len(c.Warnings) != len(want) {
		t.Fatalf("Warnings = %q, want %d", c.Warnings, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(c.Warnings[i], w) {
			t.Errorf("Warnings[%d] = %q, want prefix %q", i, c.Warnings[i], w)
		}
	}
	if !strings.Contains(c.Plan(), "\nWarnings\n  test.yaml: line 6:") {
		t.Errorf("Plan() lacks the warnings:\n%s", c.Plan())
	}
}

// okHead is a valid start of a file: bad cases append to it, so their lines
// start at 5.
const okHead = `lan:
  interface: lan0
uplinks:
  - { name: adsl, interface: eth0, gateway: 100.64.1.1, weight: 8 }
`

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // the whole first problem, "test.yaml: line N: ..."
	}{
		{"unknown top-level key", okHead + "balanse: {affinity: flow}\n",
			"test.yaml: line 5: balanse: unknown key (want one of: lan, uplinks, balance, rules, probes, control, dataplane, kernel)"},
		{"unknown nested key", okHead + "dataplane:\n  flows:\n    timeouts: { udp: 5m, tcp: 2h }\n",
			"test.yaml: line 7: dataplane.flows.timeouts.tcp: unknown key (want one of: udp, tcp_established, tcp_transitory, icmp)"},
		{"unknown uplink key", okHead + "  - { name: 4g, interface: usb0, wieght: 2 }\n",
			"test.yaml: line 5: uplinks[1].wieght: unknown key"},
		{"duplicate key", okHead + "balance: {affinity: flow}\nbalance: {affinity: src}\n",
			"test.yaml: line 6: balance: duplicate key (first at line 5)"},
		{"bad duration", okHead + "probes:\n  interval: 500\n",
			`test.yaml: line 6: probes.interval: want a duration like "500ms" or "2h4m", got "500"`},
		{"bad duration unit", okHead + "probes: { timeout: 1 sec }\n",
			`test.yaml: line 5: probes.timeout: want a duration like "500ms" or "2h4m", got "1 sec"`},
		{"negative duration", okHead + "lan2: 1\n", "test.yaml: line 5: lan2: unknown key"},
		{"weight 0", okHead + "  - { name: 4g, interface: usb0, weight: 0 }\n",
			"test.yaml: line 5: uplinks[1].weight: must be 1..1000, got 0"},
		{"weight too big", "lan:\n  interface: lan0\nuplinks:\n  - name: adsl\n    interface: eth0\n    weight: 1001\n",
			"test.yaml: line 6: uplinks[0].weight: must be 1..1000, got 1001"},
		{"weight not a number", okHead + "  - { name: 4g, interface: usb0, weight: heavy }\n",
			`test.yaml: line 5: uplinks[1].weight: want a non-negative integer, got "heavy"`},
		{"negative weight", okHead + "  - { name: 4g, interface: usb0, weight: -1 }\n",
			`test.yaml: line 5: uplinks[1].weight: want a non-negative integer, got "-1"`},
		{"tier 0", okHead + "  - { name: 4g, interface: usb0, tier: 0 }\n",
			"test.yaml: line 5: uplinks[1].tier: must be 1..9, got 0"},
		{"duplicate uplink name", okHead + "  - { name: adsl, interface: usb0 }\n",
			`test.yaml: line 5: uplinks[1].name: duplicate uplink name "adsl" (first at line 4)`},
		{"bad uplink name", okHead + "  - { name: 4G-Modem, interface: usb0 }\n",
			`test.yaml: line 5: uplinks[1].name: want [a-z0-9_-]{1,15}, got "4G-Modem"`},
		{"missing uplink name", okHead + "  - { interface: usb0 }\n",
			"test.yaml: line 5: uplinks[1].name: required"},
		{"two uplinks one interface", okHead + "  - { name: 4g, interface: eth0 }\n",
			"test.yaml: line 5: uplinks[1].interface: interface eth0 already used by uplink adsl (line 4); two uplinks may not share an interface"},
		{"uplink on lan without gateway", okHead + "  - { name: modem, interface: lan0 }\n",
			"test.yaml: line 5: uplinks[1].gateway: required when the uplink shares the LAN interface lan0"},
		{"interface name too long", okHead + "  - { name: 4g, interface: averyverylongname0 }\n",
			`test.yaml: line 5: uplinks[1].interface: interface name "averyverylongname0" longer than 15 bytes`},
		{"bad gateway", okHead + "  - { name: 4g, interface: usb0, gateway: 192.168.42.300 }\n",
			`test.yaml: line 5: uplinks[1].gateway: want an IP address, got "192.168.42.300"`},
		{"ipv6 gateway", okHead + "  - { name: 4g, interface: usb0, gateway: 'fe80::1' }\n",
			"test.yaml: line 5: uplinks[1].gateway: want an IPv4 address, got fe80::1"},
		{"bad affinity", okHead + "balance:\n  affinity: dst\n",
			`test.yaml: line 6: balance.affinity: unknown affinity "dst" (want flow, src-dst or src)`},
		{"bad CIDR", okHead + "rules:\n  - name: r\n    src: [10.77.0.0/33]\n    uplinks: [adsl]\n",
			`test.yaml: line 7: rules[0].src[0]: want a CIDR prefix like 10.77.0.0/24, got "10.77.0.0/33"`},
		{"CIDR not a network", okHead + "lan2: x\n", "test.yaml: line 5: lan2: unknown key"},
		{"CIDR host bits", "lan:\n  interface: lan0\n  prefixes:\n    - 10.77.0.1/24\nuplinks: [{name: a, interface: eth0}]\n",
			"test.yaml: line 4: lan.prefixes[0]: 10.77.0.1/24 is not a network address (did you mean 10.77.0.0/24?)"},
		{"bad port range", okHead + "rules:\n  - { uplinks: [adsl], dst_ports: [\"5060\", \"10000-x\"] }\n",
			`test.yaml: line 6: rules[0].dst_ports[1]: want a port 1..65535 or a range like "20000-32767", got "10000-x"`},
		{"port 0", okHead + "rules:\n  - { uplinks: [adsl], dst_ports: [0] }\n",
			`test.yaml: line 6: rules[0].dst_ports[0]: want a port 1..65535 or a range like "20000-32767", got "0"`},
		{"port range with icmp", okHead + "rules:\n  - { uplinks: [adsl], proto: icmp, dst_ports: [53] }\n",
			"test.yaml: line 6: rules[0].dst_ports: need proto tcp, udp or any, got icmp"},
		{"rule unknown uplink", okHead + "rules:\n  - name: r\n    uplinks:\n      - adsl\n      - lte\n",
			`test.yaml: line 9: rules[0].uplinks[1]: unknown uplink "lte"`},
		{"rule without uplinks", okHead + "rules:\n  - { name: r, proto: tcp }\n",
			"test.yaml: line 6: rules[0].uplinks: at least one uplink is required"},
		{"bad proto", okHead + "rules:\n  - { proto: sctpx, uplinks: [adsl] }\n",
			`test.yaml: line 6: rules[0].proto: want a protocol (tcp, udp, icmp, any or 0..255), got "sctpx"`},
		{"nat_ports reversed", okHead + "dataplane:\n  nat_ports: 32767-20000\n",
			`test.yaml: line 6: dataplane.nat_ports: port range "32767-20000" is reversed (want low-high)`},
		{"nat_ports well-known", okHead + "dataplane:\n  nat_ports: 1-20000\n",
			"test.yaml: line 6: dataplane.nat_ports: range 1-20000 includes well-known ports; want ports >= 1024"},
		{"nat_ports too small", okHead + "dataplane:\n  nat_ports: 20000-20099\n",
			"test.yaml: line 6: dataplane.nat_ports: range 20000-20099 has 100 ports; want at least 1024"},
		{"nat_ports too small for workers", okHead + "dataplane:\n  workers: 64\n  nat_ports: 20000-22047\n",
			"test.yaml: line 7: dataplane.nat_ports: range 20000-22047 has 2048 ports for 64 workers; want at least 64 per worker"},
		{"nat_ports overlap metrics", okHead + "control: { metrics: 127.0.0.1:25000 }\n",
			"test.yaml: line 5: control.metrics: port 25000 is in the NAT port range 20000-32767 (dataplane.nat_ports)"},
		{"nat_ports overlap metrics 2", okHead + "dataplane: { nat_ports: 9000-19999 }\n",
			"test.yaml: line 5: dataplane.nat_ports: range 9000-19999 includes port 9469 of control.metrics"},
		{"nat_ports overlap dns", "lan:\n  interface: lan0\n  dns: { listen: [10.77.0.1:53, 10.77.0.1:30053] }\nuplinks: [{name: a, interface: eth0}]\ndataplane:\n  nat_ports: 30000-39999\n",
			"test.yaml: line 6: dataplane.nat_ports: range 30000-39999 includes port 30053 of lan.dns.listen[1]"},
		{"empty uplinks", "lan: {interface: lan0}\nuplinks: []\n",
			"test.yaml: line 2: uplinks: at least one uplink is required"},
		{"missing uplinks", "lan: {interface: lan0}\n",
			"test.yaml: line 1: uplinks: at least one uplink is required"},
		{"missing lan interface", "lan: {prefixes: [10.77.0.0/24]}\nuplinks: [{name: a, interface: eth0}]\n",
			"test.yaml: line 1: lan.interface: required"},
		{"tab indentation", "lan:\n\tinterface: lan0\n",
			"test.yaml: line 2: invalid YAML: found character that cannot start any token"},
		{"invalid YAML", "lan: {interface: lan0\nuplinks: []\n",
			"test.yaml: line 1: invalid YAML: did not find expected ',' or '}'"},
		{"not a mapping", "- a\n- b\n", "test.yaml: line 1: want a mapping, got a list"},
		{"section of the wrong kind", okHead + "probes: [1.1.1.1]\n", "test.yaml: line 5: probes: want a mapping, got a list"},
		{"list of the wrong kind", okHead + "probes: { targets: 1.1.1.1 }\n", `test.yaml: line 5: probes.targets: want a list, got "1.1.1.1"`},
		{"string of the wrong kind", "lan:\n  interface: [lan0]\n", "test.yaml: line 2: lan.interface: want a string, got a list"},
		{"missing value", okHead + "  - { name: 4g, interface: usb0, gateway: }\n", "test.yaml: line 5: uplinks[1].gateway: want an IP address, got no value"},
		{"empty file", "", "test.yaml: empty configuration"},
		{"only comments", "# nothing\n", "test.yaml: empty configuration"},
		{"two documents", okHead + "---\nlan: {}\n", "test.yaml: line 5: more than one YAML document"},
		{"merge key", okHead + "probes:\n  <<: {interval: 1s}\n", "test.yaml: line 6: probes: merge keys (<<) are not supported"},
		{"bad dhcp range", "lan:\n  interface: lan0\n  dhcp:\n    range: 10.77.0.199-10.77.0.100\nuplinks: [{name: a, interface: eth0}]\n",
			`test.yaml: line 4: lan.dhcp.range: address range "10.77.0.199-10.77.0.100" is reversed (want first-last)`},
		{"dhcp range outside prefixes", "lan:\n  interface: lan0\n  prefixes: [10.77.0.0/24]\n  dhcp:\n    range: 10.77.1.100-10.77.1.199\nuplinks: [{name: a, interface: eth0}]\n",
			"test.yaml: line 5: lan.dhcp.range: range 10.77.1.100-10.77.1.199 is not inside one of lan.prefixes"},
		{"dhcp without range", "lan:\n  interface: lan0\n  dhcp: { lease_time: 1h }\nuplinks: [{name: a, interface: eth0}]\n",
			"test.yaml: line 3: lan.dhcp.range: required"},
		{"bad dns listen", "lan:\n  interface: lan0\n  dns: { listen: [10.77.0.1:x] }\nuplinks: [{name: a, interface: eth0}]\n",
			`test.yaml: line 3: lan.dns.listen[0]: want an address like 10.77.0.1 or address:port like 10.77.0.1:53, got "10.77.0.1:x"`},
		{"per-uplink probe override", okHead + "  - name: 4g\n    interface: usb0\n    probes:\n      down_after: 0\n",
			"test.yaml: line 8: uplinks[1].probes.down_after: must be 1..100, got 0"},
		{"probe interval too short", okHead + "probes: { interval: 1ms }\n", "test.yaml: line 5: probes.interval: must be 50ms..1m0s, got 1ms"},
		{"too many uplinks", "lan: {interface: lan0}\nuplinks:\n" + manyUplinks(33),
			"test.yaml: line 2: uplinks: 33 uplinks, at most 20"},
		{"reserved tables 2", okHead + "  - { name: b, interface: e1 }\n  - { name: c, interface: e2 }\nkernel: { table_base: 251 }\n",
			"test.yaml: line 7: kernel.table_base: tables 251-254 include the kernel's tables 253-255 (default, main, local)"},
		{"route protocol", okHead + "kernel: { route_protocol: 4 }\n", "test.yaml: line 5: kernel.route_protocol: must be 5..255 (0..4 are the kernel's), got 4"},
		{"rule priority", okHead + "kernel: { rule_priority: 32700 }\n", "test.yaml: line 5: kernel.rule_priority: rule priorities 32700-32810 must lie in 1..32765"},
		{"nft table", okHead + "kernel: { nft_table: 'my table' }\n", `test.yaml: line 5: kernel.nft_table: want [A-Za-z_][A-Za-z0-9_-]{0,63}, got "my table"`},
		{"tun is an uplink", okHead + "dataplane: { tun: eth0 }\n", "test.yaml: line 4: uplinks[0].interface: interface eth0 is the TUN device (dataplane.tun)"},
		{"socket relative", okHead + "control: { socket: wanflow.sock }\n", `test.yaml: line 5: control.socket: want an absolute path, got "wanflow.sock"`},
		{"capacity", okHead + "dataplane: { flows: { capacity: 10 } }\n", "test.yaml: line 5: dataplane.flows.capacity: must be 1024..67108864, got 10"},
		{"alias expansion", okHead + "rules:\n  - &r {uplinks: [adsl], src: [" + strings.Repeat("10.0.0.0/8, ", 200) + "]}\n" + strings.Repeat("  - *r\n", 1000),
			"test.yaml: line 6: rules[490].src[26]: document too large (more than 100000 values after expanding aliases)"},
		{"aliases allowed", "lan: {interface: lan0}\nuplinks:\n  - &u {name: a, interface: eth0, tier: 2, weight: 0}\n  - *u\n",
			"test.yaml: line 3: uplinks[0].weight: must be 1..1000, got 0"},
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
			if !errors.As(err, &ce) || len(ce.Problems) == 0 || ce.Name != "test.yaml" {
				t.Errorf("error %T is not a *Error with problems", err)
			}
		})
	}
}

func TestSeveralProblems(t *testing.T) {
	src := `lan:
  interface: lan0
  dhcp: { lease_time: soon }
uplinks:
  - { name: adsl, interface: eth0, weight: 0 }
  - { name: adsl, interface: eth0, tier: 10 }
`
	_, err := Parse([]byte(src), "x.yaml")
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse error %v, want *Error", err)
	}
	// Decoding problems stop before validation: only the duration.
	if len(ce.Problems) != 1 || ce.Problems[0].Line != 3 || ce.Problems[0].Path != "lan.dhcp.lease_time" {
		t.Errorf("problems = %+v", ce.Problems)
	}
	_, err = Parse([]byte(strings.Replace(src, "soon", "1h", 1)), "x.yaml")
	want := `x.yaml: line 3: lan.dhcp.range: required
x.yaml: line 5: uplinks[0].weight: must be 1..1000, got 0
x.yaml: line 6: uplinks[1].name: duplicate uplink name "adsl" (first at line 5)
x.yaml: line 6: uplinks[1].interface: interface eth0 already used by uplink adsl (line 5); two uplinks may not share an interface
x.yaml: line 6: uplinks[1].tier: must be 1..9, got 10`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error:\n%v\nwant:\n%s", err, want)
	}
}

func TestUplinkLimit(t *testing.T) {
	if c := mustParse(t, "lan: {interface: lan0}\nuplinks:\n"+manyUplinks(20)); len(c.Warnings) != 0 {
		t.Errorf("20 uplinks: Warnings = %q", c.Warnings)
	}
	_, err := Parse([]byte("lan: {interface: lan0}\nuplinks:\n"+manyUplinks(21)), "test.yaml")
	if err == nil || !strings.Contains(err.Error(), "21 uplinks, at most 20") {
		t.Errorf("21 uplinks: got %v, want an error", err)
	}
}

func TestTooManyProblems(t *testing.T) {
	_, err := Parse([]byte(okHead+"probes:\n"+strings.Repeat("  - x\n", 10)+"rules:\n"+strings.Repeat("  - {uplinks: [nope]}\n", 100)), "t")
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse: %v", err)
	}
	if len(ce.Problems) != 1 {
		t.Errorf("%d problems, want 1 (decoding stops at the probes list)", len(ce.Problems))
	}
	_, err = Parse([]byte(okHead+"rules:\n"+strings.Repeat("  - {uplinks: [nope]}\n", 100)), "t")
	if !errors.As(err, &ce) {
		t.Fatalf("Parse: %v", err)
	}
	if n := len(ce.Problems); n != MaxProblems+1 || ce.Problems[n-1].Msg != "50 more problems not shown" {
		t.Errorf("%d problems, last %+v", n, ce.Problems[n-1])
	}
}

func TestLANSegmentGateway(t *testing.T) {
	src := "lan:\n  interface: eth0\n  prefixes: [192.168.1.0/24]\nuplinks:\n  - { name: adsl, interface: eth0, gateway: 10.0.0.1 }\n"
	_, err := Parse([]byte(src), "t")
	if want := "t: line 5: uplinks[0].gateway: 10.0.0.1 is on the LAN interface but outside lan.prefixes"; err == nil || err.Error() != want {
		t.Errorf("Parse: %v, want %q", err, want)
	}
}

func TestPolicy(t *testing.T) {
	c := mustParse(t, designExample)
	us := c.PolicyUplinks()
	want := []policy.Uplink{
		{Name: "adsl", Tier: 1, Weight: 8, Available: true},
		{Name: "4g", Tier: 2, Weight: 6, Available: true},
		{Name: "3g", Tier: 3, Weight: 3, Available: true},
	}
	if !reflect.DeepEqual(us, want) {
		t.Errorf("PolicyUplinks() = %+v, want %+v", us, want)
	}
	p, err := c.Policy()
	if err != nil {
		t.Fatal(err)
	}
	voip := policy.Flow{Proto: policy.ProtoUDP, Src: [4]byte{10, 77, 0, 50}, Dst: [4]byte{203, 0, 113, 10}, SrcPort: 5060, DstPort: 5060}
	if d := p.Choose(voip); d.Uplink != 0 || d.Rule != 0 || d.Reason != policy.ReasonRuleOnlyCandidate {
		t.Errorf("Choose(voip) = %+v", d)
	}
	q, _ := p.WithAvailability([]bool{false, true, true})
	if d := q.Choose(voip); d.Uplink != -1 || d.Reason != policy.ReasonNoUplink {
		t.Errorf("Choose(voip) with adsl down = %+v, want no uplink", d)
	}
	other := voip
	other.DstPort = 443
	if d := q.Choose(other); d.Uplink != 1 || d.Rule != -1 {
		t.Errorf("Choose(other) with adsl down = %+v, want 4g", d)
	}
	if r := c.PolicyRules(); len(r) != 1 || r[0].Name != "voip" || r[0].DstPorts[1] != (policy.PortRange{Lo: 10000, Hi: 20000}) {
		t.Errorf("PolicyRules() = %+v", r)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "wanflow.yaml")
	if err := os.WriteFile(path, []byte(designExample), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || c.Name() != path {
		t.Fatalf("Load = %v, %v", c, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("lan: {interface: lan0}\nuplinks: [{name: a, interface: eth0, weight: 0}]\n"), 0o600)
	if _, err := Load(bad); err == nil || err.Error() != bad+": line 2: uplinks[0].weight: must be 1..1000, got 0" {
		t.Errorf("Load(bad) = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, make([]byte, MaxFileSize+1), 0o600)
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "file larger than") {
		t.Errorf("Load(big) = %v", err)
	}
}

// TestScalarTypesAlone checks that the custom types keep their line when
// decoded by yaml.v3 itself, outside Parse.
func TestScalarTypesAlone(t *testing.T) {
	var v struct {
		A Duration  `yaml:"a"`
		B PortRange `yaml:"b"`
		C AddrRange `yaml:"c"`
		D Prefix    `yaml:"d"`
		E AddrPort  `yaml:"e"`
		F Proto     `yaml:"f"`
		G Addr      `yaml:"g"`
	}
	good := "a: 2h4m\nb: 20000-32767\nc: 10.77.0.100-10.77.0.199\nd: 10.77.0.0/24\ne: 10.77.0.1:53\nf: udp\ng: 1.1.1.1\n"
	if err := yaml.Unmarshal([]byte(good), &v); err != nil {
		t.Fatal(err)
	}
	if time.Duration(v.A) != 124*time.Minute || v.B != (PortRange{20000, 32767}) || v.B.Len() != 12768 ||
		v.C.String() != "10.77.0.100-10.77.0.199" || !v.C.Contains(netip.MustParseAddr("10.77.0.150")) || v.C.Contains(netip.MustParseAddr("10.77.0.200")) ||
		v.D.Bits() != 24 || v.E.Port() != 53 || v.F != 17 || v.G.String() != "1.1.1.1" {
		t.Errorf("decoded %+v", v)
	}
	out, err := yaml.Marshal(v)
	if err != nil || !strings.Contains(string(out), "a: 2h4m0s\nb: 20000-32767\n") || !strings.Contains(string(out), "f: udp\n") {
		t.Errorf("Marshal = %q, %v", out, err)
	}
	for _, src := range []string{"\n\na: 3 days\n", "\n\nb: 80-\n", "\n\nc: 1.2.3.4\n", "\n\nd: x\n", "\n\ne: 1.2.3.4:x\n", "\n\nf: -1\n", "\n\ng: ::g\n", "\n\na: -5s\n"} {
		err := yaml.Unmarshal([]byte(src), &v)
		if err == nil || !strings.Contains(err.Error(), "line 3: ") {
			t.Errorf("Unmarshal(%q) = %v, want an error at line 3", src, err)
		}
	}
	for p, want := range map[Proto]string{0: "any", 1: "icmp", 6: "tcp", 17: "udp", 132: "132"} {
		if p.String() != want {
			t.Errorf("Proto(%d).String() = %q, want %q", p, p.String(), want)
		}
	}
}

func manyUplinks(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - {name: u%d, interface: eth%d}\n", i, i)
	}
	return b.String()
}
