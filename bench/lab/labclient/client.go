package labclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
)

// Config describes the flows of one Run.
type Config struct {
	// Targets are the servers; flow j uses Targets[j % len(Targets)]. Empty
	// means the lab's 20 servers on lab.EchoPort.
	Targets []netip.AddrPort
	// TCPFlows and UDPFlows are the numbers of flows of each protocol.
	TCPFlows, UDPFlows int
	// Messages is the number of messages each flow sends (default 1).
	Messages int
	// Sources are local source addresses; flow j binds Sources[j %
	// len(Sources)]. Empty lets the kernel choose.
	Sources []netip.Addr
	// Concurrency bounds the flows in progress at once (default 256).
	Concurrency int
	// Timeout is the deadline for each reply, and for each TCP connect
	// (default 2s).
	Timeout time.Duration
	// Interval is the pause between two messages of a flow (default none).
	Interval time.Duration
	// DialThreads is the number of OS threads creating sockets inside the
	// namespace (default 4).
	DialThreads int
}

// Proto is a flow's transport protocol.
type Proto string

// Flow protocols.
const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// Flow is the outcome of one flow.
type Flow struct {
	// Proto is TCP or UDP.
	Proto Proto
	// Index numbers the flows of one protocol from 0.
	Index int
	// Local is the flow's socket address on the client (invalid if the
	// socket could not be made).
	Local netip.AddrPort
	// Target is the server the flow talked to.
	Target netip.AddrPort
	// Seen lists the distinct source address:port the server reported, in
	// order of first appearance: one entry for a flow that stayed on one
	// uplink and NAT mapping.
	Seen []netip.AddrPort
	// Sent and Replies count messages sent and valid replies received; Lost
	// counts UDP messages whose reply did not arrive in time.
	Sent, Replies, Lost int
	// Err is the first error of the flow (for TCP it ended the flow; UDP
	// flows go on after a lost reply).
	Err error
}

// Addrs returns the distinct source addresses the server saw.
func (f *Flow) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, s := range f.Seen {
		if !slices.Contains(out, s.Addr()) {
			out = append(out, s.Addr())
		}
	}
	return out
}

// OK reports whether every message of the flow got its reply.
func (f *Flow) OK() bool { return f.Err == nil && f.Replies == f.Sent && f.Sent > 0 }

func (c *Config) defaults() error {
	if len(c.Targets) == 0 {
		for k := range 20 {
			c.Targets = append(c.Targets, netip.AddrPortFrom(lab.ServerAddr(k), lab.EchoPort))
		}
	}
	if c.Messages <= 0 {
		c.Messages = 1
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 256
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.DialThreads <= 0 {
		c.DialThreads = 4
	}
	if c.TCPFlows < 0 || c.UDPFlows < 0 {
		return errors.New("labclient: negative flow count")
	}
	return nil
}

// Run runs cfg's flows from namespace ns and returns one Flow per flow: the
// TCP flows first, then the UDP flows. The error is for setup failures only;
// per-flow failures are in Flow.Err. Cancelling ctx ends every flow.
func Run(ctx context.Context, ns *lab.NS, cfg Config) ([]Flow, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r, err := ns.NewRunner(cfg.DialThreads)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	flows := make([]Flow, cfg.TCPFlows+cfg.UDPFlows)
	for j := range flows {
		f := &flows[j]
		f.Proto, f.Index = TCP, j
		if j >= cfg.TCPFlows {
			f.Proto, f.Index = UDP, j-cfg.TCPFlows
		}
		f.Target = cfg.Targets[f.Index%len(cfg.Targets)]
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(cfg.Concurrency, len(flows)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				runFlow(ctx, r, &cfg, &flows[j])
			}
		}()
	}
	for j := range flows {
		next <- j
	}
	close(next)
	wg.Wait()
	return flows, nil
}

func (c *Config) source(j int) netip.Addr {
	if len(c.Sources) == 0 {
		return netip.Addr{}
	}
	return c.Sources[j%len(c.Sources)]
}

