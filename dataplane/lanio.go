package dataplane

// LANIO is the LAN side of the dataplane: the TUN device the kernel steers
// LAN traffic into. NewTUNIO wraps a real TUN device; dptest.TUN fakes one.
//
// Every packet travels with a virtio-net header (packet.VirtioNetHdr) in the
// packet.VirtioNetHdrLen bytes in front of it: all zeroes for a plain packet,
// or the GSO metadata of a TCP super-packet, whose checksum field then holds
// the partial (pseudo-header) sum. Read is called by one goroutine; Write by
// several concurrently.
type LANIO interface {
	// Read reads at least one packet into bufs[i][offset:] with its header in
	// front, and sets sizes[i] to each packet's IPv4 length. Packets whose
	// checksum was left to offload are completed, so a packet with a
	// non-zero header is always a super-packet.
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	// Write writes the packets bufs[i][offset:], each with its header in
	// front, in order.
	Write(bufs [][]byte, offset int) (int, error)
	// BatchSize is the most packets one Read returns.
	BatchSize() int
	// Close closes the device; a blocked Read returns an error.
	Close() error
}

// isPlain reports whether the virtio-net header h asks for nothing: no
// checksum to complete, no segmentation.
func isPlain(h []byte) bool {
	return h[0]|h[1] == 0
}
