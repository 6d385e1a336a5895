// Package dptest provides in-memory fakes of the dataplane's I/O — a TUN
// device and an uplink — so the packet path can be tested without root,
// the way wireguard-go's tun/tuntest fakes its TUN device.
//
// Both fakes are safe for concurrent use: one goroutine reads (the engine),
// others inject and collect.
package dptest
