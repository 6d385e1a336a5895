//go:build linux

package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "40000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := newNotifier()
	if d := watchdogInterval(); d != 20*time.Millisecond {
		t.Errorf("watchdog interval %v, want 20ms", d)
	}
	recv := func() string {
		t.Helper()
		l.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 256)
		k, err := l.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(b[:k])
	}
	n.send("READY=1")
	if got := recv(); got != "READY=1" {
		t.Errorf("got %q", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.routineWatchdog(ctx, watchdogInterval(), func() bool { return true }); close(done) }()
	if got := recv(); got != "WATCHDOG=1" {
		t.Errorf("got %q", got)
	}
	cancel()
	<-done

	t.Setenv("WATCHDOG_PID", "1")
	if d := watchdogInterval(); d != 0 {
		t.Errorf("watchdog for another pid: interval %v", d)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	newNotifier().send("READY=1") // no socket: nothing, no panic
}
