//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	wfpacket "github.com/wanflow/wanflow/dataplane/packet"
	"github.com/wanflow/wanflow/flowtable"
)

// mmsghdr is struct mmsghdr of sendmmsg(2)/recvmmsg(2); Go's struct layout
// adds the same tail padding as C on every GOARCH.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// socketIO is an uplink's real I/O: an AF_PACKET socket (mdlayher/packet)
// bound to the uplink's device with a BPF filter for replies to its address
// on NAT ports (plus ICMP and fragments), with PACKET_VNET_HDR so GRO
// super-packets and checksum-offloaded packets arrive with their metadata;
// and a raw IPv4 socket (IPPROTO_RAW, so the packets carry their own
// header) bound to the uplink's address and device, so the kernel routes
// what wanflow sends through the uplink's own table ("from <addr> lookup
// <table>") and resolves its next hop — Ethernet or PPP alike.
type socketIO struct {
	rx    *packet.Conn
	rxRaw syscall.RawConn
	txFD  int
	// llen is the link-layer header length in front of each received
	// packet: 14 on Ethernet, 0 on layer-3 devices (PPP, TUN). A
	// PACKET_VNET_HDR socket must be SOCK_RAW, so the header comes along.
	llen int

	rmu   sync.Mutex // ReadBatch has one caller; the mutex guards the scratch below anyway
	rhdrs []mmsghdr
	riov  []unix.Iovec
	rn    int
	rerr  syscall.Errno
	rfn   func(fd uintptr) bool

	wmu   sync.Mutex // WriteBatch is called by several workers
	whdrs []mmsghdr
	wiov  []unix.Iovec
	wname []unix.RawSockaddrInet4

	// The frame socket: AF_PACKET, SOCK_RAW, protocol 0 (it receives
	// nothing), PACKET_VNET_HDR, for super-packets sent whole.
	fmu   sync.Mutex
	fFD   int
	fll   unix.RawSockaddrLinklayer
	fhdrs []mmsghdr
	fiov  []unix.Iovec

	closeOnce sync.Once
}

// OpenUplinkSocket opens the real I/O of uplink u. It needs CAP_NET_RAW.
func OpenUplinkSocket(u Uplink, ports flowtable.PortRange) (UplinkIO, error) {
	if !u.Addr.Is4() {
		return nil, fmt.Errorf("uplink %s: address %v is not IPv4", u.Name, u.Addr)
	}
	ifi, err := net.InterfaceByIndex(u.Ifindex)
	if err != nil {
		return nil, fmt.Errorf("uplink %s: interface %d: %w", u.Name, u.Ifindex, err)
	}
	llen := 0
	if len(ifi.HardwareAddr) == 6 {
		llen = 14 // Ethernet
	}
	filter, err := replyFilter(u.Addr.As4(), ports, uint32(llen))
	if err != nil {
		return nil, fmt.Errorf("uplink %s: bpf: %w", u.Name, err)
	}
	rx, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_IP, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("uplink %s: packet socket on %s: %w", u.Name, ifi.Name, err)
	}
	s := &socketIO{rx: rx, txFD: -1, fFD: -1, llen: llen}
	if s.rxRaw, err = rx.SyscallConn(); err != nil {
		rx.Close()
		return nil, fmt.Errorf("uplink %s: %w", u.Name, err)
	}
	var serr error
	err = s.rxRaw.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); serr != nil {
			return
		}
		// A larger receive buffer rides out bursts while the workers are
		// busy; SO_RCVBUFFORCE needs CAP_NET_ADMIN, fall back silently.
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		rx.Close()
		return nil, fmt.Errorf("uplink %s: PACKET_VNET_HDR: %w", u.Name, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		rx.Close()
		return nil, fmt.Errorf("uplink %s: raw socket: %w", u.Name, err)
	}
	s.txFD = fd
	fail := func(what string, err error) (UplinkIO, error) {
		s.Close()
		return nil, fmt.Errorf("uplink %s: raw socket %s: %w", u.Name, what, err)
	}
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name); err != nil {
		return fail("bind to device "+ifi.Name, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: u.Addr.As4()}); err != nil {
		return fail("bind to "+u.Addr.String(), err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
	}
	// Nothing is ever read from the raw socket.
	_ = unix.Shutdown(fd, unix.SHUT_RD)
	ffd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail("frame socket", err)
	}
	s.fFD = ffd
	if err := unix.SetsockoptInt(ffd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fail("frame socket PACKET_VNET_HDR", err)
	}
	if unix.SetsockoptInt(ffd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(ffd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
	}
	s.fll = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: int32(u.Ifindex)}
	s.fhdrs = make([]mmsghdr, batchSize)
	s.fiov = make([]unix.Iovec, batchSize)
	s.rhdrs = make([]mmsghdr, batchSize)
	s.riov = make([]unix.Iovec, batchSize)
	s.whdrs = make([]mmsghdr, 2*batchSize)
	s.wiov = make([]unix.Iovec, 2*batchSize)
	s.wname = make([]unix.RawSockaddrInet4, 2*batchSize)
	s.rfn = s.recvmmsg
	return s, nil
}

