//go:build !linux

package lab

import "net/netip"

// SetMultipathWeights returns ErrNotSupported.
func (l *Lab) SetMultipathWeights(weights []int) error { return ErrNotSupported }

// ConnmarkBaseline returns ErrNotSupported.
func (l *Lab) ConnmarkBaseline(hash BaselineMode, weights []int) (func() error, error) {
	return nil, ErrNotSupported
}

// AddHostAddrs returns ErrNotSupported.
func (l *Lab) AddHostAddrs(k int, addrs []netip.Addr) error { return ErrNotSupported }
