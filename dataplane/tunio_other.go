//go:build !linux

package dataplane

import (
	"fmt"
	"runtime"

	"golang.zx2c4.com/wireguard/tun"
)

// NewTUNIO is only supported on Linux.
func NewTUNIO(dev tun.Device) (LANIO, error) {
	return nil, fmt.Errorf("dataplane: TUN I/O is not supported on %s", runtime.GOOS)
}
