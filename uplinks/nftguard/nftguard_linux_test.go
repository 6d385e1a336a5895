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
		if !strings.Contains(rules[i], `"wanflow v1: drop kernel copy of NAT replies, `+proto+` dport 20000-32767"`) ||
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
