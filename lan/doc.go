// Package lan groups what wanflow runs on the LAN side of the router:
// steering of LAN traffic into the TUN device (lan/steer), the DHCP server and
// the caching DNS forwarder.
//
// Package lan itself holds no code; each service lives in its own
// subpackage and documents its own invariants.
package lan
