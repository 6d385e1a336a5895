//go:build !linux

package control

import (
	"fmt"
	"net"
	"runtime"
)

// Listen makes the control socket at path and listens on it. It is
// implemented on Linux only: the Server checks its clients with
// SO_PEERCRED.
func (s *Server) Listen(path string) (net.Listener, error) {
	return nil, fmt.Errorf("control: listen %s: not supported on %s", path, runtime.GOOS)
}

// peerOf refuses every client: their credentials cannot be checked here.
func peerOf(net.Conn) peer {
	return peer{err: fmt.Errorf("peer credentials not supported on %s", runtime.GOOS)}
}
