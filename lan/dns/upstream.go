package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

var errNoUpstreams = errors.New("no upstream servers")

// attempt is the outcome of one upstream's query.
type attempt struct {
	u   *upstream
	m   *mdns.Msg
	err error
}

// order returns the upstreams in the order to ask them at now: the list's
// order, except that benched upstreams (they failed or were hedged past
// several times in a row) come after the others. A benched upstream is
// asked first again once its bench time is over, so a server that came
// back is found within benchMax.
func order(ups []*upstream, now time.Time) []*upstream {
	benched := 0
	for _, u := range ups {
		if u.c.benched(now) {
			benched++
		}
	}
	if benched == 0 || benched == len(ups) {
		return ups
	}
	out := make([]*upstream, 0, len(ups))
	for _, u := range ups {
		if !u.c.benched(now) {
			out = append(out, u)
		}
	}
	for _, u := range ups {
		if u.c.benched(now) {
			out = append(out, u)
		}
	}
	return out
}

// resolve asks the upstreams for q and returns the first good answer as an
// entry, cached if it may be. Upstreams are asked in order (benched ones
// last): the next one at once when the previous fails (error, SERVFAIL,
// REFUSED, ...), or after HedgeAfter when it is merely slow, the earlier
// ones still being waited for; all within Timeout.
func (f *Forwarder) resolve(ctx context.Context, q *query) (*entry, error) {
	ups := *f.upstreams.Load()
	if len(ups) == 0 {
		return nil, errNoUpstreams
	}
	ups = order(ups, f.now())
	wire, err := upstreamQuery(q)
	if err != nil {
		return nil, err
	}
	s := f.live.Load()
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel() // abandons the attempts still running
	results := make(chan attempt, len(ups))
	next, pending := 0, 0
	start := func() {
		u := ups[next]
		next++
		pending++
		f.wg.Add(1)
		go f.routineAttempt(ctx, u, wire, q, results)
	}
	start()
	hedge := time.NewTimer(s.HedgeAfter)
	defer hedge.Stop()
	var lastErr error
	for {
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				r.u.c.answered()
				e, cacheable, err := newEntry(q.key, r.m, f.now(), s.ServeStale)
				if err == nil {
					if cacheable {
						f.cache.put(e)
					}
					return e, nil
				}
				r.err = err
			}
			lastErr = r.err
			if next < len(ups) {
				start()
				hedge.Reset(s.HedgeAfter)
			} else if pending == 0 {
				return nil, lastErr
			}
		case <-hedge.C:
			if next < len(ups) {
				ups[next-1].c.failed(f.now()) // slow: hedged past
				f.stats.hedged.Add(1)
				start()
				hedge.Reset(s.HedgeAfter)
			}
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = ctx.Err()
			}
			return nil, fmt.Errorf("no answer within %v: %w", s.Timeout, lastErr)
		}
	}
}

// upstreamQuery packs the query sent upstream for q, with ID 0: RD, the
// client's CD and DO bits, AD set (we understand it, RFC 6840 section
// 5.7), our EDNS(0) payload size, no client EDNS options (they are
// hop-by-hop).
func upstreamQuery(q *query) ([]byte, error) {
	m := new(mdns.Msg)
	m.RecursionDesired = true
	m.CheckingDisabled = q.cd
	m.AuthenticatedData = true
	m.Question = []mdns.Question{q.question}
	m.SetEdns0(UDPSize, q.do)
	b, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack upstream query: %w", err)
	}
	return b, nil
}

// routineAttempt queries u for q and sends the outcome to results, which
// has room for it.
func (f *Forwarder) routineAttempt(ctx context.Context, u *upstream, wire []byte, q *query, results chan<- attempt) {
	defer f.wg.Done()
	m, err := f.exchange(ctx, u, wire, q)
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		u.c.failures.Add(1)
		u.c.failed(f.now())
		f.cfg.Logger.Debug("dns: upstream failed", "uplink", u.Uplink, "addr", u.Addr,
			"name", q.question.Name, "error", err)
	}
	results <- attempt{u, m, err}
}

// bufPool holds buffers for upstream answers over UDP.
var bufPool = sync.Pool{New: func() any { return new([mdns.MaxMsgSize]byte) }}

