// Package bench holds wanflow's end-to-end tests and benchmarks: they build
// the network-namespace lab (bench/lab), run the real daemon in its router
// namespace (bench/labrouter) and send real TCP, UDP and ICMP traffic
// through it from the LAN hosts to the internet namespace's servers.
//
// The tests need root; they skip with a reason otherwise. Every namespace
// and process they create is removed when they end, also when they fail.
package bench
