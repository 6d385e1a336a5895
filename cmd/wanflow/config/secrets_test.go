package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretsWarning(t *testing.T) {
	const head = "lan: { interface: lan0 }\nuplinks:\n"
	cases := []struct {
		name, yaml string
		secrets    []string
	}{
		{"none", head + "  - { name: adsl, interface: eth0, on_down: \"/usr/bin/logger down\" }\n", nil},
		{"hook password", head + "  - { name: 3g, interface: ppp0, while_down: \"/usr/bin/dial --password=hunter2\" }\n", []string{"uplinks[3g].while_down"}},
		{"hook token", head + "  - { name: 3g, interface: ppp0, on_up: \"/usr/bin/notify TOKEN=abc\" }\n", []string{"uplinks[3g].on_up"}},
		{"probe url user", head + "  - name: adsl\n    interface: eth0\n    probes: { targets: [\"http://me:pw@192.0.2.1/check\"] }\n",
			[]string{"uplinks[adsl].probes.targets (a URL with a user or password)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "wanflow.yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Secrets(); strings.Join(got, "|") != strings.Join(c.secrets, "|") {
				t.Errorf("Secrets() = %q, want %q", got, c.secrets)
			}
			warned := false
			for _, w := range cfg.Warnings {
				if strings.Contains(w, "readable by other users") {
					warned = true
					if strings.Contains(w, "hunter2") || strings.Contains(w, "pw@") || strings.Contains(w, "abc") {
						t.Errorf("the warning repeats the secret: %s", w)
					}
				}
			}
			if warned != (c.secrets != nil) {
				t.Errorf("mode 0644: warned %v, want %v (%q)", warned, c.secrets != nil, cfg.Warnings)
			}
			// Mode 0600: never a warning.
			if err := os.Chmod(path, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err = Load(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range cfg.Warnings {
				if strings.Contains(w, "readable by other users") {
					t.Errorf("mode 0600 warned: %s", w)
				}
			}
		})
	}
}