// runFlow runs one flow and records its outcome in f.
func runFlow(ctx context.Context, r *lab.Runner, cfg *Config, f *Flow) {
	if err := ctx.Err(); err != nil {
		f.Err = err
		return
	}
	src := cfg.source(f.Index)
	var conn net.Conn
	err := r.Do(func() error {
		var err error
		switch f.Proto {
		case TCP:
			d := net.Dialer{Timeout: cfg.Timeout}
			if src.IsValid() {
				d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
			}
			conn, err = d.DialContext(ctx, "tcp4", f.Target.String())
		case UDP:
			var laddr *net.UDPAddr
			if src.IsValid() {
				laddr = &net.UDPAddr{IP: src.AsSlice()}
			}
			conn, err = net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(f.Target))
		}
		return err
	})
	if err != nil {
		f.Err = fmt.Errorf("labclient: %s flow %d: dial %v: %w", f.Proto, f.Index, f.Target, err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	f.Local = addrPort(conn.LocalAddr())
	if f.Proto == TCP {
		tcpFlow(ctx, conn, cfg, f)
	} else {
		udpFlow(ctx, conn, cfg, f)
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// message returns the k-th message of flow f (without newline).
func message(dst []byte, f *Flow, k int) []byte {
	dst = append(dst, f.Proto...)
	dst = strconv.AppendInt(dst, int64(f.Index), 10)
	dst = append(dst, '.')
	return strconv.AppendInt(dst, int64(k), 10)
}

// parseReply splits "<ip>:<port> M" into the address and M.
func parseReply(b []byte) (netip.AddrPort, []byte, bool) {
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		return netip.AddrPort{}, nil, false
	}
	ap, err := netip.ParseAddrPort(string(b[:sp]))
	if err != nil {
		return netip.AddrPort{}, nil, false
	}
	return ap, b[sp+1:], true
}

func (f *Flow) see(ap netip.AddrPort) {
	if !slices.Contains(f.Seen, ap) {
		f.Seen = append(f.Seen, ap)
	}
}

func (f *Flow) fail(err error) {
	if f.Err == nil {
		f.Err = fmt.Errorf("labclient: %s flow %d (%v -> %v): %w", f.Proto, f.Index, f.Local, f.Target, err)
	}
}

func pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func tcpFlow(ctx context.Context, conn net.Conn, cfg *Config, f *Flow) {
	r := bufio.NewReader(conn)
	msg := make([]byte, 0, 64)
	for k := range cfg.Messages {
		if k > 0 && !pause(ctx, cfg.Interval) {
			f.fail(ctx.Err())
			return
		}
		msg = append(message(msg[:0], f, k), '\n')
		conn.SetDeadline(time.Now().Add(cfg.Timeout))
		if _, err := conn.Write(msg); err != nil {
			f.fail(err)
			return
		}
		f.Sent++
		line, err := r.ReadSlice('\n')
		if err != nil {
			f.fail(err)
			return
		}
		ap, m, ok := parseReply(line)
		if !ok || !bytes.Equal(m, msg) {
			f.fail(fmt.Errorf("unexpected reply %q to %q", line, msg))
			return
		}
		f.Replies++
		f.see(ap)
	}
}

func udpFlow(ctx context.Context, conn net.Conn, cfg *Config, f *Flow) {
	buf := make([]byte, 2048)
	msg := make([]byte, 0, 64)
	for k := range cfg.Messages {
		if k > 0 && !pause(ctx, cfg.Interval) {
			f.fail(ctx.Err())
			return
		}
		msg = message(msg[:0], f, k)
		if _, err := conn.Write(msg); err != nil {
			f.fail(err)
			f.Sent++
			f.Lost++
			continue
		}
		f.Sent++
		conn.SetReadDeadline(time.Now().Add(cfg.Timeout))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					f.fail(ctx.Err())
					return
				}
				f.Lost++
				f.fail(fmt.Errorf("message %d: %w", k, err))
				break
			}
			ap, m, ok := parseReply(buf[:n])
			if ok && bytes.Equal(m, msg) {
				f.Replies++
				f.see(ap)
				break
			}
			// A late reply to an earlier message, or garbage: keep reading.
		}
	}
}

// Summary aggregates the flows of one Run.
type Summary struct {
	// Flows is the number of flows; OK those whose every message was
	// answered; Failed the others.
	Flows, OK, Failed int
	// Moved counts flows the server saw from more than one source address.
	Moved int
	// PerAddr counts flows by the first source address the server saw.
	PerAddr map[netip.Addr]int
	// FirstErr is the first flow error, if any.
	FirstErr error
}

// Summarize aggregates flows.
func Summarize(flows []Flow) Summary {
	s := Summary{Flows: len(flows), PerAddr: map[netip.Addr]int{}}
	for i := range flows {
		f := &flows[i]
		if f.OK() {
			s.OK++
		} else {
			s.Failed++
			if s.FirstErr == nil {
				s.FirstErr = f.Err
				if s.FirstErr == nil {
					s.FirstErr = fmt.Errorf("labclient: %s flow %d: %d of %d replies", f.Proto, f.Index, f.Replies, f.Sent)
				}
			}
		}
		addrs := f.Addrs()
		if len(addrs) > 1 {
			s.Moved++
		}
		if len(addrs) > 0 {
			s.PerAddr[addrs[0]]++
		}
	}
	return s
}

// String formats the summary on one line.
func (s Summary) String() string {
	addrs := make([]netip.Addr, 0, len(s.PerAddr))
	for a := range s.PerAddr {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d flows, %d ok, %d failed, %d moved;", s.Flows, s.OK, s.Failed, s.Moved)
	for _, a := range addrs {
		fmt.Fprintf(&b, " %v=%d", a, s.PerAddr[a])
	}
	if s.FirstErr != nil {
		fmt.Fprintf(&b, "; first error: %v", s.FirstErr)
	}
	return b.String()
}
