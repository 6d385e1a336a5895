package lab

import (
	"errors"
	"fmt"
	"net/netip"
)

// AddHostAddrs adds addrs to LAN host k's (0-based) eth0, each with the
// LAN's prefix length, so that flows can use them as source addresses; the
// router reaches them by ARP like any LAN host. Each must lie in LANPrefix;
// take them from FreeLANAddrs to avoid the lab's own. Adding an address the
// host already has is not an error.
func (l *Lab) AddHostAddrs(k int, addrs []netip.Addr) error {
	if k < 0 || k >= len(l.Hosts) {
		return fmt.Errorf("lab: host index %d out of range [0,%d)", k, len(l.Hosts))
	}
	for _, a := range addrs {
		if !LANPrefix.Contains(a) {
			return fmt.Errorf("lab: host address %v outside the LAN %v", a, LANPrefix)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab: closed")
	}
	h, err := l.Hosts[k].Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	for _, a := range addrs {
		if err := addAddr(h, hostIf, netip.PrefixFrom(a, LANPrefix.Bits()), netip.Prefix{}); err != nil {
			return err
		}
	}
	return nil
}
