//go:build !linux

package main

import (
	"fmt"
	"runtime"
)

func cmdCleanup(args []string) error {
	return fmt.Errorf("cleanup is not supported on %s", runtime.GOOS)
}
