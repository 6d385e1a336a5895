package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanflow/wanflow/uplinks/events"
	"go.uber.org/goleak"
)

// helperEnv, when set to a socket path, turns the test binary into a
// client that asks that socket for the status and prints the outcome
// (TestPeerCredentials runs it as another user).
const helperEnv = "WANFLOW_CONTROL_TEST_CLIENT"

func TestMain(m *testing.M) {
	if sock := os.Getenv(helperEnv); sock != "" {
		os.Exit(runClientHelper(sock))
	}
	goleak.VerifyTestMain(m)
}

func runClientHelper(sock string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := NewClient(sock).Status(ctx)
	var ae *APIError
	switch {
	case err == nil:
		fmt.Println("ok")
	case errors.As(err, &ae):
		fmt.Printf("status %d: %s\n", ae.Status, ae.Message)
	default:
		fmt.Printf("error: %v\n", err)
	}
	return 0
}

// fakeBackend is a Backend with canned replies; it records what it was
// asked.
type fakeBackend struct {
	status  Status
	uplinks UplinksReply
	ring    *events.Ring
	flows   func(FlowFilter) (FlowsReply, error)
	explain func(FlowKey) (ExplainReply, error)
	reload  func() (ReloadReply, error)

	mu        sync.Mutex
	gotFilter FlowFilter
	gotKey    FlowKey
	reloads   int
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFakeBackend() *fakeBackend {
	b := &fakeBackend{
		status: Status{
			Version: "test", Started: t0, Uptime: 42.5, Config: "/etc/wanflow.yaml", Loaded: t0,
			Workers: 4, Flows: 2, FlowCapacity: 65536,
			Uplinks: []UplinkStatus{{Index: 0, Name: "adsl", Interface: "eth0", State: "up", Available: true, Since: t0,
				Tier: 1, Weight: 8, EffectiveWeight: 8, Addr: "192.168.1.2", Gateway: "192.168.1.1", MTU: 1500, RTT: 12.5}},
			Drops: map[string]uint64{"out_drop_no_uplink": 3},
			DNS:   &DNSSummary{Listen: []string{"10.77.0.1:53"}, Upstreams: []DNSUpstream{{Uplink: "adsl", Server: "192.168.1.1"}}},
		},
		uplinks: UplinksReply{Uplinks: []UplinkDetail{{
			UplinkStatus: UplinkStatus{Index: 0, Name: "adsl", State: "up", Since: t0},
			Carrier:      true, DNS: []string{"192.168.1.1"}, OnFailureTCP: "reset", OnFailureUDP: "repin",
			Probes: &ProbeDetail{Interval: 500, Timeout: 1000, MinOK: 1,
				Targets: []ProbeTarget{{Kind: "icmp", Target: "1.1.1.1", OK: true, RTT: 11, At: t0}},
				History: []ProbeRound{{Time: t0, OK: 1, Total: 1, RTT: 11}}},
		}}},
		ring: events.NewRing(16),
	}
	b.flows = func(f FlowFilter) (FlowsReply, error) {
		return FlowsReply{Matched: 1, Flows: []Flow{{Proto: "tcp", Src: "10.77.0.10:51000", Dst: "203.0.113.5:443",
			NAT: "192.168.1.2:51000", Uplink: "adsl", State: "established", Created: t0, Reason: "weighted", Tier: 1}}}, nil
	}
	b.explain = func(k FlowKey) (ExplainReply, error) {
		return ExplainReply{Query: explainQueryOf(k), Uplink: "adsl", Why: "weighted choice",
			Policy: Decision{Affinity: "flow", Uplink: "adsl", Tier: 1, Reason: "weighted",
				Candidates: []Candidate{{Name: "adsl", Tier: 1, Weight: 8, Available: true, Allowed: true, Score: 0.5, Verdict: "chosen"}}}}, nil
	}
	b.reload = func() (ReloadReply, error) {
		return ReloadReply{Config: "/etc/wanflow.yaml", Loaded: t0, Changed: []string{"uplinks.adsl.weight"}}, nil
	}
	return b
}

func (b *fakeBackend) Status() Status        { return b.status }
func (b *fakeBackend) Uplinks() UplinksReply { return b.uplinks }
func (b *fakeBackend) Events() *events.Ring  { return b.ring }

func (b *fakeBackend) Flows(f FlowFilter) (FlowsReply, error) {
	b.mu.Lock()
	b.gotFilter = f
	b.mu.Unlock()
	return b.flows(f)
}

func (b *fakeBackend) Explain(k FlowKey) (ExplainReply, error) {
	b.mu.Lock()
	b.gotKey = k
	b.mu.Unlock()
	return b.explain(k)
}

func (b *fakeBackend) Reload() (ReloadReply, error) {
	b.mu.Lock()
	b.reloads++
	b.mu.Unlock()
	return b.reload()
}

// logBuffer collects a Server's log lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// sameJSON fails unless got and want encode to the same JSON.
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// checkErrorReply checks that a reply is a JSON Error with status.
func checkErrorReply(t *testing.T, status int, header http.Header, body []byte, wantStatus int, wantMsg string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status = %d, want %d (body %.200q)", status, wantStatus, body)
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %.200q is not an Error: %v", body, err)
	}
	if e.Status != wantStatus {
		t.Errorf("Error.Status = %d, want %d", e.Status, wantStatus)
	}
	if !strings.Contains(e.Error, wantMsg) {
		t.Errorf("Error.Error = %q, want it to contain %q", e.Error, wantMsg)
	}
}

