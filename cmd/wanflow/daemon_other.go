//go:build !linux

package main

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
)

func runDaemon(path string, cfg *config.Config, log *slog.Logger) error {
	return fmt.Errorf("the daemon is not supported on %s", runtime.GOOS)
}
