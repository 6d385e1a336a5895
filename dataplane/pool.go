package dataplane

import (
	"context"
	"sync/atomic"
)

// packetVirtioLen is packet.VirtioNetHdrLen.
const packetVirtioLen = 10

const (
	// headroom is the space left in front of every packet in a buffer: the
	// tun package writes the virtio-net header there, and uplink sockets
	// receive theirs there.
	headroom = 32
	// bufSize holds the largest IPv4 datagram (a reassembled one or a GRO
	// super-packet) after the headroom.
	bufSize = headroom + 65535
	// batchSize is the most packets one batch carries between a reader and a
	// worker, and the most one read or write call moves.
	batchSize = 128
)

// bufPool is a bounded pool of packet buffers. Buffers are allocated lazily
// up to max; after warm-up Get and Put never allocate. It is safe for
// concurrent use.
type bufPool struct {
	free  chan []byte
	made  atomic.Int64
	max   int64
	empty atomic.Uint64 // Get found no buffer
}

func newBufPool(max int) *bufPool {
	return &bufPool{free: make(chan []byte, max), max: int64(max)}
}

// Get returns a buffer of len bufSize, or nil if all max buffers are in use.
func (p *bufPool) Get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
	}
	if p.made.Add(1) <= p.max {
		return make([]byte, bufSize)
	}
	p.made.Add(-1)
	p.empty.Add(1)
	return nil
}

// GetWait is Get that waits for a buffer to come back instead of failing;
// readers use it so that a full dataplane pushes back on the kernel's
// queues. It returns nil only when ctx is done.
func (p *bufPool) GetWait(ctx context.Context) []byte {
	if b := p.Get(); b != nil {
		return b
	}
	select {
	case b := <-p.free:
		return b
	case <-ctx.Done():
		return nil
	}
}

// Put returns b to the pool. b must have come from Get.
func (p *bufPool) Put(b []byte) {
	if b == nil {
		return
	}
	select {
	case p.free <- b[:bufSize]:
	default:
		// Cannot happen: the channel holds max buffers.
		p.made.Add(-1)
	}
}

// batch carries up to batchSize packets from a reader to a worker. The
// worker owns it (and its buffers) once received.
type batch struct {
	n      int
	uplink int // index of the uplink the packets came from; -1: from the TUN device
	bufs   [batchSize][]byte
	sizes  [batchSize]int
}

// batchPool is a bounded pool of batches; safe for concurrent use.
type batchPool struct {
	free chan *batch
	made atomic.Int64
	max  int64
}

func newBatchPool(max int) *batchPool {
	return &batchPool{free: make(chan *batch, max), max: int64(max)}
}

func (p *batchPool) Get() *batch {
	select {
	case b := <-p.free:
		return b
	default:
	}
	if p.made.Add(1) <= p.max {
		return new(batch)
	}
	p.made.Add(-1)
	return nil
}

func (p *batchPool) Put(b *batch) {
	b.n = 0
	select {
	case p.free <- b:
	default:
		p.made.Add(-1)
	}
}
