package lab

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// serverSet is the set of in-process servers started by StartServers.
//
// Goroutines: routineTCPAccept per TCP listener, routineTCPEcho or
// routineDNSTCP per accepted connection, routineUDPEcho or routineDNSUDP per
// UDP socket, and routineStop, which closes everything when the context
// ends. close cancels and waits for all of them.
type serverSet struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	stopped bool
	closers []io.Closer
	conns   map[net.Conn]struct{}

	// mutedDNS: ISP DNS servers (by name, "isp<i>") that stay silent,
	// as a dead resolver would (SetISPDNS).
	mutedDNS sync.Map
}

func (s *serverSet) dnsMuted(name string) bool {
	_, ok := s.mutedDNS.Load(name)
	return ok
}

// StartServers starts the lab's in-process servers; they run until ctx ends
// or Close.
//   - In the internet namespace, on every address of Servers and
//     ProbeTargets, ports EchoPort (7) and AltEchoPort (9000): a UDP echo
//     server answering each datagram M with "<peer ip>:<peer port> " + M, and
//     a TCP echo server answering each line M (terminated by '\n') with
//     "<peer ip>:<peer port> " + M, so a client learns which source address
//     (which uplink) and port the server saw.
//   - In each ISP namespace, a DNS server (UDP and TCP port 53) on the
//     uplink's ISPDNS address. It answers every A query with 203.0.113.10
//     and every TXT query with "isp<i> <peer ip>:<peer port>", other types
//     with an empty NOERROR answer.
//
// The sockets are created inside the namespaces; the servers run on
// ordinary goroutines. StartServers fails if the servers are running.
func (l *Lab) StartServers(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab: closed")
	}
	if l.servers != nil {
		return errors.New("lab: servers already started")
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &serverSet{cancel: cancel, conns: map[net.Conn]struct{}{}}

	type tcpJob struct {
		ln    *net.TCPListener
		serve func(net.Conn)
	}
	var tcps []tcpJob
	var udps []func()

	addrs := append(append([]netip.Addr(nil), l.Servers...), l.ProbeTargets...)
	err := l.Internet.Do(func() error {
		for _, a := range addrs {
			for _, port := range []uint16{EchoPort, AltEchoPort} {
				ap := netip.AddrPortFrom(a, port)
				ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
				if err != nil {
					return fmt.Errorf("lab: listen tcp %v: %w", ap, err)
				}
				s.closers = append(s.closers, ln)
				tcps = append(tcps, tcpJob{ln, s.serveTCPEcho})
				pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
				if err != nil {
					return fmt.Errorf("lab: listen udp %v: %w", ap, err)
				}
				s.closers = append(s.closers, pc)
				udps = append(udps, func() { s.routineUDPEcho(pc) })
			}
		}
		return nil
	})
	for i, isp := range l.ISPs {
		if err != nil {
			break
		}
		ap := netip.AddrPortFrom(l.Uplinks[i].ISPDNS, 53)
		name := fmt.Sprintf("isp%d", i+1)
		err = isp.Do(func() error {
			ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
			if err != nil {
				return fmt.Errorf("lab: listen tcp %v in %s: %w", ap, isp.Name, err)
			}
			s.closers = append(s.closers, ln)
			tcps = append(tcps, tcpJob{ln, func(c net.Conn) { s.serveDNSTCP(c, name) }})
			pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
			if err != nil {
				return fmt.Errorf("lab: listen udp %v in %s: %w", ap, isp.Name, err)
			}
			s.closers = append(s.closers, pc)
			udps = append(udps, func() { s.routineDNSUDP(pc, name) })
			return nil
		})
	}
	if err != nil {
		cancel()
		s.shutdown()
		return err
	}
	for _, t := range tcps {
		s.wg.Add(1)
		go s.routineTCPAccept(t.ln, t.serve)
	}
	for _, u := range udps {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); u() }()
	}
	s.wg.Add(1)
	go s.routineStop(ctx)
	l.servers = s
	return nil
}

