package bench

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/cmd/wanflow/config"
	"github.com/wanflow/wanflow/uplinks/policy"
)

// Stream is one long-lived flow from a LAN host to an echo server that
// sends a message every period and records what came back: a TCP
// connection (which ends at its first error, as an application's would) or
// a UDP flow (which goes on through lost replies).
type Stream struct {
	mu      sync.Mutex
	seen    []netip.Addr
	sent    int
	replies int
	err     error
	errAt   time.Time
	maxGap  time.Duration
	last    time.Time
	done    chan struct{}
}

// StreamStats is a snapshot of a Stream.
type StreamStats struct {
	Seen          []netip.Addr  // distinct uplink addresses the server saw, in order
	Sent, Replies int           // messages sent and answered
	Err           error         // the error that ended a TCP stream
	ErrAt         time.Time     // when
	MaxGap        time.Duration // longest time between two answers
}

// StartStream opens the flow from ns, binding local port lport (0: any),
// and runs it until ctx is done.
func StartStream(ctx context.Context, ns *lab.NS, proto string, lport uint16, srv netip.AddrPort, period time.Duration) (*Stream, error) {
	var c net.Conn
	d := net.Dialer{Timeout: 2 * time.Second}
	if lport != 0 {
		if proto == "tcp" {
			d.LocalAddr = &net.TCPAddr{Port: int(lport)}
		} else {
			d.LocalAddr = &net.UDPAddr{Port: int(lport)}
		}
	}
	if err := ns.Do(func() error {
		var err error
		c, err = d.Dial(proto+"4", srv.String())
		return err
	}); err != nil {
		return nil, err
	}
	s := &Stream{done: make(chan struct{}), last: time.Now()}
	go s.run(ctx, c, proto == "tcp", period)
	return s, nil
}

func (s *Stream) run(ctx context.Context, c net.Conn, tcp bool, period time.Duration) {
	defer close(s.done)
	defer c.Close()
	rd := bufio.NewReader(c)
	buf := make([]byte, 512)
	for ctx.Err() == nil {
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("stream\n")); err != nil {
			if s.fail(tcp, err) {
				return
			}
			continue
		}
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
		var line string
		var err error
		if tcp {
			line, err = rd.ReadString('\n')
		} else {
			var n int
			n, err = c.Read(buf)
			line = string(buf[:n])
		}
		if err != nil {
			if s.fail(tcp, err) {
				return
			}
			continue
		}
		if f := strings.Fields(line); len(f) > 0 {
			if ap, err := netip.ParseAddrPort(f[0]); err == nil {
				s.reply(ap.Addr())
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(period):
		}
	}
}

// fail records err; it reports whether the stream is over (TCP).
func (s *Stream) fail(tcp bool, err error) bool {
	var ne net.Error
	if !tcp && errors.As(err, &ne) && ne.Timeout() {
		return false // a lost UDP reply
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err, s.errAt = err, time.Now()
	}
	return tcp
}

func (s *Stream) reply(a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if g := now.Sub(s.last); g > s.maxGap {
		s.maxGap = g
	}
	s.last = now
	s.replies++
	if len(s.seen) == 0 || s.seen[len(s.seen)-1] != a {
		s.seen = append(s.seen, a)
	}
}

// Stats returns a snapshot.
func (s *Stream) Stats() StreamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return StreamStats{Seen: append([]netip.Addr(nil), s.seen...), Sent: s.sent, Replies: s.replies, Err: s.err, ErrAt: s.errAt, MaxGap: s.maxGap}
}

// Wait waits for the stream to end (ctx done, or a TCP error).
func (s *Stream) Wait() { <-s.done }

// PortFor returns a local port from first on whose flow (proto, src:port →
// dst) the policy of the config yaml places on uplink want while every
// uplink is up: wanflow's choice is deterministic, so a test can put a flow
// on the uplink it means to fail.
func PortFor(yaml string, proto uint8, src netip.Addr, dst netip.AddrPort, want int, first uint16) (uint16, error) {
	cfg, err := config.Parse([]byte(yaml), "test")
	if err != nil {
		return 0, err
	}
	pol, err := cfg.Policy()
	if err != nil {
		return 0, err
	}
	for p := first; p != 0; p++ {
		d := pol.Choose(policy.Flow{Proto: proto, Src: src.As4(), Dst: dst.Addr().As4(), SrcPort: p, DstPort: dst.Port()})
		if d.Uplink == want {
			return p, nil
		}
	}
	return 0, errors.New("bench: no port places the flow on that uplink")
}
