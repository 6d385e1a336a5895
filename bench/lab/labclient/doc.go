// Package labclient drives traffic from a lab namespace (usually a LAN host)
// to the lab's echo servers: many TCP and UDP flows, each on its own socket,
// reporting per flow which source address and port the server saw, so tests
// can tell which uplink (and NAT port) carried each flow; plus an ICMP echo
// helper.
//
// Sockets are created on a few OS threads pinned inside the namespace
// (lab.Runner) and then used from ordinary goroutines. Run starts at most
// Config.Concurrency flow goroutines and waits for all of them before it
// returns; nothing outlives a call. Every function is safe for concurrent use.
package labclient
