package bench

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
)

// Sample is one new flow of a Sampler: when it was opened, and which
// source address the server saw (invalid: no answer).
type Sample struct {
	At   time.Time
	Seen netip.Addr
	RTT  time.Duration
}

// Sampler opens a new UDP flow (a new socket, so a new 5-tuple) from a LAN
// host to a server every period, sends one datagram, waits up to timeout
// for the echo and records which uplink address the server saw. It is the
// failover timeline's probe: a new flow's fate is exactly what a user
// opening a connection at that instant gets.
type Sampler struct {
	mu      sync.Mutex
	samples []Sample
}

// samplePorts hands out local ports to every Sampler of the process in
// sequence (45000-60999, wrapping), so that no sample reuses the 5-tuple
// of an earlier one — not even one of an earlier Sampler, whose flow may
// still be in the router's table.
var samplePorts atomic.Uint32

func nextSamplePort() uint16 {
	return uint16(45000 + samplePorts.Add(1)%16000)
}

// RunSampler samples until ctx is done. Flows are opened by a few workers so
// that one waiting for a lost reply does not delay the next sample.
func RunSampler(ctx context.Context, ns *lab.NS, srv netip.AddrPort, period, timeout time.Duration) *Sampler {
	s := &Sampler{}
	tick := time.NewTicker(period)
	go func() {
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case t := <-tick.C:
				go s.one(ns, srv, t, timeout)
			}
		}
	}()
	return s
}

func (s *Sampler) one(ns *lab.NS, srv netip.AddrPort, at time.Time, timeout time.Duration) {
	smp := Sample{At: at}
	defer func() {
		s.mu.Lock()
		s.samples = append(s.samples, smp)
		s.mu.Unlock()
	}()
	// A local port of its own, in sequence: a port the kernel picked could
	// repeat an earlier sample's 5-tuple, which is that earlier flow, still
	// pinned where it was.
	var c net.Conn
	for try := 0; try < 16 && c == nil; try++ {
		port := nextSamplePort()
		_ = ns.Do(func() error {
			var err error
			d := net.Dialer{LocalAddr: &net.UDPAddr{Port: int(port)}}
			c, err = d.Dial("udp4", srv.String())
			return err
		})
	}
	if c == nil {
		return
	}
	defer c.Close()
	c.SetDeadline(at.Add(timeout))
	start := time.Now()
	if _, err := c.Write([]byte("sample\n")); err != nil {
		return
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return
	}
	f := strings.Fields(string(buf[:n]))
	if len(f) == 0 {
		return
	}
	if ap, err := netip.ParseAddrPort(f[0]); err == nil {
		smp.Seen = ap.Addr()
		smp.RTT = time.Since(start)
	}
}

// Samples returns the samples so far in time order.
func (s *Sampler) Samples() []Sample {
	s.mu.Lock()
	out := append([]Sample(nil), s.samples...)
	s.mu.Unlock()
	for i := 1; i < len(out); i++ { // insertion sort: nearly sorted already
		for j := i; j > 0 && out[j].At.Before(out[j-1].At); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Switch describes how new flows moved after a fault at a given time: the
// first sample opened after the fault that got its answer through want, and
// what happened around it.
type Switch struct {
	// After is the time from the fault to the first new flow through the
	// wanted uplink that was answered (-1: never).
	After time.Duration
	// FailedBefore counts new flows opened after the fault, before that
	// one, that failed (sent into the dead uplink before detection).
	FailedBefore int
	// FailedAfter counts new flows opened after it that failed or went
	// elsewhere.
	FailedAfter int
	// Total counts the samples after the fault.
	Total int
}

// SwitchTo analyses samples around a fault at t: when did new flows start
// to get through want, and did they keep doing so.
func SwitchTo(samples []Sample, t time.Time, want netip.Addr) Switch {
	sw := Switch{After: -1}
	for _, s := range samples {
		if s.At.Before(t) {
			continue
		}
		sw.Total++
		if sw.After < 0 {
			if s.Seen == want {
				sw.After = s.At.Sub(t)
			} else if !s.Seen.IsValid() {
				sw.FailedBefore++
			}
			continue
		}
		if s.Seen != want {
			sw.FailedAfter++
		}
	}
	return sw
}
