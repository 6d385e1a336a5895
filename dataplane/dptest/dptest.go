package dptest

import (
	"errors"
	"os"
	"sync"
	"time"
)

// queueLen bounds each fake's queues; what overflows is dropped, as a real
// device would.
const queueLen = 4096

// TUN is a fake dataplane.LANIO (a TUN device without offloads). Inject plays the kernel handing the dataplane a
// LAN packet; what the dataplane writes arrives on Out.
type TUN struct {
	in     chan []byte
	Out    chan []byte
	once   sync.Once
	closed chan struct{}
}

// NewTUN returns a fake TUN device.
func NewTUN() *TUN {
	return &TUN{
		in:     make(chan []byte, queueLen),
		Out:    make(chan []byte, queueLen),
		closed: make(chan struct{}),
	}
}

// Inject queues a copy of pkt to be read by the dataplane.
func (t *TUN) Inject(pkt []byte) {
	select {
	case t.in <- append([]byte(nil), pkt...):
	case <-t.closed:
	}
}

// Read implements dataplane.LANIO: one plain packet per call.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-t.in:
		clear(bufs[0][offset-10 : offset])
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-t.closed:
		return 0, os.ErrClosed
	}
}

// Write implements dataplane.LANIO: each packet is copied to Out.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		select {
		case t.Out <- append([]byte(nil), b[offset:]...):
		case <-t.closed:
			return i, os.ErrClosed
		default:
			return i, errors.New("dptest: TUN output queue full")
		}
	}
	return len(bufs), nil
}

// Close implements dataplane.LANIO.
func (t *TUN) Close() error {
	t.once.Do(func() { close(t.closed) })
	return nil
}

// BatchSize implements dataplane.LANIO.
func (t *TUN) BatchSize() int { return 1 }

// Uplink is a fake dataplane.UplinkIO. Inject plays a reply arriving from
// the internet; what the dataplane sends arrives on Out.
type Uplink struct {
	in     chan []byte
	Out    chan []byte
	once   sync.Once
	closed chan struct{}
	// Hdr is the virtio-net header given to every injected packet (zero:
	// nothing to do).
	Hdr [10]byte
}

// NewUplink returns a fake uplink.
func NewUplink() *Uplink {
	return &Uplink{in: make(chan []byte, queueLen), Out: make(chan []byte, queueLen), closed: make(chan struct{})}
}

// Inject queues a copy of pkt as received on the uplink.
func (u *Uplink) Inject(pkt []byte) {
	select {
	case u.in <- append([]byte(nil), pkt...):
	case <-u.closed:
	}
}

// ReadBatch implements dataplane.UplinkIO.
func (u *Uplink) ReadBatch(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-u.in:
		copy(bufs[0][offset-len(u.Hdr):], u.Hdr[:])
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-u.closed:
		return 0, os.ErrClosed
	}
}

// WriteBatch implements dataplane.UplinkIO.
func (u *Uplink) WriteBatch(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		select {
		case u.Out <- append([]byte(nil), b[offset:]...):
		case <-u.closed:
			return i, os.ErrClosed
		default:
			return i, errors.New("dptest: uplink output queue full")
		}
	}
	return len(bufs), nil
}

// WriteFrames implements dataplane.UplinkIO for a layer-3 uplink: each
// frame's virtio-net header is dropped and the packet copied to Out.
func (u *Uplink) WriteFrames(frames [][]byte) (int, error) {
	for i, f := range frames {
		select {
		case u.Out <- append([]byte(nil), f[len(u.Hdr):]...):
		case <-u.closed:
			return i, os.ErrClosed
		default:
			return i, errors.New("dptest: uplink output queue full")
		}
	}
	return len(frames), nil
}

// Close implements dataplane.UplinkIO.
func (u *Uplink) Close() error {
	u.once.Do(func() { close(u.closed) })
	return nil
}

// Closed reports whether Close was called.
func (u *Uplink) Closed() bool {
	select {
	case <-u.closed:
		return true
	default:
		return false
	}
}

// Recv waits up to d for a packet on ch.
func Recv(ch <-chan []byte, d time.Duration) ([]byte, bool) {
	select {
	case p := <-ch:
		return p, true
	case <-time.After(d):
		return nil, false
	}
}