// exchange sends the query wire (ID 0) for q to u over UDP, through u's
// uplink, and returns its answer; a truncated answer is asked again over
// TCP. Answers with another ID or question are ignored (RFC 5452 section
// 9.1); each query has a fresh socket, so a random source port, and a
// random ID.
func (f *Forwarder) exchange(ctx context.Context, u *upstream, wire []byte, q *query) (*mdns.Msg, error) {
	b := make([]byte, len(wire))
	copy(b, wire)
	id := mdns.Id()
	binary.BigEndian.PutUint16(b, id)
	u.c.queries.Add(1)
	c, err := f.dialUpstream(ctx, "udp", u)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := deadlines(ctx, c)
	defer stop()
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	buf := bufPool.Get().(*[mdns.MaxMsgSize]byte)
	defer bufPool.Put(buf)
	for {
		n, err := c.Read(buf[:])
		if err != nil {
			return nil, err
		}
		m, tc, err := checkAnswer(buf[:n], id, q)
		switch {
		case errors.Is(err, errNotOurs):
			continue
		case tc:
			f.stats.tcRetries.Add(1)
			u.c.queries.Add(1)
			return f.exchangeTCP(ctx, u, b, id, q)
		}
		return m, err
	}
}

// exchangeTCP sends the query b with ID id for q to u over TCP (RFC 7766),
// through u's uplink, and returns its answer.
func (f *Forwarder) exchangeTCP(ctx context.Context, u *upstream, b []byte, id uint16, q *query) (*mdns.Msg, error) {
	c, err := f.dialUpstream(ctx, "tcp", u)
	if err != nil {
		return nil, fmt.Errorf("tcp: %w", err)
	}
	defer c.Close()
	stop := deadlines(ctx, c)
	defer stop()
	out := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	copy(out[2:], b)
	if _, err := c.Write(out); err != nil {
		return nil, fmt.Errorf("tcp: %w", err)
	}
	var l [2]byte
	for {
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return nil, fmt.Errorf("tcp: %w", err)
		}
		p := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, p); err != nil {
			return nil, fmt.Errorf("tcp: %w", err)
		}
		m, tc, err := checkAnswer(p, id, q)
		switch {
		case errors.Is(err, errNotOurs):
			continue
		case tc && m != nil:
			// Truncated over TCP: take what came, without TC.
			m.Truncated = false
		case tc:
			return nil, errors.New("tcp: truncated answer")
		}
		return m, err
	}
}

// deadlines applies ctx's deadline to c and makes ctx's end unblock c's
// reads and writes. Call stop when done with c.
func deadlines(ctx context.Context, c net.Conn) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
}

var errNotOurs = errors.New("not the answer to our query")

// checkAnswer decodes p, an upstream's message for our query with ID id
// about q. errNotOurs: ignore it (another ID, not a response, another
// question). tc: the answer is truncated and should be asked over TCP (m
// may then be nil). Otherwise m is the answer, and err says why it is not
// usable: only NOERROR and NXDOMAIN are answers (RFC 2308 section 2.1
// makes NXDOMAIN and NODATA answers); SERVFAIL, REFUSED and the others
// send the query to the next upstream.
func checkAnswer(p []byte, id uint16, q *query) (m *mdns.Msg, tc bool, err error) {
	if len(p) < 12 || binary.BigEndian.Uint16(p) != id || p[2]&flagQR == 0 {
		return nil, false, errNotOurs
	}
	m = new(mdns.Msg)
	if err := m.Unpack(p); err != nil {
		if p[2]&flagTC != 0 {
			// Cut mid-record: the question is checked over TCP.
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("malformed answer: %w", err)
	}
	if len(m.Question) != 1 {
		if len(m.Question) == 0 && m.Rcode != mdns.RcodeSuccess {
			// Errors may come without the question (RFC 1035 section
			// 4.1.1 does not require it).
			return nil, false, fmt.Errorf("upstream answered %s", rcodeName(m.Rcode))
		}
		return nil, false, errNotOurs
	}
	aq := m.Question[0]
	if aq.Qtype != q.question.Qtype || aq.Qclass != q.question.Qclass || !strings.EqualFold(aq.Name, q.question.Name) {
		return nil, false, errNotOurs
	}
	if m.Opcode != mdns.OpcodeQuery {
		return nil, false, errors.New("answer with another opcode")
	}
	if m.Rcode != mdns.RcodeSuccess && m.Rcode != mdns.RcodeNameError {
		return nil, false, fmt.Errorf("upstream answered %s", rcodeName(m.Rcode))
	}
	return m, m.Truncated, nil
}

func rcodeName(rc int) string {
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", rc)
}
