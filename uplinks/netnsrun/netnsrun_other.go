//go:build !linux

package netnsrun

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// ErrThreadLost is part of Do's error when the thread could not return to
// its original namespace.
var ErrThreadLost = errors.New("netns: could not restore the thread's network namespace (thread discarded)")

// Do is only supported on Linux.
func Do(ns netns.NsHandle, fn func() error) error {
	return fmt.Errorf("netns: network namespaces are not supported on %s", runtime.GOOS)
}
