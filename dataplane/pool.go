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

// allocated returns the number of buffers the pool has made and not
// released: the packet buffers' share of the process's memory is about
// allocated × bufSize.
func (p *bufPool) allocated() int64 { return p.made.Load() }

// release drops up to n free buffers from the pool (the garbage collector
// frees them) and returns how many it dropped. Get makes new ones again
// when they are needed.
func (p *bufPool) release(n int) int {
	k := 0
	for k < n {
		select {
		case <-p.free:
			k++
		default:
			p.made.Add(-int64(k))
			return k
		}
	}
	p.made.Add(-int64(k))
	return k
}

// trimmer shrinks a bufPool back after a burst: every sample it records the
// fewest free buffers seen, and at the end of each window it releases
// those that stayed free all window long, keeping floor of them. A burst
// (bulk TCP through GRO super-packets takes thousands of 64 KiB buffers)
// thus costs memory only while it lasts, plus one window. Not safe for
// concurrent use: one goroutine calls sample.
type trimmer struct {
	pool    *bufPool
	floor   int // free buffers always kept
	samples int // samples per window
	n       int // samples so far in this window
	low     int // fewest free buffers seen in this window
}

func newTrimmer(p *bufPool, floor, samples int) *trimmer {
	return &trimmer{pool: p, floor: floor, samples: max(samples, 1), low: len(p.free)}
}

// sample records the pool's free buffers; at the end of a window it
// releases the surplus and returns how many buffers it released.
func (t *trimmer) sample() int {
	t.low = min(t.low, len(t.pool.free))
	t.n++
	if t.n < t.samples {
		return 0
	}
	released := 0
	if surplus := t.low - t.floor; surplus > 0 {
		released = t.pool.release(surplus)
	}
	t.n, t.low = 0, len(t.pool.free)
	return released
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
