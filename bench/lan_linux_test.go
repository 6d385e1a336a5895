package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// udhcpcScript records what udhcpc learned without touching the interface
// (the lab hosts keep their static addresses).
const udhcpcScript = `#!/bin/sh
echo "event=$1;ip=$ip;subnet=$subnet;router=$router;dns=$dns;domain=$domain;lease=$lease;serverid=$serverid" >> "$OUT"
exit 0
`

// udhcpc runs busybox's DHCP client once in ns (extra: more flags, e.g.
// -r ADDR to ask for an address) and returns the fields of its "bound"
// event.
func udhcpc(t *testing.T, ns *lab.NS, extra ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	out := filepath.Join(dir, "events")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "eth0", "-s", script}, extra...)
	cmd := ns.Command(ctx, "busybox", args...)
	cmd.Env = append(os.Environ(), "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("udhcpc in %s: %v\n%s", ns.Name, err, b)
	}
	b, _ := os.ReadFile(out)
	var bound map[string]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		ev := map[string]string{}
		for _, kv := range strings.Split(line, ";") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				ev[k] = v
			}
		}
		if ev["event"] == "bound" {
			bound = ev
		}
	}
	if bound == nil {
		t.Fatalf("udhcpc in %s: no lease; events:\n%s", ns.Name, b)
	}
	return bound
}

func needBusybox(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox not installed (apt-get install busybox): its udhcpc is the test client")
	}
}

// TestDHCP: real DHCP clients on the LAN get leases with the right options
// from wanflow; a reserved MAC gets its reserved address; after a restart
// of the daemon the leases are still there and the clients get the same
// addresses again.
func TestDHCP(t *testing.T) {
	needBusybox(t)
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}}, Hosts: 3})
	h, err := l.Hosts[2].Handle()
	if err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName("eth0")
	h.Close()
	if err != nil {
		t.Fatal(err)
	}
	mac := link.Attrs().HardwareAddr
	leases := filepath.Join(t.TempDir(), "dhcp.leases")
	extra := fmt.Sprintf(`  dhcp:
    range: 10.77.0.100-10.77.0.199
    lease_time: 1h
    lease_file: %s
    reservations: [{ mac: "%s", addr: 10.77.0.50, hostname: printer }]
`, leases, mac)
	yaml := labrouter.ConfigYAML(l, labrouter.Options{})
	yaml = strings.Replace(yaml, "lan:\n  interface: lan0\n", "lan:\n  interface: lan0\n  domain: home.lan\n"+extra, 1)
	r := startRouter(t, l, yaml)

	a := udhcpc(t, l.Hosts[0])
	b := udhcpc(t, l.Hosts[1])
	c := udhcpc(t, l.Hosts[2])
	t.Logf("leases: %s, %s, reserved %s", a["ip"], b["ip"], c["ip"])
	for _, ev := range []map[string]string{a, b, c} {
		if ev["router"] != "10.77.0.1" || ev["dns"] != "10.77.0.1" || ev["domain"] != "home.lan" || ev["subnet"] != "255.255.255.0" || ev["lease"] != "3600" || ev["serverid"] != "10.77.0.1" {
			t.Errorf("options: %v", ev)
		}
	}
	if a["ip"] == b["ip"] || !strings.HasPrefix(a["ip"], "10.77.0.1") || !strings.HasPrefix(b["ip"], "10.77.0.1") {
		t.Errorf("pool leases %s and %s: want two different addresses of 10.77.0.100-199", a["ip"], b["ip"])
	}
	if c["ip"] != "10.77.0.50" {
		t.Errorf("reserved MAC %s got %s, want 10.77.0.50", mac, c["ip"])
	}

	// Restart: the leases survive and each client gets its address again,
	// asking for it (INIT-REBOOT style) or not.
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(leases); err != nil || !strings.Contains(string(data), a["ip"]) || !strings.Contains(string(data), b["ip"]) {
		t.Fatalf("lease file after stop: %v\n%s", err, data)
	}
	r = startRouter(t, l, yaml)
	a2 := udhcpc(t, l.Hosts[0], "-r", a["ip"])
	b2 := udhcpc(t, l.Hosts[1])
	if a2["ip"] != a["ip"] || b2["ip"] != b["ip"] {
		t.Errorf("after restart: %s and %s, want %s and %s", a2["ip"], b2["ip"], a["ip"], b["ip"])
	}

	// Reload (SIGHUP) with a new lease time and domain: the next renewal
	// carries them, and the leases are kept.
	reloaded := strings.Replace(strings.Replace(yaml, "lease_time: 1h", "lease_time: 30m", 1), "domain: home.lan", "domain: office.lan", 1)
	if err := r.WriteConfig(reloaded); err != nil {
		t.Fatal(err)
	}
	if err := r.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.Log(), "SIGHUP: config reloaded") {
		if time.Now().After(deadline) || strings.Contains(r.Log(), "SIGHUP: reload") {
			t.Fatalf("no reload within 5s of SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a3 := udhcpc(t, l.Hosts[0], "-r", a["ip"])
	if a3["ip"] != a["ip"] || a3["lease"] != "1800" || a3["domain"] != "office.lan" {
		t.Errorf("after reload: %v, want %s with lease 1800 and domain office.lan", a3, a["ip"])
	}
}

// dig asks the router's forwarder from ns and returns the first answer
// line's data and how long it took.
func dig(t *testing.T, ns *lab.NS, name, typ string) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	out, err := ns.Command(ctx, "dig", "+short", "+tries=1", "+time=3", "@10.77.0.1", name, typ).CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("dig %s %s: %v\n%s", name, typ, err, out)
	}
	return strings.TrimSpace(string(out)), took
}

