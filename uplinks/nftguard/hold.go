package nftguard

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// HoldSuffix makes the hold table's name from the guard table's: the hold
// of table "wanflow" is table ip "wanflow_hold".
const HoldSuffix = "_hold"

// Names of the hold table's objects.
const (
	// HoldLANSetName is the set of LAN interfaces whose forwarding is held;
	// its elements carry the hold's timeout.
	HoldLANSetName = "held_lan"
	// HoldUplinkSetName is the set of uplink interfaces.
	HoldUplinkSetName = "uplinks"
	// HoldChainName is the hold's chain: type filter, hook forward,
	// priority filter.
	HoldChainName = "forward"
	// HoldAddrSetName is the set of uplink addresses whose NAT replies the
	// hold keeps from the kernel (chain HoldPreChainName: type filter,
	// hook prerouting, priority raw).
	HoldAddrSetName  = "uplink_addrs"
	HoldPreChainName = "prerouting"
)

// HoldConfig describes a hold: while it lasts, the kernel forwards nothing
// from a LAN interface out of an uplink interface.
//
// A daemon handing its flows over to the next start (a planned restart)
// holds the LAN this way between its exit and the next start's dataplane:
// the TUN device is gone meanwhile, so the fail-open rules would have the
// kernel forward the LAN's packets masqueraded with their own source ports
// — for an established connection a segment the remote answers with a
// reset. Dropped instead, they are retransmitted and reach the next
// dataplane, which carries them on with the handed-over NAT mappings.
//
// Replies to the dataplane's NAT ports that arrive meanwhile are kept from
// the kernel too (Addrs, Ports): the guard table drops the kernel's copy
// only while the TUN exists, and the kernel would answer them with resets.
//
// The hold ends by itself: the LAN interfaces are elements of a set with a
// timeout (both rules look their first one up), so if no wanflow starts,
// the kernel drops them after Timeout and the fail-open fallback takes over
// with no process at all.
type HoldConfig struct {
	// Table is the guard table's name ("" means DefaultTable); the hold
	// lives in its own table, Table+HoldSuffix, so the guard table stays
	// exactly what Apply builds.
	Table string
	// LAN are the LAN interfaces, Uplinks the uplinks' interfaces.
	LAN, Uplinks []string
	// Addrs are the uplinks' addresses and Ports the NAT port range: while
	// the hold lasts the kernel's copy of a reply to a NAT port is dropped
	// (the guard table drops it only while the TUN exists), so the kernel
	// does not reset the connections being handed over. No addresses: no
	// such rule.
	Addrs []netip.Addr
	Ports [2]uint16
	// Timeout is how long the hold lasts, at least a millisecond.
	Timeout time.Duration
}

func (h HoldConfig) check() (HoldConfig, error) {
	c, err := Config{Table: h.Table}.withDefaults()
	if err != nil {
		return h, err
	}
	h.Table = c.Table + HoldSuffix
	if len(h.Table) > 255 {
		return h, fmt.Errorf("nftguard: table name longer than 255 bytes")
	}
	if h.Timeout < time.Millisecond {
		return h, fmt.Errorf("nftguard: hold timeout %v: want at least 1ms", h.Timeout)
	}
	if len(h.LAN) == 0 || len(h.Uplinks) == 0 {
		return h, fmt.Errorf("nftguard: hold needs LAN and uplink interfaces")
	}
	if len(h.Addrs) > 0 && (h.Ports[0] == 0 || h.Ports[0] > h.Ports[1]) {
		return h, fmt.Errorf("nftguard: hold: bad port range %d-%d", h.Ports[0], h.Ports[1])
	}
	addrs, err := elements(h.Addrs)
	if err != nil {
		return h, err
	}
	h.Addrs = addrs
	h.LAN, h.Uplinks = sortedNames(h.LAN), sortedNames(h.Uplinks)
	for _, name := range append(append([]string{}, h.LAN...), h.Uplinks...) {
		if name == "" || len(name) >= ifNameSize || strings.ContainsRune(name, 0) {
			return h, fmt.Errorf("nftguard: bad interface name %q", name)
		}
	}
	return h, nil
}

// sortedNames returns names sorted, without repeats, in a new slice.
func sortedNames(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}
