package dns

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// query is what the forwarder keeps of a client's query: no reference to
// the packet it came in.
type query struct {
	client   netip.AddrPort
	tcp      bool
	id       uint16
	opcode   int
	rd, cd   bool
	ad       bool // AD set in the query (RFC 6840 section 5.7)
	edns, do bool
	question mdns.Question
	// size is the largest answer the client takes: 65535 over TCP, else
	// its EDNS(0) payload size, at least 512 (RFC 6891 section 6.2.5).
	size int
	key  cacheKey
}

// handle answers the query raw from client and returns the answer, or nil
// to send nothing. It blocks while the query is forwarded (at most
// Config.Timeout). tcp reports the transport: it sets the answer's size
// limit and what happens to a client over its rate.
func (f *Forwarder) handle(ctx context.Context, client netip.AddrPort, tcp bool, raw []byte) []byte {
	q, resp, done := f.prepare(client, tcp, raw)
	if done {
		return resp
	}
	return f.forward(ctx, &q)
}

// prepare does everything that needs no upstream: access control, rate
// limit, parsing, local names and the cache. done reports that resp (nil:
// nothing) is the answer; otherwise q must be forwarded.
func (f *Forwarder) prepare(client netip.AddrPort, tcp bool, raw []byte) (q query, resp []byte, done bool) {
	now := f.now()
	s := f.live.Load()
	if !s.allowed(client.Addr()) {
		f.stats.refused.Add(1)
		if tcp || !f.refused.allow(now) {
			return q, nil, true
		}
		q, resp, ok := f.parse(client, tcp, raw)
		if ok {
			resp = q.errorReply(mdns.RcodeRefused)
		}
		return q, resp, true
	}
	if s.rl != nil && !s.rl.allow(client.Addr(), now) {
		f.stats.rateLimited.Add(1)
		if !tcp {
			return q, nil, true
		}
		if q, _, ok := f.parse(client, tcp, raw); ok {
			return q, q.errorReply(mdns.RcodeRefused), true
		}
		return q, nil, true
	}
	q, resp, ok := f.parse(client, tcp, raw)
	if !ok {
		f.stats.bad.Add(1)
		return q, resp, true
	}
	f.stats.queries.Add(1)
	if resp, ok := answerLocal(s, &q); ok {
		f.stats.local.Add(1)
		return q, resp, true
	}
	if e := f.cache.get(q.key, now); e != nil && now.Before(e.expires) {
		if resp := e.reply(&q, now, false); resp != nil {
			f.stats.hits.Add(1)
			return q, resp, true
		}
	}
	return q, nil, false
}

// parse decodes a query. ok false means it is malformed or unsupported and
// resp (possibly nil: drop) is the answer.
func (f *Forwarder) parse(client netip.AddrPort, tcp bool, raw []byte) (q query, resp []byte, ok bool) {
	// Anything shorter than a header, or a response, is not answered:
	// answering responses could loop between two servers.
	if len(raw) < 12 || raw[2]&flagQR != 0 {
		return q, nil, false
	}
	q = query{
		client: client,
		tcp:    tcp,
		id:     binary.BigEndian.Uint16(raw),
		opcode: int(raw[2]>>3) & 0xF,
		rd:     raw[2]&flagRD != 0,
		cd:     raw[3]&flagCD != 0,
		ad:     raw[3]&flagAD != 0,
		size:   mdns.MinMsgSize,
	}
	if tcp {
		q.size = mdns.MaxMsgSize
	}
	var m mdns.Msg
	if err := m.Unpack(raw); err != nil {
		return q, q.errorReply(mdns.RcodeFormatError), false
	}
	if len(m.Question) == 1 {
		q.question = m.Question[0]
	}
	nopt := 0
	for _, rr := range m.Extra {
		if opt, isOPT := rr.(*mdns.OPT); isOPT {
			nopt++
			q.edns = true
			q.do = opt.Do()
			if !tcp {
				q.size = max(int(opt.UDPSize()), mdns.MinMsgSize)
			}
			if opt.Version() != 0 {
				// RFC 6891 section 6.1.3.
				return q, q.errorReply(mdns.RcodeBadVers), false
			}
		}
	}
	switch {
	case q.opcode != mdns.OpcodeQuery:
		return q, q.errorReply(mdns.RcodeNotImplemented), false
	case len(m.Question) != 1 || nopt > 1:
		// RFC 6891 section 6.1.1: more than one OPT is FORMERR.
		return q, q.errorReply(mdns.RcodeFormatError), false
	}
	switch q.question.Qtype {
	case mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeTKEY, mdns.TypeAXFR, mdns.TypeIXFR, mdns.TypeMAILA, mdns.TypeMAILB:
		return q, q.errorReply(mdns.RcodeNotImplemented), false
	}
	q.key = cacheKey{
		name:   strings.ToLower(q.question.Name),
		qtype:  q.question.Qtype,
		qclass: q.question.Qclass,
		do:     q.do,
		cd:     q.cd,
	}
	return q, nil, true
}

// errorReply returns the answer to q with rcode and no records. Nil if it
// cannot be built.
func (q *query) errorReply(rcode int) []byte {
	m := q.replyMsg()
	m.Rcode = rcode
	m.RecursionAvailable = true
	return q.pack(m)
}

