package labtest

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/wanflow/wanflow/bench/lab"
)

// RequireRoot skips the test unless it runs as root on linux.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if runtime.GOOS != "linux" {
		tb.Skip("needs linux network namespaces")
	}
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates network namespaces")
	}
}

var staleOnce sync.Once

// Up builds a lab for the test (skipping it when not root) and closes it
// with tb.Cleanup. cfg.Prefix is normally left empty (a process-unique
// prefix is chosen).
func Up(tb testing.TB, cfg lab.Config) *lab.Lab {
	tb.Helper()
	RequireRoot(tb)
	staleOnce.Do(func() {
		if n, err := lab.CleanupStale(); err != nil {
			tb.Logf("labtest: removing stale lab namespaces: %v", err)
		} else if n > 0 {
			tb.Logf("labtest: removed %d stale lab namespaces", n)
		}
	})
	l, err := lab.Up(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("lab.Up: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("lab.Close: %v", err)
		}
	})
	return l
}

// UpWithServers is Up followed by StartServers.
func UpWithServers(tb testing.TB, cfg lab.Config) *lab.Lab {
	tb.Helper()
	l := Up(tb, cfg)
	if err := l.StartServers(context.Background()); err != nil {
		tb.Fatalf("lab.StartServers: %v", err)
	}
	return l
}

// Baseline installs the kernel baseline in the lab's router namespace and
// undoes it with tb.Cleanup.
func Baseline(tb testing.TB, l *lab.Lab, mode lab.BaselineMode, weights []int) {
	tb.Helper()
	undo, err := l.KernelBaseline(mode, weights)
	if err != nil {
		tb.Fatalf("KernelBaseline(%v, %v): %v", mode, weights, err)
	}
	tb.Cleanup(func() {
		if err := undo(); err != nil {
			tb.Errorf("undo kernel baseline: %v", err)
		}
	})
}
