//go:build !linux

package steer

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

var errNotSupported = fmt.Errorf("steer: not supported on %s", runtime.GOOS)

// Apply is not supported on this GOOS.
func (s *Steering) Apply() error { return errNotSupported }

// Remove is not supported on this GOOS.
func (s *Steering) Remove() error { return errNotSupported }

// InNetNS is not supported on this GOOS.
func InNetNS(ns netns.NsHandle, fn func() error) error { return errNotSupported }

// SetFallback is not supported on this GOOS.
func (s *Steering) SetFallback(tables []int) error { return errNotSupported }
