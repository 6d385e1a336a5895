package packet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// VirtioNetHdrLen is the size of struct virtio_net_hdr (linux/virtio_net.h),
// which precedes each packet on a TUN with IFF_VNET_HDR or a packet socket
// with PACKET_VNET_HDR.
const VirtioNetHdrLen = 10

// VirtioNetHdr flags and GSO types (linux/virtio_net.h).
const (
	// VirtioNetHdrFNeedsCsum says the L4 checksum is partial
	// (CHECKSUM_PARTIAL): the field at CsumStart+CsumOffset holds only the
	// folded pseudo-header sum.
	VirtioNetHdrFNeedsCsum = 1
	// VirtioNetHdrFDataValid says the checksum was verified (receive only).
	VirtioNetHdrFDataValid = 2

	// VirtioNetHdrGSONone is a packet that needs no segmentation.
	VirtioNetHdrGSONone = 0
	// VirtioNetHdrGSOTCPv4 is a TCP over IPv4 super-packet (TSO/GRO).
	VirtioNetHdrGSOTCPv4 = 1
	// VirtioNetHdrGSOUDP is UFO (IP fragmentation offload); not supported.
	VirtioNetHdrGSOUDP = 3
	// VirtioNetHdrGSOTCPv6 is a TCP over IPv6 super-packet; not supported.
	VirtioNetHdrGSOTCPv6 = 4
	// VirtioNetHdrGSOUDPL4 is a UDP super-packet split into datagrams of
	// GSOSize payload bytes (UDP_SEGMENT / UDP GRO).
	VirtioNetHdrGSOUDPL4 = 5
	// VirtioNetHdrGSOECN is or'ed into GSOType when the TCP super-packet has
	// CWR set (RFC 3168): only the first segment keeps it.
	VirtioNetHdrGSOECN = 0x80
)

// VirtioNetHdr is struct virtio_net_hdr. Its 16-bit fields are in host byte
// order: the legacy (pre-1.0) layout that TUN and packet sockets use unless
// TUNSETVNETLE/BE says otherwise.
type VirtioNetHdr struct {
	// Flags holds VirtioNetHdrF* bits.
	Flags uint8
	// GSOType is a VirtioNetHdrGSO* value, possibly with VirtioNetHdrGSOECN.
	GSOType uint8
	// HdrLen is the length of the headers to replicate (a hint; GSOSplit
	// recomputes it).
	HdrLen uint16
	// GSOSize is the payload size of each segment (the MSS for TCP).
	GSOSize uint16
	// CsumStart is where checksumming starts (the L4 header).
	CsumStart uint16
	// CsumOffset is the checksum field's offset from CsumStart.
	CsumOffset uint16
}

// Decode fills h from the first VirtioNetHdrLen bytes of b and reports
// whether b was long enough.
func (h *VirtioNetHdr) Decode(b []byte) bool {
	if len(b) < VirtioNetHdrLen {
		return false
	}
	h.Flags, h.GSOType = b[0], b[1]
	h.HdrLen = binary.NativeEndian.Uint16(b[2:])
	h.GSOSize = binary.NativeEndian.Uint16(b[4:])
	h.CsumStart = binary.NativeEndian.Uint16(b[6:])
	h.CsumOffset = binary.NativeEndian.Uint16(b[8:])
	return true
}

// Encode writes h into the first VirtioNetHdrLen bytes of b and reports
// whether b was long enough.
func (h *VirtioNetHdr) Encode(b []byte) bool {
	if len(b) < VirtioNetHdrLen {
		return false
	}
	b[0], b[1] = h.Flags, h.GSOType
	binary.NativeEndian.PutUint16(b[2:], h.HdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.GSOSize)
	binary.NativeEndian.PutUint16(b[6:], h.CsumStart)
	binary.NativeEndian.PutUint16(b[8:], h.CsumOffset)
	return true
}

