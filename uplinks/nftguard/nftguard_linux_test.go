package nftguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/wanflow/wanflow/bench/lab/nstest"
)

func connIn(t *testing.T, ns netns.NsHandle) *nftables.Conn {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// dump renders every nftables table of the namespace and, for each ip
// table, its chains, sets with elements and rules (without counter values
// and handles), one line each.
func dump(t *testing.T, conn *nftables.Conn) []string {
	t.Helper()
	tables, err := conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tb := range tables {
		out = append(out, fmt.Sprintf("table %d %s", tb.Family, tb.Name))
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chains {
		s := fmt.Sprintf("chain %s %s type=%s", c.Table.Name, c.Name, c.Type)
		if c.Hooknum != nil {
			s += fmt.Sprintf(" hook=%d prio=%d policy=%d", *c.Hooknum, *c.Priority, *c.Policy)
		}
		out = append(out, s)
		rules, err := conn.GetRules(c.Table, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			var parts []string
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Counter:
					parts = append(parts, "counter")
				default:
					parts = append(parts, fmt.Sprintf("%T%+v", e, e))
				}
			}
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			out = append(out, fmt.Sprintf("rule %s %s %q: %s", c.Table.Name, c.Name, comment, strings.Join(parts, " ")))
		}
	}
	for _, tb := range tables {
		if tb.Family != nftables.TableFamilyIPv4 {
			continue
		}
		sets, err := conn.GetSets(tb)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sets {
			elems, err := conn.GetSetElements(s)
			if err != nil {
				t.Fatal(err)
			}
			var es []string
			for _, e := range elems {
				if s.KeyType.Name == nftables.TypeIFName.Name {
					es = append(es, strings.TrimRight(string(e.Key), "\x00"))
					continue
				}
				a, _ := netip.AddrFromSlice(e.Key)
				es = append(es, a.String())
			}
			slices.Sort(es)
			out = append(out, fmt.Sprintf("set %s %s %s {%s}", tb.Name, s.Name, s.KeyType.Name, strings.Join(es, ",")))
		}
	}
	slices.Sort(out)
	return out
}

// counters returns the handle and packet counter of each rule of our chain.
func counters(t *testing.T, conn *nftables.Conn, table string) (handles []uint64, packets []uint64) {
	t.Helper()
	tb := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: table}
	rules, err := conn.GetRules(tb, &nftables.Chain{Name: ChainName, Table: tb})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		handles = append(handles, r.Handle)
		var n uint64
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				n = c.Packets
			}
		}
		packets = append(packets, n)
	}
	return handles, packets
}

var (
	a1 = netip.MustParseAddr("100.64.1.2")
	a2 = netip.MustParseAddr("100.64.2.2")
	a3 = netip.MustParseAddr("10.77.0.1")
)

