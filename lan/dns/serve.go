package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"time"
)

// tcpWriteTimeout bounds the time an answer takes to go out over TCP.
const tcpWriteTimeout = 5 * time.Second

// Serve answers queries on every Config.Listen address, over UDP and TCP,
// until ctx ends; then it closes its sockets, waits for every goroutine it
// started (queries being forwarded are abandoned) and returns nil. It
// returns an error at once if an address cannot be bound. At most one Serve
// runs at a time.
func (f *Forwarder) Serve(ctx context.Context) error {
	if !f.serving.CompareAndSwap(false, true) {
		return errServing
	}
	defer f.serving.Store(false)

	var udps []*net.UDPConn
	var tcps []*net.TCPListener
	closeAll := func() {
		for _, c := range udps {
			c.Close()
		}
		for _, l := range tcps {
			l.Close()
		}
	}
	for _, a := range f.cfg.Listen {
		var uc *net.UDPConn
		var tl *net.TCPListener
		err := f.inNS(func() error {
			var err error
			if uc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(a)); err != nil {
				return err
			}
			if tl, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(a)); err != nil {
				uc.Close()
				return err
			}
			return nil
		})
		if err != nil {
			closeAll()
			return fmt.Errorf("dns: listen on %v: %w", a, err)
		}
		udps = append(udps, uc)
		tcps = append(tcps, tl)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readers := min(runtime.GOMAXPROCS(0), 4)
	for _, c := range udps {
		for range readers {
			f.wg.Add(1)
			go f.routineUDP(ctx, c)
		}
	}
	slots := make(chan struct{}, MaxTCPConns)
	for _, l := range tcps {
		f.wg.Add(1)
		go f.routineTCPAccept(ctx, l, slots)
	}
	f.cfg.Logger.Info("dns: serving", "listen", f.cfg.Listen)
	<-ctx.Done()
	closeAll()
	f.wg.Wait()
	f.cfg.Logger.Info("dns: stopped")
	return nil
}

// routineUDP reads queries from c until c is closed. It answers those that
// need no upstream itself and hands the others to routineQuery.
func (f *Forwarder) routineUDP(ctx context.Context, c *net.UDPConn) {
	defer f.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors and the like
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		q, resp, done := f.prepare(from, false, buf[:n])
		if done {
			if resp != nil {
				c.WriteToUDPAddrPort(resp, from)
			}
			continue
		}
		select {
		case f.sem <- struct{}{}:
		default:
			f.stats.overloaded.Add(1)
			continue
		}
		f.wg.Add(1)
		go f.routineQuery(ctx, c, &q)
	}
}

// routineQuery forwards q and sends the answer to its client through c.
func (f *Forwarder) routineQuery(ctx context.Context, c *net.UDPConn, q *query) {
	defer f.wg.Done()
	defer func() { <-f.sem }()
	if resp := f.forward(ctx, q); resp != nil {
		c.WriteToUDPAddrPort(resp, q.client)
	}
}

// routineTCPAccept accepts connections on l until l is closed: from
// allowed clients and within MaxTCPConns (slots), for routineTCPConn.
func (f *Forwarder) routineTCPAccept(ctx context.Context, l *net.TCPListener, slots chan struct{}) {
	defer f.wg.Done()
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like
			continue
		}
		from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if !f.allowed(from.Addr()) {
			f.stats.refused.Add(1)
			c.Close()
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			f.stats.overloaded.Add(1)
			c.Close()
			continue
		}
		f.wg.Add(1)
		go f.routineTCPConn(ctx, c, from, slots)
	}
}

// routineTCPConn answers the queries on c, one at a time (RFC 7766 section
// 6.2.1.1 allows in-order answers), until the client closes it, stays idle
// for TCPIdleTimeout, sends something that gets no answer, or ctx ends.
func (f *Forwarder) routineTCPConn(ctx context.Context, c *net.TCPConn, from netip.AddrPort, slots chan struct{}) {
	defer f.wg.Done()
	defer func() { <-slots }()
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var l [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(TCPIdleTimeout))
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		raw := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, raw); err != nil {
			return
		}
		resp := f.handle(ctx, from, true, raw)
		if resp == nil {
			return
		}
		out := make([]byte, 2+len(resp))
		binary.BigEndian.PutUint16(out, uint16(len(resp)))
		copy(out[2:], resp)
		c.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}
