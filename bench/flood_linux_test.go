package bench

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// TestFlowFlood: one LAN host sends 200,000 datagrams, each a new flow
// (distinct server and port); its per-host limit holds, the daemon's
// memory stays bounded, and another host's new flows keep working.
func TestFlowFlood(t *testing.T) {
	const limit, flood = 4000, 200000
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}}, Hosts: 2})
	extra := "dataplane:\n  flows:\n    per_host: " + strconv.Itoa(limit) + "\n"
	r := startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Extra: extra}))
	sleep(300 * time.Millisecond)
	before := scrape(t, l)

	var c *net.UDPConn
	if err := l.Hosts[0].Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 45000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	sent := 0
	msg := []byte("flood")
	for i := range flood {
		dst := netip.AddrPortFrom(l.Servers[i%len(l.Servers)], uint16(10000+i/len(l.Servers)))
		if _, err := c.WriteToUDPAddrPort(msg, dst); err == nil {
			sent++
		}
		if i%20000 == 19999 {
			time.Sleep(10 * time.Millisecond) // let the router's queues drain a little
		}
	}
	t.Logf("host 1 sent %d of %d new flows in %v", sent, flood, time.Since(start).Round(time.Millisecond))
	sleep(500 * time.Millisecond)

	// Another host's flows are untouched by the flood.
	checkSticky(t, run(t, l.Hosts[1], labclient.Config{TCPFlows: 50, UDPFlows: 50, Messages: 3}))

	after := scrape(t, l)
	active := value(after["wanflow_flows_active"])
	limited := value(after["wanflow_dataplane_out_drop_host_limit_total"]) - value(before["wanflow_dataplane_out_drop_host_limit_total"])
	t.Logf("flows active %v, host-limit drops %v", active, limited)
	// The flooding host holds at most its limit (plus one per worker for
	// the per-worker rounding); host 2's 100 flows come on top. (Its flows
	// all share one endpoint, so one worker: it gets ceil(limit/W).)
	if active > limit+8+100 {
		t.Errorf("%v flows in the table: the per-host limit %d did not hold", active, limit)
	}
	if limited < 1000 {
		t.Errorf("%v host-limit drops for a flood of %d flows", limited, flood)
	}
	rss := processRSS(t, r.Pid())
	t.Logf("daemon RSS %.1f MiB", float64(rss)/(1<<20))
	if rss > 300<<20 {
		t.Errorf("daemon RSS %d MiB after the flood", rss>>20)
	}
}

// processRSS reads a process's resident set size from /proc.
func processRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
