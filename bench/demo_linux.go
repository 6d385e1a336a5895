package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// DemoConfig is the demo's uplink plan: two tier-1 uplinks weighted 8 and
// 6 (the reference box's ADSL and 4G) and a tier-2 backup (its 3G).
var demoWeights, demoTiers = []int{8, 6, 3}, []int{1, 1, 2}

// Demo builds a three-uplink lab, runs wanflow (the binary bin) in its
// router namespace and drives live traffic through it while uplinks fail
// and come back, printing what happens to w. It removes everything it made.
func Demo(ctx context.Context, bin string, w io.Writer) error {
	fmt.Fprintln(w, "== building the lab: LAN host, router, 3 ISPs, internet servers (network namespaces)")
	l, err := lab.Up(ctx, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}, {}}})
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.StartServers(ctx); err != nil {
		return err
	}
	names := map[netip.Addr]string{}
	var plan []string
	for i, u := range l.Uplinks {
		names[u.Addr] = u.Name
		plan = append(plan, fmt.Sprintf("%s (%v via %v, tier %d, weight %d)", u.Name, u.Addr, u.Gateway, demoTiers[i], demoWeights[i]))
	}
	fmt.Fprintf(w, "== uplinks: %s\n", strings.Join(plan, ", "))
	yaml := labrouter.ConfigYAML(l, labrouter.Options{Weights: demoWeights, Tiers: demoTiers})
	fmt.Fprintf(w, "== starting wanflow in the router namespace with this config:\n%s\n", indent(yaml))
	r, err := labrouter.Start(l, bin, "", yaml, nil, 15*time.Second)
	if err != nil {
		return err
	}
	defer r.Stop()

	ports, err := streamPorts(l, yaml, []int{0, 0, 1})
	if err != nil {
		return err
	}
	t := newTraffic(l, names)
	t.ports = ports
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); t.routineNewFlows(tctx) }()
	go func() { defer wg.Done(); t.routineStreams(tctx, len(ports)) }()

	phases := []struct {
		what string
		act  func() error
		secs int
	}{
		{"all uplinks up: new flows split 8:6 over tier 1, tier 2 idle", nil, 4},
		{"carrier lost on up1: its TCP streams are reset and reconnect, new flows go to up2", func() error { return l.SetUplinkCarrier(0, false) }, 4},
		{"carrier lost on up2 too: tier 1 is down, tier 2 (up3) carries everything", func() error { return l.SetUplinkCarrier(1, false) }, 4},
		{"up1 and up2 are back: new flows fail back to tier 1; flows on up3 stay there", func() error {
			if err := l.SetUplinkCarrier(0, true); err != nil {
				return err
			}
			return l.SetUplinkCarrier(1, true)
		}, 5},
	}
	fmt.Fprintln(w, "== live traffic: a new UDP flow every 50 ms (one retry after 250 ms), 3 long-lived TCP streams (two start on up1, one on up2)")
	fmt.Fprintf(w, "%-6s %-28s %s\n", "time", "new flows by uplink (last s)", "TCP streams (uplink, reconnects)")
	start := time.Now()
	for _, ph := range phases {
		fmt.Fprintf(w, "-- %s\n", ph.what)
		if ph.act != nil {
			if err := ph.act(); err != nil {
				return err
			}
		}
		for s := 0; s < ph.secs; s++ {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			fmt.Fprintf(w, "%5.1fs %-28s %s\n", time.Since(start).Seconds(), t.takeCounts(), t.streamState())
		}
	}
	cancel()
	wg.Wait()
	ok, failed := t.totals()
	fmt.Fprintf(w, "== done: %d new flows answered, %d failed; stopping wanflow and removing the lab\n", ok, failed)
	return nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// streamPorts picks, for each long-lived stream k, a local port whose flow
