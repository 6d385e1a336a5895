package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
)

// LatencyResult is one router's request/response round trips over one
// protocol in the latency benchmark. Times are microseconds.
type LatencyResult struct {
	// Router is "kernel" (forwarding + masquerade) or "wanflow".
	Router string `json:"router"`
	// Proto is "tcp" (one established connection, one line at a time) or
	// "udp" (one connected socket, one datagram at a time).
	Proto string `json:"proto"`
	// Samples is the number of round trips measured (after the warm-up);
	// Lost the UDP requests that got no reply within the timeout (not
	// counted in the figures).
	Samples int `json:"samples"`
	Lost    int `json:"lost"`
	// MeanUs, P50Us, P99Us and MaxUs describe the round-trip times.
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P99Us  float64 `json:"p99_us"`
	MaxUs  float64 `json:"max_us"`
	// AddedMeanUs, AddedP50Us and AddedP99Us are, in wanflow's results,
	// what wanflow adds to the kernel's figure of the same protocol
	// measured in the same run (wanflow − kernel; negative when wanflow
	// was faster). They are 0 in the kernel's results.
	AddedMeanUs float64 `json:"added_mean_us"`
	AddedP50Us  float64 `json:"added_p50_us"`
	AddedP99Us  float64 `json:"added_p99_us"`
}

// LatencyOptions tune Latency. Zero fields take the defaults.
type LatencyOptions struct {
	// Samples is the number of round trips per router and protocol
	// (default 20000).
	Samples int
	// Warmup round trips are made and not counted before the samples
	// (default 1000).
	Warmup int
	// MaxDuration bounds each router's and protocol's measurement (default
	// 4s): it ends with fewer samples when the round trips are slower than
	// MaxDuration/Samples.
	MaxDuration time.Duration
	// Timeout is how long a UDP request waits for its reply before it
	// counts as lost (default 200ms).
	Timeout time.Duration
}

func (o *LatencyOptions) defaults() {
	if o.Samples <= 0 {
		o.Samples = 20000
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	} else if o.Warmup == 0 {
		o.Warmup = 1000
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = 4 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 200 * time.Millisecond
	}
}

// Latency measures the round-trip time of small requests from a LAN host
// to an internet echo server (lab.EchoPort), one at a time: lines on one
// established TCP connection, and datagrams on one connected UDP socket.
// It measures first through the kernel (forwarding + masquerade, as
// Throughput), then through wanflow (the binary bin), in the same lab in
// the same run, and reports what wanflow adds. The echo servers and the
// client run in this process, so both routers' figures include the same Go
// scheduling of both ends.
func Latency(ctx context.Context, bin string, o LatencyOptions, w io.Writer) ([]LatencyResult, error) {
	o.defaults()
	l, err := lab.Up(ctx, lab.Config{Uplinks: []lab.UplinkSpec{{}}})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if err := l.StartServers(ctx); err != nil {
		return nil, err
	}
	srv := netip.AddrPortFrom(l.Servers[0], lab.EchoPort)
	var out []LatencyResult
	err = scenEachRouter(ctx, l, bin, scenDaemonOptions{}, w, func(router string, _ *scenDaemon) error {
		for _, proto := range []string{"tcp", "udp"} {
			fmt.Fprintf(w, "  %s: %s round trips to %v...\n", router, proto, srv)
			r, err := latencyOnce(ctx, l.Hosts[0], proto, srv, o)
			if err != nil {
				return fmt.Errorf("bench: latency %s %s: %w", router, proto, err)
			}
			r.Router = router
			fmt.Fprintf(w, "  %s: %s %d samples: mean %.1f µs, p50 %.1f µs, p99 %.1f µs, max %.0f µs, %d lost\n",
				router, proto, r.Samples, r.MeanUs, r.P50Us, r.P99Us, r.MaxUs, r.Lost)
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
			if k.Router == scenKernel && k.Proto == out[i].Proto {
				out[i].AddedMeanUs = out[i].MeanUs - k.MeanUs
				out[i].AddedP50Us = out[i].P50Us - k.P50Us
				out[i].AddedP99Us = out[i].P99Us - k.P99Us
			}
		}
	}
	return out, nil
}

// latencyOnce measures the round trips of one protocol from host ns to srv.
func latencyOnce(ctx context.Context, ns *lab.NS, proto string, srv netip.AddrPort, o LatencyOptions) (LatencyResult, error) {
	r := LatencyResult{Proto: proto}
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err = d.DialContext(ctx, proto+"4", srv.String())
		return err
	}); err != nil {
		return r, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	rtt := make([]time.Duration, 0, min(o.Samples, 1<<20))
	rd := bufio.NewReaderSize(c, 4096)
	req := make([]byte, 0, 32)
	buf := make([]byte, 512)
	var end time.Time
	lostInRow := 0
	for i := 0; len(rtt) < o.Samples; i++ {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if i == o.Warmup {
			end = time.Now().Add(o.MaxDuration)
		}
		if i > o.Warmup && time.Now().After(end) {
			break
		}
		// The request carries its sequence number, so a late UDP reply to
		// an earlier request is not taken for this one's.
		req = append(strconv.AppendInt(append(req[:0], 'q'), int64(i), 10), '\n')
		var d time.Duration
		var err error
		if proto == "tcp" {
			d, err = latRoundTripTCP(c, rd, req)
		} else {
			d, err = latRoundTripUDP(c, buf, req, o.Timeout)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				if i >= o.Warmup {
					r.Lost++
				}
				if lostInRow++; lostInRow == 10 {
					return r, fmt.Errorf("no answer to %d requests in a row", lostInRow)
				}
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			return r, err
		}
		lostInRow = 0
		if i >= o.Warmup {
			rtt = append(rtt, d)
		}
	}
	if len(rtt) == 0 {
		return r, errors.New("no round trip measured")
	}
	r.Samples = len(rtt)
	r.MeanUs, r.P50Us, r.P99Us, r.MaxUs = latencyStats(rtt)
	return r, nil
}

// latRoundTripTCP sends the line req and reads the echo server's answer, one
// line ending in req.
func latRoundTripTCP(c net.Conn, rd *bufio.Reader, req []byte) (time.Duration, error) {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	t0 := time.Now()
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	line, err := rd.ReadSlice('\n')
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if !bytes.HasSuffix(line, req) {
		return 0, fmt.Errorf("unexpected answer %q to %q", line, req)
	}
	return d, nil
}

// latRoundTripUDP sends the datagram req and waits up to timeout for the
// answer ending in req, skipping late answers to earlier requests.
func latRoundTripUDP(c net.Conn, buf, req []byte, timeout time.Duration) (time.Duration, error) {
	c.SetDeadline(time.Now().Add(timeout))
	t0 := time.Now()
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	for {
		n, err := c.Read(buf)
		if err != nil {
			return 0, err
		}
		if bytes.HasSuffix(buf[:n], req) {
			return time.Since(t0), nil
		}
	}
}

// latencyStats returns the mean, median, 99th percentile and maximum of
// d (not empty; sorted in place), in microseconds. The percentiles are
// nearest-rank: the smallest sample at or above that share of the samples.
func latencyStats(d []time.Duration) (mean, p50, p99, worst float64) {
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	us := func(v time.Duration) float64 { return float64(v) / float64(time.Microsecond) }
	rank := func(p float64) time.Duration {
		k := int(math.Ceil(p*float64(len(d)))) - 1
		return d[min(max(k, 0), len(d)-1)]
	}
	return us(sum) / float64(len(d)), us(rank(0.50)), us(rank(0.99)), us(d[len(d)-1])
}
