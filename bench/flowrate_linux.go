package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
)

// FlowRateResult is how many new flows per second one router set up for
// one protocol in the flow-rate benchmark.
type FlowRateResult struct {
	// Router is "kernel" (forwarding + masquerade) or "wanflow".
	Router string `json:"router"`
	// Proto is "tcp" (each flow a connection: connect, one line and its
	// echo, close) or "udp" (each flow a new socket on a new source port:
	// one datagram and its echo).
	Proto string `json:"proto"`
	// Flows is the number of flows completed (answered); Failed those that
	// were not (connect error, no answer within the timeout).
	Flows  int `json:"flows"`
	Failed int `json:"failed"`
	// FirstError is the first failed flow's error, empty when none failed.
	FirstError string `json:"first_error,omitempty"`
	// Seconds is the time from the first flow's start to the last one's
	// end; PerSecond is Flows / Seconds.
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	// Concurrency is the number of flows in progress at any time.
	Concurrency int `json:"concurrency"`
	// Ratio is, in wanflow's results, PerSecond / the kernel's PerSecond
	// for the same protocol in the same run; 0 in the kernel's.
	Ratio float64 `json:"ratio"`
	// Drops are the wanflow dataplane's drop counters that grew during
	// the measurement, by how much (e.g. out_drop_ports_exhausted); empty
	// for the kernel.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// FlowRateOptions tune FlowRate. Zero fields take the defaults.
type FlowRateOptions struct {
	// Duration bounds each router's and protocol's measurement (default
	// 3s).
	Duration time.Duration
	// MaxFlows ends each measurement earlier, after that many flows
	// (default 10000). Each new flow from a new LAN source port holds a NAT
	// port of wanflow's (uplink, protocol) pool — 12768 ports with the
	// default dataplane.nat_ports — until it times out (TCP after its
	// FIN or RST: 4 min, UDP: 5 min), so a measurement with more UDP flows
	// than that would measure an exhausted pool. (TCP flows share ports
	// more: Linux's connect() reuses a local port towards another
	// destination, and the flows of one LAN endpoint share its mapping.)
	MaxFlows int
	// Concurrency is the number of flows in progress at once (default 16).
	Concurrency int
	// Timeout bounds each flow (default 1s): a flow not done by then
	// counts as failed.
	Timeout time.Duration
}

func (o *FlowRateOptions) defaults() {
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	if o.MaxFlows <= 0 {
		o.MaxFlows = 10000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	o.MaxFlows = min(o.MaxFlows, flowRatePortSpan*40)
}

// UDP flow i of a measurement takes source port flowRatePortLo + i %
// flowRatePortSpan (outside wanflow's default NAT ports, like the kernel's
// ephemeral ports) and a destination chosen so that no flow repeats an
// earlier one's 5-tuple: a repeated tuple would find the earlier flow in
// the router's table, and not be a new flow. The sockets are made
// flowRateChunk at a time in the LAN host's namespace, so that the
// client's cost per flow (which the routers' figures include) stays small.
const (
	flowRatePortLo   = 33000
	flowRatePortSpan = 28000
	flowRateChunk    = 16
)

// FlowRate measures how many new flows per second a router sets up between
// a LAN host and the internet echo servers (all 20 addresses, ports 7 and
// 9000): TCP connections (connect, one request line and its answer, close)
// and UDP flows (a new socket on a new source port, one datagram and its
// answer), Concurrency at a time. It measures first through the kernel
// (forwarding + masquerade, as Throughput), then through wanflow (the
// binary bin), in the same lab in the same run.
func FlowRate(ctx context.Context, bin string, o FlowRateOptions, w io.Writer) ([]FlowRateResult, error) {
	o.defaults()
	l, err := lab.Up(ctx, lab.Config{Uplinks: []lab.UplinkSpec{{}}})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if err := l.StartServers(ctx); err != nil {
		return nil, err
	}
	var dsts []netip.AddrPort
	for _, port := range []uint16{lab.EchoPort, lab.AltEchoPort} {
		for _, a := range l.Servers {
			dsts = append(dsts, netip.AddrPortFrom(a, port))
		}
	}
	// One thread per concurrent flow stays in the LAN host's namespace to
	// create its sockets: no namespace switch per flow.
	run, err := l.Hosts[0].NewRunner(o.Concurrency)
	if err != nil {
		return nil, err
	}
	defer run.Close()

	var out []FlowRateResult
	// One LAN host makes every flow of both measurements (20,000 with the
	// defaults, TCP ones lingering closed for minutes): no per-host limit,
	// or the second measurement would run into it.
	opts := scenDaemonOptions{Extra: "dataplane:\n  flows:\n    per_host: 0\n"}
	err = scenEachRouter(ctx, l, bin, opts, w, func(router string, d *scenDaemon) error {
		drops := func() (map[string]uint64, error) {
			if d == nil {
				return nil, nil
			}
			st, err := d.status(ctx)
			return st.Drops, err
		}
		before, err := drops()
		if err != nil {
			return err
		}
		for _, proto := range []string{"tcp", "udp"} {
			fmt.Fprintf(w, "  %s: new %s flows, %d at a time, for %v or %d flows...\n", router, proto, o.Concurrency, o.Duration, o.MaxFlows)
			r, err := flowRateOnce(ctx, run, proto, dsts, o)
			if err != nil {
				return fmt.Errorf("bench: flow rate %s %s: %w", router, proto, err)
			}
			r.Router = router
			after, err := drops()
			if err != nil {
				return err
			}
			for k, v := range after {
				if v > before[k] {
					if r.Drops == nil {
						r.Drops = map[string]uint64{}
					}
					r.Drops[k] = v - before[k]
				}
			}
			before = after
			fmt.Fprintf(w, "  %s: %s %d flows in %.2fs: %.0f/s, %d failed\n", router, proto, r.Flows, r.Seconds, r.PerSecond, r.Failed)
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Router != scenWanflow {
			continue
		}
		for _, k := range out {
			if k.Router == scenKernel && k.Proto == out[i].Proto && k.PerSecond > 0 {
				out[i].Ratio = out[i].PerSecond / k.PerSecond
			}
		}
	}
	return out, nil
}

// flowRateOnce opens new flows of proto for o.Duration or o.MaxFlows flows.
func flowRateOnce(ctx context.Context, run *lab.Runner, proto string, dsts []netip.AddrPort, o FlowRateOptions) (FlowRateResult, error) {
	r := FlowRateResult{Proto: proto, Concurrency: o.Concurrency}
	var (
		next     atomic.Int64 // flows handed out
		done     atomic.Int64
		failed   atomic.Int64
		mu       sync.Mutex
		last     time.Time
		firstErr error
		wg       sync.WaitGroup
		start    = time.Now()
		deadline = start.Add(o.Duration)
	)
	record := func(err error) {
		now := time.Now()
		mu.Lock()
		if now.After(last) {
			last = now
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		if err != nil {
			failed.Add(1)
		} else {
			done.Add(1)
		}
	}
	// take hands out up to n flow numbers [i, i+k).
	take := func(n int64) (i, k int64) {
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			return 0, 0
		}
		i = next.Add(n) - n
		return i, max(0, min(n, int64(o.MaxFlows)-i))
	}
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256)
			for {
				if proto == "tcp" {
					i, k := take(1)
					if k == 0 {
						return
					}
					record(frTCPFlow(ctx, run, dsts[i%int64(len(dsts))], o.Timeout))
					continue
				}
				i, k := take(flowRateChunk)
				if k == 0 {
					return
				}
				conns, err := frUDPSockets(run, i, k)
				if err != nil {
					record(err)
					continue
				}
				for j, c := range conns {
					n := i + int64(j)
					if time.Now().Before(deadline) && ctx.Err() == nil {
						record(frUDPFlow(c, dsts[(n+n/flowRatePortSpan)%int64(len(dsts))], buf, o.Timeout))
					}
					c.Close()
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return r, err
	}
	r.Flows, r.Failed = int(done.Load()), int(failed.Load())
	if firstErr != nil {
		r.FirstError = firstErr.Error()
	}
	r.Seconds = last.Sub(start).Seconds()
	if r.Flows == 0 {
		return r, fmt.Errorf("no flow completed (%d failed; first error: %v)", r.Failed, firstErr)
	}
	if r.Seconds > 0 {
		r.PerSecond = float64(r.Flows) / r.Seconds
	}
	return r, nil
}

// frUDPSockets makes the sockets of UDP flows [i, i+k) in the LAN host's
// namespace, each bound to its flow's source port.
func frUDPSockets(run *lab.Runner, i, k int64) ([]*net.UDPConn, error) {
	conns := make([]*net.UDPConn, 0, k)
	err := run.Do(func() error {
		for n := i; n < i+k; n++ {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(flowRatePortLo + n%flowRatePortSpan)})
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		return nil, err
	}
	return conns, nil
}

// frTCPFlow connects to dst, sends one line, reads its echo and closes.
func frTCPFlow(ctx context.Context, run *lab.Runner, dst netip.AddrPort, timeout time.Duration) error {
	var c net.Conn
	d := net.Dialer{Deadline: time.Now().Add(timeout)}
	if err := run.Do(func() error {
		var err error
		c, err = d.DialContext(ctx, "tcp4", dst.String())
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	return frEchoLine(c, timeout)
}

// frUDPFlow sends one datagram from c to dst and waits for its echo.
func frUDPFlow(c *net.UDPConn, dst netip.AddrPort, buf []byte, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.WriteToUDPAddrPort(frReq, dst); err != nil {
		return err
	}
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		if from.Port() == dst.Port() && from.Addr().Unmap() == dst.Addr() {
			if !bytes.HasSuffix(buf[:n], frReq) {
				return fmt.Errorf("unexpected answer %q", buf[:n])
			}
			return nil
		}
	}
}

var frReq = []byte("flow\n")

// frEchoLine sends one request line on c and reads the echo server's
// answer, a line that ends with the request.
func frEchoLine(c net.Conn, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(frReq); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(c, 256).ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasSuffix(line, frReq) {
		return fmt.Errorf("unexpected answer %q", line)
	}
	return nil
}
