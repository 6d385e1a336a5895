package bench

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// TestCleanup: `wanflow cleanup` refuses while the daemon runs, and after a
// SIGTERM (systemctl stop: the fail-open fallback, the hold and the
// handover file stay) removes every kernel object and the file.
func TestCleanup(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	dir := t.TempDir()
	r, err := labrouter.Start(l, wanflowBin, dir, labrouter.ConfigYAML(l, labrouter.Options{}), nil, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if !r.Exited() {
			r.Stop()
		}
	}()
	cleanup := func() (string, error) {
		out, err := l.Router.Command(t.Context(), wanflowBin, "cleanup", "-c", r.Config).CombinedOutput()
		return string(out), err
	}
	if out, err := cleanup(); err == nil || !strings.Contains(out, "wanflow is running") {
		t.Fatalf("cleanup while running: %v\n%s", err, out)
	}
	if k := kernelState(t, l); k.total() == 0 {
		t.Fatalf("the refused cleanup removed things: %v", k)
	}
	if err := r.Handover(); err != nil {
		t.Fatal(err)
	}
	left := kernelState(t, l)
	if left.total() == 0 || left.holds != 1 {
		t.Fatalf("after SIGTERM: %v, want the fail-open objects and the hold left", left)
	}
	out, err := cleanup()
	if err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	t.Logf("after SIGTERM: %v; cleanup: %s", left, strings.TrimSpace(out))
	if k := kernelState(t, l); k.total() != 0 {
		t.Errorf("after cleanup: %v left", k)
	}
	if _, err := os.Stat(filepath.Join(dir, "handover.state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("handover file after cleanup: %v", err)
	}
	// Twice is fine.
	if out, err := cleanup(); err != nil {
		t.Errorf("second cleanup: %v\n%s", err, out)
	}
}
