package bench

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
)

// echoConn is one long-lived flow from a LAN host to a lab echo server,
// which answers every line with the source address:port it saw.
type echoConn struct {
	c    net.Conn
	rd   *bufio.Reader
	seen netip.AddrPort // what the server saw on the first exchange
}

func dialEcho(ns *lab.NS, proto string, dst netip.AddrPort) (*echoConn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout(proto+"4", dst.String(), 2*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &echoConn{c: c, rd: bufio.NewReader(c)}, nil
}

// exchange sends a line and returns what the server saw. A UDP flow retries
// a lost datagram until the deadline; a TCP connection relies on TCP.
func (e *echoConn) exchange(deadline time.Duration) (netip.AddrPort, error) {
	end := time.Now().Add(deadline)
	_, udp := e.c.(*net.UDPConn)
	for {
		e.c.SetDeadline(time.Now().Add(min(time.Until(end), 200*time.Millisecond)))
		if !udp {
			e.c.SetDeadline(end)
		}
		if _, err := e.c.Write([]byte("x\n")); err != nil {
			return netip.AddrPort{}, err
		}
		var line string
		var err error
		if udp {
			buf := make([]byte, 256)
			var n int
			n, err = e.c.Read(buf)
			line = string(buf[:n])
		} else {
			line, err = e.rd.ReadString('\n')
		}
		var ne net.Error
		if udp && errors.As(err, &ne) && ne.Timeout() && time.Now().Before(end) {
			continue
		}
		if err != nil {
			return netip.AddrPort{}, err
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			return netip.AddrPort{}, errors.New("empty answer")
		}
		return netip.ParseAddrPort(f[0])
	}
}