// to server k the policy places on uplink want[k] while every uplink is up
// (see PortFor), so the demo can show streams on the uplink that will fail
// and on the one that survives.
func streamPorts(l *lab.Lab, yaml string, want []int) ([]uint16, error) {
	var ports []uint16
	for k, u := range want {
		p, err := PortFor(yaml, 6, l.HostAddrs[0], netip.AddrPortFrom(l.Servers[k], lab.EchoPort), u, uint16(41000+100*k))
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// traffic drives the demo's flows and tallies which uplink the servers saw.
type traffic struct {
	l     *lab.Lab
	names map[netip.Addr]string

	mu        sync.Mutex
	counts    map[string]int
	ok, fail  int
	streams   []string
	reconnect []int
	ports     []uint16 // local port of each stream's first connection
}

func newTraffic(l *lab.Lab, names map[netip.Addr]string) *traffic {
	return &traffic{l: l, names: names, counts: map[string]int{}}
}

// seen parses an echo reply "<ip>:<port> ..." into the uplink's name.
func (t *traffic) seen(reply string) string {
	f := strings.Fields(reply)
	if len(f) == 0 {
		return "?"
	}
	ap, err := netip.ParseAddrPort(f[0])
	if err != nil {
		return "?"
	}
	if n, ok := t.names[ap.Addr()]; ok {
		return n
	}
	return ap.Addr().String()
}

func (t *traffic) routineNewFlows(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		srv := t.l.Servers[i%len(t.l.Servers)]
		var c net.Conn
		err := t.l.Hosts[0].Do(func() error {
			var err error
			c, err = net.Dial("udp4", netip.AddrPortFrom(srv, lab.EchoPort).String())
			return err
		})
		name := ""
		if err == nil {
			// One retry after 250 ms, as a resolver would: a datagram sent
			// in the few milliseconds between an uplink's failure and its
			// detection is lost with the link.
			buf := make([]byte, 512)
			for attempt := 0; attempt < 2; attempt++ {
				c.SetDeadline(time.Now().Add(250 * time.Millisecond))
				if _, err = c.Write([]byte("demo\n")); err != nil {
					continue
				}
				var n int
				if n, err = c.Read(buf); err == nil {
					name = t.seen(string(buf[:n]))
					break
				}
			}
			c.Close()
		}
		t.mu.Lock()
		if err != nil {
			t.fail++
			t.counts["failed"]++
		} else {
			t.ok++
			t.counts[name]++
		}
		t.mu.Unlock()
	}
}

func (t *traffic) routineStreams(ctx context.Context, n int) {
	t.mu.Lock()
	t.streams = make([]string, n)
	t.reconnect = make([]int, n)
	t.mu.Unlock()
	var wg sync.WaitGroup
	for k := 0; k < n; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			t.stream(ctx, k)
		}(k)
	}
	wg.Wait()
}

// stream keeps one TCP connection sending a line every 100 ms, and
// reconnects when it breaks (as an application would).
func (t *traffic) stream(ctx context.Context, k int) {
	srv := netip.AddrPortFrom(t.l.Servers[k], lab.EchoPort)
	for ctx.Err() == nil {
		var c net.Conn
		d := net.Dialer{Timeout: time.Second}
		if t.reconnects(k) == 0 {
			d.LocalAddr = &net.TCPAddr{Port: int(t.ports[k])}
		}
		err := t.l.Hosts[0].Do(func() error {
			var err error
			c, err = d.Dial("tcp4", srv.String())
			return err
		})
		if err != nil {
			t.setStream(k, "connecting", false)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		rd := bufio.NewReader(c)
		for ctx.Err() == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			if _, err = c.Write([]byte("stream\n")); err != nil {
				break
			}
			line, err := rd.ReadString('\n')
			if err != nil {
				break
			}
			t.setStream(k, t.seen(line), false)
			time.Sleep(100 * time.Millisecond)
		}
		c.Close()
		if ctx.Err() == nil {
			t.setStream(k, "reset", true)
		}
	}
}

func (t *traffic) setStream(k int, s string, reconnect bool) {
	t.mu.Lock()
	t.streams[k] = s
	if reconnect {
		t.reconnect[k]++
	}
	t.mu.Unlock()
}

func (t *traffic) reconnects(k int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reconnect[k]
}

func (t *traffic) takeCounts() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for _, u := range t.l.Uplinks {
		parts = append(parts, fmt.Sprintf("%s=%d", u.Name, t.counts[u.Name]))
	}
	if n := t.counts["failed"]; n > 0 {
		parts = append(parts, fmt.Sprintf("failed=%d", n))
	}
	t.counts = map[string]int{}
	return strings.Join(parts, " ")
}

func (t *traffic) streamState() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for k, s := range t.streams {
		parts = append(parts, fmt.Sprintf("%s/%d", s, t.reconnect[k]))
	}
	return strings.Join(parts, " ")
}

func (t *traffic) totals() (int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ok, t.fail
}
