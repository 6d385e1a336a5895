package lab

import "net/netip"

// FreeLANAddrs returns, in ascending order, the addresses of the LAN
// (10.77.0.2 … 10.77.0.253) that the lab gives to nothing: not the router,
// not a host's primary or extra address, not the LAN-segment modem
// (10.77.0.254, left out whether or not the lab has one). Give them to a
// host with AddHostAddrs when a test needs more LAN source addresses than
// Config.ExtraHostAddrs provides (a /24 holds at most 251 of them).
func (l *Lab) FreeLANAddrs() []netip.Addr {
	used := map[netip.Addr]bool{l.RouterLANAddr.Addr(): true, ModemAddr: true}
	for _, a := range l.HostAddrs {
		used[a] = true
	}
	for _, a := range l.HostExtraAddrs {
		used[a] = true
	}
	var out []netip.Addr
	for d := 2; d <= 253; d++ {
		if a := v4(10, 77, 0, d); !used[a] {
			out = append(out, a)
		}
	}
	return out
}

// ConnmarkTable is the nftables table (family ip) that ConnmarkBaseline adds
// in the router namespace, beside KernelBaseline's BaselineTable.
const ConnmarkTable = "labconnmark"

// Kernel ids of ConnmarkBaseline: uplink i (0-based) has routing table
// ConnmarkTableBase+i, selected by a rule of priority ConnmarkRulePriority+i
// for packets whose mark is i+1. They lie below wanflow's own ranges (tables
// 7700-7799, rule priorities 7690-7999).
const (
	// ConnmarkTableBase is the routing table of uplink 0.
	ConnmarkTableBase = 7601
	// ConnmarkRulePriority is the priority of uplink 0's fwmark rule.
	ConnmarkRulePriority = 7600
)
