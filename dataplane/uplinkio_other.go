//go:build !linux

package dataplane

import (
	"fmt"
	"runtime"

	"github.com/wanflow/wanflow/flowtable"
)

// OpenUplinkSocket is only supported on Linux.
func OpenUplinkSocket(u Uplink, ports flowtable.PortRange) (UplinkIO, error) {
	return nil, fmt.Errorf("dataplane: uplink sockets are not supported on %s", runtime.GOOS)
}