// TestDNSForwarder: dig from a LAN host gets answers from the uplink ISPs'
// DNS servers, each reached through its own uplink; with tier 1's ISP DNS
// dead but the uplink up, answers still come in under 1.5 s; once the
// uplink is down, under 100 ms from the next one; a cached name answers
// with every uplink dead; a DHCP client's name resolves.
func TestDNSForwarder(t *testing.T) {
	needBusybox(t)
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed (apt-get install dnsutils)")
	}
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	yaml := labrouter.ConfigYAML(l, labrouter.Options{Tiers: []int{1, 2}, Extra: fastProbes})
	lanExtra := fmt.Sprintf("  domain: home.lan\n  dhcp: { range: 10.77.0.100-10.77.0.199, lease_file: %s }\n  dns: { listen: [10.77.0.1] }\n", filepath.Join(t.TempDir(), "leases"))
	yaml = strings.Replace(yaml, "lan:\n  interface: lan0\n", "lan:\n  interface: lan0\n"+lanExtra, 1)
	for i, u := range l.Uplinks {
		yaml = strings.Replace(yaml, "  - name: "+u.Name+"\n", fmt.Sprintf("  - name: %s\n    dns: [%s]\n", u.Name, l.Uplinks[i].ISPDNS), 1)
	}
	startRouter(t, l, yaml)
	sleep(300 * time.Millisecond)

	// Answered by ISP 1's server, which saw the query from up1's address.
	txt, took := dig(t, l.Hosts[0], "who.example.", "TXT")
	t.Logf("TXT via tier 1: %s (%v)", txt, took)
	if !strings.Contains(txt, "isp1 "+l.Uplinks[0].Addr.String()+":") {
		t.Errorf("TXT %q: want ISP 1's server, queried from %v", txt, l.Uplinks[0].Addr)
	}
	if a, _ := dig(t, l.Hosts[0], "cached.example.", "A"); a != "203.0.113.10" {
		t.Errorf("A cached.example = %q", a)
	}

	// ISP 1's DNS dies, the uplink stays up: hedged to ISP 2.
	if err := l.SetISPDNS(0, false); err != nil {
		t.Fatal(err)
	}
	txt, took = dig(t, l.Hosts[0], "hedge.example.", "TXT")
	t.Logf("TXT with ISP 1's DNS silent: %s (%v)", txt, took)
	if !strings.Contains(txt, "isp2 "+l.Uplinks[1].Addr.String()+":") || took > 1500*time.Millisecond {
		t.Errorf("with ISP 1's DNS dead: %q after %v, want ISP 2's answer within 1.5 s", txt, took)
	}

	// up1 goes down: ISP 2 answers at once.
	if err := l.SetUplinkCarrier(0, false); err != nil {
		t.Fatal(err)
	}
	sleep(500 * time.Millisecond)
	txt, took = dig(t, l.Hosts[0], "down.example.", "TXT")
	t.Logf("TXT with up1 down: %s (%v)", txt, took)
	if !strings.Contains(txt, "isp2 ") || took > 100*time.Millisecond {
		t.Errorf("with up1 down: %q after %v, want ISP 2's answer under 100 ms", txt, took)
	}

	// Every uplink dead: the cached name still answers.
	if err := l.SetUplinkCarrier(1, false); err != nil {
		t.Fatal(err)
	}
	sleep(500 * time.Millisecond)
	if a, took := dig(t, l.Hosts[0], "cached.example.", "A"); a != "203.0.113.10" {
		t.Errorf("cached name with every uplink dead: %q (%v)", a, took)
	}

	// A DHCP client's host name.
	b := udhcpc(t, l.Hosts[0], "-x", "hostname:laptop")
	if a, _ := dig(t, l.Hosts[0], "laptop.home.lan.", "A"); a != b["ip"] {
		t.Errorf("laptop.home.lan = %q, want the DHCP lease %s", a, b["ip"])
	}
}
