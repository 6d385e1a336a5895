package hooks

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// drainAfterExit is how long output is still read after the run's process
// group is gone: only a process that left the group (setsid) can still hold
// the pipes, and it must not hold the run up.
const drainAfterExit = time.Second

// exec runs c in its own process group with environment env, logs its
// output, and returns once the process has been reaped and no process is
// left in its group.
func (r *Runner) exec(c *command, env []string, log *slog.Logger, timeout time.Duration) result {
	fail := func(err error) result { return result{exit: -1, err: err.Error()} }
	path, err := lookPath(c.argv[0])
	if err != nil {
		return fail(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("pipe: %w", err))
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fail(fmt.Errorf("pipe: %w", err))
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        c.argv,
		Env:         env,
		Dir:         "/",
		Stdout:      outW, // *os.File: the child gets it directly, no copying goroutine
		Stderr:      errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fail(fmt.Errorf("start: %w", err))
	}
	pid := cmd.Process.Pid
	log = log.With("pid", pid)
	log.Debug("hook started", "argv", c.argv)

	out := &output{log: log}
	var readers sync.WaitGroup
	readers.Add(2)
	go out.routineRead(&readers, outR, "stdout")
	go out.routineRead(&readers, errR, "stderr")
	exited := make(chan struct{})
	go routineWaitExit(pid, exited)

	timedOut := false
	limit := time.NewTimer(timeout)
	select {
	case <-exited:
	case <-limit.C:
		// The leader has not been reaped, so -pid is still its group.
		timedOut = true
		log.Warn("hook timed out, sending SIGTERM to its process group", "timeout", timeout)
		_ = unix.Kill(-pid, unix.SIGTERM)
		grace := time.NewTimer(r.killGrace)
		select {
		case <-exited:
		case <-grace.C:
			log.Warn("hook still running, sending SIGKILL to its process group", "grace", r.killGrace)
			_ = unix.Kill(-pid, unix.SIGKILL)
			<-exited
		}
		grace.Stop()
	}
	limit.Stop()
	// The leader is a zombie until Wait reaps it, so the group id cannot
	// have been reused: whatever the hook left behind in its group goes now.
	_ = unix.Kill(-pid, unix.SIGKILL)
	werr := cmd.Wait()

	deadline := time.Now().Add(drainAfterExit)
	_ = outR.SetReadDeadline(deadline)
	_ = errR.SetReadDeadline(deadline)
	readers.Wait()
	outR.Close()
	errR.Close()

	res := result{pid: pid, exit: cmd.ProcessState.ExitCode(), lastLine: out.flush()}
	switch {
	case timedOut:
		res.err = fmt.Sprintf("timeout after %v (%v)", timeout, cmd.ProcessState)
	case werr != nil:
		res.err = werr.Error()
	}
	return res
}

// routineWaitExit closes exited when process pid has exited, without reaping
// it (WNOWAIT), so that its pid — the id of its process group — stays
// reserved until exec has killed the rest of the group.
func routineWaitExit(pid int, exited chan<- struct{}) {
	defer close(exited)
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// lookPath resolves a command name in Path (not in wanflow's own PATH: the
// hook's environment is the one that counts).
func lookPath(name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	for _, dir := range filepath.SplitList(Path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: %w in %s", name, exec.ErrNotFound, Path)
}
