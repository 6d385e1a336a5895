//go:build !linux

package hooks

import (
	"log/slog"
	"runtime"
	"time"
)

// exec reports that hooks cannot run: process groups and waitid are used as
// on Linux only.
func (r *Runner) exec(c *command, env []string, log *slog.Logger, timeout time.Duration) result {
	return result{exit: -1, err: "hooks: running hooks is not supported on " + runtime.GOOS}
}
