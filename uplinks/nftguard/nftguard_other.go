//go:build !linux

package nftguard

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"
)

// Conn stands in for *nftables.Conn, which exists only on Linux.
type Conn struct{}

var errNotSupported = fmt.Errorf("nftguard: not supported on %s", runtime.GOOS)

// Apply is not supported on this GOOS.
func Apply(conn *Conn, cfg Config, addrs []netip.Addr) error { return errNotSupported }

// Remove is not supported on this GOOS.
func Remove(conn *Conn, table string) error { return errNotSupported }

// Hold is not supported on this GOOS.
func Hold(conn *Conn, hc HoldConfig) error { return errNotSupported }

// Unhold is not supported on this GOOS.
func Unhold(conn *Conn, table string) error { return errNotSupported }

// Holding is not supported on this GOOS.
func Holding(conn *Conn, table string) (bool, time.Duration, error) {
	return false, 0, errNotSupported
}