// replyFilter accepts IPv4 packets to addr that the dataplane may have a
// flow for: TCP and UDP to a port in ports, ICMP echo replies whose
// identifier is in ports (ICMP flows are NATed by identifier), the ICMP
// errors it translates (destination unreachable, source quench, time
// exceeded, parameter problem), and non-first fragments (reassembled to
// find out). Everything else — the router's own pings and probes, echo
// requests to the router — stays the kernel's alone. The IPv4 header
// starts at offset l: a SOCK_RAW packet socket runs its filter on the
// frame, link-layer header included.
func replyFilter(addr [4]byte, ports flowtable.PortRange, l uint32) ([]bpf.RawInstruction, error) {
	a := uint32(addr[0])<<24 | uint32(addr[1])<<16 | uint32(addr[2])<<8 | uint32(addr[3])
	const accept, reject = 262144, 0
	lo, hi := uint32(ports.Lo), uint32(ports.Hi)
	// Jumps name their target label; assembleLabels turns them into the
	// forward skips BPF wants.
	prog := []labeled{
		{ins: bpf.LoadAbsolute{Off: l, Size: 1}},
		{ins: bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0}},
		{ins: bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x40}, to: "reject"},
		{ins: bpf.LoadAbsolute{Off: l + 16, Size: 4}},
		{ins: bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: a}, to: "reject"},
		{ins: bpf.LoadAbsolute{Off: l + 9, Size: 1}},
		{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_ICMP}, to: "icmp"},
		{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP}, to: "l4"},
		{ins: bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.IPPROTO_UDP}, to: "reject"},
		{label: "l4", ins: bpf.LoadAbsolute{Off: l + 6, Size: 2}},
		{ins: bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff}, to: "accept"},
		{ins: bpf.LoadMemShift{Off: l}},
		{ins: bpf.LoadIndirect{Off: l + 2, Size: 2}}, // destination port
		{ins: bpf.JumpIf{Cond: bpf.JumpLessThan, Val: lo}, to: "reject"},
		{ins: bpf.JumpIf{Cond: bpf.JumpLessOrEqual, Val: hi}, to: "accept"},
		{ins: bpf.Jump{}, to: "reject"},
		{label: "icmp", ins: bpf.LoadAbsolute{Off: l + 6, Size: 2}},
		{ins: bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff}, to: "accept"},
		{ins: bpf.LoadMemShift{Off: l}},
		{ins: bpf.LoadIndirect{Off: l, Size: 1}}, // ICMP type
		{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0}, to: "echo"},
		{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 3}, to: "accept"},
		{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4}, to: "accept"},
		{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 11}, to: "accept"},
		{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 12}, to: "accept"},
		{ins: bpf.Jump{}, to: "reject"},
		{label: "echo", ins: bpf.LoadIndirect{Off: l + 4, Size: 2}}, // identifier
		{ins: bpf.JumpIf{Cond: bpf.JumpLessThan, Val: lo}, to: "reject"},
		{ins: bpf.JumpIf{Cond: bpf.JumpLessOrEqual, Val: hi}, to: "accept"},
		{label: "reject", ins: bpf.RetConstant{Val: reject}},
		{label: "accept", ins: bpf.RetConstant{Val: accept}},
	}
	ins, err := assembleLabels(prog)
	if err != nil {
		return nil, err
	}
	return bpf.Assemble(ins)
}

// labeled is a BPF instruction with an optional label and, for a jump,
// the label it goes to (when its condition holds).
type labeled struct {
	label string
	ins   bpf.Instruction
	to    string
}

// assembleLabels resolves the jumps' labels into skips; BPF jumps only
// forward.
func assembleLabels(prog []labeled) ([]bpf.Instruction, error) {
	at := map[string]int{}
	for i, p := range prog {
		if p.label != "" {
			at[p.label] = i
		}
	}
	out := make([]bpf.Instruction, len(prog))
	for i, p := range prog {
		out[i] = p.ins
		if p.to == "" {
			continue
		}
		t, ok := at[p.to]
		if !ok || t <= i || t-i-1 > 255 {
			return nil, fmt.Errorf("bpf: instruction %d jumps to %q: not a later label within 255", i, p.to)
		}
		switch j := p.ins.(type) {
		case bpf.JumpIf:
			j.SkipTrue = uint8(t - i - 1)
			out[i] = j
		case bpf.Jump:
			j.Skip = uint32(t - i - 1)
			out[i] = j
		default:
			return nil, fmt.Errorf("bpf: instruction %d has a target but is not a jump", i)
		}
	}
	return out, nil
}

func (s *socketIO) recvmmsg(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.rhdrs[0])), uintptr(s.rn), unix.MSG_DONTWAIT, 0, 0)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	s.rerr = errno
	s.rn = int(n)
	if errno != 0 {
		s.rn = 0
	}
	return true
}

