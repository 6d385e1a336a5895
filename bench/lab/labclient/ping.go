package labclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/wanflow/wanflow/bench/lab"
)

// PingConfig describes one Ping.
type PingConfig struct {
	// Source, when valid, is the local address to send from.
	Source netip.Addr
	// Count is the number of echo requests (default 3).
	Count int
	// Interval is the pause between requests (default 100ms).
	Interval time.Duration
	// Timeout is how long to wait for each reply (default 1s).
	Timeout time.Duration
	// TTL, when positive, is the TTL of the requests.
	TTL int
}

// PingResult is the outcome of Ping.
type PingResult struct {
	// Sent and Received count echo requests and matching replies.
	Sent, Received int
	// RTTs are the round-trip times of the received replies.
	RTTs []time.Duration
}

// Ping sends ICMP echo requests from namespace ns to dst on a raw ICMP socket
// (root) and counts the replies. The error is for setup failures only.
func Ping(ctx context.Context, ns *lab.NS, dst netip.Addr, cfg PingConfig) (PingResult, error) {
	if cfg.Count <= 0 {
		cfg.Count = 3
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	laddr := "0.0.0.0"
	if cfg.Source.IsValid() {
		laddr = cfg.Source.String()
	}
	var c *icmp.PacketConn
	if err := ns.Do(func() error {
		var err error
		c, err = icmp.ListenPacket("ip4:icmp", laddr)
		return err
	}); err != nil {
		return PingResult{}, fmt.Errorf("labclient: ping socket in %s: %w", ns.Name, err)
	}
	defer c.Close()
	if cfg.TTL > 0 {
		if err := c.IPv4PacketConn().SetTTL(cfg.TTL); err != nil {
			return PingResult{}, fmt.Errorf("labclient: set TTL %d: %w", cfg.TTL, err)
		}
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	var res PingResult
	id := rand.N(1 << 16)
	buf := make([]byte, 1500)
	for seq := range cfg.Count {
		if seq > 0 && !pause(ctx, cfg.Interval) {
			break
		}
		req := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("wanflow-lab")}}
		b, err := req.Marshal(nil)
		if err != nil {
			return res, err
		}
		start := time.Now()
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			res.Sent++
			continue
		}
		res.Sent++
		c.SetReadDeadline(start.Add(cfg.Timeout))
		for {
			n, peer, err := c.ReadFrom(buf)
			if err != nil {
				if ctx.Err() != nil {
					return res, nil
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return res, err
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			e, ok := m.Body.(*icmp.Echo)
			if !ok || e.ID != id || e.Seq != seq {
				continue
			}
			if ip, ok := peer.(*net.IPAddr); !ok || !ip.IP.Equal(dst.AsSlice()) {
				continue
			}
			res.Received++
			res.RTTs = append(res.RTTs, time.Since(start))
			break
		}
	}
	return res, nil
}
