package bench

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// TestSystemdNotify runs the daemon as systemd's Type=notify would: it
// reports READY=1 once routing, feeds the watchdog, reports RELOADING=1
// and READY=1 around a SIGHUP reload, and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}}})
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "notify")
	ns, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	cfg := filepath.Join(dir, "wanflow.yaml")
	yaml := labrouter.ConfigYAML(l, labrouter.Options{}) + "control:\n  socket: " + filepath.Join(dir, "wanflow.sock") + "\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.Router.Command(ctx, wanflowBin, "run", "-c", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=200000")
	var logBuf strings.Builder
	cmd.Stderr = &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("wanflow log:\n%s", logBuf.String())
		}
	}()
	// next returns the next notification that is not a watchdog ping,
	// counting the pings.
	pings := 0
	next := func(within time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(within)
		b := make([]byte, 512)
		for {
			ns.SetReadDeadline(deadline)
			n, err := ns.Read(b)
			if err != nil {
				t.Fatalf("no notification within %v: %v", within, err)
			}
			if s := string(b[:n]); s == "WATCHDOG=1" {
				pings++
			} else {
				return s
			}
		}
	}
	if s := next(15 * time.Second); !strings.HasPrefix(s, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", s)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGHUP)
	if s := next(3 * time.Second); s != "RELOADING=1" {
		t.Errorf("after SIGHUP %q, want RELOADING=1", s)
	}
	if s := next(3 * time.Second); s != "READY=1" {
		t.Errorf("after the reload %q, want READY=1", s)
	}
	if pings < 3 {
		t.Errorf("%d watchdog pings in 0.5 s at WATCHDOG_USEC=200000, want ≥ 3 (every 100 ms)", pings)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if s := next(5 * time.Second); s != "STOPPING=1" {
		t.Errorf("after SIGTERM %q, want STOPPING=1", s)
	}
	if err := <-exited; err != nil {
		t.Errorf("exit: %v", err)
	}
	exited <- nil
}
