package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wanflow/wanflow/cmd/wanflow/control"
	"github.com/wanflow/wanflow/uplinks/events"
)

// testNow is the fake clock of every CLI test.
var testNow = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)

// fakeAPI is an apiClient that returns fixed replies and records what it
// was asked.
type fakeAPI struct {
	status  control.Status
	uplinks control.UplinksReply
	flows   control.FlowsReply
	explain control.ExplainReply
	events  control.EventsReply
	reload  control.ReloadReply
	// err, when set, is every call's error.
	err error
	// follow is Follow; nil returns err.
	follow func(ctx context.Context, since uint64, fn func(events.Event) error) error

	calls       []string
	flowQuery   control.FlowQuery
	explainQ    control.ExplainQuery
	eventsSince uint64
	followSince uint64
}

func (f *fakeAPI) Status(ctx context.Context) (control.Status, error) {
	f.calls = append(f.calls, "status")
	return f.status, f.err
}

func (f *fakeAPI) Uplinks(ctx context.Context) (control.UplinksReply, error) {
	f.calls = append(f.calls, "uplinks")
	return f.uplinks, f.err
}

func (f *fakeAPI) Flows(ctx context.Context, q control.FlowQuery) (control.FlowsReply, error) {
	f.calls = append(f.calls, "flows")
	f.flowQuery = q
	return f.flows, f.err
}

func (f *fakeAPI) Explain(ctx context.Context, q control.ExplainQuery) (control.ExplainReply, error) {
	f.calls = append(f.calls, "explain")
	f.explainQ = q
	return f.explain, f.err
}

func (f *fakeAPI) Events(ctx context.Context, since uint64) (control.EventsReply, error) {
	f.calls = append(f.calls, "events")
	f.eventsSince = since
	return f.events, f.err
}

func (f *fakeAPI) Follow(ctx context.Context, since uint64, fn func(events.Event) error) error {
	f.calls = append(f.calls, "follow")
	f.followSince = since
	if f.follow == nil {
		return f.err
	}
	return f.follow(ctx, since, fn)
}

func (f *fakeAPI) Reload(ctx context.Context) (control.ReloadReply, error) {
	f.calls = append(f.calls, "reload")
	return f.reload, f.err
}

// testCLI is a cli on api with a fixed clock, an environment of env and
// buffers for stdout and stderr; socket receives the path dialled.
type testCLI struct {
	*cli
	out, errOut bytes.Buffer
	socket      string
	sleeps      []time.Duration
}

func newTestCLI(api apiClient, env map[string]string) *testCLI {
	tc := &testCLI{}
	tc.cli = &cli{
		stdout: &tc.out,
		stderr: &tc.errOut,
		getenv: func(k string) string { return env[k] },
		now:    func() time.Time { return testNow },
		dial: func(socket string) apiClient {
			tc.socket = socket
			return api
		},
		sleep: func(ctx context.Context, d time.Duration) error {
			tc.sleeps = append(tc.sleeps, d)
			return ctx.Err()
		},
	}
	return tc
}

// run runs command cmd of tc with args.
func (tc *testCLI) run(t *testing.T, cmd string, args ...string) error {
	t.Helper()
	return tc.runCtx(t, context.Background(), cmd, args...)
}

func (tc *testCLI) runCtx(t *testing.T, ctx context.Context, cmd string, args ...string) error {
	t.Helper()
	cmds := map[string]func(*cli, context.Context, []string) error{
		"status": (*cli).status, "uplinks": (*cli).uplinks, "flows": (*cli).flows,
		"explain": (*cli).explain, "events": (*cli).events, "reload": (*cli).reload, "top": (*cli).top,
	}
	fn, ok := cmds[cmd]
	if !ok {
		t.Fatalf("no command %q", cmd)
	}
	return fn(tc.cli, ctx, args)
}

// checkGolden compares got with want line by line, so that a failure shows
// the first line that differs.
func checkGolden(t *testing.T, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Errorf("line %d:\ngot  %q\nwant %q", i+1, g, w)
			break
		}
	}
	t.Errorf("got:\n%s\nwant:\n%s", got, want)
}

