//go:build !linux

package main

import (
	"fmt"
	"runtime"
)

func cmdLab([]string) error  { return fmt.Errorf("the lab is not supported on %s", runtime.GOOS) }
func cmdDemo([]string) error { return fmt.Errorf("the demo is not supported on %s", runtime.GOOS) }
func cmdBench([]string) error {
	return fmt.Errorf("the benchmarks are not supported on %s", runtime.GOOS)
}
