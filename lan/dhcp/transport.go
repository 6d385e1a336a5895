package dhcp

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
)

// errNoHW is returned by transport.sendHW when the interface cannot send
// link-layer unicast (no AF_PACKET socket, or no 6-byte link address); the
// caller broadcasts instead.
var errNoHW = errors.New("dhcp: no link-layer unicast on this interface")

// transport is the server's sockets on one interface. readFrom is called
// from one goroutine; close may be called concurrently with it and makes it
// return net.ErrClosed; the send methods are called from the reading
// goroutine only.
type transport interface {
	// readFrom reads one message received on the server port into b.
	readFrom(b []byte) (int, error)
	// sendUDP sends payload from the server port to dst.
	sendUDP(payload []byte, dst netip.AddrPort) error
	// sendHW sends payload as an IPv4/UDP datagram src:67 → dst:68 in a
	// frame addressed to hw, bypassing ARP (dst is not configured on the
	// client yet, so it would not answer an ARP request for it).
	sendHW(payload []byte, hw net.HardwareAddr, src, dst netip.Addr) error
	// close releases the sockets. Idempotent.
	close() error
}

// ipv4UDPHeaderLen is the length of the IPv4 header (no options) plus the
// UDP header that buildIPv4UDP prepends.
const ipv4UDPHeaderLen = 20 + 8

// buildIPv4UDP appends to dst an IPv4 datagram carrying payload in UDP from
// src:sport to daddr:dport, with valid IP and UDP checksums (udhcpc and
// other raw-socket clients verify both).
func buildIPv4UDP(dst []byte, src, daddr netip.Addr, sport, dport uint16, payload []byte) []byte {
	total := ipv4UDPHeaderLen + len(payload)
	start := len(dst)
	dst = append(dst, make([]byte, ipv4UDPHeaderLen)...)
	dst = append(dst, payload...)
	ip := dst[start : start+20]
	ip[0] = 0x45 // version 4, IHL 5
	ip[1] = 0x10 // TOS: low delay, as ISC dhcpd and dnsmasq
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	ip[8] = 64 // TTL
	ip[9] = 17 // UDP
	s4, d4 := src.As4(), daddr.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ^checksum(0, ip))
	udp := dst[start+20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	// Pseudo-header: addresses, protocol, UDP length.
	sum := checksum(0, ip[12:20])
	sum = checksum(sum, []byte{0, 17, udp[4], udp[5]})
	c := ^checksum(sum, udp)
	if c == 0 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return dst
}

// checksum adds b to the ones'-complement sum initial (RFC 1071). Every
// call but the last must pass an even number of bytes.
func checksum(initial uint16, b []byte) uint16 {
	sum := uint32(initial)
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