func testStatus() control.Status {
	return control.Status{
		Version: "1.2.0", Started: testNow.Add(-3*time.Hour - 12*time.Minute), Uptime: 3*3600 + 12*60,
		Config: "/etc/wanflow/wanflow.yaml", Loaded: testNow.Add(-5 * time.Minute),
		Workers: 4, Flows: 1234, FlowCapacity: 65536,
		Uplinks: []control.UplinkStatus{
			{Index: 0, Name: "adsl", Interface: "eth0", State: "up", Available: true, Since: testNow.Add(-3*time.Hour - 12*time.Minute),
				Tier: 1, Weight: 8, EffectiveWeight: 8, Addr: "100.64.1.2", Gateway: "100.64.1.1", MTU: 1500,
				RTT: 12.34, Loss: 0, Flows: 800, PacketsOut: 1000, BytesOut: 1536 * 1024, PacketsIn: 2000, BytesIn: 3 << 30,
				RateOut: 1.31e6, RateIn: 15e6},
			{Index: 1, Name: "4g", Interface: "usb0", State: "degraded", Available: true, Since: testNow.Add(-42 * time.Second),
				Tier: 1, Weight: 6, EffectiveWeight: 3, Addr: "100.64.2.2", Gateway: "100.64.2.1", MTU: 1500,
				RTT: 85, Loss: 0.25, Flows: 434, RateOut: 950, RateIn: 2.5e3},
			{Index: 2, Name: "3g", Interface: "ppp0", State: "no-device", Since: testNow.Add(-26 * time.Hour),
				Tier: 2, Weight: 3, EffectiveWeight: 3, Loss: 1},
		},
		Drops: map[string]uint64{"out_drop_no_uplink": 12, "in_drop_bad_checksum": 3, "out_drop_zero": 0},
		DNS: &control.DNSSummary{Listen: []string{"10.77.0.1:53"}, Queries: 1000, CacheHits: 562, CacheEntries: 300, ServFail: 2,
			Upstreams: []control.DNSUpstream{{Uplink: "adsl", Server: "100.64.1.1"}, {Uplink: "4g", Server: "100.64.2.1"}}},
		DHCP: &control.DHCPSummary{Interface: "lan0", Range: "10.77.0.100-10.77.0.199", Leases: 12, PoolSize: 100, PoolExhausted: 0},
	}
}

const wantStatus = `wanflow 1.2.0, up 3h12m, 4 workers, 1234/65536 flows
config /etc/wanflow/wanflow.yaml, loaded 5m00s ago

NAME  IFACE  STATE      TIER  WEIGHT  ADDR        GATEWAY     RTT     LOSS  FLOWS  OUT         IN          SINCE
adsl  eth0   up         1     8       100.64.1.2  100.64.1.1  12.3ms  0%    800    1.3 Mbit/s  15 Mbit/s   3h12m ago
4g    usb0   degraded   1     3/6     100.64.2.2  100.64.2.1  85.0ms  25%   434    950 bit/s   2.5 kbit/s  42s ago
3g    ppp0   no-device  2     3       -           -           -       100%  0      0 bit/s     0 bit/s     1d02h ago

dns: 1000 queries, 56% cache hits (300 entries), 2 servfail; upstreams in order: adsl 100.64.1.1, 4g 100.64.2.1
dhcp on lan0: 12/100 leases (10.77.0.100-10.77.0.199), pool exhausted 0 times

drops: in_drop_bad_checksum 3, out_drop_no_uplink 12
`

func TestStatus(t *testing.T) {
	api := &fakeAPI{status: testStatus()}
	tc := newTestCLI(api, nil)
	if err := tc.run(t, "status"); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, tc.out.String(), wantStatus)

	// Without DNS, DHCP and drops: no such lines.
	st := testStatus()
	st.DNS, st.DHCP, st.Drops = nil, nil, nil
	tc = newTestCLI(&fakeAPI{status: st}, nil)
	if err := tc.run(t, "status"); err != nil {
		t.Fatal(err)
	}
	for _, no := range []string{"dns:", "dhcp", "drops"} {
		if strings.Contains(tc.out.String(), no) {
			t.Errorf("status without %s shows it:\n%s", no, tc.out.String())
		}
	}
}

func testUplinks() control.UplinksReply {
	st := testStatus()
	return control.UplinksReply{Uplinks: []control.UplinkDetail{
		{UplinkStatus: st.Uplinks[1], Carrier: true, DNS: []string{"100.64.2.1", "9.9.9.9"},
			OnFailureTCP: "reset", OnFailureUDP: "move",
			Probes: &control.ProbeDetail{Interval: 500, Timeout: 1000, MinOK: 1, RoundsOK: 1200, RoundsFailed: 3, Transitions: 2,
				Targets: []control.ProbeTarget{
					{Kind: "icmp", Target: "1.1.1.1", OK: true, RTT: 84.6, At: testNow.Add(-2 * time.Second)},
					{Kind: "dns", Target: "8.8.8.8", OK: false, Err: "timeout", At: testNow.Add(-1500 * time.Millisecond)},
				},
				History: []control.ProbeRound{
					{OK: 2, Total: 2, RTT: 80}, {OK: 0, Total: 2}, {OK: 1, Total: 2, RTT: 9.5}, {OK: 2, Total: 2, RTT: 85.2},
				}}},
		{UplinkStatus: st.Uplinks[2], OnFailureTCP: "reset", OnFailureUDP: "move"},
	}}
}

