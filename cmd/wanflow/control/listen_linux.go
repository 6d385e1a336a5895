package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Listen makes the control socket at path and listens on it, for Serve.
// It creates the parent directory (mode 0755) when missing, refuses when
// another daemon answers on path, replaces a stale socket file that nobody
// answers on, and makes the socket mode 0600. (The socket exists with the
// umask's mode until the chmod; Serve's peer-credential check refuses
// other users in that window as always.) A path that exists and is not a
// socket is left alone and is an error.
func (s *Server) Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("control: listen: empty socket path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control: listen %s: %w", path, err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control: listen %s: %w", path, err)
	}
	return l, nil
}

// removeStale removes the socket file at path when nothing answers on it,
// and fails when something does.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: listen %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: listen %s: the path exists and is not a socket (%v); not replacing it", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control: listen %s: another wanflow daemon is running and answers on this socket", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control: listen %s: check for a running daemon: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control: listen %s: remove stale socket: %w", path, err)
	}
	return nil
}

// peerOf asks the kernel who is at the other end of c (SO_PEERCRED).
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{err: fmt.Errorf("not a unix socket connection (%s)", c.LocalAddr().Network())}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{err: err}
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{err: err}
	}
	if cerr != nil {
		return peer{err: fmt.Errorf("SO_PEERCRED: %w", cerr)}
	}
	return peer{uid: cred.Uid, pid: cred.Pid}
}