// GSOSplit turns the IPv4 packet in, received with virtio-net header h, into
// ordinary packets with complete checksums: segment i is written to
// out[i][offset:] and its length to sizes[i], and n is the segment count.
//
//   - VirtioNetHdrGSOTCPv4: TCP segments of at most h.GSOSize payload bytes,
//     as the kernel's tcp_gso_segment makes them: IP ID incremented per
//     segment, total length set, sequence numbers advanced, FIN and PSH only
//     on the last segment and CWR only on the first.
//   - VirtioNetHdrGSOUDPL4: UDP datagrams of at most h.GSOSize payload bytes
//     each, with their own length.
//   - VirtioNetHdrGSONone: one packet, copied; with NEEDS_CSUM its checksum
//     is completed.
//
// Every segment of a GSO type gets its IP header checksum and its full L4
// checksum computed from scratch, from the addresses and ports currently in
// `in`; the checksum fields of in (partial, stale, or garbled by an earlier
// Rewrite) are ignored. A GSONone packet keeps its IP header as is, and with
// NEEDS_CSUM its TCP/UDP checksum is likewise computed from scratch (other
// protocols are completed from the partial sum in their checksum field, so
// they must not be rewritten before). That is what lets callers NAT a
// super-packet before splitting it (see the package documentation). Header
// lengths are taken from the packet, not from h.HdrLen/h.CsumStart, which
// are only hints.
//
// ok is false, with the output unusable, when in is not a well-formed IPv4
// TCP/UDP packet matching h.GSOType, for GSO types other than the above
// (UFO, IPv6), for a zero h.GSOSize, or when out, sizes or a buffer is too
// small. A total length of 0 on a TCP super-packet is taken as len(in) (BIG
// TCP; Decode rejects such a packet, so split it before decoding). GSOSplit
// does not retain in or out and does not modify in.
func GSOSplit(in []byte, h VirtioNetHdr, out [][]byte, sizes []int, offset int) (n int, ok bool) {
	if len(in) < ipv4MinHeaderLen || in[0]>>4 != 4 || offset < 0 {
		return 0, false
	}
	ihl := int(in[0]&0x0f) * 4
	tl := int(binary.BigEndian.Uint16(in[2:]))
	gso := h.GSOType &^ VirtioNetHdrGSOECN
	if tl == 0 && gso == VirtioNetHdrGSOTCPv4 {
		tl = len(in)
	}
	if ihl < ipv4MinHeaderLen || tl < ihl || tl > len(in) {
		return 0, false
	}
	in = in[:tl]
	proto := in[9]
	fragment := binary.BigEndian.Uint16(in[ipFlagsOff:])&(flagMF|fragOffMask) != 0

	var l4Len int // length of the replicated L4 header
	switch gso {
	case VirtioNetHdrGSONone:
		if len(out) < 1 || len(sizes) < 1 || len(out[0]) < offset+tl {
			return 0, false
		}
		o := out[0][offset : offset+tl]
		copy(o, in)
		if h.Flags&VirtioNetHdrFNeedsCsum != 0 && !completeChecksum(o, ihl, proto, fragment, h) {
			return 0, false
		}
		sizes[0] = tl
		return 1, true
	case VirtioNetHdrGSOTCPv4:
		if proto != protoTCP || tl < ihl+tcpMinHeaderLen {
			return 0, false
		}
		l4Len = int(in[ihl+12]>>4) * 4
		if l4Len < tcpMinHeaderLen || ihl+l4Len > tl {
			return 0, false
		}
	case VirtioNetHdrGSOUDPL4:
		if proto != protoUDP || tl < ihl+udpHeaderLen {
			return 0, false
		}
		l4Len = udpHeaderLen
	default:
		return 0, false
	}
	if fragment || h.GSOSize == 0 {
		return 0, false
	}
	hdrLen := ihl + l4Len
	payload := in[hdrLen:]
	seg := int(h.GSOSize)
	nseg := max(1, (len(payload)+seg-1)/seg)
	if nseg > len(out) || nseg > len(sizes) || hdrLen+min(seg, len(payload)) > 0xffff {
		return 0, false
	}
	var src, dst [4]byte
	copy(src[:], in[ipSrcOff:])
	copy(dst[:], in[ipDstOff:])
	id := binary.BigEndian.Uint16(in[4:])
	var seq uint32
	if proto == protoTCP {
		seq = binary.BigEndian.Uint32(in[ihl+tcpSeqOff:])
	}
	for i := 0; i < nseg; i++ {
		ps := i * seg
		pe := min(ps+seg, len(payload))
		size := hdrLen + pe - ps
		if len(out[i]) < offset+size {
			return i, false
		}
		o := out[i][offset : offset+size]
		copy(o, in[:hdrLen])
		copy(o[hdrLen:], payload[ps:pe])
		binary.BigEndian.PutUint16(o[2:], uint16(size))
		binary.BigEndian.PutUint16(o[4:], id+uint16(i))
		o[ipCsumOff], o[ipCsumOff+1] = 0, 0
		binary.BigEndian.PutUint16(o[ipCsumOff:], ^headerSum(o[:ihl]))
		l4 := o[ihl:]
		if proto == protoTCP {
			binary.BigEndian.PutUint32(l4[tcpSeqOff:], seq+uint32(ps))
			if i > 0 {
				l4[tcpFlagsOff] &^= TCPFlagCWR
			}
			if i < nseg-1 {
				l4[tcpFlagsOff] &^= TCPFlagFIN | TCPFlagPSH
			}
			putL4Checksum(l4, tcpCsumOff, protoTCP, src, dst)
		} else {
			binary.BigEndian.PutUint16(l4[udpLenOff:], uint16(len(l4)))
			putL4Checksum(l4, udpCsumOff, protoUDP, src, dst)
		}
		sizes[i] = size
	}
	return nseg, true
}

// putL4Checksum computes the TCP/UDP checksum of l4 from scratch and stores
// it at l4[off:] (a computed zero is stored as all ones, RFC 768).
func putL4Checksum(l4 []byte, off int, proto uint8, src, dst [4]byte) {
	l4[off], l4[off+1] = 0, 0
	c := ^checksum.Checksum(l4, PseudoHeaderSum(proto, src, dst, uint16(len(l4))))
	if c == 0 && proto == protoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

// completeChecksum finishes the partial checksum of a non-GSO packet o. TCP
// and UDP (unfragmented) are recomputed from scratch; anything else uses the
// generic virtio rule: checksum from CsumStart to the end, seeded with the
// partial sum stored at CsumStart+CsumOffset.
func completeChecksum(o []byte, ihl int, proto uint8, fragment bool, h VirtioNetHdr) bool {
	var src, dst [4]byte
	copy(src[:], o[ipSrcOff:])
	copy(dst[:], o[ipDstOff:])
	l4 := o[ihl:]
	switch {
	case fragment:
	case proto == protoTCP && len(l4) >= tcpMinHeaderLen:
		putL4Checksum(l4, tcpCsumOff, protoTCP, src, dst)
		return true
	case proto == protoUDP && len(l4) >= udpHeaderLen:
		putL4Checksum(l4, udpCsumOff, protoUDP, src, dst)
		return true
	}
	cs, at := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
	if cs < ihl || at+2 > len(o) {
		return false
	}
	initial := binary.BigEndian.Uint16(o[at:])
	o[at], o[at+1] = 0, 0
	binary.BigEndian.PutUint16(o[at:], ^checksum.Checksum(o[cs:], initial))
	return true
}
