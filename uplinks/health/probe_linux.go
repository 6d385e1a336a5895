package health

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/uplinks/netnsrun"
)

// osSystem probes with real sockets in the Prober's namespace.
type osSystem struct {
	p  *Prober
	ns *netns.NsHandle // nil: the process's namespace
	h  *netlink.Handle
}

func newOSSystem(p *Prober) (system, error) {
	var h *netlink.Handle
	var err error
	if p.cfg.NetNS != nil {
		h, err = netlink.NewHandleAt(*p.cfg.NetNS)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return &osSystem{p: p, ns: p.cfg.NetNS, h: h}, nil
}

func (s *osSystem) close() { s.h.Close() }

// localAddrs returns every IPv4 address of every device of the namespace.
func (s *osSystem) localAddrs() (map[netip.Addr]bool, error) {
	addrs, err := s.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	m := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			m[ip.Unmap()] = true
		}
	}
	return m, nil
}

// inNS runs fn in the Prober's namespace: directly when it is the
// process's, else on a locked OS thread that has entered it. A thread that
// cannot return to its namespace is never handed back to the scheduler: it
// stays locked and dies with its goroutine. fn's sockets stay in the
// namespace they were created in.
func (s *osSystem) inNS(fn func() error) error {
	if s.ns == nil {
		return fn()
	}
	return netnsrun.Do(*s.ns, fn)
}

// bindDevice binds socket fd to b's device.
func bindDevice(fd int, b Binding) error {
	if b.Interface != "" {
		if err := unix.BindToDevice(fd, b.Interface); err != nil {
			return fmt.Errorf("SO_BINDTODEVICE %s: %w", b.Interface, err)
		}
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, b.Ifindex); err != nil {
		return fmt.Errorf("SO_BINDTOIFINDEX %d: %w", b.Ifindex, err)
	}
	return nil
}

func (s *osSystem) open(b Binding) (session, error) {
	ss := &osSession{sys: s, bind: b}
	for _, t := range s.p.cfg.Targets {
		if t.Kind != KindICMP {
			continue
		}
		c, err := s.openICMP(b)
		if err != nil {
			ss.icmpErr = fmt.Errorf("icmp socket: %w", err)
			return ss, ss.icmpErr
		}
		ss.icmp = c
		break
	}
	return ss, nil
}

// osSession probes through one Binding.
type osSession struct {
	sys     *osSystem
	bind    Binding
	icmp    *icmpConn // nil without ICMP targets or when icmpErr
	icmpErr error
}

func (ss *osSession) close() {
	if ss.icmp != nil {
		ss.icmp.close()
	}
}

func (ss *osSession) probe(ctx context.Context, t Target) TargetResult {
	var rtt time.Duration
	var err error
	switch t.Kind {
	case KindICMP:
		if ss.icmp == nil {
			err = ss.icmpErr
			if err == nil {
				err = errors.New("no icmp socket")
			}
			break
		}
		rtt, err = ss.icmp.echo(ctx, t.Addr.Addr())
	case KindDNS:
		rtt, err = ss.probeDNS(ctx, t)
	case KindHTTP:
		rtt, err = ss.probeHTTP(ctx, t)
	default:
		err = fmt.Errorf("unknown kind %v", t.Kind)
	}
	if err != nil {
		return TargetResult{Err: errText(ctx, err)}
	}
	return TargetResult{OK: true, RTT: rtt}
}

// errText renders a probe error briefly: "timeout", "connection refused",
// "network unreachable", ...
func errText(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case ctx.Err() != nil:
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	}
	return err.Error()
}

// dial connects to "to" from the binding's address through its device.
func (ss *osSession) dial(ctx context.Context, network string, to netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = bindDevice(int(fd), ss.bind) }); err != nil {
				return err
			}
			return serr
		},
	}
	src := ss.bind.Addr.AsSlice()
	if network == "udp4" {
		d.LocalAddr = &net.UDPAddr{IP: src}
	} else {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	var c net.Conn
	err := ss.sys.inNS(func() error {
		var err error
		c, err = d.DialContext(ctx, network, to.String())
		return err
	})
	return c, err
}

// probeDNS sends one query and waits for a response with its id.
func (ss *osSession) probeDNS(ctx context.Context, t Target) (time.Duration, error) {
	q := new(dns.Msg)
	qtype := dns.TypeA
	if t.Name == "." {
		qtype = dns.TypeNS
	}
	q.SetQuestion(dns.Fqdn(t.Name), qtype)
	q.Id = dns.Id()
	wire, err := q.Pack()
	if err != nil {
		return 0, fmt.Errorf("pack query: %w", err)
	}
	c, err := ss.dial(ctx, "udp4", t.Addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	start := time.Now()
	if _, err := c.Write(wire); err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return 0, err
		}
		rtt := time.Since(start)
		var r dns.Msg
		if r.Unpack(buf[:n]) == nil && r.Id == q.Id && r.Response {
			return rtt, nil
		}
	}
}

// httpBodyMax bounds how much of a response body an HTTP probe reads.
const httpBodyMax = 4 << 10

// probeHTTP GETs t.URL on a fresh connection to t.Addr.
func (ss *osSession) probeHTTP(ctx context.Context, t Target) (time.Duration, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return 0, err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return ss.dial(ctx, "tcp4", t.Addr)
		},
		TLSClientConfig:        &tls.Config{ServerName: u.Hostname(), RootCAs: ss.sys.p.tlsRoots},
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 16 << 10,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		// A redirect (a captive portal's 302 too) is an answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return 0, err
	}
	req.Close = true
	req.Header.Set("User-Agent", "wanflow-health/1")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	rtt := time.Since(start)
	io.Copy(io.Discard, io.LimitReader(resp.Body, httpBodyMax))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return 0, fmt.Errorf("http status %d", resp.StatusCode)
	}
	return rtt, nil
}

