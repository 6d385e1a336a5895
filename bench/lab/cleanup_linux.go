package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Cleanup removes the leftovers of an earlier run whose namespaces start
// with prefix: it kills every process still inside one of them and deletes
// them from /run/netns (the kernel then removes their links). It never
// touches anything outside those namespaces. Do not call it with the prefix
// of a lab this process still uses; Close that lab instead.
func Cleanup(prefix string) error {
	if err := validPrefix(prefix); err != nil {
		return err
	}
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lab: cleanup %q: %w", prefix, err)
	}
	var paths []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			paths = append(paths, filepath.Join(netnsDir, e.Name()))
		}
	}
	return removeNamespaces(paths)
}

// CleanupStale removes the namespaces of labs built with a default prefix by
// processes that no longer exist (a test binary that crashed or was killed),
// and returns how many namespaces it removed.
func CleanupStale() (int, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("lab: cleanup stale: %w", err)
	}
	var paths []string
	for _, e := range ents {
		m := defaultPrefixRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[2])
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		paths = append(paths, filepath.Join(netnsDir, e.Name()))
	}
	return len(paths), removeNamespaces(paths)
}

func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// removeNamespaces kills the processes inside the namespaces at paths and
// deletes the namespaces.
func removeNamespaces(paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	var errs []error
	if err := killProcsIn(paths); err != nil {
		errs = append(errs, err)
	}
	for _, p := range paths {
		if err := deleteNS(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nsID identifies a namespace by its nsfs inode.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, false
	}
	return nsID{uint64(st.Dev), st.Ino}, true
}

// killProcsIn sends SIGKILL to every process (other than this one) whose
// network namespace is one of those bind-mounted at paths, and waits up to
// two seconds for them to leave it.
func killProcsIn(paths []string) error {
	want := map[nsID]bool{}
	for _, p := range paths {
		if !isMounted(p) {
			continue
		}
		if id, ok := statNS(p); ok {
			want[id] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	self := os.Getpid()
	var victims []int
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("lab: list processes: %w", err)
	}
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if id, ok := statNS(fmt.Sprintf("/proc/%d/ns/net", pid)); ok && want[id] {
			victims = append(victims, pid)
		}
	}
	for _, pid := range victims {
		unix.Kill(pid, unix.SIGKILL) // ESRCH: already gone
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range victims {
		for {
			id, ok := statNS(fmt.Sprintf("/proc/%d/ns/net", pid))
			if !ok || !want[id] {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("lab: process %d still in a lab namespace after SIGKILL", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}
