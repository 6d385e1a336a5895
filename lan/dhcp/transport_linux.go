package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// linuxTransport is a UDP socket on port 67 bound to the LAN device, plus
// an AF_PACKET socket (nil if unavailable) for replies to clients that have
// no address yet.
type linuxTransport struct {
	udp       *net.UDPConn
	pkt       *packet.Conn
	buf       []byte // frame scratch for sendHW; used by the reading goroutine only
	closeOnce sync.Once
}

// openTransport opens the sockets on ifname in the calling thread's
// network namespace.
//
// The UDP socket receives broadcasts and unicasts to port 67 on ifname only
// (SO_BINDTODEVICE), and sends broadcast and ARP-resolvable unicast replies.
//
// A reply to a client that has no address and did not set the broadcast
// flag goes to its chaddr (RFC 2131 section 4.1). A UDP socket would first
// ARP for yiaddr, which nobody answers yet, so it is sent through an
// AF_PACKET SOCK_DGRAM socket instead: the kernel adds the link header for
// the given hardware address; the server builds IPv4 and UDP. The socket's
// protocol is ETH_P_IP (sll_protocol is also the transmit EtherType), and a
// "drop everything" BPF filter, installed before bind, keeps it from
// queueing the interface's received traffic. This changes no kernel state,
// unlike writing the client's ARP entry first (dnsmasq's way), and needs no
// neighbour clean-up. If the socket cannot be opened (an interface without
// a 6-byte link address, like a TUN), such replies are broadcast, which
// every RFC 2131 client accepts.
func openTransport(ifname string, log *slog.Logger) (transport, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("dhcp: interface %s: %w", ifname, err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			if serr == nil {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
			}
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", ":"+strconv.Itoa(serverPort))
	if err != nil {
		return nil, fmt.Errorf("dhcp: listen udp :%d on %s: %w", serverPort, ifname, err)
	}
	t := &linuxTransport{udp: pc.(*net.UDPConn)}
	if len(ifi.HardwareAddr) == 6 {
		drop, _ := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
		t.pkt, err = packet.Listen(ifi, packet.Datagram, unix.ETH_P_IP, &packet.Config{Filter: drop})
		if err != nil {
			log.Warn("dhcp: no AF_PACKET socket, replies to clients without an address will be broadcast",
				"interface", ifname, "error", err)
			t.pkt = nil
		}
	}
	return t, nil
}

func (t *linuxTransport) readFrom(b []byte) (int, error) {
	n, _, err := t.udp.ReadFromUDPAddrPort(b)
	return n, err
}

func (t *linuxTransport) sendUDP(payload []byte, dst netip.AddrPort) error {
	_, err := t.udp.WriteToUDPAddrPort(payload, dst)
	return err
}

func (t *linuxTransport) sendHW(payload []byte, hw net.HardwareAddr, src, dst netip.Addr) error {
	if t.pkt == nil {
		return errNoHW
	}
	t.buf = buildIPv4UDP(t.buf[:0], src, dst, serverPort, clientPort, payload)
	_, err := t.pkt.WriteTo(t.buf, &packet.Addr{HardwareAddr: hw})
	return err
}

func (t *linuxTransport) close() error {
	var err error
	t.closeOnce.Do(func() {
		err = t.udp.Close()
		if t.pkt != nil {
			err = errors.Join(err, t.pkt.Close())
		}
	})
	return err
}
