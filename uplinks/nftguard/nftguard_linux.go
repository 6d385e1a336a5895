package nftguard

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Conn is the nftables connection the package works through; on Linux it
// is *nftables.Conn itself (open one with nftables.New, in another network
// namespace with nftables.WithNetNSFd). google/nftables builds only on
// Linux, so other GOOS get a placeholder type.
type Conn = nftables.Conn

// Apply makes the table described by cfg exist with exactly addrs in its
// address set and cfg.Interfaces in its interface set, in one atomic
// transaction. If the table already has the chains, sets and rules Apply
// builds for cfg, only the sets' elements are replaced (nothing at all if
// they are equal), so rule counters survive; otherwise the table is deleted
// and rebuilt. Running it twice leaves one table with the same chains, sets
// and rules.
func Apply(conn *Conn, cfg Config, addrs []netip.Addr) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	want, err := elements(addrs)
	if err != nil {
		return err
	}
	cur, err := readTable(conn, cfg)
	if err != nil {
		return err
	}
	if cur.ours {
		sameAddrs := slices.Equal(cur.elems, want)
		sameIfs := !cfg.failOpen() || slices.Equal(cur.ifaces, cfg.Interfaces)
		if sameAddrs && sameIfs {
			return nil
		}
		if !sameAddrs {
			conn.FlushSet(cur.set)
			if err := conn.SetAddElements(cur.set, setElements(want)); err != nil {
				return fmt.Errorf("nftguard: set elements: %w", err)
			}
		}
		if !sameIfs {
			conn.FlushSet(cur.ifset)
			if err := conn.SetAddElements(cur.ifset, ifaceElements(cfg.Interfaces)); err != nil {
				return fmt.Errorf("nftguard: set elements: %w", err)
			}
		}
		if err := conn.Flush(); err != nil {
			return fmt.Errorf("nftguard: update sets of table %s: %w", cfg.Table, err)
		}
		return nil
	}

	t := freshTable(conn, cfg.Table)
	chain := acceptChain(conn, t, ChainName, nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityRaw)
	// Fixed set IDs (they only need to be unique within the batch) instead
	// of the library's global counter.
	set := &nftables.Set{Table: t, ID: 1, Name: SetName, KeyType: nftables.TypeIPAddr}
	if err := conn.AddSet(set, setElements(want)); err != nil {
		return fmt.Errorf("nftguard: set: %w", err)
	}
	for _, p := range []struct {
		name  string
		proto byte
	}{{"tcp", unix.IPPROTO_TCP}, {"udp", unix.IPPROTO_UDP}} {
		conn.AddRule(&nftables.Rule{
			Table:    t,
			Chain:    chain,
			Exprs:    dropExprs(cfg, set, p.proto),
			UserData: userdata.AppendString(nil, userdata.TypeComment, ruleComment(cfg, p.name)),
		})
	}
	if cfg.failOpen() {
		nat := acceptChain(conn, t, NATChainName, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
		ifset := &nftables.Set{Table: t, ID: 2, Name: IfaceSetName, KeyType: nftables.TypeIFName}
		if err := conn.AddSet(ifset, ifaceElements(cfg.Interfaces)); err != nil {
			return fmt.Errorf("nftguard: set: %w", err)
		}
		for _, p := range cfg.LANPrefixes {
			conn.AddRule(&nftables.Rule{
				Table:    t,
				Chain:    nat,
				Exprs:    masqExprs(cfg, ifset, p),
				UserData: userdata.AppendString(nil, userdata.TypeComment, masqComment(cfg, p)),
			})
		}
	}
	if cfg.notrack() {
		nt := acceptChain(conn, t, NotrackChainName, nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityRef(NotrackPriority))
		comments := notrackComments(cfg)
		for i, ex := range notrackExprs(cfg) {
			conn.AddRule(&nftables.Rule{
				Table:    t,
				Chain:    nt,
				Exprs:    ex,
				UserData: userdata.AppendString(nil, userdata.TypeComment, comments[i]),
			})
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftguard: build table ip %s: %w", cfg.Table, err)
	}
	return nil
}

// freshTable queues in conn's batch the table ip name rebuilt empty:
// "add" (a no-op if it exists), delete, add, so that it is rebuilt whether
// or not it existed, in the same transaction.
func freshTable(conn *Conn, name string) *nftables.Table {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: name}
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	return t
}

// acceptChain queues in conn's batch a base chain of t with policy accept.
func acceptChain(conn *Conn, t *nftables.Table, name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
	policy := nftables.ChainPolicyAccept
	return conn.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio, Policy: &policy})
}