// replyMsg returns an empty answer to q: its ID, opcode, RD, CD and
// question.
func (q *query) replyMsg() *mdns.Msg {
	m := new(mdns.Msg)
	m.Id = q.id
	m.Response = true
	m.Opcode = q.opcode
	m.RecursionDesired = q.rd
	m.CheckingDisabled = q.cd
	if q.question.Name != "" {
		m.Question = []mdns.Question{q.question}
	}
	return m
}

// pack adds our OPT record if q had one, packs m and fits it into q's size.
func (q *query) pack(m *mdns.Msg) []byte {
	if q.edns {
		m.SetEdns0(UDPSize, q.do)
	} else if m.Rcode > 0xF {
		m.Rcode = mdns.RcodeFormatError
	}
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		// A question name that unpacked but does not pack: answer with the
		// header alone.
		m.Question = nil
		if b, err = m.Pack(); err != nil {
			return nil
		}
	}
	if len(b) > q.size {
		return truncate(b, q.size)
	}
	return b
}

// forward answers q from the upstreams, else from a stale cache entry,
// else with SERVFAIL.
func (f *Forwarder) forward(ctx context.Context, q *query) []byte {
	f.stats.misses.Add(1)
	e, err := f.lookup(ctx, q)
	now := f.now()
	serveStale := f.live.Load().ServeStale
	if err == nil {
		if resp := e.reply(q, now, false); resp != nil {
			return resp
		}
	} else {
		f.cfg.Logger.Debug("dns: no upstream answer", "name", q.question.Name,
			"type", mdns.Type(q.question.Qtype), "error", err)
	}
	// An entry keeps the serve-stale window it was cached with; a
	// ServeStale reconfigured shorter applies to it too.
	if e := f.cache.get(q.key, now); e != nil && now.Before(e.expires.Add(serveStale)) {
		stale := !now.Before(e.expires)
		if resp := e.reply(q, now, stale); resp != nil {
			if stale {
				f.stats.stale.Add(1)
			}
			return resp
		}
	}
	f.stats.servfail.Add(1)
	return q.errorReply(mdns.RcodeServerFailure)
}

// flight is one upstream resolution that identical queries wait for.
type flight struct {
	done chan struct{} // closed when e and err are set
	e    *entry
	err  error
}

// lookup resolves q through the upstreams, sharing one resolution between
// identical queries in flight.
func (f *Forwarder) lookup(ctx context.Context, q *query) (*entry, error) {
	f.flightMu.Lock()
	if fl := f.flights[q.key]; fl != nil {
		f.flightMu.Unlock()
		f.stats.coalesced.Add(1)
		select {
		case <-fl.done:
			return fl.e, fl.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	fl := &flight{done: make(chan struct{})}
	f.flights[q.key] = fl
	f.flightMu.Unlock()
	fl.e, fl.err = f.resolve(ctx, q)
	f.flightMu.Lock()
	delete(f.flights, q.key)
	f.flightMu.Unlock()
	close(fl.done)
	return fl.e, fl.err
}

// answerLocal answers q from the Local and Domain of s. ok false means q is
// not a local name and goes upstream.
//
// Names under Domain are answered here only, never forwarded (the
// forwarder is authoritative for them): a known host's A record, NODATA for
// its other types, NXDOMAIN for unknown names, each with the domain's SOA
// so clients cache the negative answer (RFC 2308 section 3). A bare
// single-label name is answered the same way when Local knows it, and
// forwarded otherwise (it may be a top-level domain).
func answerLocal(s *settings, q *query) ([]byte, bool) {
	if q.question.Qclass != mdns.ClassINET && q.question.Qclass != mdns.ClassANY {
		return nil, false
	}
	name := strings.TrimSuffix(q.key.name, ".")
	d := s.Domain
	var host string
	auth := false
	switch {
	case d != "" && name == d:
		auth = true
	case d != "" && strings.HasSuffix(name, "."+d):
		auth = true
		host = name[:len(name)-len(d)-1]
		if strings.Contains(host, ".") {
			host = ""
		}
	case name != "" && !strings.Contains(name, "."):
		host = name
	default:
		return nil, false
	}
	var addr netip.Addr
	found := false
	if host != "" && s.Local != nil {
		addr, found = s.Local(host)
		addr = addr.Unmap()
		found = found && addr.Is4()
	}
	if !auth && !found {
		return nil, false
	}
	m := q.replyMsg()
	m.Authoritative = true
	m.RecursionAvailable = true
	switch {
	case found && (q.question.Qtype == mdns.TypeA || q.question.Qtype == mdns.TypeANY):
		m.Answer = []mdns.RR{&mdns.A{
			Hdr: mdns.RR_Header{Name: q.question.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: LocalTTL},
			A:   addr.AsSlice(),
		}}
	case auth && name == d && q.question.Qtype == mdns.TypeSOA:
		m.Answer = []mdns.RR{localSOA(d)}
	case found || (auth && name == d):
		// NODATA.
	default:
		m.Rcode = mdns.RcodeNameError
	}
	if auth && len(m.Answer) == 0 {
		m.Ns = []mdns.RR{localSOA(d)}
	}
	return q.pack(m), true
}

// localSOA returns the SOA record of the local domain, whose MINIMUM is the
// negative TTL of its names.
func localSOA(domain string) *mdns.SOA {
	d := domain + "."
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: d, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: LocalTTL},
		Ns:      d,
		Mbox:    "hostmaster." + d,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  LocalTTL,
	}
}