// icmpConn is a raw ICMP socket bound to one uplink's device and address,
// with one reader goroutine that hands each reply to the probe waiting for
// it.
type icmpConn struct {
	conn  *net.IPConn
	bind  Binding
	id    uint16
	token [8]byte
	done  chan struct{} // closed when routineRead returns

	mu      sync.Mutex // guards seq and waiters
	seq     uint16
	waiters map[uint16]*echoWaiter
}

// echoWaiter is a probe waiting for the answer to echo request seq.
type echoWaiter struct {
	dst netip.Addr
	ch  chan echoAnswer // buffered: the reader never blocks
}

type echoAnswer struct {
	at  time.Time
	err error // an ICMP error instead of a reply
}

// openICMP opens the uplink's raw ICMP socket: SO_BINDTODEVICE and a bound
// source address keep its probes on the uplink (the kernel also delivers
// to it only ICMP that arrived on that device for that address), a BPF
// filter keeps only what concerns the Prober's echo identifier, and
// IP_PKTINFO lets the reader check the arrival device once more.
func (s *osSystem) openICMP(b Binding) (*icmpConn, error) {
	prog, err := bpf.Assemble(icmpFilter(s.p.echoID))
	if err != nil {
		return nil, fmt.Errorf("assemble filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	var fd int
	err = s.inNS(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMP)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	setup := func() error {
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}); err != nil {
			return fmt.Errorf("SO_ATTACH_FILTER: %w", err)
		}
		if err := bindDevice(fd, b); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
			return fmt.Errorf("IP_PKTINFO: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: b.Addr.As4()}); err != nil {
			return fmt.Errorf("bind %v: %w", b.Addr, err)
		}
		return nil
	}
	if err := setup(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "icmp")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("packet conn: %w", err)
	}
	conn, ok := pc.(*net.IPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("packet conn: got %T", pc)
	}
	c := &icmpConn{
		conn:    conn,
		bind:    b,
		id:      s.p.echoID,
		token:   s.p.token,
		done:    make(chan struct{}),
		waiters: make(map[uint16]*echoWaiter),
	}
	go c.routineRead()
	return c, nil
}

func (c *icmpConn) close() {
	c.conn.Close()
	<-c.done
}

// echo sends an echo request to dst and waits for its reply until ctx ends.
func (c *icmpConn) echo(ctx context.Context, dst netip.Addr) (time.Duration, error) {
	w := &echoWaiter{dst: dst, ch: make(chan echoAnswer, 1)}
	c.mu.Lock()
	c.seq++
	for c.waiters[c.seq] != nil { // only after 65536 probes in flight: never, with MaxRounds
		c.seq++
	}
	seq := c.seq
	c.waiters[seq] = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, seq)
		c.mu.Unlock()
	}()
	pkt := marshalEcho(c.id, seq, c.token)
	start := time.Now()
	if _, err := c.conn.WriteToIP(pkt, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	select {
	case a := <-w.ch:
		if a.err != nil {
			return 0, a.err
		}
		return a.at.Sub(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// routineRead reads the socket until it is closed and answers the waiters.
func (c *icmpConn) routineRead() {
	defer close(c.done)
	buf := make([]byte, 1500)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	for {
		n, oobn, _, _, err := c.conn.ReadMsgIP(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ENOBUFS and the like: keep reading
		}
		at := time.Now()
		if !c.arrivedOnUplink(oob[:oobn]) {
			continue
		}
		m, ok := parseICMP(buf[:n], c.id)
		if !ok || m.Dst != c.bind.Addr {
			continue
		}
		var ans echoAnswer
		switch {
		case m.Type == icmpEchoReply && m.Token == c.token:
			ans.at = at
		case m.Type == icmpEchoReply:
			continue // another process's, or a previous run's, probe
		default:
			ans.err = fmt.Errorf("%s from %v", icmpErrName(m.Type, m.Code), m.Src)
		}
		c.mu.Lock()
		w := c.waiters[m.Seq]
		c.mu.Unlock()
		if w == nil || w.dst != m.Target {
			continue
		}
		select {
		case w.ch <- ans:
		default:
		}
	}
}

// arrivedOnUplink reports whether IP_PKTINFO says the packet came in on
// the uplink's device; replies that come back through another uplink are
// not answers.
func (c *icmpConn) arrivedOnUplink(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_PKTINFO || len(m.Data) < unix.SizeofInet4Pktinfo {
			continue
		}
		// struct in_pktinfo: int ipi_ifindex; in_addr ipi_spec_dst, ipi_addr.
		ifindex := int32(binary.NativeEndian.Uint32(m.Data[0:4]))
		return c.bind.Ifindex == 0 || int(ifindex) == c.bind.Ifindex
	}
	return false
}

// icmpErrName names an ICMP error (RFC 792, RFC 1812 §5.2.7.1).
func icmpErrName(typ, code uint8) string {
	if typ == icmpTimeExceeded {
		return "icmp time exceeded"
	}
	switch code {
	case 0:
		return "icmp network unreachable"
	case 1:
		return "icmp host unreachable"
	case 2:
		return "icmp protocol unreachable"
	case 3:
		return "icmp port unreachable"
	case 9, 10, 13:
		return "icmp administratively prohibited"
	}
	return fmt.Sprintf("icmp unreachable (code %d)", code)
}