// ReadBatch implements UplinkIO.
func (s *socketIO) ReadBatch(bufs [][]byte, sizes []int, offset int) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	n := len(bufs)
	if n > len(s.rhdrs) {
		n = len(s.rhdrs)
	}
	front := wfpacket.VirtioNetHdrLen + s.llen
	if offset < front {
		return 0, errors.New("dataplane: read offset leaves no room for the virtio-net and link-layer headers")
	}
	for i := 0; i < n; i++ {
		b := bufs[i][offset-front:]
		s.riov[i].Base = &b[0]
		s.riov[i].SetLen(len(b))
		s.rhdrs[i] = mmsghdr{}
		s.rhdrs[i].hdr.Iov = &s.riov[i]
		s.rhdrs[i].hdr.SetIovlen(1)
	}
	s.rn = n
	if err := s.rxRaw.Read(s.rfn); err != nil {
		return 0, err
	}
	if s.rerr != 0 {
		return 0, os.NewSyscallError("recvmmsg", s.rerr)
	}
	got := 0
	var h wfpacket.VirtioNetHdr
	for i := 0; i < s.rn; i++ {
		l := int(s.rhdrs[i].len) - front
		if l <= 0 {
			continue
		}
		b := bufs[i]
		if s.llen > 0 {
			// Move the virtio-net header over the link-layer header, next
			// to the IPv4 packet, with its checksum start made relative
			// to the IPv4 header.
			if !h.Decode(b[offset-front:]) {
				continue
			}
			if h.CsumStart >= uint16(s.llen) {
				h.CsumStart -= uint16(s.llen)
			}
			h.Encode(b[offset-wfpacket.VirtioNetHdrLen:])
		}
		if got != i {
			bufs[got], bufs[i] = bufs[i], bufs[got]
		}
		sizes[got] = l
		got++
	}
	return got, nil
}

// WriteBatch implements UplinkIO: one sendmmsg per call (and one more after
// each packet the kernel refuses, which is skipped).
func (s *socketIO) WriteBatch(bufs [][]byte, offset int) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	sent := 0
	var firstErr error
	for len(bufs) > 0 {
		n := len(bufs)
		if n > len(s.whdrs) {
			n = len(s.whdrs)
		}
		for i := 0; i < n; i++ {
			b := bufs[i][offset:]
			s.wname[i] = unix.RawSockaddrInet4{Family: unix.AF_INET}
			if len(b) >= 20 {
				copy(s.wname[i].Addr[:], b[16:20])
			}
			s.wiov[i].Base = &b[0]
			s.wiov[i].SetLen(len(b))
			s.whdrs[i] = mmsghdr{}
			s.whdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.wname[i]))
			s.whdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
			s.whdrs[i].hdr.Iov = &s.wiov[i]
			s.whdrs[i].hdr.SetIovlen(1)
		}
		k, err := sendAll(s.txFD, s.whdrs[:n])
		sent += k
		if errors.Is(err, os.ErrClosed) {
			return sent, err
		}
		if firstErr == nil {
			firstErr = err
		}
		bufs = bufs[n:]
	}
	return sent, firstErr
}

// WriteFrames implements UplinkIO.
func (s *socketIO) WriteFrames(frames [][]byte) (int, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.fFD < 0 {
		return 0, os.ErrClosed
	}
	sent := 0
	var firstErr error
	for len(frames) > 0 {
		n := min(len(frames), len(s.fhdrs))
		for i := 0; i < n; i++ {
			b := frames[i]
			s.fiov[i].Base = &b[0]
			s.fiov[i].SetLen(len(b))
			s.fhdrs[i] = mmsghdr{}
			s.fhdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.fll))
			s.fhdrs[i].hdr.Namelen = unix.SizeofSockaddrLinklayer
			s.fhdrs[i].hdr.Iov = &s.fiov[i]
			s.fhdrs[i].hdr.SetIovlen(1)
		}
		k, err := sendAll(s.fFD, s.fhdrs[:n])
		sent += k
		if firstErr == nil {
			firstErr = err
		}
		frames = frames[n:]
	}
	return sent, firstErr
}

// sendAll sends every message of hdrs with sendmmsg(2), as few calls as
// the kernel allows. A message the kernel refuses (no route, too big, queue
// full) is skipped and the rest go on; the first such error is returned
// with the number sent. A closed socket ends the call with os.ErrClosed.
func sendAll(fd int, hdrs []mmsghdr) (sent int, firstErr error) {
	for done := 0; done < len(hdrs); {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[done])), uintptr(len(hdrs)-done), 0, 0, 0)
		switch errno {
		case 0:
			done += int(r)
			sent += int(r)
		case unix.EINTR:
		case unix.EBADF:
			return sent, os.ErrClosed
		default:
			if firstErr == nil {
				firstErr = os.NewSyscallError("sendmmsg", errno)
			}
			done++
		}
	}
	return sent, firstErr
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Close implements UplinkIO.
func (s *socketIO) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.rx.Close()
		if s.txFD >= 0 {
			s.wmu.Lock()
			unix.Close(s.txFD)
			s.txFD = -1
			s.wmu.Unlock()
		}
		s.fmu.Lock()
		if s.fFD >= 0 {
			unix.Close(s.fFD)
			s.fFD = -1
		}
		s.fmu.Unlock()
	})
	return err
}
