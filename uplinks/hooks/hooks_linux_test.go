package hooks

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wanflow/wanflow/uplinks/events"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder collects the events a Runner records.
type recorder struct {
	mu  sync.Mutex
	evs []events.Event
	ch  chan events.Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan events.Event, 1000)} }

func (r *recorder) record(e events.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
	r.ch <- e
}

// next waits for the next recorded event of hook.
func (r *recorder) next(t *testing.T, hook string, within time.Duration) events.Event {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e := <-r.ch:
			if e.Hook == hook {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s run within %v", hook, within)
		}
	}
}

func (r *recorder) all() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs)
}

func (r *recorder) count(hook string) int {
	n := 0
	for _, e := range r.all() {
		if e.Hook == hook {
			n++
		}
	}
	return n
}

// logBuf is a concurrency-safe sink for a JSON slog handler.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// outputLines returns the logged output lines of hook.
func (l *logBuf) outputLines(t *testing.T, hook string) []string {
	t.Helper()
	var out []string
	for _, m := range l.records(t) {
		if m["msg"] == "hook output" && m["hook"] == hook {
			out = append(out, m["line"].(string))
		}
	}
	return out
}

type harness struct {
	r    *Runner
	rec  *recorder
	logs *logBuf
}

func newHarness(t *testing.T, uplink, iface string, spec Spec) *harness {
	t.Helper()
	h := &harness{rec: newRecorder(), logs: &logBuf{}}
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := New(uplink, iface, spec, log, h.rec.record)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.r = r
	t.Cleanup(r.Close)
	return h
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// processGone waits up to 3s for pid to be gone (or a zombie).
func processGone(pid int) bool {
	for range 300 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func TestNewValidates(t *testing.T) {
	bad := []struct {
		name string
		spec Spec
	}{
		{"unterminated quote", Spec{OnDown: "wvdial '3g"}},
		{"separator without shell", Spec{OnUp: "a; b"}},
		{"expansion without shell", Spec{WhileDown: "wvdial $DEV"}},
		{"relative path", Spec{OnDown: "./redial.sh"}},
		{"empty command name", Spec{OnDown: "'' x"}},
		{"NUL with shell", Spec{OnDown: "a\x00b", Shell: true}},
		{"negative retry", Spec{Retry: -time.Second}},
		{"negative timeout", Spec{Timeout: -time.Second}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := New("3g", "ppp0", tt.spec, nil, nil); err == nil {
				r.Close()
				t.Fatalf("New(%+v) = nil error, want one", tt.spec)
			}
		})
	}
	var se *SyntaxError
	if _, err := New("3g", "ppp0", Spec{OnDown: "a | b"}, nil, nil); !errors.As(err, &se) {
		t.Errorf("New with a pipe: error %v, want a *SyntaxError", err)
	}
	good := []Spec{
		{},
		{OnDown: "   "},
		{OnDown: "wvdial 3g", WhileDown: "/usr/bin/wvdial '3g modem'", OnUp: "env"},
		{OnDown: "poff -a; pon 3g | logger", Shell: true},
	}
	for _, spec := range good {
		r, err := New("3g", "ppp0", spec, nil, nil)
		if err != nil {
			t.Errorf("New(%+v): %v", spec, err)
			continue
		}
		r.Close()
		r.Close() // idempotent
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("WANFLOW_SECRET", "must not leak")
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	hs := newHarness(t, "3g", "ppp0", Spec{OnDown: "env > " + shQuote(envFile), Shell: true})
	hs.r.Down("carrier lost")
	hs.rec.next(t, OnDown, 5*time.Second)
	got := strings.Split(strings.TrimSpace(readFile(t, envFile)), "\n")
	for _, want := range []string{"PATH=" + Path, "WANFLOW_UPLINK=3g", "WANFLOW_HOOK=on_down",
		"WANFLOW_STATE=down", "WANFLOW_INTERFACE=ppp0", "WANFLOW_CAUSE=carrier lost"} {
		if !slices.Contains(got, want) {
			t.Errorf("shell hook env %q lacks %q", got, want)
		}
	}
	for _, kv := range got {
		name, _, _ := strings.Cut(kv, "=")
		// Anything else may only come from sh itself.
		if !strings.HasPrefix(name, "WANFLOW_") && !slices.Contains([]string{"PATH", "PWD", "OLDPWD", "SHLVL", "_"}, name) {
			t.Errorf("shell hook env has %q", kv)
		}
	}
	if slices.Contains(got, "WANFLOW_SECRET=must not leak") {
		t.Error("wanflow's own environment leaked into the hook")
	}

	hn := newHarness(t, "3g", "ppp0", Spec{OnUp: "env"})
	hn.r.SetInterface("ppp1")
	hn.r.Up()
	e := hn.rec.next(t, OnUp, 5*time.Second)
	hn.r.Close() // all output logged
	env := hn.logs.outputLines(t, OnUp)
	slices.Sort(env)
	want := []string{"PATH=" + Path, "WANFLOW_CAUSE=", "WANFLOW_HOOK=on_up", "WANFLOW_INTERFACE=ppp1",
		"WANFLOW_STATE=up", "WANFLOW_UPLINK=3g"}
	if !slices.Equal(env, want) {
		t.Errorf("env of a direct hook = %q, want exactly %q", env, want)
	}
	if e.Interface != "ppp1" || e.Exit != 0 || e.Err != "" || e.PID == 0 || e.Kind != events.KindHook || e.Uplink != "3g" {
		t.Errorf("event %+v, want a successful on_up run on ppp1", e)
	}
}

func TestOutputAndStatusLogged(t *testing.T) {
	h := newHarness(t, "4g", "usb0", Spec{OnDown: `/bin/sh -c 'echo out; echo err >&2; exit 3'`})
	h.r.Down("probe loss")
	e := h.rec.next(t, OnDown, 5*time.Second)
	h.r.Close()
	if e.Exit != 3 || e.Err != "exit status 3" || e.Cause != "probe loss" || e.Duration <= 0 {
		t.Errorf("event %+v, want exit 3 with cause and duration", e)
	}
	if e.Detail != "out" && e.Detail != "err" {
		t.Errorf("event Detail %q, want the last output line", e.Detail)
	}
	var sawOut, sawErr, sawDone bool
	for _, m := range h.logs.records(t) {
		if m["uplink"] != "4g" || m["hook"] != OnDown {
			continue
		}
		pid, _ := m["pid"].(float64)
		switch {
		case m["msg"] == "hook output" && m["stream"] == "stdout" && m["line"] == "out":
			sawOut = int(pid) == e.PID
		case m["msg"] == "hook output" && m["stream"] == "stderr" && m["line"] == "err":
			sawErr = int(pid) == e.PID
		case m["msg"] == "hook failed":
			sawDone = m["exit"] == float64(3) && m["duration"] != nil && int(pid) == e.PID
		}
	}
	if !sawOut || !sawErr || !sawDone {
		t.Errorf("logs: stdout line %v, stderr line %v, exit status %v; want all, with uplink, hook and pid:\n%v",
			sawOut, sawErr, sawDone, h.logs.records(t))
	}
}

func TestOutputBounded(t *testing.T) {
	const n = 4000 // 4000 lines of 41 bytes: about 160 KiB
	h := newHarness(t, "3g", "ppp0", Spec{
		OnDown: `i=0; while [ $i -lt 4000 ]; do echo "line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; i=$((i+1)); done`,
		Shell:  true,
	})
	h.r.Down("x")
	e := h.rec.next(t, OnDown, 10*time.Second)
	h.r.Close()
	lines := h.logs.outputLines(t, OnDown)
	total := 0
	for _, l := range lines {
		total += len(l) + 1
	}
	if total > OutputLimit+TailLimit {
		t.Errorf("logged %d bytes of output, want at most %d", total, OutputLimit+TailLimit)
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "line-0-") || !strings.HasPrefix(lines[len(lines)-1], fmt.Sprintf("line-%d-", n-1)) {
		t.Errorf("want the first and the last line logged; got %d lines", len(lines))
	}
	truncated := false
	for _, m := range h.logs.records(t) {
		truncated = truncated || m["msg"] == "hook output truncated"
	}
	if !truncated {
		t.Error("no \"hook output truncated\" line")
	}
	if e.Exit != 0 || !strings.HasPrefix(e.Detail, "line-3999-") {
		t.Errorf("event %+v, want exit 0 and the last line as detail", e)
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		shell   bool
		signal  string
		minimum time.Duration
	}{
		{"sleep", "sleep 60", false, "signal: terminated", 300 * time.Millisecond},
		{"shell and child", "sleep 60 & echo $! > PIDFILE; wait", true, "signal: terminated", 300 * time.Millisecond},
		{"ignores SIGTERM", "trap '' TERM; sleep 60 & echo $! > PIDFILE; wait", true, "signal: killed", 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			h := newHarness(t, "3g", "ppp0", Spec{
				OnDown:  strings.ReplaceAll(tt.line, "PIDFILE", shQuote(pidFile)),
				Shell:   tt.shell,
				Timeout: 300 * time.Millisecond,
			})
			h.r.killGrace = 200 * time.Millisecond
			h.r.Down("x")
			e := h.rec.next(t, OnDown, 10*time.Second)
			if e.Exit != -1 || !strings.Contains(e.Err, "timeout after 300ms") || !strings.Contains(e.Err, tt.signal) {
				t.Errorf("event exit %d err %q, want -1 and a timeout by %q", e.Exit, e.Err, tt.signal)
			}
			if e.Duration < tt.minimum || e.Duration > 3*time.Second {
				t.Errorf("run took %v, want between %v and 3s", e.Duration, tt.minimum)
			}
			pids := []int{e.PID}
			if tt.shell {
				child, err := strconv.Atoi(strings.TrimSpace(readFile(t, pidFile)))
				if err != nil {
					t.Fatal(err)
				}
				pids = append(pids, child)
			}
			for _, pid := range pids {
				if !processGone(pid) {
					t.Errorf("process %d still running after the timeout", pid)
				}
			}
		})
	}
}

func TestLeftoverProcessesKilled(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := newHarness(t, "3g", "ppp0", Spec{OnDown: "sleep 60 & echo $! > " + shQuote(pidFile), Shell: true})
	h.r.Down("x")
	e := h.rec.next(t, OnDown, 10*time.Second)
	if e.Exit != 0 || e.Err != "" || e.Duration > 3*time.Second {
		t.Errorf("event %+v, want a quick successful run", e)
	}
	child, err := strconv.Atoi(strings.TrimSpace(readFile(t, pidFile)))
	if err != nil {
		t.Fatal(err)
	}
	if !processGone(child) {
		t.Errorf("background process %d outlived its hook", child)
	}
}

func TestMissingCommand(t *testing.T) {
	h := newHarness(t, "3g", "ppp0", Spec{OnDown: "wanflow-no-such-command", WhileDown: "/nonexistent/redial"})
	h.r.Down("x")
	for _, hook := range []string{OnDown, WhileDown} {
		e := h.rec.next(t, hook, 5*time.Second)
		if e.Exit != -1 || e.PID != 0 || e.Err == "" {
			t.Errorf("%s event %+v, want exit -1, no pid and an error", hook, e)
		}
	}
}

// markerHook appends "start <hook>" and "end <hook>" around a short sleep.
func markerHook(file, hook string) string {
	return fmt.Sprintf(`/bin/sh -c 'echo start %[2]s >> %[1]s; sleep 0.03; echo end %[2]s >> %[1]s'`, file, hook)
}

func TestRunsNeverOverlap(t *testing.T) {
	file := filepath.Join(t.TempDir(), "markers")
	h := newHarness(t, "3g", "ppp0", Spec{
		OnDown:    markerHook(file, OnDown),
		OnUp:      markerHook(file, OnUp),
		WhileDown: markerHook(file, WhileDown),
		Retry:     10 * time.Millisecond,
	})
	// Two quick flips, then flips while hooks run.
	h.r.Down("a")
	h.r.Up()
	h.r.Down("b")
	h.r.Up()
	for i := range 6 {
		time.Sleep(time.Duration(i*15) * time.Millisecond)
		h.r.Down(fmt.Sprintf("c%d", i))
		time.Sleep(time.Duration(i*10) * time.Millisecond)
		h.r.Up()
	}
	// Wait until the last Up's on_up ran and nothing else follows.
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := h.rec.all()
		if len(evs) > 0 && evs[len(evs)-1].Hook == OnUp {
			time.Sleep(200 * time.Millisecond)
			if len(h.rec.all()) == len(evs) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs did not settle on on_up: %d events", len(evs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(readFile(t, file)), "\n")
	if len(lines) < 8 || len(lines)%2 != 0 {
		t.Fatalf("got %d marker lines, want an even number ≥ 8:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i := 0; i < len(lines); i += 2 {
		hook, ok := strings.CutPrefix(lines[i], "start ")
		if !ok || lines[i+1] != "end "+hook {
			t.Fatalf("lines %d-%d = %q, %q: runs overlap\n%s", i, i+1, lines[i], lines[i+1], strings.Join(lines, "\n"))
		}
	}
	// The order follows the calls: on_down and on_up alternate, while_down
	// only between an on_down and the next on_up, and the first two flips
	// are not lost.
	var order []string
	for _, e := range h.rec.all() {
		order = append(order, e.Hook)
	}
	if !slices.Equal(order[:4], []string{OnDown, OnUp, OnDown, OnUp}) {
		t.Errorf("first runs %q, want on_down on_up on_down on_up", order[:4])
	}
	down := false
	for i, hook := range order {
		switch hook {
		case OnDown:
			if down {
				t.Errorf("run %d: on_down twice in a row: %q", i, order)
			}
			down = true
		case OnUp:
			if !down {
				t.Errorf("run %d: on_up twice in a row: %q", i, order)
			}
			down = false
		case WhileDown:
			if !down {
				t.Errorf("run %d: while_down while up: %q", i, order)
			}
		}
	}
}

func TestWhileDownRetry(t *testing.T) {
	h := newHarness(t, "3g", "ppp0", Spec{WhileDown: "echo redial", OnUp: "echo up", Retry: 100 * time.Millisecond})
	h.r.Down("carrier lost")
	time.Sleep(550 * time.Millisecond)
	h.r.Up()
	h.rec.next(t, OnUp, 5*time.Second)
	n := h.rec.count(WhileDown)
	if n < 4 || n > 6 {
		t.Errorf("while_down ran %d times in 550ms with retry 100ms, want 5±1", n)
	}
	time.Sleep(350 * time.Millisecond)
	if m := h.rec.count(WhileDown); m != n {
		t.Errorf("while_down ran %d more times after Up", m-n)
	}
	for _, e := range h.rec.all() {
		if e.Hook == WhileDown && (e.Cause != "carrier lost" || e.Exit != 0) {
			t.Errorf("while_down event %+v, want cause and exit 0", e)
		}
	}
}

func TestWhileDownStartsAfterOnDown(t *testing.T) {
	h := newHarness(t, "3g", "ppp0", Spec{OnDown: "sleep 0.2", WhileDown: "echo redial", Retry: time.Hour})
	h.r.Down("x")
	d := h.rec.next(t, OnDown, 5*time.Second)
	w := h.rec.next(t, WhileDown, 5*time.Second)
	if end := d.Time.Add(d.Duration); w.Time.Before(end) {
		t.Errorf("while_down started at %v, before on_down ended at %v", w.Time, end)
	} else if gap := w.Time.Sub(end); gap > 500*time.Millisecond {
		t.Errorf("while_down started %v after on_down ended, want right after", gap)
	}
}

func TestUpWaitsForWhileDown(t *testing.T) {
	h := newHarness(t, "3g", "ppp0", Spec{WhileDown: "sleep 0.3", OnUp: "echo up", Retry: time.Hour})
	h.r.Down("x")
	time.Sleep(100 * time.Millisecond) // while_down is running
	h.r.Up()
	w := h.rec.next(t, WhileDown, 5*time.Second)
	u := h.rec.next(t, OnUp, 5*time.Second)
	if w.Exit != 0 || w.Err != "" {
		t.Errorf("while_down %+v, want it to finish normally, not killed by Up", w)
	}
	if u.Time.Before(w.Time.Add(w.Duration)) {
		t.Error("on_up started before while_down ended")
	}
}

func TestNoInjection(t *testing.T) {
	for _, shell := range []bool{false, true} {
		t.Run(fmt.Sprintf("shell=%v", shell), func(t *testing.T) {
			dir := t.TempDir()
			pwned := func(n int) string { return filepath.Join(dir, fmt.Sprintf("pwned%d", n)) }
			iface := "x; touch " + pwned(1)
			cause := "$(touch " + pwned(2) + ") `touch " + pwned(3) + "` ' \" \\ ; touch " + pwned(4)
			out := filepath.Join(dir, "out")
			spec := Spec{Shell: shell}
			if shell {
				// Both quoted and unquoted uses: expansion results are
				// never parsed again as shell code.
				spec.OnDown = `echo "$WANFLOW_INTERFACE" > ` + shQuote(out) + `; echo "$WANFLOW_CAUSE" >> ` + shQuote(out) +
					`; echo $WANFLOW_INTERFACE $WANFLOW_CAUSE >> ` + shQuote(out)
				spec.OnUp = `echo $WANFLOW_INTERFACE; echo "$WANFLOW_CAUSE"`
			} else {
				spec.OnDown = `/bin/sh -c 'echo "$WANFLOW_INTERFACE" > "$1"; echo "$WANFLOW_CAUSE" >> "$1"' sh ` + shQuote(out)
				spec.OnUp = "env"
				spec.WhileDown = `echo '$WANFLOW_INTERFACE' "\$WANFLOW_CAUSE"`
			}
			h := newHarness(t, "3g; touch "+pwned(5), iface, spec)
			h.r.Down(cause)
			h.rec.next(t, OnDown, 5*time.Second)
			if !shell {
				h.rec.next(t, WhileDown, 5*time.Second)
			}
			h.r.SetInterface("`touch " + pwned(6) + "`")
			h.r.Up()
			h.rec.next(t, OnUp, 5*time.Second)
			h.r.Close()
			for i := 1; i <= 6; i++ {
				if _, err := os.Stat(pwned(i)); err == nil {
					t.Errorf("%s was created: a value was executed", pwned(i))
				}
			}
			got := strings.Split(readFile(t, out), "\n")
			if got[0] != iface || got[1] != cause {
				t.Errorf("hook saw interface %q cause %q, want %q %q", got[0], got[1], iface, cause)
			}
			if !shell {
				lines := h.logs.outputLines(t, WhileDown)
				if len(lines) == 0 || lines[0] != "$WANFLOW_INTERFACE $WANFLOW_CAUSE" {
					t.Errorf("direct while_down printed %q, want the literal words", lines)
				}
			}
		})
	}
}

func TestCloseWaitsForRunningHook(t *testing.T) {
	h := newHarness(t, "3g", "ppp0", Spec{OnDown: "sleep 0.3", Timeout: 5 * time.Second})
	h.r.Down("x")
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	h.r.Close()
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("Close returned after %v, before the running hook ended", d)
	}
	if n := h.rec.count(OnDown); n != 1 {
		t.Errorf("%d on_down runs recorded when Close returned, want 1", n)
	}
	h.r.Down("y") // no-ops after Close
	h.r.Up()
	h.r.Close()
	if n := len(h.rec.all()); n != 1 {
		t.Errorf("%d runs after Close, want none", n-1)
	}
}

func TestCloseTimesOutHook(t *testing.T) {
	h := newHarness(t, "3g", "ppp0", Spec{OnDown: "sleep 60", Timeout: 200 * time.Millisecond})
	h.r.Down("x")
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	h.r.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v, want the hook's timeout (200ms)", d)
	}
	if e := h.rec.all(); len(e) != 1 || !strings.Contains(e[0].Err, "timeout") {
		t.Errorf("events %+v, want one timed-out run", e)
	}
}

func TestCloseDuringRetryWait(t *testing.T) {
	h := newHarness(t, "3g", "ppp0", Spec{WhileDown: "echo redial", Retry: time.Hour})
	h.r.Down("x")
	h.rec.next(t, WhileDown, 5*time.Second)
	start := time.Now()
	h.r.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v while waiting to retry, want at once", d)
	}
}

