package bench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// wanflowBin is the daemon binary built by TestMain (root only).
var wanflowBin string

func TestMain(m *testing.M) {
	var dir string
	if os.Geteuid() == 0 {
		var err error
		dir, err = os.MkdirTemp("", "wanflow-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		wanflowBin = filepath.Join(dir, "wanflow")
		cmd := exec.Command("go", "build", "-o", wanflowBin, "github.com/wanflow/wanflow/cmd/wanflow")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build wanflow:", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// startRouter runs wanflow in l's router namespace with yaml and stops it
// (SIGINT: for good) when the test ends; a test that failed gets the daemon's log.
func startRouter(t *testing.T, l *lab.Lab, yaml string) *labrouter.Router {
	t.Helper()
	return startRouterWith(t, l, wanflowBin, yaml, nil)
}

// startRouterWith is startRouter with another binary (bin) and the daemon's
// output copied to logw (nil: none).
func startRouterWith(t *testing.T, l *lab.Lab, bin, yaml string, logw io.Writer) *labrouter.Router {
	t.Helper()
	labtest.RequireRoot(t)
	r, err := labrouter.Start(l, bin, t.TempDir(), yaml, logw, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !r.Exited() {
			if err := r.Stop(); err != nil {
				t.Errorf("stop wanflow: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("config:\n%s\nwanflow log:\n%s", yaml, r.Log())
		}
	})
	return r
}