// notrackExprs are the rules of the notrack chain, in the order of
// notrackComments:
//
//	iifname <TUN> notrack
//	ip saddr <P> <fib daddr . mark(LookupMark) oifname> == <TUN> notrack
//
// The second rule asks the FIB where the packet would go if it carried
// LookupMark, whose policy rule looks up the TUN's table after the main
// table's specific routes: the TUN exactly when the real lookup (iif
// <LAN>) sends it there. The packet's own mark is saved in register 2 and
// put back before the comparison, so nothing else sees LookupMark.
func notrackExprs(cfg Config) [][]expr.Any {
	tun := make([]byte, ifNameSize)
	copy(tun, cfg.TUN)
	out := [][]expr.Any{{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tun},
		&expr.Notrack{},
	}}
	for _, p := range cfg.LANPrefixes {
		ex := prefixExprs(12, p, expr.CmpOpEq)
		ex = append(ex, tunRoutesExprs(cfg, false)...)
		out = append(out, append(ex, &expr.Notrack{}))
	}
	return out
}

// Remove deletes the table (family ip) named table, "" meaning DefaultTable.
// It is not an error if the table does not exist.
func Remove(conn *Conn, table string) error {
	cfg, err := Config{Table: table}.withDefaults()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: cfg.Table}
	conn.AddTable(t) // so that the delete cannot fail with ENOENT
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftguard: delete table ip %s: %w", cfg.Table, err)
	}
	return nil
}

// dropExprs is "ip daddr @set <proto> dport lo-hi counter drop"; with the
// notrack chain (fail-open with a TUN) only while the TUN exists:
//
//	... <fib saddr . mark(LookupMark) oifname> == <TUN> counter drop
//
// The FIB is asked where the remote would be reached with LookupMark,
// whose policy rule looks up the TUN's table: the TUN exactly while it
// exists. Once it is gone (a crash, or fail-open after a restart's hold),
// the kernel's masquerade owns the LAN's traffic and must get its replies
// even on ports of the NAT range; replies to the dead dataplane's mappings
// then meet the kernel, whose reset tells the remote at once that the
// connection is gone.
func dropExprs(cfg Config, set *nftables.Set, proto byte) []expr.Any {
	ex := natReplyExprs(set, proto, cfg.Ports)
	if cfg.notrack() {
		ex = append(ex, tunRoutesExprs(cfg, true)...)
	}
	return append(ex, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
}

// natReplyExprs matches a reply to a NAT port: "ip daddr @set meta
// l4proto <proto> th dport lo-hi".
func natReplyExprs(set *nftables.Set, proto byte, ports [2]uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binaryutil.BigEndian.PutUint16(ports[0])},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binaryutil.BigEndian.PutUint16(ports[1])},
	}
}

// tunRoutesExprs matches when the FIB, asked with LookupMark, routes the
// packet's source (saddr: a reply's remote) or destination (a LAN packet)
// into the TUN. The packet's own mark is saved in register 2 and put back,
// so nothing else sees LookupMark.
func tunRoutesExprs(cfg Config, saddr bool) []expr.Any {
	tun := make([]byte, ifNameSize)
	copy(tun, cfg.TUN)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 2},
		&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(cfg.LookupMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Fib{Register: 1, FlagSADDR: saddr, FlagDADDR: !saddr, FlagMARK: true, ResultOIFNAME: true},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tun},
	}
}

func setElements(addrs []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, len(addrs))
	for i, a := range addrs {
		out[i] = nftables.SetElement{Key: a.AsSlice()}
	}
	return out
}

// masqExprs is "oifname @ifset ip saddr <src> ip daddr != <each LAN
// prefix> counter masquerade".
func masqExprs(cfg Config, ifset *nftables.Set, src netip.Prefix) []expr.Any {
	ex := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: ifset.Name, SetID: ifset.ID},
	}
	ex = append(ex, prefixExprs(12, src, expr.CmpOpEq)...)
	for _, p := range cfg.LANPrefixes {
		ex = append(ex, prefixExprs(16, p, expr.CmpOpNeq)...)
	}
	return append(ex, &expr.Counter{}, &expr.Masq{})
}

// prefixExprs compares the IPv4 address at offset off of the network header
// (12: source, 16: destination), masked to p's length, with p's address.
func prefixExprs(off uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	a := p.Addr().As4()
	mask := []byte(net.CIDRMask(p.Bits(), 32))
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: a[:]},
	}
}

func ifaceElements(names []string) []nftables.SetElement {
	out := make([]nftables.SetElement, len(names))
	for i, n := range names {
		k := make([]byte, ifNameSize)
		copy(k, n)
		out[i] = nftables.SetElement{Key: k}
	}
	return out
}

// current is what readTable found.
type current struct {
	// ours is true if the table holds exactly the chain, set and rules
	// Apply builds for the Config.
	ours   bool
	set    *nftables.Set
	elems  []netip.Addr // sorted
	ifset  *nftables.Set
	ifaces []string // sorted; only with the fail-open chain
}