func TestApplyIdempotent(t *testing.T) {
	ns := nstest.New(t).NsHandle()
	conn := connIn(t, ns)
	// Someone else's table, which must survive.
	other := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
	conn.AddChain(&nftables.Chain{Name: "input", Table: other})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Ports: [2]uint16{20000, 32767}}
	if err := Apply(conn, cfg, []netip.Addr{a2, a1, a1}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	first := dump(t, conn)
	h1, _ := counters(t, conn, "wanflow")
	if err := Apply(conn, cfg, []netip.Addr{a1, a2}); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	second := dump(t, conn)
	h2, _ := counters(t, conn, "wanflow")
	if !reflect.DeepEqual(first, second) {
		t.Errorf("second Apply changed the ruleset:\n%s\n---\n%s", strings.Join(first, "\n"), strings.Join(second, "\n"))
	}
	if !reflect.DeepEqual(h1, h2) {
		t.Errorf("second Apply replaced the rules (handles %v, then %v); want it untouched", h1, h2)
	}
	t.Logf("ruleset:\n%s", strings.Join(second, "\n"))

	mustHave := []string{
		"table 2 filter",
		"table 2 wanflow",
		"chain wanflow prerouting type=filter hook=0 prio=-300 policy=1",
		"set wanflow uplink_addrs ipv4_addr {100.64.1.2,100.64.2.2}",
	}
	for _, l := range mustHave {
		if !slices.Contains(second, l) {
			t.Errorf("missing %q", l)
		}
	}
	var rules []string
	for _, l := range second {
		if strings.HasPrefix(l, "rule wanflow ") {
			rules = append(rules, l)
		}
		if strings.HasPrefix(l, "chain wanflow ") && l != mustHave[2] {
			t.Errorf("extra chain %q", l)
		}
	}
	if len(rules) != 2 {
		t.Fatalf("%d rules, want 2:\n%s", len(rules), strings.Join(rules, "\n"))
	}
	for i, proto := range []string{"tcp", "udp"} {
		if !strings.Contains(rules[i], `"wanflow v3: drop kernel copy of NAT replies, `+proto+` dport 20000-32767"`) ||
			!strings.Contains(rules[i], "SetName:uplink_addrs") || !strings.Contains(rules[i], " counter *expr.Verdict&{Kind:0 ") {
			t.Errorf("rule %d = %s", i, rules[i])
		}
	}

	// New addresses: the set changes, the rules (and their counters) stay.
	if err := Apply(conn, cfg, []netip.Addr{a3, a1}); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, conn); !slices.Contains(got, "set wanflow uplink_addrs ipv4_addr {10.77.0.1,100.64.1.2}") {
		t.Errorf("set not updated:\n%s", strings.Join(got, "\n"))
	}
	if h3, _ := counters(t, conn, "wanflow"); !reflect.DeepEqual(h1, h3) {
		t.Errorf("address change replaced the rules (handles %v, then %v)", h1, h3)
	}
	// No address at all: an empty set.
	if err := Apply(conn, cfg, nil); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, conn); !slices.Contains(got, "set wanflow uplink_addrs ipv4_addr {}") {
		t.Errorf("set not emptied:\n%s", strings.Join(got, "\n"))
	}

	// New port range: the table is rebuilt with new rules.
	cfg.Ports = [2]uint16{40000, 50000}
	for range 2 {
		if err := Apply(conn, cfg, []netip.Addr{a1}); err != nil {
			t.Fatal(err)
		}
	}
	got := dump(t, conn)
	n := 0
	for _, l := range got {
		if strings.HasPrefix(l, "rule wanflow ") {
			n++
			if !strings.Contains(l, "dport 40000-50000") {
				t.Errorf("old rule left: %s", l)
			}
		}
	}
	if n != 2 || !slices.Contains(got, "set wanflow uplink_addrs ipv4_addr {100.64.1.2}") {
		t.Errorf("after port change:\n%s", strings.Join(got, "\n"))
	}
}