func TestFlappingIsBounded(t *testing.T) {
	h := newHarness(t, "3g", "ppp0", Spec{OnDown: "sleep 0.2", OnUp: "echo up"})
	h.r.Down("first")
	time.Sleep(50 * time.Millisecond) // on_down is running
	for range 10 {
		h.r.Up()
		h.r.Down("flap")
	}
	h.r.Up()
	time.Sleep(100 * time.Millisecond)
	h.r.Close() // drops what is still queued; wait for the run in progress
	var order []string
	for _, e := range h.rec.all() {
		order = append(order, e.Hook)
	}
	if len(order) == 0 || order[0] != OnDown {
		t.Fatalf("runs %q, want on_down first", order)
	}
	if len(order) > 1+maxPending {
		t.Errorf("%d runs after 21 flips behind one hook, want at most %d: %q", len(order), 1+maxPending, order)
	}
	warned := false
	for _, m := range h.logs.records(t) {
		warned = warned || strings.Contains(fmt.Sprint(m["msg"]), "flapping")
	}
	if !warned {
		t.Error("no warning about skipped flaps")
	}
}

func TestFlapsEndInLastState(t *testing.T) {
	h := newHarness(t, "3g", "ppp0", Spec{OnDown: "sleep 0.1", OnUp: "echo up"})
	h.r.Down("first")
	for range 10 {
		h.r.Up()
		h.r.Down("flap")
	}
	h.r.Up()
	// The queue always ends with the last call: the final run is on_up.
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := h.rec.all()
		if len(evs) > 0 && evs[len(evs)-1].Hook == OnUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last run is not on_up: %+v", evs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSetSpec: a reload replaces the commands and the retry of a running
// Runner without a new Down: while_down goes on with the new command.
func TestSetSpec(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	h := newHarness(t, "3g", "ppp0", Spec{WhileDown: "/bin/sh -c 'echo x >> " + a + "'", Retry: time.Hour})
	h.r.Down("carrier lost")
	h.rec.next(t, WhileDown, 5*time.Second)
	if err := h.r.SetSpec(Spec{WhileDown: "/bin/sh -c 'echo x >> " + b + "'", Retry: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := h.r.SetSpec(Spec{Retry: -1}); err == nil {
		t.Error("SetSpec accepted a negative retry")
	}
	// The hour-long wait is cut short by the new retry of 50ms.
	h.rec.next(t, WhileDown, 5*time.Second)
	h.rec.next(t, WhileDown, 5*time.Second)
	h.r.Up()
	if got := readFile(t, a); got != "x\n" {
		t.Errorf("old command ran %q, want once", got)
	}
	if got := readFile(t, b); len(got) < 4 {
		t.Errorf("new command ran %q, want at least twice", got)
	}
}