const wantUplinks = `4g (usb0, index 1): degraded, available since 42s ago
  tier        1
  weight      6 (effective 3)
  carrier     yes, mtu 1500
  address     100.64.2.2, gateway 100.64.2.1
  dns         100.64.2.1, 9.9.9.9
  rtt         85.0ms, loss 25%
  flows       434
  out         950 bit/s, 0 B in 0 packets
  in          2.5 kbit/s, 0 B in 0 packets
  on failure  tcp reset, udp move
  probes      every 500ms, timeout 1s, min ok 1
  rounds      1200 ok, 3 failed, 0 skipped; 2 transitions
  history     80 x 9.5 85 (rtt ms, oldest first)
    icmp  1.1.1.1  ok    84.6ms  2s ago
    dns   8.8.8.8  FAIL  -       1s ago  timeout

3g (ppp0, index 2): no-device, unavailable since 1d02h ago
  tier        2
  weight      3
  carrier     no
  address     -, gateway -
  dns         -
  rtt         -, loss 100%
  flows       0
  out         0 bit/s, 0 B in 0 packets
  in          0 bit/s, 0 B in 0 packets
  on failure  tcp reset, udp move
  probes      none
`

func TestUplinks(t *testing.T) {
	tc := newTestCLI(&fakeAPI{uplinks: testUplinks()}, nil)
	if err := tc.run(t, "uplinks"); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, tc.out.String(), wantUplinks)
}

func TestProbeHistoryKeepsLastRounds(t *testing.T) {
	u := testUplinks().Uplinks[0]
	u.Probes.History = nil
	var want []string
	for i := range 30 {
		u.Probes.History = append(u.Probes.History, control.ProbeRound{OK: 1, Total: 1, RTT: float64(10 + i)})
		if i >= 30-historyRounds {
			want = append(want, strconv.Itoa(10+i))
		}
	}
	var b bytes.Buffer
	formatUplink(&b, u, testNow)
	if line := "  history     " + strings.Join(want, " ") + " (rtt ms, oldest first)\n"; !strings.Contains(b.String(), line) {
		t.Errorf("want the last %d rounds, %q, in:\n%s", historyRounds, line, b.String())
	}
}

func testFlows() control.FlowsReply {
	return control.FlowsReply{Matched: 57, Truncated: true, Flows: []control.Flow{
		{Proto: "tcp", Src: "10.77.0.10:51000", Dst: "203.0.113.10:443", NAT: "100.64.1.2:51000", Uplink: "adsl",
			State: "established", Created: testNow.Add(-192 * time.Second), Age: 192, PacketsOut: 120, BytesOut: 12600,
			PacketsIn: 980, BytesIn: 1258291, Reason: "weighted", Tier: 1},
		{Proto: "udp", Src: "10.77.0.11:5060", Dst: "203.0.113.20:5060", NAT: "100.64.2.2:20002", Uplink: "4g",
			State: "udp", Age: 3.5, PacketsOut: 3, BytesOut: 900, PacketsIn: 1, BytesIn: 300, Reason: "rule-weighted", Tier: 1, Rule: "voip"},
		{Proto: "udp", Src: "10.77.0.12:40000", Dst: "203.0.113.21:53", NAT: "100.64.3.2:20004", Uplink: "3g",
			State: "new", Age: 1, PacketsOut: 1, BytesOut: 60, Reason: "weighted", Tier: 2, PortsFallback: true},
	}}
}

const wantFlows = `PROTO  SRC               DST                NAT               UPLINK  STATE        AGE    PKTS     BYTES           WHY
tcp    10.77.0.10:51000  203.0.113.10:443   100.64.1.2:51000  adsl    established  3m12s  120/980  12 KiB/1.2 MiB  weighted, tier 1
udp    10.77.0.11:5060   203.0.113.20:5060  100.64.2.2:20002  4g      udp          3s     3/1      900 B/300 B     rule-weighted, tier 1, rule voip
udp    10.77.0.12:40000  203.0.113.21:53    100.64.3.2:20004  3g      new          1s     1/0      60 B/0 B        weighted, tier 2, first choice out of NAT ports
3 of 57 flows (--limit to see more)
`