func TestApplyRepairsForeignEdits(t *testing.T) {
	ns := nstest.New(t).NsHandle()
	conn := connIn(t, ns)
	cfg := Config{}
	if err := Apply(conn, cfg, []netip.Addr{a1}); err != nil {
		t.Fatal(err)
	}
	want := dump(t, conn)
	// Someone adds a rule to wanflow's chain and a chain to its table.
	tb := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "wanflow"}
	conn.AddRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Name: ChainName, Table: tb},
		Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	conn.AddChain(&nftables.Chain{Name: "extra", Table: tb})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := Apply(conn, cfg, []netip.Addr{a1}); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, conn); !reflect.DeepEqual(got, want) {
		t.Errorf("Apply did not restore the table:\n%s\n---want---\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRemove(t *testing.T) {
	ns := nstest.New(t).NsHandle()
	conn := connIn(t, ns)
	if err := Remove(conn, ""); err != nil {
		t.Fatalf("Remove without table: %v", err)
	}
	before := dump(t, conn)
	if err := Apply(conn, Config{}, []netip.Addr{a1}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := Remove(conn, "wanflow"); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	if after := dump(t, conn); !reflect.DeepEqual(before, after) {
		t.Errorf("after Apply+Remove:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	if err := Apply(conn, Config{}, []netip.Addr{netip.MustParseAddr("2001:db8::1")}); err == nil {
		t.Error("Apply with an IPv6 address succeeded")
	}
}

// TestDrop sends TCP SYNs and UDP datagrams from an "ISP" namespace to the
// router's uplink address: to a port inside the NAT range they are dropped
// silently (and counted); to a port outside it the kernel still answers
// with RST / port unreachable.
func TestDrop(t *testing.T) {
	r, i := nstest.New(t), nstest.New(t)
	router, isp := r.NsHandle(), i.NsHandle()
	nstest.Veth(t, r.Handle(), "up1", "100.64.1.2/24", i.Handle(), isp, "isp1", "100.64.1.1/24")
	conn := connIn(t, router)
	if err := Apply(conn, Config{Ports: [2]uint16{20000, 32767}}, []netip.Addr{a1}); err != nil {
		t.Fatal(err)
	}

	const wait = 300 * time.Millisecond
	tcp := func(port int) error {
		return nstest.Do(isp, func() error {
			c, err := net.DialTimeout("tcp4", fmt.Sprintf("100.64.1.2:%d", port), wait)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	udp := func(port int) error {
		return nstest.Do(isp, func() error {
			c, err := net.Dial("udp4", fmt.Sprintf("100.64.1.2:%d", port))
			if err != nil {
				return err
			}
			defer c.Close()
			for range 3 { // the ICMP error of the first one makes a later call fail
				if _, err := c.Write([]byte("x")); err != nil {
					return err
				}
				c.SetReadDeadline(time.Now().Add(wait / 3))
				if _, err := c.Read(make([]byte, 16)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					return err
				}
			}
			return os.ErrDeadlineExceeded
		})
	}

	if err := tcp(40000); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("TCP to port 40000 (outside the range): %v, want connection refused (RST)", err)
	}
	if err := udp(40000); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("UDP to port 40000 (outside the range): %v, want connection refused (port unreachable)", err)
	}
	if err := tcp(25000); !errors.Is(err, os.ErrDeadlineExceeded) && !isTimeout(err) {
		t.Errorf("TCP to port 25000 (NAT range): %v, want a timeout (no RST)", err)
	}
	if err := udp(25000); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("UDP to port 25000 (NAT range): %v, want no answer", err)
	}
	_, packets := counters(t, conn, "wanflow")
	if len(packets) != 2 || packets[0] == 0 || packets[1] < 3 {
		t.Errorf("rule counters (tcp, udp) = %v, want tcp ≥ 1 SYN and udp ≥ 3", packets)
	}
	t.Logf("dropped: tcp %d packets, udp %d packets", packets[0], packets[1])
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var (
	lanNet  = netip.MustParsePrefix("10.77.0.0/24")
	lanNet2 = netip.MustParsePrefix("192.168.5.0/24")
)

// natHandles returns the handles of the rules of the fail-open chain.
func natHandles(t *testing.T, conn *nftables.Conn) []uint64 {
	t.Helper()
	tb := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: DefaultTable}
	rules, err := conn.GetRules(tb, &nftables.Chain{Name: NATChainName, Table: tb})
	if err != nil {
		t.Fatal(err)
	}
	var hs []uint64
	for _, r := range rules {
		hs = append(hs, r.Handle)
	}
	return hs
}

func TestApplyFailOpen(t *testing.T) {
	ns := nstest.New(t).NsHandle()
	conn := connIn(t, ns)
	cfg := Config{LANPrefixes: []netip.Prefix{lanNet}, Interfaces: []string{"up2", "up1"}, TUN: "wf0", LookupMark: 0x77f10000}
	if err := Apply(conn, cfg, []netip.Addr{a1, a2}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	first := dump(t, conn)
	h1, n1 := natHandles(t, conn), func() []uint64 { h, _ := counters(t, conn, DefaultTable); return h }()
	if err := Apply(conn, cfg, []netip.Addr{a2, a1}); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if second := dump(t, conn); !reflect.DeepEqual(first, second) {
		t.Errorf("second Apply changed the ruleset:\n%s\n---\n%s", strings.Join(first, "\n"), strings.Join(second, "\n"))
	}
	t.Logf("ruleset:\n%s", strings.Join(first, "\n"))
	for _, l := range []string{
		"chain wanflow prerouting type=filter hook=0 prio=-300 policy=1",
		"chain wanflow postrouting type=nat hook=4 prio=100 policy=1",
		"set wanflow uplink_addrs ipv4_addr {100.64.1.2,100.64.2.2}",
		"set wanflow uplink_ifaces ifname {up1,up2}",
		"chain wanflow notrack type=filter hook=0 prio=-450 policy=1",
	} {
		if !slices.Contains(first, l) {
			t.Errorf("missing %q", l)
		}
	}
	var masq []string
	for _, l := range first {
		if strings.HasPrefix(l, "rule wanflow postrouting ") {
			masq = append(masq, l)
		}
	}
	if len(masq) != 1 || !strings.Contains(masq[0], `"wanflow v3: fail-open masquerade from 10.77.0.0/24 (lan `) ||
		!strings.Contains(masq[0], "SetName:uplink_ifaces") || !strings.Contains(masq[0], " counter *expr.Masq&{Random:false FullyRandom:false Persistent:false ToPorts:false") {
		t.Errorf("fail-open rules:\n%s", strings.Join(masq, "\n"))
	}

	var nt []string
	for _, l := range first {
		if strings.HasPrefix(l, "rule wanflow notrack ") {
			nt = append(nt, l)
		}
	}
	if len(nt) != 2 || !strings.Contains(nt[0], `"wanflow v3: untracked: from 10.77.0.0/24 routed into TUN wf0 (lookup mark 0x77f10000)"`) ||
		!strings.Contains(nt[0], "*expr.Fib") || !strings.Contains(nt[1], `"wanflow v3: untracked: from TUN wf0"`) {
		t.Errorf("notrack rules:\n%s", strings.Join(nt, "\n"))
	}
	// With the TUN, the guard drops the kernel's copy only while the TUN
	// routes (TestDropOnlyWhileTUN tests what that does).
	var pre []string
	for _, l := range first {
		if strings.HasPrefix(l, "rule wanflow prerouting ") {
			pre = append(pre, l)
		}
	}
	if len(pre) != 2 || !strings.Contains(pre[0], "while TUN wf0 routes (lookup mark 0x77f10000)") ||
		!strings.Contains(pre[0], "FlagSADDR:true") || !strings.Contains(pre[1], "FlagSADDR:true") {
		t.Errorf("guard rules:\n%s", strings.Join(pre, "\n"))
	}

	// New interfaces: the set changes, every rule stays.
	cfg.Interfaces = []string{"ppp0", "up1"}
	if err := Apply(conn, cfg, []netip.Addr{a1, a2}); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, conn); !slices.Contains(got, "set wanflow uplink_ifaces ifname {ppp0,up1}") {
		t.Errorf("interface set not updated:\n%s", strings.Join(got, "\n"))
	}
	if h, n := natHandles(t, conn), func() []uint64 { h, _ := counters(t, conn, DefaultTable); return h }(); !reflect.DeepEqual(h, h1) || !reflect.DeepEqual(n, n1) {
		t.Errorf("an interface change replaced rules: nat %v → %v, prerouting %v → %v", h1, h, n1, n)
	}

	// Another LAN prefix: the table is rebuilt, twice is once.
	cfg.LANPrefixes = []netip.Prefix{lanNet2, lanNet}
	for range 2 {
		if err := Apply(conn, cfg, []netip.Addr{a1}); err != nil {
			t.Fatal(err)
		}
	}
	if h := natHandles(t, conn); len(h) != 2 {
		t.Errorf("%d fail-open rules for two LAN prefixes, want 2", len(h))
	}
	// No LAN prefix: no fail-open chain and no interface set.
	if err := Apply(conn, Config{}, []netip.Addr{a1}); err != nil {
		t.Fatal(err)
	}
	for _, l := range dump(t, conn) {
		if strings.Contains(l, "postrouting") || strings.Contains(l, IfaceSetName) {
			t.Errorf("fail-open left without LAN prefixes: %s", l)
		}
	}
	if err := Remove(conn, ""); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, conn); len(got) != 0 {
		t.Errorf("after Remove: %q", got)
	}
}

// TestMasquerade forwards UDP from a LAN namespace through a router
// namespace to an ISP namespace that has no route back to the LAN: it is
// answered only if the fail-open chain masquerades it to the uplink address
// (keeping the source port). Traffic leaving through an interface that is
// not an uplink is not translated.
func TestMasquerade(t *testing.T) {
	lanNS, r, i := nstest.New(t), nstest.New(t), nstest.New(t)
	router := r.NsHandle()
	nstest.Veth(t, r.Handle(), "lan0", "10.77.0.1/24", lanNS.Handle(), lanNS.NsHandle(), "eth0", "10.77.0.10/24")
	nstest.Veth(t, r.Handle(), "up1", "100.64.1.2/24", i.Handle(), i.NsHandle(), "isp1", "100.64.1.1/24")
	nstest.Veth(t, r.Handle(), "other0", "192.0.2.2/24", i.Handle(), i.NsHandle(), "isp2", "192.0.2.1/24")
	gw := &netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: net.IPv4(10, 77, 0, 1)}
	if err := lanNS.Handle().RouteAdd(gw); err != nil {
		t.Fatal(err)
	}
	if err := r.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
		t.Fatal(err)
	}
	conn := connIn(t, router)
	cfg := Config{LANPrefixes: []netip.Prefix{lanNet}, Interfaces: []string{"up1"}}
	for range 2 {
		if err := Apply(conn, cfg, []netip.Addr{a1}); err != nil {
			t.Fatal(err)
		}
	}

	// The ISP's server answers each datagram with the address it saw.
	udpEchoServer(t, i)
	seen := func(lport int, dst string) (string, error) {
		var got string
		err := lanNS.Do(func() error {
			c, err := net.DialUDP("udp4", &net.UDPAddr{Port: lport}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
			if err != nil {
				return err
			}
			defer c.Close()
			buf := make([]byte, 64)
			for range 5 {
				c.Write([]byte("x"))
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if n, err := c.Read(buf); err == nil {
					got = string(buf[:n])
					return nil
				}
			}
			return os.ErrDeadlineExceeded
		})
		return got, err
	}
	got, err := seen(40000, "100.64.1.1:7")
	if err != nil {
		t.Errorf("from the LAN: %v (no answer: not masqueraded)", err)
	} else if got != "100.64.1.2:40000" {
		t.Errorf("the server saw %s, want 100.64.1.2:40000", got)
	}
	// other0 is not an uplink: the ISP sees the LAN address, has no route
	// back to it and cannot answer.
	if got, err := seen(40001, "192.0.2.1:7"); err == nil {
		t.Errorf("through a non-uplink interface the server saw %s and answered; want no translation", got)
	}
	tb := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: DefaultTable}
	rules, err := conn.GetRules(tb, &nftables.Chain{Name: NATChainName, Table: tb})
	if err != nil || len(rules) != 1 {
		t.Fatalf("fail-open rules: %d, %v", len(rules), err)
	}
	for _, e := range rules[0].Exprs {
		if c, ok := e.(*expr.Counter); ok && c.Packets != 1 {
			t.Errorf("fail-open rule counted %d packets, want 1 (the first of the flow)", c.Packets)
		}
	}
}