// routineStop closes every socket when ctx ends.
func (s *serverSet) routineStop(ctx context.Context) {
	defer s.wg.Done()
	<-ctx.Done()
	s.shutdown()
}

// shutdown closes all listeners, sockets and connections.
func (s *serverSet) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for _, c := range s.closers {
		c.Close()
	}
	for c := range s.conns {
		c.Close()
	}
}

// close stops the servers and waits for their goroutines.
func (s *serverSet) close() {
	s.cancel()
	s.wg.Wait()
}

// track registers an accepted connection; false if the servers stopped.
func (s *serverSet) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *serverSet) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

func (s *serverSet) routineTCPAccept(ln *net.TCPListener, serve func(net.Conn)) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond) // e.g. EMFILE
			continue
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			serve(c)
		}()
	}
}

// peerPrefix returns "<ip>:<port> " for the peer ap.
func peerPrefix(dst []byte, ap netip.AddrPort) []byte {
	dst = ap.Addr().Unmap().AppendTo(dst)
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, uint64(ap.Port()), 10)
	return append(dst, ' ')
}

// serveTCPEcho answers each line with the peer's address and the line.
func (s *serverSet) serveTCPEcho(c net.Conn) {
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	prefix := peerPrefix(nil, peer)
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			w.Write(prefix)
			w.Write(line)
			if r.Buffered() == 0 || err != nil {
				if w.Flush() != nil {
					return
				}
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// routineUDPEcho answers each datagram with the peer's address and the
// datagram.
func (s *serverSet) routineUDPEcho(pc *net.UDPConn) {
	buf := make([]byte, 65536)
	out := make([]byte, 0, 65536+32)
	for {
		n, peer, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		out = append(peerPrefix(out[:0], peer), buf[:n]...)
		pc.WriteToUDPAddrPort(out, peer)
	}
}

// dnsAnswer builds the reply of ISP name to query q from peer.
func dnsAnswer(q []byte, name string, peer netip.AddrPort) []byte {
	var req dns.Msg
	if err := req.Unpack(q); err != nil || len(req.Question) == 0 {
		return nil
	}
	m := new(dns.Msg)
	m.SetReply(&req)
	m.Authoritative = true
	for _, qq := range req.Question {
		hdr := dns.RR_Header{Name: qq.Name, Class: dns.ClassINET, Rrtype: qq.Qtype, Ttl: 60}
		switch qq.Qtype {
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ServerAddr(0).AsSlice()})
		case dns.TypeTXT:
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{name + " " + peer.String()}})
		}
	}
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}

func (s *serverSet) routineDNSUDP(pc *net.UDPConn, name string) {
	buf := make([]byte, 65536)
	for {
		n, peer, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
		if s.dnsMuted(name) {
			continue
		}
		if b := dnsAnswer(buf[:n], name, peer); b != nil {
			pc.WriteToUDPAddrPort(b, peer)
		}
	}
}

// serveDNSTCP answers length-prefixed DNS queries (RFC 1035 §4.2.2).
func (s *serverSet) serveDNSTCP(c net.Conn, name string) {
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	var hdr [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		if s.dnsMuted(name) {
			continue
		}
		b := dnsAnswer(q, name, peer)
		if b == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(b)))
		if _, err := c.Write(append(out, b...)); err != nil {
			return
		}
	}
}

// SetISPDNS makes ISP i's (0-based) DNS server stop answering (up=false) —
// it still receives queries, as a dead resolver behind a live network
// would — or answer again. The servers must be running.
func (l *Lab) SetISPDNS(i int, up bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.servers == nil {
		return errors.New("lab: servers not started")
	}
	if i < 0 || i >= len(l.ISPs) {
		return fmt.Errorf("lab: no uplink %d", i)
	}
	name := fmt.Sprintf("isp%d", i+1)
	if up {
		l.servers.mutedDNS.Delete(name)
	} else {
		l.servers.mutedDNS.Store(name, true)
	}
	return nil
}