func TestFlows(t *testing.T) {
	api := &fakeAPI{flows: testFlows()}
	tc := newTestCLI(api, nil)
	err := tc.run(t, "flows", "--uplink", "adsl", "--host", "10.77.0.10", "-remote=203.0.113.10", "--proto", "TCP",
		"--port", "443", "--sort", "bytes", "--limit", "2")
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, tc.out.String(), wantFlows)
	want := control.FlowQuery{Uplink: "adsl", Host: "10.77.0.10", Remote: "203.0.113.10", Proto: "tcp", Port: 443, Sort: "bytes", Limit: 2}
	if api.flowQuery != want {
		t.Errorf("query: got %+v, want %+v", api.flowQuery, want)
	}

	tc = newTestCLI(&fakeAPI{flows: control.FlowsReply{Flows: []control.Flow{}}}, nil)
	if err := tc.run(t, "flows"); err != nil {
		t.Fatal(err)
	}
	if got, want := tc.out.String(), "no flows (0 matched)\n"; got != want {
		t.Errorf("empty: got %q, want %q", got, want)
	}
}

func testExplain() control.ExplainReply {
	return control.ExplainReply{
		Query: control.ExplainQuery{Proto: "tcp", Src: "10.77.0.10:51000", Dst: "203.0.113.10:443"},
		Existing: &control.Flow{Proto: "tcp", Src: "10.77.0.10:51000", Dst: "203.0.113.10:443", Uplink: "adsl",
			Created: testNow.Add(-192 * time.Second), Age: 192, Reason: "weighted", Tier: 1},
		Policy: control.Decision{Affinity: "flow", Uplink: "4g", Tier: 1, Reason: "weighted",
			Candidates: []control.Candidate{
				{Index: 0, Name: "adsl", Tier: 1, Weight: 8, Available: true, Allowed: true, Score: 0.3125, Verdict: "lower-score"},
				{Index: 1, Name: "4g", Tier: 1, Weight: 3, Available: true, Allowed: true, Score: 1.734, Verdict: "chosen"},
				{Index: 2, Name: "3g", Tier: 2, Weight: 3, Available: false, Allowed: true, Verdict: "unavailable"},
			}},
		Uplink: "adsl",
		Why:    "the flow exists and stays on adsl, where it was pinned; a new flow would go to 4g.",
	}
}

const wantExplain = `tcp 10.77.0.10:51000 → 203.0.113.10:443
existing flow: pinned to adsl since 2026-09-01 11:56:48 (3m12s ago), placed by weighted (tier 1)
policy now: affinity flow, no rule matched, choice 4g (weighted, tier 1)

NAME  TIER  WEIGHT  AVAILABLE  ALLOWED  SCORE   VERDICT
adsl  1     8       yes        yes      0.3125  lower-score
4g    1     3       yes        yes      1.734   chosen
3g    2     3       no         yes      -       unavailable

the flow exists and stays on adsl, where it was pinned; a new flow would go to 4g.
→ uplink adsl
`

const wantExplainDropped = `udp 10.77.0.10:5060 → 203.0.113.20:5060
no existing flow: the policy places it
policy now: affinity src, rule voip matched, choice no uplink

NAME  TIER  WEIGHT  AVAILABLE  ALLOWED  SCORE  VERDICT
adsl  1     8       no         yes      -      unavailable
3g    2     3       yes        no       -      not-allowed

no uplink that rule voip allows is available.
→ dropped: no uplink
`

func TestExplain(t *testing.T) {
	api := &fakeAPI{explain: testExplain()}
	tc := newTestCLI(api, nil)
	if err := tc.run(t, "explain", "TCP", "10.77.0.10:51000", "203.0.113.10:443"); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, tc.out.String(), wantExplain)
	if want := (control.ExplainQuery{Proto: "tcp", Src: "10.77.0.10:51000", Dst: "203.0.113.10:443"}); api.explainQ != want {
		t.Errorf("query: got %+v, want %+v", api.explainQ, want)
	}

	api = &fakeAPI{explain: control.ExplainReply{
		Query: control.ExplainQuery{Proto: "udp", Src: "10.77.0.10:5060", Dst: "203.0.113.20:5060"},
		Policy: control.Decision{Affinity: "src", Rule: "voip", Candidates: []control.Candidate{
			{Name: "adsl", Tier: 1, Weight: 8, Allowed: true, Verdict: "unavailable"},
			{Name: "3g", Tier: 2, Weight: 3, Available: true, Verdict: "not-allowed"},
		}},
		Why: "no uplink that rule voip allows is available.",
	}}
	tc = newTestCLI(api, nil)
	// Flags may follow the operands.
	if err := tc.run(t, "explain", "udp", "10.77.0.10:5060", "203.0.113.20:5060", "-s", "/tmp/wf.sock"); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, tc.out.String(), wantExplainDropped)
	if tc.socket != "/tmp/wf.sock" {
		t.Errorf("socket: got %q, want /tmp/wf.sock", tc.socket)
	}
}

func TestExplainArgErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"none", nil, "want 3 arguments"},
		{"two", []string{"tcp", "10.77.0.10:1"}, "want 3 arguments"},
		{"four", []string{"tcp", "10.77.0.10:1", "203.0.113.10:443", "extra"}, "too many arguments"},
		{"proto", []string{"sctp", "10.77.0.10:1", "203.0.113.10:443"}, "sctp"},
		{"no port", []string{"tcp", "10.77.0.10", "203.0.113.10:443"}, "10.77.0.10"},
		{"bad addr", []string{"udp", "10.77.0.300:1", "203.0.113.10:53"}, "10.77.0.300"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{}
			tc := newTestCLI(api, nil)
			err := tc.run(t, "explain", tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
			if len(api.calls) != 0 {
				t.Errorf("asked the daemon %v despite bad arguments", api.calls)
			}
		})
	}
}

func testEvents() control.EventsReply {
	t0 := time.Date(2026, 9, 1, 11, 58, 3, 123456789, time.UTC)
	return control.EventsReply{Last: 3, Events: []events.Event{
		{Seq: 1, Time: t0, Kind: events.KindConfig, Detail: "loaded /etc/wanflow/wanflow.yaml"},
		{Seq: 2, Time: t0.Add(time.Second), Kind: events.KindState, Uplink: "3g", Interface: "ppp0", From: "up", To: "down",
			Cause: "3 probes lost", Duration: 3*time.Hour + 12*time.Minute + 300*time.Millisecond},
		{Seq: 3, Time: t0.Add(2 * time.Second), Kind: events.KindHook, Uplink: "3g", Hook: "on_down", PID: 4242, Exit: 1,
			Duration: 1234567 * time.Microsecond, Err: "exit status 1", Detail: "NO CARRIER"},
	}}
}

const wantEvents = `2026-09-01T11:58:03.123Z #1 config   - detail="loaded /etc/wanflow/wanflow.yaml"
2026-09-01T11:58:04.123Z #2 state    3g(ppp0) up→down cause="3 probes lost" duration=3h12m0s
2026-09-01T11:58:05.123Z #3 hook     3g duration=1.235s hook=on_down pid=4242 exit=1 err="exit status 1" detail="NO CARRIER"
`

func TestEvents(t *testing.T) {
	api := &fakeAPI{events: testEvents()}
	tc := newTestCLI(api, nil)
	if err := tc.run(t, "events", "--since", "0"); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, tc.out.String(), wantEvents)
	if got := strings.Join(api.calls, ","); got != "events" {
		t.Errorf("calls: got %s, want events (no follow without -f)", got)
	}

	api = &fakeAPI{events: control.EventsReply{Last: 9}}
	tc = newTestCLI(api, nil)
	if err := tc.run(t, "events", "--since=7"); err != nil {
		t.Fatal(err)
	}
	if api.eventsSince != 7 || tc.out.Len() != 0 {
		t.Errorf("--since 7: asked since %d, printed %q", api.eventsSince, tc.out.String())
	}
}

// TestEventsFollow: -f prints the backlog, then the live events (each
// once), and ends without error when its context is cancelled.
func TestEventsFollow(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		live := events.Event{Seq: 4, Time: testNow, Kind: events.KindFailover, From: "3g", To: "adsl", Cause: "3g down"}
		api := &fakeAPI{events: testEvents()}
		api.follow = func(ctx context.Context, since uint64, fn func(events.Event) error) error {
			// The stream repeats an event already printed, then a new one.
			for _, e := range []events.Event{testEvents().Events[2], live} {
				if err := fn(e); err != nil {
					return err
				}
			}
			cancel() // the user presses ^C
			<-ctx.Done()
			return ctx.Err()
		}
		tc := newTestCLI(api, nil)
		args := []string{"-f"}
		if asJSON {
			args = append(args, "--json")
		}
		if err := tc.runCtx(t, ctx, "events", args...); err != nil {
			t.Fatalf("json %v: got %v, want a clean end", asJSON, err)
		}
		if api.followSince != 3 {
			t.Errorf("followed since %d, want 3 (the backlog's last)", api.followSince)
		}
		want := append(testEvents().Events, live)
		if !asJSON {
			checkGolden(t, tc.out.String(), wantEvents+formatEvent(live)+"\n")
			if line := formatEvent(live); line != `2026-09-01T12:00:00.000Z #4 failover - 3g→adsl cause="3g down"` {
				t.Errorf("failover line: got %q", line)
			}
			continue
		}
		var got []events.Event
		for _, line := range strings.Split(strings.TrimSuffix(tc.out.String(), "\n"), "\n") {
			var e events.Event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("NDJSON line %q: %v", line, err)
			}
			got = append(got, e)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("NDJSON events:\ngot  %+v\nwant %+v", got, want)
		}
	}
}

