//go:build !linux

package lab

import (
	"context"
	"os/exec"

	"github.com/vishvananda/netlink"
)

type tunPipe struct{}

type serverSet struct{}

// Runner runs functions on OS threads inside a namespace (linux only).
type Runner struct{}

// Do returns ErrNotSupported.
func (n *NS) Do(fn func() error) error { return ErrNotSupported }

// Command returns a command that fails with ErrNotSupported.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, name, args...)
	c.Err = ErrNotSupported
	return c
}

// Handle returns ErrNotSupported.
func (n *NS) Handle() (*netlink.Handle, error) { return nil, ErrNotSupported }

// WriteSysctl returns ErrNotSupported.
func (n *NS) WriteSysctl(key, value string) error { return ErrNotSupported }

// ReadSysctl returns ErrNotSupported.
func (n *NS) ReadSysctl(key string) (string, error) { return "", ErrNotSupported }

// SetGRO returns ErrNotSupported.
func (n *NS) SetGRO(ifname string, on bool) error { return ErrNotSupported }

// GRO returns ErrNotSupported.
func (n *NS) GRO(ifname string) (bool, error) { return false, ErrNotSupported }

// NewRunner returns ErrNotSupported.
func (n *NS) NewRunner(threads int) (*Runner, error) { return nil, ErrNotSupported }

// Do returns ErrNotSupported.
func (r *Runner) Do(fn func() error) error { return ErrNotSupported }

// Close does nothing.
func (r *Runner) Close() {}

// Up returns ErrNotSupported.
func Up(ctx context.Context, cfg Config) (*Lab, error) { return nil, ErrNotSupported }

// Close does nothing.
func (l *Lab) Close() error { return nil }

// Cleanup returns ErrNotSupported.
func Cleanup(prefix string) error { return ErrNotSupported }

// CleanupStale returns ErrNotSupported.
func CleanupStale() (int, error) { return 0, ErrNotSupported }

// SetUplinkCarrier returns ErrNotSupported.
func (l *Lab) SetUplinkCarrier(i int, up bool) error { return ErrNotSupported }

// SetISPInternet returns ErrNotSupported.
func (l *Lab) SetISPInternet(i int, up bool) error { return ErrNotSupported }

// StartServers returns ErrNotSupported.
func (l *Lab) StartServers(ctx context.Context) error { return ErrNotSupported }

// KernelBaseline returns ErrNotSupported.
func (l *Lab) KernelBaseline(mode BaselineMode, weights []int) (func() error, error) {
	return nil, ErrNotSupported
}

// SetISPDNS is only supported on linux.
func (l *Lab) SetISPDNS(i int, up bool) error { return ErrNotSupported }
