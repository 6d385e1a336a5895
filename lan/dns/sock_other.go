//go:build !linux

package dns

import (
	"context"
	"errors"
	"net"
	"runtime"
)

// errNotSupported is returned for what needs Linux: network namespaces and
// binding sockets to a device.
var errNotSupported = errors.New("dns: network namespaces and device binding are not supported on " + runtime.GOOS)

// inNS runs fn; a Config.NetNS is not supported outside Linux.
func (f *Forwarder) inNS(fn func() error) error {
	if f.cfg.NetNS != nil {
		return errNotSupported
	}
	return fn()
}

// dialUpstream opens a socket to u ("udp" or "tcp") from u's source
// address. Binding to u's device is not supported outside Linux.
func (f *Forwarder) dialUpstream(ctx context.Context, network string, u *upstream) (net.Conn, error) {
	if u.Interface != "" {
		return nil, errNotSupported
	}
	d := net.Dialer{}
	if u.Source.IsValid() {
		if network == "tcp" {
			d.LocalAddr = &net.TCPAddr{IP: u.Source.AsSlice()}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: u.Source.AsSlice()}
		}
	}
	if err := f.inNS(func() error { return nil }); err != nil {
		return nil, err
	}
	return d.DialContext(ctx, network, u.Addr.String())
}