func TestEventsFollowStreamEnds(t *testing.T) {
	api := &fakeAPI{events: testEvents()}
	api.follow = func(context.Context, uint64, func(events.Event) error) error { return nil }
	tc := newTestCLI(api, nil)
	if err := tc.run(t, "events", "-f"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("got %v, want an error saying the daemon closed the stream", err)
	}
	api.follow = func(context.Context, uint64, func(events.Event) error) error {
		return fmt.Errorf("control: follow events: the daemon ended the stream: %w", io.EOF)
	}
	if err := tc.run(t, "events", "-f"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("got %v, want an error saying the daemon closed the stream", err)
	}
	api.follow = func(context.Context, uint64, func(events.Event) error) error { return errors.New("connection reset") }
	if err := tc.run(t, "events", "-f"); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("got %v, want the stream's error", err)
	}
}

func TestReload(t *testing.T) {
	for _, tt := range []struct {
		changed []string
		want    string
	}{
		{nil, "reloaded /etc/wanflow/wanflow.yaml: no change\n"},
		{[]string{"uplinks.4g.weight"}, "reloaded /etc/wanflow/wanflow.yaml: 1 change: uplinks.4g.weight\n"},
		{[]string{"uplinks.4g.weight", "probes.interval"}, "reloaded /etc/wanflow/wanflow.yaml: 2 changes: uplinks.4g.weight, probes.interval\n"},
	} {
		tc := newTestCLI(&fakeAPI{reload: control.ReloadReply{Config: "/etc/wanflow/wanflow.yaml", Loaded: testNow, Changed: tt.changed}}, nil)
		if err := tc.run(t, "reload"); err != nil {
			t.Fatal(err)
		}
		if got := tc.out.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}

	api := &fakeAPI{err: &control.APIError{Status: 409, Message: "needs a restart: dataplane.workers"}}
	tc := newTestCLI(api, nil)
	err := tc.run(t, "reload")
	if err == nil || err.Error() != "reload: needs a restart: dataplane.workers" {
		t.Errorf("409: got %v, want \"reload: needs a restart: dataplane.workers\"", err)
	}
	var ae *control.APIError
	if !errors.As(err, &ae) || ae.Status != 409 {
		t.Errorf("409: the APIError is not wrapped: %v", err)
	}
	if tc.out.Len() != 0 {
		t.Errorf("409: printed %q on stdout", tc.out.String())
	}
}

// TestJSON: --json (or -json) prints the reply itself, indented; events
// prints one event per line.
func TestJSON(t *testing.T) {
	api := &fakeAPI{
		status: testStatus(), uplinks: testUplinks(), flows: testFlows(), explain: testExplain(),
		events: testEvents(), reload: control.ReloadReply{Config: "/etc/wanflow/wanflow.yaml", Loaded: testNow, Changed: []string{"a"}},
	}
	for _, tt := range []struct {
		cmd   string
		args  []string
		reply any
	}{
		{"status", []string{"--json"}, api.status},
		{"uplinks", []string{"-json"}, api.uplinks},
		{"flows", []string{"--json", "--limit", "2"}, api.flows},
		{"explain", []string{"tcp", "10.77.0.10:51000", "203.0.113.10:443", "--json"}, api.explain},
		{"reload", []string{"--json"}, api.reload},
	} {
		t.Run(tt.cmd, func(t *testing.T) {
			tc := newTestCLI(api, nil)
			if err := tc.run(t, tt.cmd, tt.args...); err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(tt.reply); err != nil {
				t.Fatal(err)
			}
			if got := tc.out.String(); got != want.String() {
				t.Errorf("got:\n%s\nwant:\n%s", got, want.String())
			}
			got := reflect.New(reflect.TypeOf(tt.reply))
			if err := json.Unmarshal(tc.out.Bytes(), got.Interface()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Elem().Interface(), tt.reply) {
				t.Errorf("decoded output differs from the reply:\ngot  %+v\nwant %+v", got.Elem().Interface(), tt.reply)
			}
		})
	}
	t.Run("events", func(t *testing.T) {
		tc := newTestCLI(api, nil)
		if err := tc.run(t, "events", "--json"); err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for _, e := range testEvents().Events {
			b, _ := json.Marshal(e)
			want.Write(append(b, '\n'))
		}
		checkGolden(t, tc.out.String(), want.String())
	})
}

func TestFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		cmd  string
		args []string
		want string // in the error
	}{
		{"status", []string{"--bogus"}, "not defined: -bogus"},
		{"status", []string{"extra"}, `unexpected argument "extra"`},
		{"uplinks", []string{"-s"}, "needs an argument"},
		{"reload", []string{"now"}, `unexpected argument "now"`},
		{"flows", []string{"--sort", "size"}, `--sort "size"`},
		{"flows", []string{"--proto", "sctp"}, `--proto "sctp"`},
		{"flows", []string{"--port", "70000"}, "--port 70000"},
		{"flows", []string{"--port", "-1"}, "invalid value"},
		{"flows", []string{"--host", "lan-pc"}, "--host"},
		{"flows", []string{"--remote", "1.2.3"}, "--remote"},
		{"flows", []string{"--limit", "-5"}, "--limit -5"},
		{"flows", []string{"--limit", "100001"}, "--limit 100001"},
		{"events", []string{"--since", "x"}, "invalid value"},
		{"events", []string{"-f", "now"}, `unexpected argument "now"`},
		{"top", []string{"-i", "0s"}, "-i 0s"},
		{"top", []string{"-n", "-1"}, "-n -1"},
		{"status", []string{"-s", "/a.sock", "-c", "/etc/wanflow/wanflow.yaml"}, "-s and -c"},
		{"status", []string{"-c", "/nonexistent/wanflow.yaml"}, "/nonexistent/wanflow.yaml"},
	} {
		t.Run(tt.cmd+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			api := &fakeAPI{}
			tc := newTestCLI(api, nil)
			err := tc.run(t, tt.cmd, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if len(api.calls) != 0 {
				t.Errorf("asked the daemon %v despite bad flags", api.calls)
			}
			if tc.out.Len() != 0 {
				t.Errorf("printed on stdout: %q", tc.out.String())
			}
		})
	}

	// The flag package's errors come with the usage, on stderr.
	tc := newTestCLI(&fakeAPI{}, nil)
	if err := tc.run(t, "flows", "--bogus"); err == nil {
		t.Fatal("no error")
	}
	if s := tc.errOut.String(); !strings.Contains(s, "usage: wanflow flows [flags]") || !strings.Contains(s, "-sort ORDER") {
		t.Errorf("stderr lacks the usage:\n%s", s)
	}
	tc = newTestCLI(&fakeAPI{}, nil)
	if err := tc.run(t, "status", "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: got %v, want flag.ErrHelp (runCLI turns it into exit 0)", err)
	}
}

func TestSocketPath(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "wanflow.yaml")
	os.WriteFile(cfg, []byte(`lan: { interface: eth0, prefixes: [192.168.1.0/24] }
uplinks:
  - { name: adsl, interface: eth0, gateway: 192.168.1.1 }
control: { socket: /run/test/wf.sock }
`), 0o600)
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", nil, nil, control.DefaultSocket},
		{"env", nil, map[string]string{"WANFLOW_SOCKET": "/tmp/env.sock"}, "/tmp/env.sock"},
		{"-s", []string{"-s", "/tmp/flag.sock"}, map[string]string{"WANFLOW_SOCKET": "/tmp/env.sock"}, "/tmp/flag.sock"},
		{"-c", []string{"-c", cfg}, map[string]string{"WANFLOW_SOCKET": "/tmp/env.sock"}, "/run/test/wf.sock"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCLI(&fakeAPI{status: testStatus()}, tt.env)
			if err := tc.run(t, "status", tt.args...); err != nil {
				t.Fatal(err)
			}
			if tc.socket != tt.want {
				t.Errorf("socket: got %q, want %q", tc.socket, tt.want)
			}
		})
	}
}

func TestAPIErrorHints(t *testing.T) {
	notRunning := &fakeAPI{err: errors.Join(control.ErrNotRunning, os.ErrNotExist)}
	tc := newTestCLI(notRunning, nil)
	err := tc.run(t, "status")
	if !errors.Is(err, control.ErrNotRunning) || strings.Contains(err.Error(), "is the daemon running?") {
		t.Errorf("not running: got %v, want the client's own error without a second hint", err)
	}
	tc = newTestCLI(&fakeAPI{err: os.ErrPermission}, nil)
	if err := tc.run(t, "uplinks"); err == nil || !strings.Contains(err.Error(), "root-only") {
		t.Errorf("permission: got %v, want a hint that the socket is root-only", err)
	}
}

const wantTopFrame = `wanflow top  12:00:00  up 3h12m  flows 1234/65536  every 2s

NAME   STATE      FLOWS  OUT         IN          SHARE                        RTT
adsl   up         800    1.3 Mbit/s  15 Mbit/s   [####################] 100%  12.3ms
4g     degraded   434    950 bit/s   2.5 kbit/s  [....................] 0%    85.0ms
3g     no-device  0      0 bit/s     0 bit/s     [....................] 0%    -
total             1234   1.3 Mbit/s  15 Mbit/s
`

