//go:build !linux

package nftguard

import (
	"fmt"
	"net/netip"
	"runtime"
)

// Conn stands in for *nftables.Conn, which exists only on Linux.
type Conn struct{}

var errNotSupported = fmt.Errorf("nftguard: not supported on %s", runtime.GOOS)

// Apply is not supported on this GOOS.
func Apply(conn *Conn, cfg Config, addrs []netip.Addr) error { return errNotSupported }

// Remove is not supported on this GOOS.
func Remove(conn *Conn, table string) error { return errNotSupported }
