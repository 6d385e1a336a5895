package config

import (
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, that every error names
// the file, and that every configuration Parse accepts builds its policy and
// renders its plan.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		designExample,
		raspberryPi,
		healthExample,
		lanServices,
		lanHead + "  domain: home.arpa\n  dhcp: {range: 10.77.0.10-10.77.0.20, reservations: [{mac: \"02:00:00:00:00:01\", addr: 10.77.0.15, hostname: x}]}\n  dns: {listen: [10.77.0.1], hedge_after: 1s, timeout: 2s}\n",
		okHead + "  - { name: b, interface: e1, on_failure: {udp: keep}, while_down: \"a 'b c'\", probes: {targets: [dns, \"http://h/\"], min_ok: 2} }\n",
		okHead,
		okHead + "rules:\n  - { uplinks: [adsl], dst_ports: [\"5060\", \"10000-20000\"] }\n",
		"lan: {interface: lan0}\nuplinks: [{name: a, interface: eth0}]\n",
		"a: &a [x, x]\nb: [*a, *a]\n",
		"lan:\n\tinterface: lan0\n",
		"- a\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml: ") {
					t.Fatalf("error line %q does not name the file", line)
				}
			}
			return
		}
		if _, err := c.Policy(); err != nil {
			t.Fatalf("accepted config fails to build its policy: %v", err)
		}
		if !strings.Contains(c.Plan(), "wanflow plan for fuzz.yaml") {
			t.Fatal("Plan() lacks its header")
		}
	})
}
