//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/wanflow/wanflow/dataplane/packet"
)

// tunIO is LANIO on a wireguard-go TUN device. It reads the device's file
// itself, one packet with its virtio-net header per read, so a TCP
// super-packet (TSO from a LAN host, forwarded by the kernel with its GSO
// metadata) reaches the dataplane whole instead of split into MTU-sized
// segments. Plain packets are written through the tun package, which
// coalesces TCP segments into super-packets (GRO); super-packets are
// written as they are, with their header.
type tunIO struct {
	dev  tun.Device
	f    *os.File
	raw  syscall.RawConn
	vnet bool

	// Read's state, for readReady (Read has one caller at a time).
	readFn func(fd uintptr) bool
	rbufs  [][]byte
	rsizes []int
	roff   int
	rn     int
	rerr   error

	mu    sync.Mutex // guards runs
	runs  [][]byte
	close sync.Once
}

// NewTUNIO wraps dev, which must come from tun.CreateTUN; the LANIO owns
// it from now on.
func NewTUNIO(dev tun.Device) (LANIO, error) {
	f := dev.File()
	if f == nil {
		return nil, errors.New("dataplane: TUN device has no file")
	}
	t := &tunIO{dev: dev, f: f}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var flags uint16
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		var ifr [unix.IFNAMSIZ + 64]byte
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.TUNGETIFF, uintptr(unsafe.Pointer(&ifr[0])))
		if errno != 0 {
			ierr = errno
			return
		}
		flags = *(*uint16)(unsafe.Pointer(&ifr[unix.IFNAMSIZ]))
	}); err != nil {
		return nil, err
	}
	if ierr != nil {
		return nil, fmt.Errorf("dataplane: TUNGETIFF: %w", ierr)
	}
	t.vnet = flags&unix.IFF_VNET_HDR != 0
	t.raw = rc
	t.readFn = t.readReady
	return t, nil
}

// Read implements LANIO. It reads packets until the device has no more
// ready (or bufs is full), so a burst of small packets costs one wake-up,
// and waits in the runtime's poller only when nothing is ready.
func (t *tunIO) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if !t.vnet {
		return t.dev.Read(bufs[:1], sizes, offset)
	}
	t.rbufs, t.rsizes, t.roff, t.rn, t.rerr = bufs, sizes, offset, 0, nil
	err := t.raw.Read(t.readFn)
	n, rerr := t.rn, t.rerr
	t.rbufs, t.rsizes = nil, nil
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = rerr
	}
	if err != nil && (errors.Is(err, unix.EBADFD) || errors.Is(err, unix.EBADF)) {
		err = os.ErrClosed
	}
	return 0, err
}

// readReady is the raw-connection read callback: it returns false (wait
// for readability) only when no packet was read at all.
func (t *tunIO) readReady(fd uintptr) bool {
	bytes := 0
	for t.rn < len(t.rbufs) && bytes < maxReadBytes {
		b := t.rbufs[t.rn][t.roff-packet.VirtioNetHdrLen:]
		n, err := unix.Read(int(fd), b)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				return t.rn > 0
			}
			t.rerr = err
			return true
		}
		if n <= packet.VirtioNetHdrLen {
			continue
		}
		var h packet.VirtioNetHdr
		h.Decode(b)
		pkt := b[packet.VirtioNetHdrLen:n]
		if h.GSOType == packet.VirtioNetHdrGSONone {
			if h.Flags&packet.VirtioNetHdrFNeedsCsum != 0 && !packet.CompleteChecksum(pkt, h) {
				continue
			}
			clear(b[:packet.VirtioNetHdrLen])
		}
		t.rsizes[t.rn] = len(pkt)
		t.rn++
		bytes += len(pkt)
	}
	return true
}

// maxReadBytes ends a read burst early once it holds this much, so a stream
// of 64 KiB super-packets is handed to the workers a few at a time rather
// than in megabyte lumps.
const maxReadBytes = 128 << 10

// Write implements LANIO. Runs of plain packets go to the tun package
// (GRO-coalesced); super-packets are written one by one with their header.
func (t *tunIO) Write(bufs [][]byte, offset int) (int, error) {
	if !t.vnet {
		return t.dev.Write(bufs, offset)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	written := 0
	var errs error
	flush := func() {
		if len(t.runs) == 0 {
			return
		}
		n, err := t.dev.Write(t.runs, offset)
		if err != nil {
			errs = errors.Join(errs, err)
		}
		if n > 0 {
			written += len(t.runs)
		}
		clear(t.runs)
		t.runs = t.runs[:0]
	}
	for _, b := range bufs {
		if isPlain(b[offset-packet.VirtioNetHdrLen : offset]) {
			t.runs = append(t.runs, b)
			continue
		}
		flush()
		if _, err := t.f.Write(b[offset-packet.VirtioNetHdrLen:]); err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		written++
	}
	flush()
	return written, errs
}

// BatchSize implements LANIO.
func (t *tunIO) BatchSize() int { return batchSize }

// CanGSO reports whether the device takes and gives TCP super-packets.
func (t *tunIO) CanGSO() bool { return t.vnet }

// Close implements LANIO.
func (t *tunIO) Close() error {
	var err error
	t.close.Do(func() { err = t.dev.Close() })
	return err
}
