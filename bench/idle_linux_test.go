package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/cmd/wanflow/control"
)

// idleRSSMax bounds the idle daemon's resident memory: the figure
// docs/benchmarks.md gives ("Binary size and idle memory") is about a
// third of it.
const idleRSSMax = 64 << 20

// idleBinEnv names an environment variable that makes TestIdleRSS measure
// another build of wanflow, e.g. the release binary
// dist/wanflow-linux-amd64 that `make release` writes.
const idleBinEnv = "WANFLOW_IDLE_BIN"

// TestIdleRSS measures the resident memory of an idle daemon shaped like
// the reference Raspberry Pi (docs/examples/reference-pi.yaml): an "ADSL
// modem" on the LAN segment (tier 1), an Ethernet uplink (tier 2) and a
// point-to-point uplink like PPP (tier 3), the DHCP server and the DNS
// forwarder, default probes (1.1.1.1 and 8.8.8.8 every 200 ms through each
// uplink). No LAN traffic. Once every uplink is available it waits 5 s and
// logs VmRSS, RssAnon and VmHWM of /proc/<pid>/status.
func TestIdleRSS(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.Up(t, lab.Config{Uplinks: []lab.UplinkSpec{{Kind: lab.KindLANSegment}, {}, {Kind: lab.KindL3}}})
	bin := wanflowBin
	if b := os.Getenv(idleBinEnv); b != "" {
		bin = b
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "wanflow.sock")
	var b strings.Builder
	fmt.Fprintf(&b, "lan:\n  interface: %s\n  prefixes: [%v]\n", l.RouterLAN, lab.LANPrefix)
	fmt.Fprintf(&b, "  dhcp:\n    range: 10.77.0.100-10.77.0.199\n    lease_file: %s\n", filepath.Join(dir, "dhcp.leases"))
	fmt.Fprintf(&b, "  dns:\n    listen: [%v]\n", l.RouterLANAddr.Addr())
	b.WriteString("uplinks:\n")
	for i, u := range l.Uplinks {
		fmt.Fprintf(&b, "  - name: %s\n    interface: %s\n    tier: %d\n    weight: %d\n    dns: [%v]\n", u.Name, u.Interface, i+1, []int{8, 6, 3}[i], u.ISPDNS)
		if u.Gateway.IsValid() {
			fmt.Fprintf(&b, "    gateway: %v\n", u.Gateway)
		}
	}
	fmt.Fprintf(&b, "control:\n  socket: %s\n", sock)

	r := startRouterWith(t, l, bin, b.String(), nil)
	pid := r.Pid()
	if err := memCheckExe(pid, bin); err != nil {
		t.Fatal(err)
	}
	d := &scenDaemon{r: r, ctl: control.NewClient(sock)}
	ctx := context.Background()
	if err := d.waitUplinks(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	st, err := d.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rss, anon, hwm, err := scenProcStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	var up []string
	for _, u := range st.Uplinks {
		up = append(up, u.Name+" "+u.State)
	}
	t.Logf("idle wanflow (%s, %s): %d uplinks (%s), %d workers, %d flows: VmRSS %.1f MiB, RssAnon %.1f MiB, VmHWM %.1f MiB",
		bin, st.Version, len(st.Uplinks), strings.Join(up, ", "), st.Workers, st.Flows, memMiB(rss), memMiB(anon), memMiB(hwm))
	for _, u := range st.Uplinks {
		if !u.Available {
			t.Errorf("uplink %s is %s after the wait, want available", u.Name, u.State)
		}
	}
	if rss == 0 || anon > rss || hwm < rss {
		t.Errorf("insane memory figures: VmRSS %d, RssAnon %d, VmHWM %d", rss, anon, hwm)
	}
	if rss > idleRSSMax {
		t.Errorf("idle VmRSS %.1f MiB, want ≤ %.0f MiB", memMiB(rss), memMiB(idleRSSMax))
	}
}
