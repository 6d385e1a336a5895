package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/labrouter"
	"github.com/wanflow/wanflow/cmd/wanflow/control"
)

// This file holds what the latency, flow-rate and memory scenarios share:
// running a measurement under each router in turn, and starting wanflow
// with its control socket where the scenario can reach it.

// Router names in the scenarios' results.
const (
	scenKernel  = "kernel"
	scenWanflow = "wanflow"
)

// scenDaemon is a wanflow daemon started by startScenDaemon: the process,
// a client of its control socket, and the temporary directory holding both.
type scenDaemon struct {
	r   *labrouter.Router
	ctl *control.Client
	dir string
}

// scenDaemonOptions shape startScenDaemon.
type scenDaemonOptions struct {
	// Extra is YAML appended to labrouter.ConfigYAML's (not a control
	// section: startScenDaemon writes that).
	Extra string
	// Env is added to the daemon's environment (through a wrapper script
	// that execs the binary, so the pid stays the daemon's).
	Env []string
}

// startScenDaemon starts wanflow (bin) in l's router namespace with a
// control socket in a fresh temporary directory and waits until every
// uplink is available, so that the first flow of a measurement goes out at
// once. stop (always safe to call) stops the daemon and removes the
// directory.
func startScenDaemon(ctx context.Context, l *lab.Lab, bin string, o scenDaemonOptions) (*scenDaemon, error) {
	dir, err := os.MkdirTemp("", "wanflow-bench-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "wanflow.sock")
	yaml := labrouter.ConfigYAML(l, labrouter.Options{Extra: o.Extra + "control:\n  socket: " + sock + "\n"})
	exe := bin
	if len(o.Env) > 0 {
		exe = filepath.Join(dir, "wanflow-env")
		var b strings.Builder
		b.WriteString("#!/bin/sh\n")
		for _, kv := range o.Env {
			fmt.Fprintf(&b, "export %s\n", scenShellQuote(kv))
		}
		fmt.Fprintf(&b, "exec %s \"$@\"\n", scenShellQuote(bin))
		if err := os.WriteFile(exe, []byte(b.String()), 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	r, err := labrouter.Start(l, exe, dir, yaml, nil, 15*time.Second)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	d := &scenDaemon{r: r, ctl: control.NewClient(sock), dir: dir}
	if err := d.waitUplinks(ctx, 10*time.Second); err != nil {
		return nil, errors.Join(err, d.stop())
	}
	return d, nil
}

// scenShellQuote quotes s for /bin/sh.
func scenShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// waitUplinks waits until the daemon reports every uplink available.
func (d *scenDaemon) waitUplinks(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := d.ctl.Status(cctx)
		cancel()
		if err == nil {
			ok := len(st.Uplinks) > 0
			for _, u := range st.Uplinks {
				ok = ok && u.Available
			}
			if ok {
				return nil
			}
			last = fmt.Sprintf("%+v", st.Uplinks)
		} else {
			last = err.Error()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: wanflow's uplinks not available after %v: %s", timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// status returns the daemon's status (bounded by 30 s: with a million flows
// the daemon walks its flow table to answer).
func (d *scenDaemon) status(ctx context.Context) (control.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return d.ctl.Status(cctx)
}

// stop stops the daemon and removes its directory.
func (d *scenDaemon) stop() error {
	var err error
	if !d.r.Exited() {
		err = d.r.Stop()
	}
	os.RemoveAll(d.dir)
	return err
}

// scenEachRouter runs fn in l (one uplink) first through the kernel —
// forwarding and nftables masquerade, lab.KernelBaseline as Throughput uses
// it — then through wanflow started with o. fn gets the router's name and, for
// wanflow, the daemon (nil for the kernel). Everything is undone, also when
// fn fails.
func scenEachRouter(ctx context.Context, l *lab.Lab, bin string, o scenDaemonOptions, w io.Writer, fn func(name string, d *scenDaemon) error) error {
	fmt.Fprintf(w, "  %s: forwarding + masquerade\n", scenKernel)
	undo, err := l.KernelBaseline(lab.BaselineMultipathL4, []int{1})
	if err != nil {
		return err
	}
	err = fn(scenKernel, nil)
	if uerr := undo(); uerr != nil && err == nil {
		err = uerr
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fmt.Fprintf(w, "  %s: starting the scenDaemon\n", scenWanflow)
	d, err := startScenDaemon(ctx, l, bin, o)
	if err != nil {
		return err
	}
	err = fn(scenWanflow, d)
	if serr := d.stop(); serr != nil && err == nil {
		err = serr
	}
	return err
}

// scenProcStatus reads the memory figures of process pid from
// /proc/<pid>/status, in bytes: VmRSS (resident), RssAnon (its anonymous
// part: heap, stacks, runtime) and VmHWM (peak resident).
func scenProcStatus(pid int) (rss, anon, hwm uint64, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch k {
		case "VmRSS":
			dst = &rss
		case "RssAnon":
			dst = &anon
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		kb, perr := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if perr != nil {
			return 0, 0, 0, fmt.Errorf("bench: /proc/%d/status %s: %w", pid, k, perr)
		}
		*dst = kb << 10
	}
	if err := sc.Err(); err != nil {
		return 0, 0, 0, err
	}
	if rss == 0 {
		return 0, 0, 0, fmt.Errorf("bench: /proc/%d/status has no VmRSS", pid)
	}
	return rss, anon, hwm, nil
}
