package nftguard

import (
	"fmt"
	"net/netip"
	"slices"

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
// address set, in one atomic transaction. If the table already has the
// chain, set and rules Apply builds for cfg, only the set's elements are
// replaced (nothing at all if they are equal), so rule counters survive;
// otherwise the table is deleted and rebuilt. Running it twice leaves one
// table, one chain, one set and the same two rules.
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
		if slices.Equal(cur.elems, want) {
			return nil
		}
		conn.FlushSet(cur.set)
		if err := conn.SetAddElements(cur.set, setElements(want)); err != nil {
			return fmt.Errorf("nftguard: set elements: %w", err)
		}
		if err := conn.Flush(); err != nil {
			return fmt.Errorf("nftguard: update set %s of table %s: %w", SetName, cfg.Table, err)
		}
		return nil
	}

	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: cfg.Table}
	// "add" (a no-op if it exists), delete, add: the table is rebuilt
	// whether or not it existed, in the same transaction.
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	policy := nftables.ChainPolicyAccept
	chain := conn.AddChain(&nftables.Chain{
		Name:     ChainName,
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityRaw,
		Policy:   &policy,
	})
	// A fixed set ID (it only needs to be unique within the batch) instead
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
			Exprs:    dropExprs(set, p.proto, cfg.Ports),
			UserData: userdata.AppendString(nil, userdata.TypeComment, ruleComment(cfg, p.name)),
		})
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftguard: build table ip %s: %w", cfg.Table, err)
	}
	return nil
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

// dropExprs is "ip daddr @set <proto> dport lo-hi counter drop".
func dropExprs(set *nftables.Set, proto byte, ports [2]uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binaryutil.BigEndian.PutUint16(ports[0])},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binaryutil.BigEndian.PutUint16(ports[1])},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

func setElements(addrs []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, len(addrs))
	for i, a := range addrs {
		out[i] = nftables.SetElement{Key: a.AsSlice()}
	}
	return out
}

// current is what readTable found.
type current struct {
	// ours is true if the table holds exactly the chain, set and rules
	// Apply builds for the Config.
	ours  bool
	set   *nftables.Set
	elems []netip.Addr // sorted
}

// readTable reads the table of cfg and reports whether it is exactly what
// Apply builds (apart from the set's elements).
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
	var chain *nftables.Chain
	n := 0
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == cfg.Table {
			chain = c
			n++
		}
	}
	if n != 1 || chain.Name != ChainName || chain.Type != nftables.ChainTypeFilter ||
		chain.Hooknum == nil || *chain.Hooknum != *nftables.ChainHookPrerouting ||
		chain.Priority == nil || *chain.Priority != *nftables.ChainPriorityRaw ||
		chain.Policy == nil || *chain.Policy != nftables.ChainPolicyAccept {
		return current{}, nil
	}

	sets, err := conn.GetSets(t)
	if err != nil {
		return current{}, fmt.Errorf("nftguard: list sets: %w", err)
	}
	if len(sets) != 1 || sets[0].Name != SetName || sets[0].KeyType.Name != nftables.TypeIPAddr.Name ||
		sets[0].Interval || sets[0].IsMap || sets[0].Constant || sets[0].HasTimeout {
		return current{}, nil
	}
	set := sets[0]

	rules, err := conn.GetRules(t, chain)
	if err != nil {
		return current{}, fmt.Errorf("nftguard: list rules: %w", err)
	}
	comments := []string{ruleComment(cfg, "tcp"), ruleComment(cfg, "udp")}
	if len(rules) != len(comments) {
		return current{}, nil
	}
	for i, r := range rules {
		if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); !ok || c != comments[i] {
			return current{}, nil
		}
	}

	elems, err := conn.GetSetElements(set)
	if err != nil {
		return current{}, fmt.Errorf("nftguard: list elements of %s: %w", SetName, err)
	}
	cur := current{ours: true, set: set}
	for _, e := range elems {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok || !a.Is4() || e.IntervalEnd || len(e.KeyEnd) != 0 {
			return current{}, nil
		}
		cur.elems = append(cur.elems, a)
	}
	slices.SortFunc(cur.elems, netip.Addr.Compare)
	return cur, nil
}
