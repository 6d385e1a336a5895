//go:build !linux

package dhcp

import (
	"fmt"
	"log/slog"
	"runtime"
)

// openTransport is not implemented outside Linux: the server binds its
// socket to a device (SO_BINDTODEVICE) and sends through AF_PACKET.
func openTransport(ifname string, _ *slog.Logger) (transport, error) {
	return nil, fmt.Errorf("dhcp: serving on %s: not supported on %s", ifname, runtime.GOOS)
}