// TestHandlerHostileRequests sends requests no CLI makes straight to the
// handler: each gets a 4xx JSON Error, none panics.
func TestHandlerHostileRequests(t *testing.T) {
	b := newFakeBackend()
	var logs logBuffer
	h := NewServer(b, logs.logger()).Handler()
	long := strings.Repeat("A", 1<<20)
	tests := []struct {
		method, target string
		body           string
		want           int
	}{
		{"GET", "/v1/flows?host=" + long, "", http.StatusRequestURITooLong},
		{"GET", "/" + long, "", http.StatusRequestURITooLong},
		{"GET", "/v1/flows?uplink=" + strings.Repeat("b", 4000), "", http.StatusBadRequest},
		{"GET", "/v1/flows?host=10.0.0.1%00", "", http.StatusBadRequest},
		{"GET", "/v1/flows?%00=1", "", http.StatusBadRequest},
		{"GET", "/v1/flows?uplink=%00", "", http.StatusBadRequest},
		{"GET", "/v1/explain?proto=tcp&src=%00:1&dst=1.2.3.4:5", "", http.StatusBadRequest},
		{"GET", "/v1/flows?host=%zz", "", http.StatusBadRequest},
		{"GET", "/v1/flows?host=1.2.3.4;port=1", "", http.StatusBadRequest},
		{"GET", "/v1/flows?limit=99999999999999999999999", "", http.StatusBadRequest},
		{"GET", "/v1/flows?port=%2B80", "", http.StatusBadRequest},
		{"GET", "/v1/events?since=-1", "", http.StatusBadRequest},
		{"GET", "/v1/events?since=18446744073709551616", "", http.StatusBadRequest},
		{"GET", "/v1/events?follow=yes", "", http.StatusBadRequest},
		{"GET", "/v1/status?x", "", http.StatusBadRequest},
		{"GET", "/v1/../v1/status", "", http.StatusNotFound},
		{"GET", "/v1/status/", "", http.StatusNotFound},
		{"GET", "//v1/status", "", http.StatusNotFound},
		{"GET", "/V1/STATUS", "", http.StatusNotFound},
		{"GET", "/v1/st%C3%A4tus", "", http.StatusNotFound},
		{"GET", "*", "", http.StatusNotFound},
		{"CONNECT", "/v1/status", "", http.StatusMethodNotAllowed},
		{"get", "/v1/status", "", http.StatusMethodNotAllowed},
		{"DELETE", "/v1/reload", "", http.StatusMethodNotAllowed},
		{"POST", "/v1/reload", strings.Repeat("x", maxRequestBody+1), http.StatusRequestEntityTooLarge},
		{"GET", "/v1/explain?proto=icmp&src=1.2.3.4:99999999&dst=5.6.7.8", "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		name := tt.method + " " + tt.target
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", strings.NewReader(tt.body))
			r.Method = tt.method
			u, err := url.ParseRequestURI(tt.target)
			if err != nil {
				t.Fatalf("parse %q: %v", tt.target, err)
			}
			r.URL, r.RequestURI = u, tt.target
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), tt.want, "")
		})
	}
	if b.reloads != 0 {
		t.Errorf("Reload called %d times by rejected requests", b.reloads)
	}
}

