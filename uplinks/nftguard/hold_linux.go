package nftguard

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Hold builds the hold table of hc (see HoldConfig), replacing an earlier
// one, in one transaction:
//
//	table ip <table>_hold {
//		set held_lan { type ifname; flags timeout; elements = { <LAN> timeout <Timeout> } }
//		set uplinks { type ifname; elements = { <uplink interfaces> } }
//		set uplink_addrs { type ipv4_addr; elements = { <Addrs> } }
//		chain forward {
//			type filter hook forward priority filter; policy accept;
//			iifname @held_lan oifname @uplinks counter drop
//		}
//		chain prerouting {
//			type filter hook prerouting priority raw; policy accept;
//			ip daddr @uplink_addrs tcp dport <lo>-<hi> "<LAN>" @held_lan counter drop
//			ip daddr @uplink_addrs udp dport <lo>-<hi> "<LAN>" @held_lan counter drop
//		}
//	}
func Hold(conn *Conn, hc HoldConfig) error {
	hc, err := hc.check()
	if err != nil {
		return err
	}
	t := freshTable(conn, hc.Table)
	chain := acceptChain(conn, t, HoldChainName, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	lan := &nftables.Set{Table: t, ID: 1, Name: HoldLANSetName, KeyType: nftables.TypeIFName, HasTimeout: true}
	lanElems := ifaceElements(hc.LAN)
	for i := range lanElems {
		lanElems[i].Timeout = hc.Timeout
	}
	if err := conn.AddSet(lan, lanElems); err != nil {
		return fmt.Errorf("nftguard: hold set: %w", err)
	}
	ups := &nftables.Set{Table: t, ID: 2, Name: HoldUplinkSetName, KeyType: nftables.TypeIFName}
	if err := conn.AddSet(ups, ifaceElements(hc.Uplinks)); err != nil {
		return fmt.Errorf("nftguard: hold set: %w", err)
	}
	if len(hc.Addrs) > 0 {
		pre := acceptChain(conn, t, HoldPreChainName, nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityRaw)
		addrs := &nftables.Set{Table: t, ID: 3, Name: HoldAddrSetName, KeyType: nftables.TypeIPAddr}
		if err := conn.AddSet(addrs, setElements(hc.Addrs)); err != nil {
			return fmt.Errorf("nftguard: hold set: %w", err)
		}
		first := make([]byte, ifNameSize)
		copy(first, hc.LAN[0])
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			ex := append(natReplyExprs(addrs, proto, hc.Ports),
				// The hold's timer: the LAN interface's element in held_lan.
				&expr.Immediate{Register: 1, Data: first},
				&expr.Lookup{SourceRegister: 1, SetName: lan.Name, SetID: lan.ID},
				&expr.Counter{},
				&expr.Verdict{Kind: expr.VerdictDrop},
			)
			conn.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: ex,
				UserData: userdata.AppendString(nil, userdata.TypeComment,
					fmt.Sprintf("wanflow %s: hold NAT replies from the kernel during a restart", rulesetVersion))})
		}
	}
	conn.AddRule(&nftables.Rule{
		Table: t,
		Chain: chain,
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: lan.Name, SetID: lan.ID},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: ups.Name, SetID: ups.ID},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		},
		UserData: userdata.AppendString(nil, userdata.TypeComment,
			fmt.Sprintf("wanflow %s: hold LAN forwarding during a restart", rulesetVersion)),
	})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftguard: build table ip %s: %w", hc.Table, err)
	}
	return nil
}

// Unhold deletes the hold table of the guard table named table ("" meaning
// DefaultTable). It is not an error if there is none.
func Unhold(conn *Conn, table string) error {
	return Remove(conn, withDefaultTable(table)+HoldSuffix)
}

// Holding reports whether the hold of the guard table named table is in
// force: its table exists and a LAN interface's element has not timed out.
// It returns the longest time left.
func Holding(conn *Conn, table string) (bool, time.Duration, error) {
	name := withDefaultTable(table) + HoldSuffix
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, 0, fmt.Errorf("nftguard: list tables: %w", err)
	}
	i := slices.IndexFunc(tables, func(t *nftables.Table) bool { return t.Name == name })
	if i < 0 {
		return false, 0, nil
	}
	set, err := conn.GetSetByName(tables[i], HoldLANSetName)
	if err != nil {
		return false, 0, nil // a table without the set holds nothing
	}
	elems, err := conn.GetSetElements(set)
	if err != nil {
		return false, 0, fmt.Errorf("nftguard: list elements of %s: %w", HoldLANSetName, err)
	}
	var left time.Duration
	for _, e := range elems {
		left = max(left, e.Expires)
	}
	return len(elems) > 0, left, nil
}

func withDefaultTable(table string) string {
	if table == "" {
		return DefaultTable
	}
	return table
}
