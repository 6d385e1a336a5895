//go:build !linux

package health

import (
	"fmt"
	"runtime"
)

// newOSSystem fails: probes need Linux (SO_BINDTODEVICE, raw sockets).
func newOSSystem(*Prober) (system, error) {
	return nil, fmt.Errorf("probes are not supported on %s", runtime.GOOS)
}
