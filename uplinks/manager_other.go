//go:build !linux

package uplinks

import (
	"context"
	"fmt"
	"runtime"
)

var errNotSupported = fmt.Errorf("uplinks: not supported on %s", runtime.GOOS)

// Reconcile is not supported on this GOOS.
func (m *Manager) Reconcile() ([]Status, error) { return nil, errNotSupported }

// Run is not supported on this GOOS.
func (m *Manager) Run(ctx context.Context, onChange func([]Status)) error { return errNotSupported }

// Remove is not supported on this GOOS.
func (m *Manager) Remove() error { return errNotSupported }
