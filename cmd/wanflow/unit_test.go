package main

import (
	"os"
	"strings"
	"testing"
)

// TestSystemdUnit checks the shipped unit against what the daemon does:
// it notifies readiness and feeds the watchdog, reloads on SIGHUP, its
// config is checked before it starts, and the handover file outlives a
// restart.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../docs/deploy/wanflow.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	for k, want := range map[string]string{
		"Type":             "notify",
		"ExecStart":        "/usr/local/bin/wanflow run -c /etc/wanflow/wanflow.yaml",
		"ExecStartPre":     "/usr/local/bin/wanflow check -c /etc/wanflow/wanflow.yaml",
		"ExecReload":       "/bin/kill -HUP $MAINPID",
		"Restart":          "always",
		"RuntimeDirectory": "wanflow",
		// The handover file lives there (handoverPath): it must outlive
		// a restart.
		"RuntimeDirectoryPreserve": "restart",
		// A restart must not hang up links a hook brought up (pppd).
		"KillMode": "process",
	} {
		if keys[k] != want {
			t.Errorf("%s=%q, want %q", k, keys[k], want)
		}
	}
	if keys["WatchdogSec"] == "" {
		t.Error("no WatchdogSec: the daemon feeds a watchdog")
	}
}
