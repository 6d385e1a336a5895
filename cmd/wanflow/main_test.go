package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// capture runs fn with os.Stdout redirected and returns what it printed.
func capture(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	ferr := fn()
	os.Stdout = old
	w.Close()
	return <-done, ferr
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`lan: { interface: eth0, prefixes: [192.168.1.0/24] }
uplinks:
  - { name: adsl, interface: eth0, gateway: 192.168.1.1, tier: 1, weight: 8 }
  - { name: 4g,   interface: usb0, gateway: 192.168.42.129, tier: 2, weight: 6 }
  - { name: 3g,   interface: ppp0, tier: 3, weight: 3 }
`), 0o600)
	out, err := capture(t, func() error { return cmdCheck([]string{"-c", good}) })
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	for _, want := range []string{"good.yaml: OK", "iif eth0 lookup 7700", "from <eth0 address> lookup 7701", "table ip wanflow", "20000-32767"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("lan: { interface: eth0 }\nuplinks:\n  - { name: adsl, interface: eth0, weight: 0 }\n"), 0o600)
	_, err = capture(t, func() error { return cmdCheck([]string{"-c", bad}) })
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("bad config: got %v, want an error naming line 3", err)
	}
}

func TestNewLogger(t *testing.T) {
	var b strings.Builder
	log, err := newLogger(&b, "text", slog.LevelInfo, true)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("uplink down", "uplink", "adsl")
	if got := b.String(); got != "level=INFO msg=\"uplink down\" uplink=adsl\n" {
		t.Errorf("journal text: %q", got)
	}
	b.Reset()
	log, _ = newLogger(&b, "json", slog.LevelDebug, false)
	log.Debug("x", "n", 1)
	var m map[string]any
	if err := json.Unmarshal([]byte(b.String()), &m); err != nil || m["time"] == nil || m["n"] != 1.0 || m["level"] != "DEBUG" {
		t.Errorf("json: %q (%v)", b.String(), err)
	}
	if _, err := newLogger(&b, "xml", slog.LevelInfo, false); err == nil {
		t.Error("format xml accepted")
	}
}
