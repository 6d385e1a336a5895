// Package dns is wanflow's caching DNS forwarder for the LAN: it answers
// LAN clients over UDP and TCP from its cache, from the DHCP server's client
// names, or by forwarding to the DNS servers of the uplinks that are up,
// each queried through its own uplink.
//
// # Forwarding
//
// SetUpstreams gives the servers in order of preference. A query goes to
// the first; if that one fails (network error, SERVFAIL, REFUSED, a
// malformed answer) the next one is asked at once, and if it merely has not
// answered within HedgeAfter the next one is asked too, the earlier ones
// still being waited for; the first good answer wins, all within Timeout.
// NXDOMAIN and NODATA are answers. Every upstream socket is a new one,
// bound to the upstream's device (SO_BINDTODEVICE) and its uplink's address,
// so the router's rule "from <uplink addr> lookup <uplink table>" routes it
// through that uplink and no other; a new socket per query also gives each
// query a random source port, and answers must match the random ID and the
// question (RFC 5452). A truncated UDP answer is asked again over TCP to
// the same upstream. Identical queries in flight share one upstream query.
//
// An upstream that failed or was hedged past twice in a row is benched: it
// is asked after the others for 5 s, doubling with each further miss up to
// 60 s, then first again; its first answer ends the bench. A silent ISP
// resolver behind a live uplink so costs one HedgeAfter wait per bench
// period instead of one per query.
//
// Queries go upstream with RD, AD, the client's CD and DO bits and our
// EDNS(0) payload size UDPSize; the client's EDNS options are not
// forwarded. Answers keep the upstream's AD bit for clients that set AD or
// DO (RFC 6840 section 5.8), and carry our OPT record if the query had one.
// UDP answers fit the client's advertised size (512 without EDNS):
// records that do not fit are left out and TC is set.
//
// # Cache
//
// Whole answers are cached, keyed by question name (case-insensitive),
// type, class and the query's DO and CD bits; records are never taken out
// of one answer to build another, so an upstream's answer can only affect
// the question it answers. TTLs are capped at MaxCacheTTL and answers kept
// at least MinCacheTTL; TTLs given to clients count down with the entry's
// age and never go below 0. NXDOMAIN and NODATA answers are cached for
// their SOA's negative TTL (RFC 2308), at most MaxNegativeTTL, and not at
// all without SOA. When every upstream fails or there is none, an entry up
// to ServeStale past its expiry is served with TTL StaleTTL (RFC 8767).
// The cache holds at most CacheSize entries (LRU).
//
// # Local names and access
//
// "host.<Domain>" and bare "host" are answered from Config.Local (A
// records, TTL LocalTTL); the forwarder is authoritative for Domain, whose
// names never go upstream. Only clients in AllowedNets are answered; only
// the Listen addresses are bound. Each client IP has a token bucket of
// RatePerClient queries per second. Malformed queries are answered FORMERR
// (or dropped when not even the header is readable), never forwarded, and
// counted.
//
// # Invariants
//
// Everything is bounded: the cache (CacheSize), the queries being
// forwarded (MaxInFlight), the TCP connections (MaxTCPConns, each closed
// after TCPIdleTimeout idle), the clients tracked by the rate limiter, and
// each query's time (Timeout).
//
// Concurrency: a Forwarder is safe for concurrent use: SetUpstreams,
// Reconfigure and Stats may be called from any goroutine while Serve runs
// (each query reads one snapshot of the live settings). Serve owns every
// goroutine the Forwarder starts — routineUDP (a few per UDP socket),
// routineTCPAccept (one per TCP listener), routineTCPConn (one per client
// connection), routineQuery (one per forwarded UDP query) and
// routineAttempt (one per upstream query) — and waits for all of them
// before it returns; at most one Serve runs at a time.
//
// Device binding and Config.NetNS are Linux-only; elsewhere an upstream
// with an Interface and a NetNS fail with a "not supported" error.
package dns
