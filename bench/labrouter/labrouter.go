package labrouter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
)

// Options shape the config ConfigYAML writes for a lab.
type Options struct {
	// Weights and Tiers per uplink (default weight 1, tier 1).
	Weights, Tiers []int
	// Affinity is flow, src-dst or src (default flow).
	Affinity string
	// Extra is appended verbatim to the YAML (extra top-level sections).
	Extra string
}

// ConfigYAML returns a wanflow config for lab l: its LAN interface and one
// uplink per lab uplink, named like the lab's.
func ConfigYAML(l *lab.Lab, o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lan:\n  interface: %s\nuplinks:\n", l.RouterLAN)
	for i, u := range l.Uplinks {
		w, t := 1, 1
		if i < len(o.Weights) {
			w = o.Weights[i]
		}
		if i < len(o.Tiers) {
			t = o.Tiers[i]
		}
		fmt.Fprintf(&b, "  - name: %s\n    interface: %s\n    tier: %d\n    weight: %d\n", u.Name, u.Interface, t, w)
		if u.Gateway.IsValid() {
			fmt.Fprintf(&b, "    gateway: %s\n", u.Gateway)
		}
	}
	aff := o.Affinity
	if aff == "" {
		aff = "flow"
	}
	fmt.Fprintf(&b, "balance:\n  affinity: %s\n", aff)
	b.WriteString(o.Extra)
	return b.String()
}

// Router is a wanflow daemon running in a lab's router namespace.
type Router struct {
	Config string // path of the config file
	// Socket is the daemon's control socket: in the router's directory
	// unless the YAML has a control section ("" if that names no socket).
	Socket string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // Wait's result, valid once done is closed
	log    *logBuffer
	dir    string
	ownDir bool
}

// Start writes yaml to a config file in dir (a fresh temporary directory if
// dir is empty), runs `bin run -c FILE` in l.Router and waits up to timeout
// for it to report that it runs. The daemon's log is copied to logw if not
// nil.
func Start(l *lab.Lab, bin, dir, yaml string, logw io.Writer, timeout time.Duration) (*Router, error) {
	return StartArgs(l, bin, dir, yaml, logw, timeout)
}

// StartArgs is Start with extra arguments for `wanflow run` (such as
// -cpuprofile FILE).
func StartArgs(l *lab.Lab, bin, dir, yaml string, logw io.Writer, timeout time.Duration, extra ...string) (*Router, error) {
	r := &Router{dir: dir, done: make(chan struct{}), log: newLogBuffer(logw)}
	if r.dir == "" {
		d, err := os.MkdirTemp("", "wanflow-lab-")
		if err != nil {
			return nil, err
		}
		r.dir, r.ownDir = d, true
	}
	r.Config = filepath.Join(r.dir, "wanflow.yaml")
	if err := r.WriteConfig(yaml); err != nil {
		r.cleanDir()
		return nil, err
	}
	r.cmd = l.Router.Command(context.Background(), bin, append([]string{"run", "-c", r.Config, "-log-level", "debug"}, extra...)...)
	r.cmd.Stdout = r.log
	r.cmd.Stderr = r.log
	if err := r.cmd.Start(); err != nil {
		r.cleanDir()
		return nil, fmt.Errorf("labrouter: start %s: %w", bin, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	deadline := time.After(timeout)
	for !strings.Contains(r.log.String(), "wanflow running") {
		select {
		case <-r.done:
			r.cleanDir()
			return nil, fmt.Errorf("labrouter: wanflow exited during start (%v):\n%s", r.err, r.log.String())
		case <-deadline:
			r.Kill()
			return nil, fmt.Errorf("labrouter: wanflow not ready after %v:\n%s", timeout, r.log.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return r, nil
}

// Log returns what the daemon has logged so far (the last 1 MiB).
func (r *Router) Log() string { return r.log.String() }

// Pid returns the daemon's process id (of `ip netns exec`, which execs it).
func (r *Router) Pid() int { return r.cmd.Process.Pid }

// Stop sends SIGINT, which stops wanflow for good (it removes everything it
// installed), and waits up to 10 s for a clean exit.
func (r *Router) Stop() error {
	defer r.cleanDir()
	return r.stopWith(syscall.SIGINT)
}

// Handover sends SIGTERM, a planned restart: wanflow holds the LAN, writes
// its flows next to its control socket for the next start and exits,
// leaving its kernel objects. It waits up to 10 s for the exit. The
// router's directory stays, so that a Start in the same directory takes the
// flows over.
func (r *Router) Handover() error { return r.stopWith(syscall.SIGTERM) }

func (r *Router) stopWith(sig syscall.Signal) error {
	select {
	case <-r.done:
		return fmt.Errorf("labrouter: wanflow had already exited: %v", r.err)
	default:
	}
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.done:
		if r.err != nil {
			return fmt.Errorf("labrouter: wanflow exit: %w", r.err)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
		return fmt.Errorf("labrouter: wanflow did not stop within 10s of %v; killed", sig)
	}
}

// WriteConfig writes yaml as the daemon's config file (for a reload). A
// YAML without a control section gets one that puts the control socket in
// the router's directory — never at the default path, which a real wanflow
// on this machine may be using — and Socket is set to it.
func (r *Router) WriteConfig(yaml string) error {
	r.Socket = filepath.Join(r.dir, "wanflow.sock")
	if !strings.Contains("\n"+yaml, "\ncontrol:") {
		yaml += "control:\n  socket: " + r.Socket + "\n"
	} else if i := strings.Index(yaml, "  socket: "); i >= 0 {
		r.Socket = strings.TrimSpace(strings.SplitN(yaml[i+len("  socket: "):], "\n", 2)[0])
	} else {
		r.Socket = ""
	}
	return os.WriteFile(r.Config, []byte(yaml), 0o600)
}

// Signal sends sig to the daemon (SIGHUP: reload its config).
func (r *Router) Signal(sig os.Signal) error { return r.cmd.Process.Signal(sig) }

// Kill sends SIGKILL (a crash: nothing is cleaned up) and waits for the
// process to be gone.
func (r *Router) Kill() {
	defer r.cleanDir()
	_ = r.cmd.Process.Kill()
	<-r.done
}

// Exited reports whether the daemon has exited.
func (r *Router) Exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *Router) cleanDir() {
	if r.ownDir {
		os.RemoveAll(r.dir)
		r.ownDir = false
	}
}

// logBuffer keeps the last maxLog bytes written and copies them on.
type logBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	out io.Writer
}

const maxLog = 1 << 20

func newLogBuffer(out io.Writer) *logBuffer { return &logBuffer{out: out} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if l.b.Len() > maxLog {
		l.b.Next(l.b.Len() - maxLog/2)
	}
	if l.out != nil {
		l.out.Write(p)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
