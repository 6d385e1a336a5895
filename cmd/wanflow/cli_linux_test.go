package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanflow/wanflow/cmd/wanflow/control"
	"github.com/wanflow/wanflow/uplinks/events"
)

// e2eBackend is a control.Backend with the CLI tests' fixtures.
type e2eBackend struct {
	ring *events.Ring

	mu     sync.Mutex
	filter control.FlowFilter
}

func (b *e2eBackend) Status() control.Status        { return testStatus() }
func (b *e2eBackend) Uplinks() control.UplinksReply { return testUplinks() }
func (b *e2eBackend) Events() *events.Ring          { return b.ring }
func (b *e2eBackend) Explain(control.FlowKey) (control.ExplainReply, error) {
	return testExplain(), nil
}

func (b *e2eBackend) Flows(f control.FlowFilter) (control.FlowsReply, error) {
	b.mu.Lock()
	b.filter = f
	b.mu.Unlock()
	return testFlows(), nil
}

func (b *e2eBackend) Reload() (control.ReloadReply, error) {
	return control.ReloadReply{}, control.Conflict("needs a restart: dataplane.workers")
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCLIAgainstServer runs the commands through the real Client against
// the real Server on a unix socket.
func TestCLIAgainstServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "wf.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ring := events.NewRing(16)
	for _, e := range testEvents().Events {
		ring.Add(e)
	}
	be := &e2eBackend{ring: ring}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- control.NewServer(be, nil).Serve(ctx, l) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	newCLI := func(out *syncBuffer) *cli {
		return &cli{stdout: out, stderr: out, getenv: func(string) string { return sock }, now: func() time.Time { return testNow },
			dial: newAPIClient, sleep: sleepOrDone}
	}
	for _, tt := range []struct {
		cmd  string
		args []string
		want string
	}{
		{"status", nil, wantStatus},
		{"uplinks", nil, wantUplinks},
		{"flows", []string{"--proto", "tcp", "--port", "443"}, wantFlows},
		{"explain", []string{"tcp", "10.77.0.10:51000", "203.0.113.10:443"}, wantExplain},
		{"events", nil, wantEvents},
	} {
		t.Run(tt.cmd, func(t *testing.T) {
			var out syncBuffer
			c := newCLI(&out)
			fn := map[string]func(*cli, context.Context, []string) error{"status": (*cli).status, "uplinks": (*cli).uplinks,
				"flows": (*cli).flows, "explain": (*cli).explain, "events": (*cli).events}[tt.cmd]
			if err := fn(c, context.Background(), tt.args); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, out.String(), tt.want)
		})
	}
	be.mu.Lock()
	if be.filter.Proto != 6 || be.filter.Port != 443 {
		t.Errorf("flows filter: got %+v, want proto 6 port 443", be.filter)
	}
	be.mu.Unlock()

	t.Run("reload 409", func(t *testing.T) {
		var out syncBuffer
		err := newCLI(&out).reload(context.Background(), nil)
		if err == nil || !strings.Contains(err.Error(), "needs a restart: dataplane.workers") {
			t.Errorf("got %v, want the daemon's 409 message", err)
		}
	})

	t.Run("events -f", func(t *testing.T) {
		var out syncBuffer
		fctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- newCLI(&out).events(fctx, []string{"-f"}) }()
		waitFor(t, func() bool { return out.String() == wantEvents })
		live := ring.Add(events.Event{Time: testNow, Kind: events.KindFailover, From: "3g", To: "adsl", Cause: "3g down"})
		waitFor(t, func() bool { return out.String() == wantEvents+formatEvent(live)+"\n" })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("events -f after cancel: got %v, want nil", err)
		}
	})

	t.Run("not running", func(t *testing.T) {
		var out syncBuffer
		err := newCLI(&out).status(context.Background(), []string{"-s", filepath.Join(t.TempDir(), "none.sock")})
		if !errors.Is(err, control.ErrNotRunning) {
			t.Errorf("got %v, want control.ErrNotRunning", err)
		}
	})
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