func TestTop(t *testing.T) {
	api := &fakeAPI{status: testStatus()}
	tc := newTestCLI(api, nil)
	if err := tc.run(t, "top", "-n", "2", "-i", "2s"); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, tc.out.String(), wantTopFrame+"\n"+wantTopFrame)
	if len(api.calls) != 2 || !reflect.DeepEqual(tc.sleeps, []time.Duration{2 * time.Second}) {
		t.Errorf("calls %v, sleeps %v: want 2 calls and one sleep of 2s between them", api.calls, tc.sleeps)
	}

	tc = newTestCLI(api, nil)
	tc.tty = true
	if err := tc.run(t, "top", "-n", "2"); err != nil {
		t.Fatal(err)
	}
	frames := strings.Split(tc.out.String(), clearScreen)
	if len(frames) != 3 || frames[0] != "" || !strings.HasPrefix(frames[2], "wanflow top") {
		t.Errorf("terminal: want two frames each after %q, got %q", clearScreen, tc.out.String())
	}

	tc = newTestCLI(api, nil)
	if err := tc.run(t, "top", "-n", "2", "--json"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(tc.out.String(), "\n"), "\n")
	var st control.Status
	if len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &st) != nil || !reflect.DeepEqual(st, api.status) {
		t.Errorf("--json: want 2 lines each with the Status, got %q", tc.out.String())
	}
}

// TestTopInterrupted: top without -n ends cleanly when its context is
// cancelled while it waits.
func TestTopInterrupted(t *testing.T) {
	api := &fakeAPI{status: testStatus()}
	tc := newTestCLI(api, nil)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	tc.sleep = func(ctx context.Context, d time.Duration) error {
		if n++; n == 3 {
			cancel()
		}
		return ctx.Err()
	}
	if err := tc.runCtx(t, ctx, "top"); err != nil {
		t.Fatalf("got %v, want a clean end", err)
	}
	if len(api.calls) != 3 {
		t.Errorf("got %d frames, want 3", len(api.calls))
	}
}

func TestShareBar(t *testing.T) {
	for _, tt := range []struct {
		share float64
		want  string
	}{
		{0, "[....................] 0%"},
		{0.5, "[##########..........] 50%"},
		{0.26, "[#####...............] 26%"},
		{1, "[####################] 100%"},
		{1.5, "[####################] 150%"},
	} {
		if got := shareBar(tt.share); got != tt.want {
			t.Errorf("shareBar(%v) = %q, want %q", tt.share, got, tt.want)
		}
	}
}

func TestHumanUnits(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{humanBytes(0), "0 B"},
		{humanBytes(1023), "1023 B"},
		{humanBytes(1024), "1.0 KiB"},
		{humanBytes(1536), "1.5 KiB"},
		{humanBytes(10239), "10 KiB"}, // 9.999 KiB rounds to 10, printed without a decimal
		{humanBytes(12 << 20), "12 MiB"},
		{humanBytes(3 << 30), "3.0 GiB"},
		{humanBytes(5 << 50), "5.0 PiB"},
		{humanBytes(1 << 62), "4096 PiB"},
		{humanBits(0), "0 bit/s"},
		{humanBits(999), "999 bit/s"},
		{humanBits(1000), "1.0 kbit/s"},
		{humanBits(1.25e6), "1.2 Mbit/s"},
		{humanBits(15e6), "15 Mbit/s"},
		{humanBits(999.9e6), "1000 Mbit/s"},
		{humanBits(2.5e9), "2.5 Gbit/s"},
		{humanBits(-1), "0 bit/s"},
		{humanDuration(-time.Second), "0s"},
		{humanDuration(0), "0s"},
		{humanDuration(850 * time.Millisecond), "850ms"},
		{humanDuration(42 * time.Second), "42s"},
		{humanDuration(192 * time.Second), "3m12s"},
		{humanDuration(5*time.Hour + 7*time.Minute + 59*time.Second), "5h07m"},
		{humanDuration(12*24*time.Hour + 3*time.Hour), "12d03h"},
		{showAgo(testNow, testNow.Add(-192*time.Second)), "3m12s ago"},
		{showAgo(testNow, time.Time{}), "-"},
		{showRTT(0), "-"},
		{showRTT(9.44), "9.4ms"},
		{showRTT(9.96), "10.0ms"},
		{showRTT(99.96), "100ms"},
		{showRTT(123.4), "123ms"},
		{showPercent(0.255), "26%"},
		{eventDuration(1234567 * time.Microsecond), "1.235s"},
		{eventDuration(3*time.Hour + 400*time.Millisecond), "3h0m0s"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestFormatEventQuoting(t *testing.T) {
	e := events.Event{Seq: 9, Time: testNow, Kind: "config", Detail: `a "b"=c`, Err: "x\ny", Cause: "plain"}
	want := `2026-09-01T12:00:00.000Z #9 config   - cause=plain err="x\ny" detail="a \"b\"=c"`
	if got := formatEvent(e); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
