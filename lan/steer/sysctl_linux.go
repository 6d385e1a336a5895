package steer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procConf is the per-device IPv4 sysctl directory of the calling thread's
// network namespace.
const procConf = "/proc/sys/net/ipv4/conf"

// applySysctls enables IPv4 forwarding and gives the TUN device tun an
// effective rp_filter of 0 (see rpFilterPlan). It must run on a thread in
// the target namespace.
func applySysctls(tun string) error {
	if err := ensureSysctl("/proc/sys/net/ipv4/ip_forward", 1); err != nil {
		return err
	}
	all, err := readSysctl(filepath.Join(procConf, "all", "rp_filter"))
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(procConf)
	if err != nil {
		return fmt.Errorf("steer: %w", err)
	}
	devs := make(map[string]int, len(entries))
	for _, e := range entries {
		if e.Name() == "all" {
			continue
		}
		v, err := readSysctl(filepath.Join(procConf, e.Name(), "rp_filter"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the device went away meanwhile
		}
		if err != nil {
			return err
		}
		devs[e.Name()] = v
	}
	for _, w := range rpFilterPlan(all, devs, tun) {
		err := writeSysctl(filepath.Join(procConf, w.Dev, "rp_filter"), w.Value)
		if errors.Is(err, fs.ErrNotExist) && w.Dev != tun && w.Dev != "all" {
			continue // a device that went away needs nothing
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readSysctl reads the integer sysctl at path (a file below /proc/sys) as
// seen from the calling thread's network namespace; run it through InNetNS
// to read another namespace's value.
func readSysctl(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("steer: read sysctl: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("steer: sysctl %s: %w", path, err)
	}
	return v, nil
}

// writeSysctl writes v to the sysctl at path.
func writeSysctl(path string, v int) error {
	if err := os.WriteFile(path, []byte(strconv.Itoa(v)), 0o644); err != nil {
		return fmt.Errorf("steer: write sysctl %s=%d: %w", path, v, err)
	}
	return nil
}

// ensureSysctl writes v to the sysctl at path unless it already holds v, so
// a read-only /proc/sys that is already right is not an error.
func ensureSysctl(path string, v int) error {
	if cur, err := readSysctl(path); err == nil && cur == v {
		return nil
	}
	return writeSysctl(path, v)
}
