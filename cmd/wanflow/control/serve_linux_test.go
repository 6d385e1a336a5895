package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wanflow/wanflow/uplinks/events"
)

// served is a Server running on a unix socket in a temporary directory.
type served struct {
	sock   string
	server *Server
	client *Client
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

// serve runs a Server for b on a fresh socket until the test ends (or
// stop is called); tweak, when not nil, adjusts the Server first.
func serve(t *testing.T, b Backend, tweak func(*Server)) *served {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "wanflow.sock")
	l, err := listen(t, sock)
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, l, sock, b, tweak)
}

// listen calls Server.Listen on a Server that is not used otherwise.
func listen(t *testing.T, sock string) (net.Listener, error) {
	t.Helper()
	return NewServer(newFakeBackend(), nil).Listen(sock)
}

func serveOn(t *testing.T, l net.Listener, sock string, b Backend, tweak func(*Server)) *served {
	t.Helper()
	logs := &logBuffer{}
	s := NewServer(b, logs.logger())
	if tweak != nil {
		tweak(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sv := &served{sock: sock, server: s, client: NewClient(sock), logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { sv.done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		if err := sv.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sv
}

// stop stops the Server and waits for Serve to return.
func (sv *served) stop() error {
	sv.cancel()
	sv.client.hc.CloseIdleConnections()
	select {
	case err, ok := <-sv.done:
		if ok {
			close(sv.done)
		}
		return err
	case <-time.After(10 * time.Second):
		return errors.New("Serve did not return within 10s of its context's end")
	}
}

// raw makes a request without the Client's typed API.
func (sv *served) raw(t *testing.T, method, target string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://wanflow"+target, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := sv.client.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestServeRoutes(t *testing.T) {
	b := newFakeBackend()
	b.ring.Add(events.Event{Kind: events.KindConfig, Detail: "loaded"})
	b.ring.Add(events.Event{Kind: events.KindState, Uplink: "adsl", From: "down", To: "up", Cause: "probes ok"})
	sv := serve(t, b, nil)
	c := sv.client
	ctx := testContext(t)

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	sameJSON(t, "Status", st, b.status)

	up, err := c.Uplinks(ctx)
	if err != nil {
		t.Fatalf("Uplinks: %v", err)
	}
	sameJSON(t, "Uplinks", up, b.uplinks)

	fl, err := c.Flows(ctx, FlowQuery{Uplink: "adsl", Host: "10.77.0.10", Proto: "tcp", Port: 443, Sort: "bytes", Limit: 7})
	if err != nil {
		t.Fatalf("Flows: %v", err)
	}
	want, _ := b.flows(FlowFilter{})
	sameJSON(t, "Flows", fl, want)
	b.mu.Lock()
	gotF := b.gotFilter
	b.mu.Unlock()
	if wantF, _ := ParseFlowQuery(FlowQuery{Uplink: "adsl", Host: "10.77.0.10", Proto: "tcp", Port: 443, Sort: "bytes", Limit: 7}.Values()); gotF != wantF || gotF.Proto != 6 || gotF.Limit != 7 {
		t.Errorf("Backend got filter %+v, want %+v", gotF, wantF)
	}
	if _, err := c.Flows(ctx, FlowQuery{}); err != nil {
		t.Fatalf("Flows(zero): %v", err)
	}
	b.mu.Lock()
	gotF = b.gotFilter
	b.mu.Unlock()
	if gotF != (FlowFilter{Limit: DefaultFlowLimit}) {
		t.Errorf("Backend got filter %+v for the zero FlowQuery", gotF)
	}

	q, err := ParseExplainArgs([]string{"udp", "10.77.0.10:5353", "1.1.1.1:53"})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := c.Explain(ctx, q)
	if err != nil {
		t.Fatalf("Explain: %v", err)
	}
	if ex.Query != q || ex.Uplink != "adsl" || len(ex.Policy.Candidates) != 1 {
		t.Errorf("Explain = %+v", ex)
	}
	b.mu.Lock()
	gotK := b.gotKey
	b.mu.Unlock()
	if gotK.Proto != 17 || gotK.Src.String() != "10.77.0.10:5353" || gotK.Dst.String() != "1.1.1.1:53" {
		t.Errorf("Backend got key %+v", gotK)
	}

	ev, err := c.Events(ctx, 0)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if len(ev.Events) != 2 || ev.Events[1].To != "up" || ev.Last != 2 || ev.Dropped != 0 {
		t.Errorf("Events(0) = %+v", ev)
	}
	ev, err = c.Events(ctx, 1)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if len(ev.Events) != 1 || ev.Events[0].Seq != 2 || ev.Last != 2 {
		t.Errorf("Events(1) = %+v", ev)
	}

	rl, err := c.Reload(ctx)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	wantRL, _ := b.reload()
	sameJSON(t, "Reload", rl, wantRL)

	// Requests are logged at debug level.
	if l := sv.logs.String(); !strings.Contains(l, "level=DEBUG msg=\"control request\" method=GET path=/v1/status status=200 duration=") {
		t.Errorf("request not logged; log:\n%s", l)
	}
}

func TestServeErrorReplies(t *testing.T) {
	b := newFakeBackend()
	sv := serve(t, b, nil)
	tests := []struct {
		name, method, target string
		body                 io.Reader
		status               int
		msg, allow           string
	}{
		{"unknown path", "GET", "/v1/nothing", nil, 404, `no such path "/v1/nothing"`, ""},
		{"root", "GET", "/", nil, 404, "no such path", ""},
		{"v2", "GET", "/v2/status", nil, 404, "no such path", ""},
		{"post status", "POST", "/v1/status", nil, 405, "use GET", "GET"},
		{"put flows", "PUT", "/v1/flows", nil, 405, "use GET", "GET"},
		{"get reload", "GET", "/v1/reload", nil, 405, "use POST", "POST"},
		{"head events", "HEAD", "/v1/events", nil, 405, "", "GET"},
		{"unknown param", "GET", "/v1/flows?color=red", nil, 400, `unknown parameter "color"`, ""},
		{"repeated param", "GET", "/v1/flows?limit=1&limit=2", nil, 400, `parameter "limit" given 2 times`, ""},
		{"bad address", "GET", "/v1/flows?host=10.0.0", nil, 400, `host "10.0.0": not an IPv4 address`, ""},
		{"bad proto", "GET", "/v1/flows?proto=gre", nil, 400, `proto "gre"`, ""},
		{"bad port", "GET", "/v1/flows?port=0", nil, 400, `port "0": not a port number`, ""},
		{"bad sort", "GET", "/v1/flows?sort=size", nil, 400, `sort "size"`, ""},
		{"bad limit", "GET", "/v1/flows?limit=100001", nil, 400, "limit 100001: out of range", ""},
		{"bad query string", "GET", "/v1/flows?host=%zz", nil, 400, "bad query string", ""},
		{"explain missing", "GET", "/v1/explain?proto=tcp", nil, 400, `missing parameter "src"`, ""},
		{"explain no port", "GET", "/v1/explain?proto=tcp&src=10.0.0.1&dst=10.0.0.2:80", nil, 400, "tcp needs address:port", ""},
		{"explain icmp dst port", "GET", "/v1/explain?proto=icmp&src=10.0.0.1&dst=10.0.0.2:80", nil, 400, "without a port", ""},
		{"events since", "GET", "/v1/events?since=x", nil, 400, `since "x": not a sequence number`, ""},
		{"events unknown", "GET", "/v1/events?tail=1", nil, 400, `unknown parameter "tail"`, ""},
		{"status param", "GET", "/v1/status?verbose=1", nil, 400, `unknown parameter "verbose"`, ""},
		{"huge body", "POST", "/v1/reload", bytes.NewReader(make([]byte, maxRequestBody+1)), 413, "larger than 65536 bytes", ""},
		{"huge chunked body", "POST", "/v1/reload", io.LimitReader(zeros{}, 1<<20), 413, "larger than 65536 bytes", ""},
		{"huge body on GET", "GET", "/v1/status", bytes.NewReader(make([]byte, 1<<20)), 413, "larger than", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := sv.raw(t, tt.method, tt.target, tt.body)
			if tt.method == "HEAD" {
				if resp.StatusCode != tt.status || resp.Header.Get("Allow") != tt.allow {
					t.Errorf("HEAD: status %d Allow %q, want %d %q", resp.StatusCode, resp.Header.Get("Allow"), tt.status, tt.allow)
				}
				return
			}
			checkErrorReply(t, resp.StatusCode, resp.Header, body, tt.status, tt.msg)
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
	if b.reloads != 0 {
		t.Errorf("Reload called %d times by rejected requests", b.reloads)
	}
	// A small body is read and ignored.
	resp, body := sv.raw(t, "POST", "/v1/reload", strings.NewReader(`{"ignored":true}`))
	if resp.StatusCode != 200 {
		t.Errorf("reload with a small body: %d %s", resp.StatusCode, body)
	}
	// "OPTIONS *" is not answered by net/http's default 200.
	req, err := http.NewRequest("OPTIONS", "http://wanflow", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = "*"
	resp, err = sv.client.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	checkErrorReply(t, resp.StatusCode, resp.Header, body, 404, `no such path "*"`)
	// The Server still serves after all that.
	if _, err := sv.client.Status(testContext(t)); err != nil {
		t.Errorf("Status after bad requests: %v", err)
	}
	// A URL too long for the header limit is refused by net/http (431);
	// the daemon is unharmed.
	resp, _ = sv.raw(t, "GET", "/v1/flows?uplink="+strings.Repeat("a", maxHeaderBytes+16<<10), nil)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("huge URL: status %d, want 431", resp.StatusCode)
	}
	resp, body = sv.raw(t, "GET", "/v1/flows?uplink="+strings.Repeat("a", maxRequestURI), nil)
	checkErrorReply(t, resp.StatusCode, resp.Header, body, http.StatusRequestURITooLong, "longer than")
	if _, err := sv.client.Status(testContext(t)); err != nil {
		t.Errorf("Status after huge URLs: %v", err)
	}
}

// zeros is an endless reader of zero bytes (a chunked body of unknown
// length).
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestClientBackendErrors(t *testing.T) {
	b := newFakeBackend()
	b.flows = func(FlowFilter) (FlowsReply, error) { return FlowsReply{}, BadRequest("no uplink named %q", "3g") }
	b.explain = func(FlowKey) (ExplainReply, error) { return ExplainReply{}, errors.New("policy: table corrupt") }
	b.reload = func() (ReloadReply, error) {
		return ReloadReply{}, fmt.Errorf("reload: %w", Conflict("lan.interface changed: restart the daemon"))
	}
	sv := serve(t, b, nil)
	ctx := testContext(t)
	check := func(what string, err error, status int, msg string) {
		t.Helper()
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("%s: error %v (%T), want an *APIError", what, err, err)
		}
		if ae.Status != status || ae.Message != msg || err.Error() != msg {
			t.Errorf("%s: APIError{%d, %q}, want {%d, %q}", what, ae.Status, ae.Message, status, msg)
		}
	}
	_, err := sv.client.Flows(ctx, FlowQuery{Uplink: "3g"})
	check("Flows", err, 400, `no uplink named "3g"`)
	_, err = sv.client.Explain(ctx, ExplainQuery{Proto: "icmp", Src: "10.0.0.1", Dst: "10.0.0.2"})
	check("Explain", err, 500, "policy: table corrupt")
	_, err = sv.client.Reload(ctx)
	check("Reload", err, 409, "reload: lan.interface changed: restart the daemon")
	_, err = sv.client.Flows(ctx, FlowQuery{Port: 1, Proto: "sctp"})
	check("Flows bad proto", err, 400, `proto "sctp": want tcp, udp or icmp`)
	_, err = sv.client.Explain(ctx, ExplainQuery{Proto: "tcp", Src: "10.0.0.1"})
	check("Explain no dst", err, 400, `missing parameter "dst" (explain needs proto, src and dst)`)
	if l := sv.logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "policy: table corrupt") {
		t.Errorf("500 not logged at error level; log:\n%s", l)
	}
}

func TestSocketLifecycle(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "wanflow", "wanflow.sock")
	l, err := listen(t, sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(sock))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm()&0o700 != 0o700 || di.Mode().Perm()&0o022 != 0 {
		t.Errorf("socket directory mode %v, want 0755 (less the umask)", di.Mode().Perm())
	}

	sv := serveOn(t, l, sock, newFakeBackend(), nil)
	if _, err := sv.client.Status(testContext(t)); err != nil {
		t.Fatal(err)
	}
	// A second daemon is refused and leaves the socket alone.
	if l2, err := listen(t, sock); err == nil || !strings.Contains(err.Error(), "another wanflow daemon is running") {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("second Listen: %v, want an error saying another daemon runs", err)
	}
	if _, err := sv.client.Status(testContext(t)); err != nil {
		t.Fatalf("Status after a refused second Listen: %v", err)
	}
	if err := sv.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Serve returned: %v, want it removed", err)
	}

	// A stale socket file (a crashed daemon) is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	_, err = NewClient(sock).Status(testContext(t))
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), sock) {
		t.Errorf("Status on a stale socket: %v, want ErrNotRunning naming %s", err, sock)
	}
	l, err = listen(t, sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	sv = serveOn(t, l, sock, newFakeBackend(), nil)
	if _, err := sv.client.Status(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if err := sv.stop(); err != nil {
		t.Fatal(err)
	}

	// A file that is not a socket is not replaced.
	if err := os.WriteFile(sock, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := listen(t, sock); err == nil || !strings.Contains(err.Error(), "not a socket") {
		if l != nil {
			l.Close()
		}
		t.Errorf("Listen over a regular file: %v, want an error", err)
	}
	if b, err := os.ReadFile(sock); err != nil || string(b) != "keep" {
		t.Errorf("regular file after Listen: %q, %v", b, err)
	}
}

func TestClientNotRunning(t *testing.T) {
	for _, sock := range []string{
		filepath.Join(t.TempDir(), "wanflow.sock"),
		filepath.Join(t.TempDir(), "no", "such", "dir", "wanflow.sock"),
	} {
		c := NewClient(sock)
		_, err := c.Status(testContext(t))
		if !errors.Is(err, ErrNotRunning) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), sock) {
			t.Errorf("Status with no socket: %v, want ErrNotRunning naming %s", err, sock)
		}
		err = c.Follow(testContext(t), 0, func(events.Event) error { return nil })
		if !errors.Is(err, ErrNotRunning) {
			t.Errorf("Follow with no socket: %v, want ErrNotRunning", err)
		}
	}
	if c := NewClient(""); c.socket != DefaultSocket {
		t.Errorf("NewClient(\"\") uses %q, want %q", c.socket, DefaultSocket)
	}
}

func TestFollow(t *testing.T) {
	b := newFakeBackend()
	for i := range 3 {
		b.ring.Add(events.Event{Kind: events.KindHook, Hook: "on_down", Detail: fmt.Sprint("backlog ", i+1)})
	}
	sv := serve(t, b, nil)
	ctx, cancel := context.WithCancel(testContext(t))
	got := make(chan events.Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- sv.client.Follow(ctx, 1, func(e events.Event) error { got <- e; return nil })
	}()
	next := func() events.Event {
		t.Helper()
		select {
		case e := <-got:
			return e
		case err := <-done:
			t.Fatalf("Follow returned early: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return events.Event{}
	}
	for _, want := range []uint64{2, 3} {
		if e := next(); e.Seq != want || e.Detail != fmt.Sprint("backlog ", want) {
			t.Fatalf("backlog event %+v, want seq %d", e, want)
		}
	}
	for i := range 20 {
		b.ring.Add(events.Event{Kind: events.KindState, Uplink: "4g", To: fmt.Sprint("live ", i)})
	}
	for i := range 20 {
		if e := next(); e.Seq != uint64(4+i) || e.To != fmt.Sprint("live ", i) {
			t.Fatalf("live event %+v, want seq %d", e, 4+i)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Follow after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not return after cancel")
	}

	// fn's error ends Follow.
	stopErr := errors.New("enough")
	err := sv.client.Follow(testContext(t), 0, func(events.Event) error { return stopErr })
	if !errors.Is(err, stopErr) {
		t.Errorf("Follow with failing fn: %v, want %v", err, stopErr)
	}
}

// TestFollowEndsAtShutdown checks that Serve cuts event followers and
// returns promptly, and that Follow reports the end of the stream.
func TestFollowEndsAtShutdown(t *testing.T) {
	b := newFakeBackend()
	sv := serve(t, b, func(s *Server) { s.grace = 5 * time.Second })
	started := make(chan struct{})
	done := make(chan error, 1)
	ctx := testContext(t)
	go func() {
		done <- sv.client.Follow(ctx, 0, func(e events.Event) error {
			if e.Detail == "first" {
				close(started)
			}
			return nil
		})
	}()
	// Before or after the follower subscribes: it gets it either way.
	b.ring.Add(events.Event{Kind: events.KindConfig, Detail: "first"})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("follower saw no event")
	}
	start := time.Now()
	if err := sv.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Serve took %v to stop with a follower (grace 5s): followers not cut", d)
	}
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "ended the stream") {
			t.Errorf("Follow at shutdown: %v, want an io.EOF error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not return at shutdown")
	}
	if _, err := os.Lstat(sv.sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Serve returned: %v", err)
	}
}

// TestShutdownGrace checks that an in-flight request finishes when it
// fits in the grace, and that Serve returns when it does not.
func TestShutdownGrace(t *testing.T) {
	b := newFakeBackend()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	b.reload = func() (ReloadReply, error) {
		entered <- struct{}{}
		<-release
		return ReloadReply{Config: "x"}, nil
	}
	sv := serve(t, b, func(s *Server) { s.grace = 3 * time.Second })
	res := make(chan error, 1)
	ctx := testContext(t)
	go func() {
		_, err := sv.client.Reload(ctx)
		res <- err
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- sv.stop() }()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if err := <-res; err != nil {
		t.Errorf("in-flight Reload during shutdown: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Error(err)
	}

	// A request that outlasts the grace is cut.
	b2 := newFakeBackend()
	release2 := make(chan struct{})
	b2.reload = func() (ReloadReply, error) {
		entered <- struct{}{}
		<-release2
		return ReloadReply{}, nil
	}
	sv = serve(t, b2, func(s *Server) { s.grace = 100 * time.Millisecond })
	go func() {
		_, err := sv.client.Reload(ctx)
		res <- err
	}()
	<-entered
	start := time.Now()
	if err := sv.stop(); err != nil {
		t.Error(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Serve took %v to stop, grace 100ms", d)
	}
	if err := <-res; err == nil {
		t.Error("Reload cut at shutdown succeeded")
	}
	close(release2)
}

// TestNonUnixListenerRefused: without SO_PEERCRED nobody is allowed.
func TestNonUnixListenerRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sv := serveOn(t, l, "", newFakeBackend(), nil)
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + l.Addr().String() + PathStatus)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkErrorReply(t, resp.StatusCode, resp.Header, body, 403, "cannot check the client's credentials")
	if l := sv.logs.String(); !strings.Contains(l, "client refused") {
		t.Errorf("refusal not logged; log:\n%s", l)
	}
}

// TestPeerCredentials runs a client as user nobody: it may not connect to
// the 0600 socket, and once the socket is opened to everyone (0666), the
// server refuses it with 403.
func TestPeerCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a client as user nobody (uid 65534) against a root daemon")
	}
	// A directory nobody can enter, holding the socket and a copy of the
	// test binary (the go build directory is root-only).
	dir, err := os.MkdirTemp("", "wanflow-control-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "control.test")
	exe, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "wanflow.sock")
	l, err := listen(t, sock)
	if err != nil {
		t.Fatal(err)
	}
	sv := serveOn(t, l, sock, newFakeBackend(), nil)

	asNobody := func() string {
		t.Helper()
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), helperEnv+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as nobody: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}

	if out := asNobody(); !strings.Contains(out, "no permission to use "+sock) || !strings.Contains(out, "run as root") {
		t.Errorf("nobody on the 0600 socket: %q, want a permission error saying to run as root", out)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if out := asNobody(); !strings.HasPrefix(out, "status 403: permission denied: uid 65534") {
		t.Errorf("nobody on the 0666 socket: %q, want status 403", out)
	}
	if l := sv.logs.String(); !strings.Contains(l, "client refused") || !strings.Contains(l, "uid=65534") {
		t.Errorf("refusal not logged with the uid; log:\n%s", l)
	}
	// Root still gets in.
	if _, err := sv.client.Status(testContext(t)); err != nil {
		t.Errorf("Status as root: %v", err)
	}
}
