package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// tunPipe is a point-to-point L3 link made of two TUN devices in two
// namespaces whose packets this process copies: the fallback for KindL3 when
// the kernel has no ipip. The ISP end lives as long as the pipe; the router
// end can be closed (the device vanishes, like a PPP device on hangup) and
// reopened.
//
// Goroutines: routineCopy ispToRouter runs for the pipe's life;
// routineCopy routerToISP runs for each router end. With a delay, each
// direction also has a routineDelay writer. All stop on close and are
// waited for.
type tunPipe struct {
	isp      *os.File
	router   atomic.Pointer[os.File]
	delay    time.Duration
	wg       sync.WaitGroup
	toRouter chan delayed // nil without delay
	toISP    chan delayed // nil without delay
	done     chan struct{}
	once     sync.Once
	// fixTTL makes the ISP-end copier add one to the TTL of IPv4 packets:
	// set for a delay detour, whose extra forwarding hop must not cost a TTL.
	fixTTL bool
}

type delayed struct {
	due time.Time
	pkt []byte
}

// delayQueue bounds the packets in flight on a delayed direction; more are
// dropped, as a real queue would.
const delayQueue = 4096

// openTUN creates TUN device name (IFF_TUN, no packet info) in the calling
// thread's namespace and returns its non-blocking file.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// newTUNPipe creates the ISP end ispName in isp and starts its copier. The
// router end is attached with attachRouter.
func newTUNPipe(isp *NS, ispName string, delay time.Duration) (*tunPipe, error) {
	p := &tunPipe{delay: delay, done: make(chan struct{})}
	err := isp.Do(func() error {
		f, err := openTUN(ispName)
		p.isp = f
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: TUN %s in %s: %w", ispName, isp.Name, err)
	}
	if delay > 0 {
		p.toRouter = make(chan delayed, delayQueue)
		p.toISP = make(chan delayed, delayQueue)
		p.wg.Add(2)
		go p.routineDelay(p.toRouter, p.writeRouter)
		go p.routineDelay(p.toISP, p.writeISP)
	}
	p.wg.Add(1)
	go p.routineCopy(p.isp, p.toRouter, p.writeRouter, &p.fixTTL)
	return p, nil
}

// attachRouter creates the router end routerName in router and starts its
// copier. The previous router end, if any, must have been detached.
func (p *tunPipe) attachRouter(router *NS, routerName string) error {
	var f *os.File
	err := router.Do(func() error {
		var err error
		f, err = openTUN(routerName)
		return err
	})
	if err != nil {
		return fmt.Errorf("lab: TUN %s in %s: %w", routerName, router.Name, err)
	}
	p.router.Store(f)
	p.wg.Add(1)
	go p.routineCopy(f, p.toISP, p.writeISP, nil)
	return nil
}

// detachRouter closes the router end: its device disappears from the router
// namespace. Packets from the ISP are dropped until attachRouter.
func (p *tunPipe) detachRouter() {
	if f := p.router.Swap(nil); f != nil {
		f.Close()
	}
}

func (p *tunPipe) writeRouter(b []byte) {
	if f := p.router.Load(); f != nil {
		f.Write(b) // errors (device gone, queue full) drop the packet
	}
}

func (p *tunPipe) writeISP(b []byte) { p.isp.Write(b) }

// routineCopy reads packets from src until it is closed and hands each one
// to write, or to the delay queue q when the pipe has a delay. When fixTTL
// is non-nil and true, IPv4 TTLs are incremented.
func (p *tunPipe) routineCopy(src *os.File, q chan delayed, write func([]byte), fixTTL *bool) {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := src.Read(buf)
		if err == nil && fixTTL != nil && *fixTTL {
			incTTL(buf[:n])
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			select {
			case <-p.done:
				return
			default:
			}
			// Transient (e.g. EIO while the device is down): back off.
			time.Sleep(time.Millisecond)
			continue
		}
		if q == nil {
			write(buf[:n])
			continue
		}
		select {
		case q <- delayed{due: time.Now().Add(p.delay), pkt: append([]byte(nil), buf[:n]...)}:
		default: // queue full: drop
		}
	}
}

// incTTL adds one to the TTL of IPv4 packet b and updates the header
// checksum incrementally (RFC 1624, eqn. 3).
func incTTL(b []byte) {
	if len(b) < 20 || b[0]>>4 != 4 || b[8] == 255 {
		return
	}
	old := uint32(b[8])<<8 | uint32(b[9])
	b[8]++
	sum := uint32(^binary.BigEndian.Uint16(b[10:12])) + (^old & 0xffff) + old + 0x100
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	binary.BigEndian.PutUint16(b[10:12], ^uint16(sum))
}

// routineDelay writes queued packets once they are due.
func (p *tunPipe) routineDelay(q chan delayed, write func([]byte)) {
	defer p.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case d := <-q:
			if wait := time.Until(d.due); wait > 0 {
				t.Reset(wait)
				select {
				case <-p.done:
					return
				case <-t.C:
				}
			}
			write(d.pkt)
		}
	}
}

// close closes both ends and waits for the pipe's goroutines.
func (p *tunPipe) close() {
	p.once.Do(func() {
		close(p.done)
		p.detachRouter()
		p.isp.Close()
	})
	p.wg.Wait()
}
