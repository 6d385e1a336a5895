package dns

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/uplinks/netnsrun"
)

// inNS runs fn in Config.NetNS: directly when it is nil, else on a locked
// OS thread that has entered it. A thread that cannot return to its
// namespace is never handed back to the scheduler: it stays locked and
// dies with its goroutine. Sockets fn opens stay in the namespace they were
// opened in.
func (f *Forwarder) inNS(fn func() error) error {
	if f.cfg.NetNS == nil {
		return fn()
	}
	return netnsrun.Do(*f.cfg.NetNS, fn)
}

// dialUpstream opens a socket to u ("udp" or "tcp") bound to u's device
// and source address, so the kernel routes it through u's uplink (its
// rule "from <Source> lookup <table>", and SO_BINDTODEVICE keeps it on the
// device whatever the routes say) and takes only what arrives on it.
func (f *Forwarder) dialUpstream(ctx context.Context, network string, u *upstream) (net.Conn, error) {
	d := net.Dialer{}
	if u.Interface != "" {
		dev := u.Interface
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), dev) }); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("SO_BINDTODEVICE %s: %w", dev, serr)
			}
			return nil
		}
	}
	if u.Source.IsValid() {
		if network == "tcp" {
			d.LocalAddr = &net.TCPAddr{IP: u.Source.AsSlice()}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: u.Source.AsSlice()}
		}
	}
	var c net.Conn
	err := f.inNS(func() error {
		var err error
		c, err = d.DialContext(ctx, network, u.Addr.String())
		return err
	})
	return c, err
}