// TestHandlerBackendFailures covers the Backend's error classes, panics and
// slowness.
func TestHandlerBackendFailures(t *testing.T) {
	b := newFakeBackend()
	block := make(chan struct{})
	b.flows = func(FlowFilter) (FlowsReply, error) { return FlowsReply{}, BadRequest("no uplink named %q", "3g") }
	b.explain = func(FlowKey) (ExplainReply, error) {
		return ExplainReply{}, fmt.Errorf("explain: %w", Conflict("policy is being replaced"))
	}
	b.reload = func() (ReloadReply, error) {
		return ReloadReply{}, errors.New("reload: open /etc/wanflow.yaml: no such file")
	}
	var logs logBuffer
	s := NewServer(b, logs.logger())
	h := s.Handler()
	get := func(target string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
		return w
	}

	w := get("/v1/flows?uplink=3g")
	checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), 400, `no uplink named "3g"`)
	w = get("/v1/explain?proto=icmp&src=10.0.0.1&dst=10.0.0.2")
	checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), 409, "explain: policy is being replaced")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/reload", nil))
	checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), 500, "no such file")
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "no such file") {
		t.Errorf("500 not logged at error level with its error; log:\n%s", l)
	}

	// An APIError with a status that is not 4xx is a 500.
	b.flows = func(FlowFilter) (FlowsReply, error) {
		return FlowsReply{}, &APIError{Status: 302, Message: "elsewhere"}
	}
	w = get("/v1/flows")
	checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), 500, "elsewhere")

	// A panicking Backend gets a 500; the daemon lives on.
	b.flows = func(FlowFilter) (FlowsReply, error) { panic("boom") }
	w = get("/v1/flows")
	checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), 500, "internal error")
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("panic not logged")
	}

	// A reply that does not encode (NaN) is a 500, not half a reply.
	b.status.Uplinks[0].RTT = nan()
	w = get("/v1/status")
	checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), 500, "encode reply")

	// A Backend that does not answer in time gets a 503.
	s.callTimeout = 50 * time.Millisecond
	b.flows = func(FlowFilter) (FlowsReply, error) { <-block; return FlowsReply{}, nil }
	start := time.Now()
	w = get("/v1/flows")
	checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), 503, "did not answer within 50ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("slow Backend held the request for %v", d)
	}
	// Calls that timed out still count: a wedged Backend does not pile up
	// goroutines without end.
	s.callTimeout = 5 * time.Millisecond
	for range maxCalls - 1 {
		w = get("/v1/flows")
		checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), 503, "did not answer within 5ms")
	}
	w = get("/v1/status")
	checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), 503, "32 requests to the daemon in progress")
	close(block)
	for deadline := time.Now().Add(5 * time.Second); len(s.calls) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d Backend calls still running after it answered", len(s.calls))
		}
	}
	s.callTimeout = time.Second
	b.status.Uplinks[0].RTT = 1
	if w = get("/v1/status"); w.Code != 200 {
		t.Errorf("status after the Backend recovered: %d %s", w.Code, w.Body)
	}

	// A Backend without an event ring.
	b.ring = nil
	w = get("/v1/events")
	checkErrorReply(t, w.Code, w.Header(), w.Body.Bytes(), 500, "no event ring")
}

func nan() float64 {
	var zero float64
	return zero / zero
}

// TestHandlerEventsSince checks Last and Dropped of an EventsReply.
func TestHandlerEventsSince(t *testing.T) {
	b := newFakeBackend()
	for range 5 {
		b.ring.Add(events.Event{Kind: events.KindState, Uplink: "adsl"})
	}
	h := NewServer(b, nil).Handler()
	for _, tt := range []struct {
		target string
		want   []uint64
	}{
		{"/v1/events", []uint64{1, 2, 3, 4, 5}},
		{"/v1/events?since=0", []uint64{1, 2, 3, 4, 5}},
		{"/v1/events?since=3&follow=0", []uint64{4, 5}},
		{"/v1/events?since=5", nil},
		{"/v1/events?since=99", nil},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", tt.target, nil))
		if w.Code != 200 {
			t.Fatalf("GET %s: status %d: %s", tt.target, w.Code, w.Body)
		}
		var rep EventsReply
		if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, e := range rep.Events {
			got = append(got, e.Seq)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) || rep.Last != 5 || rep.Events == nil {
			t.Errorf("GET %s: seqs %v last %d (events nil: %v), want %v last 5", tt.target, got, rep.Last, rep.Events == nil, tt.want)
		}
	}
}