// udpEchoServer runs, until the test ends, a UDP server on port 7 in ns
// that answers each datagram with the source address:port it saw.
func udpEchoServer(t *testing.T, ns *nstest.NS) {
	t.Helper()
	var srv *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 7})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			srv.WriteToUDPAddrPort([]byte(from.String()), from)
		}
	}()
}

// TestDropOnlyWhileTUN: with fail-open (a TUN and its lookup mark), the
// kernel's copy of a reply to a NAT port is dropped while the TUN exists
// (the dataplane owns those ports), and reaches the kernel once it is gone
// (a crash): a LAN flow the fail-open masquerade carries with a source
// port in the NAT range gets its replies, and a reply to a dead mapping is
// answered by the kernel (a reset) instead of lingering.
func TestDropOnlyWhileTUN(t *testing.T) {
	r, i := nstest.New(t), nstest.New(t)
	router, isp := r.NsHandle(), i.NsHandle()
	nstest.Veth(t, r.Handle(), "up1", "100.64.1.2/24", i.Handle(), isp, "isp1", "100.64.1.1/24")
	h := r.Handle()
	// What lan/steer installs: the TUN, table 7700 through it, and the
	// lookup-mark rule.
	const mark = 0x77f10000
	tunFile := nstest.OpenTUN(t, router, "wf0")
	tun := nstest.Link(t, h, "wf0")
	if err := h.LinkSetUp(tun); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{Table: 7700, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, LinkIndex: tun.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	rule := netlink.NewRule()
	rule.Priority, rule.Table, rule.Mark = 7695, 7700, mark
	m := uint32(0xffffffff)
	rule.Mask = &m
	if err := h.RuleAdd(rule); err != nil {
		t.Fatal(err)
	}
	conn := connIn(t, router)
	cfg := Config{LANPrefixes: []netip.Prefix{lanNet}, Interfaces: []string{"up1"}, TUN: "wf0", LookupMark: mark}
	if err := Apply(conn, cfg, []netip.Addr{a1}); err != nil {
		t.Fatal(err)
	}
	tcp := func(port int) error {
		return nstest.Do(isp, func() error {
			c, err := net.DialTimeout("tcp4", fmt.Sprintf("100.64.1.2:%d", port), 300*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := tcp(25000); !isTimeout(err) {
		t.Errorf("TCP to NAT port 25000 while the TUN exists: %v, want a timeout (kernel copy dropped, no RST)", err)
	}
	if err := tcp(40000); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("TCP to port 40000 (outside the range): %v, want connection refused", err)
	}
	// The TUN goes (the process died): its route goes with it.
	tunFile.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := h.LinkByName("wf0"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("wf0 still there after its file was closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tcp(25000); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("TCP to NAT port 25000 without the TUN: %v, want connection refused (the kernel's own answer)", err)
	}
	_, packets := counters(t, conn, "wanflow")
	t.Logf("guard rule counters (tcp, udp): %v", packets)
	if len(packets) < 1 || packets[0] == 0 {
		t.Errorf("the TCP guard rule dropped nothing while the TUN existed: %v", packets)
	}
}