// readTable reads the table of cfg and reports whether it is exactly what
// Apply builds (apart from the sets' elements).
func readTable(conn *Conn, cfg Config) (current, error) {
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return current{}, fmt.Errorf("nftguard: list tables: %w", err)
	}
	i := slices.IndexFunc(tables, func(t *nftables.Table) bool { return t.Name == cfg.Table })
	if i < 0 {
		return current{}, nil
	}
	t := tables[i]

	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return current{}, fmt.Errorf("nftguard: list chains: %w", err)
	}
	var pre, nat, nt *nftables.Chain
	n := 0
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != cfg.Table {
			continue
		}
		n++
		switch c.Name {
		case ChainName:
			pre = c
		case NATChainName:
			nat = c
		case NotrackChainName:
			nt = c
		}
	}
	wantChains := 1
	if cfg.failOpen() {
		wantChains++
	}
	if cfg.notrack() {
		wantChains++
		if !isBaseChain(nt, nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityRef(NotrackPriority)) {
			return current{}, nil
		}
	}
	if n != wantChains || !isBaseChain(pre, nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityRaw) ||
		cfg.failOpen() && !isBaseChain(nat, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource) {
		return current{}, nil
	}

	sets, err := conn.GetSets(t)
	if err != nil {
		return current{}, fmt.Errorf("nftguard: list sets: %w", err)
	}
	var set, ifset *nftables.Set
	for _, s := range sets {
		switch {
		case s.Interval || s.IsMap || s.Constant || s.HasTimeout:
			return current{}, nil
		case s.Name == SetName && s.KeyType.Name == nftables.TypeIPAddr.Name:
			set = s
		case cfg.failOpen() && s.Name == IfaceSetName && s.KeyType.Name == nftables.TypeIFName.Name:
			ifset = s
		default:
			return current{}, nil
		}
	}
	if set == nil || cfg.failOpen() && ifset == nil {
		return current{}, nil
	}

	comments := []string{ruleComment(cfg, "tcp"), ruleComment(cfg, "udp")}
	if ok, err := hasRules(conn, t, pre, comments); !ok || err != nil {
		return current{}, err
	}
	if cfg.failOpen() {
		comments = comments[:0]
		for _, p := range cfg.LANPrefixes {
			comments = append(comments, masqComment(cfg, p))
		}
		if ok, err := hasRules(conn, t, nat, comments); !ok || err != nil {
			return current{}, err
		}
	}
	if cfg.notrack() {
		if ok, err := hasRules(conn, t, nt, notrackComments(cfg)); !ok || err != nil {
			return current{}, err
		}
	}

	elems, err := conn.GetSetElements(set)
	if err != nil {
		return current{}, fmt.Errorf("nftguard: list elements of %s: %w", SetName, err)
	}
	cur := current{ours: true, set: set, ifset: ifset}
	for _, e := range elems {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok || !a.Is4() || e.IntervalEnd || len(e.KeyEnd) != 0 {
			return current{}, nil
		}
		cur.elems = append(cur.elems, a)
	}
	slices.SortFunc(cur.elems, netip.Addr.Compare)
	if ifset != nil {
		elems, err := conn.GetSetElements(ifset)
		if err != nil {
			return current{}, fmt.Errorf("nftguard: list elements of %s: %w", IfaceSetName, err)
		}
		for _, e := range elems {
			if len(e.Key) != ifNameSize || e.IntervalEnd || len(e.KeyEnd) != 0 {
				return current{}, nil
			}
			cur.ifaces = append(cur.ifaces, strings.TrimRight(string(e.Key), "\x00"))
		}
		slices.Sort(cur.ifaces)
	}
	return cur, nil
}

// isBaseChain reports whether c is a base chain of type typ at hook and
// priority prio with policy accept.
func isBaseChain(c *nftables.Chain, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) bool {
	return c != nil && c.Type == typ &&
		c.Hooknum != nil && *c.Hooknum == *hook &&
		c.Priority != nil && *c.Priority == *prio &&
		c.Policy != nil && *c.Policy == nftables.ChainPolicyAccept
}

// hasRules reports whether chain c of table t holds exactly one rule per
// comment, in that order, each carrying its comment.
func hasRules(conn *Conn, t *nftables.Table, c *nftables.Chain, comments []string) (bool, error) {
	rules, err := conn.GetRules(t, c)
	if err != nil {
		return false, fmt.Errorf("nftguard: list rules of chain %s: %w", c.Name, err)
	}
	if len(rules) != len(comments) {
		return false, nil
	}
	for i, r := range rules {
		if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); !ok || s != comments[i] {
			return false, nil
		}
	}
	return true, nil
}
