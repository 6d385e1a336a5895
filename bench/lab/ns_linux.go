package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/uplinks/netnsrun"
)

const netnsDir = "/run/netns"

// errThreadLost is returned when a thread could not be moved back to its
// original namespace; that thread is left locked so that the runtime
// terminates it.
var errThreadLost = netnsrun.ErrThreadLost

// Do runs fn on a locked OS thread inside the namespace and returns its
// error. fn runs in a fresh goroutine; the caller's goroutine and thread
// never change namespace. If the thread cannot be moved back, its goroutine
// exits still locked so the runtime destroys the thread. Sockets created by
// fn belong to the namespace and may be used from any goroutine afterwards.
// fn must not start goroutines that expect to be in the namespace.
func (n *NS) Do(fn func() error) error {
	target, err := netns.GetFromPath(n.Path)
	if err != nil {
		return fmt.Errorf("lab: open namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	return netnsrun.Do(target, fn)
}

// Command returns a command that runs name with args inside the namespace,
// through `ip netns exec` (iproute2). The process is killed by Close if still
// running.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Handle returns a netlink handle whose sockets live in the namespace. The
// caller must Close it.
func (n *NS) Handle() (*netlink.Handle, error) {
	var h *netlink.Handle
	err := n.Do(func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: netlink handle in %s: %w", n.Name, err)
	}
	return h, nil
}

// WriteSysctl writes value to /proc/sys/<key> inside the namespace, where key
// uses slashes or dots ("net/ipv4/ip_forward" or "net.ipv4.ip_forward";
// interface names containing dots need the slash form).
func (n *NS) WriteSysctl(key, value string) error {
	p := sysctlPath(key)
	return n.Do(func() error {
		if err := os.WriteFile(p, []byte(value), 0); err != nil {
			return fmt.Errorf("lab: sysctl %s=%s in %s: %w", key, value, n.Name, err)
		}
		return nil
	})
}

// ReadSysctl reads /proc/sys/<key> inside the namespace, without the
// trailing newline.
func (n *NS) ReadSysctl(key string) (string, error) {
	p := sysctlPath(key)
	var v string
	err := n.Do(func() error {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("lab: read sysctl %s in %s: %w", key, n.Name, err)
		}
		v = strings.TrimSpace(string(b))
		return nil
	})
	return v, err
}

func sysctlPath(key string) string {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return filepath.Join("/proc/sys", key)
}

// Runner runs functions on OS threads that stay inside one namespace, for
// callers that create many sockets (one namespace switch per thread instead
// of one per call). Its methods are safe for concurrent use.
type Runner struct {
	ns   *NS
	jobs chan runnerJob
	wg   sync.WaitGroup
	once sync.Once
}

type runnerJob struct {
	fn   func() error
	errc chan error
}

// NewRunner starts threads goroutines (at least 1), each locked to an OS
// thread inside the namespace. Close stops them.
func (n *NS) NewRunner(threads int) (*Runner, error) {
	if threads < 1 {
		threads = 1
	}
	r := &Runner{ns: n, jobs: make(chan runnerJob)}
	ready := make(chan error, threads)
	for range threads {
		r.wg.Add(1)
		go r.routineThread(ready)
	}
	var errs []error
	for range threads {
		if err := <-ready; err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		r.Close()
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// routineThread is one Runner thread: it enters the namespace once, runs
// jobs until Close, then leaves (or dies with its thread if it cannot).
func (r *Runner) routineThread(ready chan<- error) {
	defer r.wg.Done()
	target, err := netns.GetFromPath(r.ns.Path)
	if err != nil {
		ready <- fmt.Errorf("lab: open namespace %s: %w", r.ns.Name, err)
		return
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		ready <- fmt.Errorf("lab: get thread namespace: %w", err)
		return
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		ready <- fmt.Errorf("lab: enter namespace %s: %w", r.ns.Name, err)
		return
	}
	ready <- nil
	for j := range r.jobs {
		j.errc <- j.fn()
	}
	if netns.Set(orig) == nil {
		runtime.UnlockOSThread()
	}
}

// Do runs fn on one of the runner's threads and returns its error. It must
// not be called after Close.
func (r *Runner) Do(fn func() error) error {
	errc := make(chan error, 1)
	r.jobs <- runnerJob{fn: fn, errc: errc}
	return <-errc
}

// Close stops the runner's threads and waits for them. Idempotent.
func (r *Runner) Close() {
	r.once.Do(func() { close(r.jobs) })
	r.wg.Wait()
}

// createNS creates the named namespace (bind-mounted under /run/netns) from
// a throwaway locked thread that returns to its original namespace.
func createNS(ns *NS) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(ns.Name)
		if h.IsOpen() {
			h.Close()
		}
		if rerr := netns.Set(orig); rerr != nil {
			errc <- errors.Join(err, errThreadLost, rerr)
			return // thread stays locked and dies
		}
		runtime.UnlockOSThread()
		if err != nil {
			// NewNamed may leave the empty mount point behind.
			if _, serr := os.Stat(ns.Path); serr == nil && !isMounted(ns.Path) {
				os.Remove(ns.Path)
			}
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("lab: create namespace %s: %w", ns.Name, err)
	}
	return nil
}

// isMounted reports whether p is an nsfs bind mount (a live named
// namespace), as opposed to the empty file under it.
func isMounted(p string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// deleteNS unmounts and removes the namespace's bind mount, tolerating that
// it is already gone.
func deleteNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lab: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: remove %s: %w", path, err)
	}
	return nil
}
