package lab

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with its union holding a pointer (ifr_data).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtool issues a SIOCETHTOOL ioctl with an ethtool_value on ifname, in the
// namespace of the calling thread, and returns the value's data.
func ethtool(ifname string, cmd, data uint32) (uint32, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	v := &ethtoolValue{cmd: cmd, data: data}
	ifr := &ifreqData{data: unsafe.Pointer(v)}
	copy(ifr.name[:], ifname)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(ifr)))
	runtime.KeepAlive(ifr)
	runtime.KeepAlive(v)
	if errno != 0 {
		return 0, errno
	}
	return v.data, nil
}

// SetGRO switches generic receive offload of ifname inside the namespace
// (ETHTOOL_SGRO) and reads it back (ETHTOOL_GGRO); it fails if the device
// does not end up in the wanted state.
func (n *NS) SetGRO(ifname string, on bool) error {
	var want uint32
	if on {
		want = 1
	}
	return n.Do(func() error {
		if _, err := ethtool(ifname, unix.ETHTOOL_SGRO, want); err != nil {
			return fmt.Errorf("lab: ETHTOOL_SGRO %s=%d in %s: %w", ifname, want, n.Name, err)
		}
		got, err := ethtool(ifname, unix.ETHTOOL_GGRO, 0)
		if err != nil {
			return fmt.Errorf("lab: ETHTOOL_GGRO %s in %s: %w", ifname, n.Name, err)
		}
		if got != want {
			return fmt.Errorf("lab: GRO of %s in %s is %d after setting %d", ifname, n.Name, got, want)
		}
		return nil
	})
}

// GRO reports whether generic receive offload is on for ifname inside the
// namespace (ETHTOOL_GGRO).
func (n *NS) GRO(ifname string) (bool, error) {
	var on bool
	err := n.Do(func() error {
		v, err := ethtool(ifname, unix.ETHTOOL_GGRO, 0)
		if err != nil {
			return fmt.Errorf("lab: ETHTOOL_GGRO %s in %s: %w", ifname, n.Name, err)
		}
		on = v != 0
		return nil
	})
	return on, err
}
