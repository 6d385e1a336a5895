package bench

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// checkSticky fails the test unless every flow got all its replies and the
// server saw each flow from exactly one address:port (one uplink, one NAT
// mapping). It returns the number of flows per uplink address.
func checkSticky(t *testing.T, flows []labclient.Flow) map[netip.Addr]int {
	t.Helper()
	s := labclient.Summarize(flows)
	t.Logf("%v", s)
	if s.Failed > 0 {
		t.Errorf("%d of %d flows failed; first: %v", s.Failed, s.Flows, s.FirstErr)
	}
	moved := 0
	for i := range flows {
		if len(flows[i].Seen) > 1 {
			if moved < 5 {
				t.Errorf("%s flow %d seen from %v", flows[i].Proto, flows[i].Index, flows[i].Seen)
			}
			moved++
		}
	}
	if moved > 0 {
		t.Errorf("%d flows were seen from more than one source", moved)
	}
	return s.PerAddr
}

// checkSplit fails the test unless the share of flows on each uplink is
// within tol (absolute, e.g. 0.03 = 3 percentage points) of its weight's.
func checkSplit(t *testing.T, l *lab.Lab, per map[netip.Addr]int, weights []int, tol float64) {
	t.Helper()
	total, wsum := 0, 0
	for _, n := range per {
		total += n
	}
	for _, w := range weights {
		wsum += w
	}
	for i, u := range l.Uplinks {
		got := float64(per[u.Addr]) / float64(total)
		want := float64(weights[i]) / float64(wsum)
		t.Logf("uplink %s (%v): %d flows = %.2f%%, weight share %.2f%%", u.Name, u.Addr, per[u.Addr], 100*got, 100*want)
		if math.Abs(got-want) > tol {
			t.Errorf("uplink %s carries %.2f%% of flows, want %.2f%% ± %.0f points", u.Name, 100*got, 100*want, 100*tol)
		}
	}
}

func run(t *testing.T, ns *lab.NS, cfg labclient.Config) []labclient.Flow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	flows, err := labclient.Run(ctx, ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return flows
}

// TestWeightedStickiness: three uplinks in one tier with weights 8/6/3 and
// affinity flow; 3,000 TCP and 3,000 UDP flows of 20 messages each.
func TestWeightedStickiness(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}, {}}})
	weights := []int{8, 6, 3}
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Weights: weights}))
	flows := run(t, l.Hosts[0], labclient.Config{TCPFlows: 3000, UDPFlows: 3000, Messages: 20})
	per := checkSticky(t, flows)
	checkSplit(t, l, per, weights, 0.03)
}

// TestTiers: tiers 1/2/3 put every flow on tier 1.
func TestTiers(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}, {}}})
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Weights: []int{1, 10, 10}, Tiers: []int{1, 2, 3}}))
	flows := run(t, l.Hosts[0], labclient.Config{TCPFlows: 300, UDPFlows: 300, Messages: 5})
	per := checkSticky(t, flows)
	if per[l.Uplinks[0].Addr] != len(flows) {
		t.Errorf("tier 1 carries %d of %d flows, want all: %v", per[l.Uplinks[0].Addr], len(flows), per)
	}
}

// TestAffinitySrcDst: with affinity src-dst every flow of one host–server
// pair leaves by one uplink, and the pairs still spread over the uplinks.
func TestAffinitySrcDst(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}, {}}, ExtraHostAddrs: 20})
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Weights: []int{1, 1, 1}, Affinity: "src-dst"}))
	var targets []netip.AddrPort
	for _, s := range l.Servers[:10] {
		targets = append(targets, netip.AddrPortFrom(s, lab.EchoPort))
	}
	// 2,000 flows over 20 sources × 10 servers: every pair gets 10 flows
	// (flow j uses source j%20 and server j%10, so pairs repeat every 20).
	flows := run(t, l.Hosts[0], labclient.Config{TCPFlows: 1000, UDPFlows: 1000, Messages: 3, Sources: l.HostExtraAddrs, Targets: targets})
	per := checkSticky(t, flows)
	type pair struct{ src, dst netip.Addr }
	seen := map[pair]map[netip.Addr]bool{}
	for _, f := range flows {
		if len(f.Seen) == 0 {
			continue
		}
		p := pair{f.Local.Addr(), f.Target.Addr()}
		if seen[p] == nil {
			seen[p] = map[netip.Addr]bool{}
		}
		seen[p][f.Seen[0].Addr()] = true
	}
	for p, ups := range seen {
		if len(ups) != 1 {
			t.Errorf("pair %v → %v used %d uplinks, want 1", p.src, p.dst, len(ups))
		}
	}
	if len(seen) < 20 {
		t.Errorf("only %d host–server pairs seen", len(seen))
	}
	for _, u := range l.Uplinks {
		if per[u.Addr] == 0 {
			t.Errorf("uplink %s got no pair at all: %v", u.Name, per)
		}
	}
}

// TestLongUDPFlow: a 10,000-packet UDP flow never changes uplink.
func TestLongUDPFlow(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}, {}}})
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Weights: []int{8, 6, 3}}))
	flows := run(t, l.Hosts[0], labclient.Config{UDPFlows: 1, Messages: 10000, Timeout: 2 * time.Second})
	checkSticky(t, flows)
	if flows[0].Replies != 10000 {
		t.Errorf("%d of 10000 replies", flows[0].Replies)
	}
}

// TestUplinkKinds: an uplink whose gateway (the ADSL modem) sits on the LAN
// segment itself, a plain Ethernet uplink, and a layer-3 uplink without MAC
// addresses (like PPP) pass the same stickiness test, with GRO on for the
// Ethernet uplink.
func TestUplinkKinds(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{
		{Kind: lab.KindLANSegment}, {Kind: lab.KindVeth, GRO: true}, {Kind: lab.KindL3},
	}})
	weights := []int{1, 1, 1}
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Weights: weights}))
	flows := run(t, l.Hosts[0], labclient.Config{TCPFlows: 600, UDPFlows: 600, Messages: 20})
	per := checkSticky(t, flows)
	for _, u := range l.Uplinks {
		if per[u.Addr] == 0 {
			t.Errorf("uplink %s (%v, %v) carried no flow: %v", u.Name, u.Kind, u.Addr, per)
		}
	}
	checkSplit(t, l, per, weights, 0.06)
}

// TestPingAndTraceroute: ping through the router gets its replies, and
// TTL-limited probes get their ICMP time-exceeded answers from each hop:
// the router itself, the ISP gateway (translated back through NAT), and
// finally port unreachable from the server.
func TestPingAndTraceroute(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}}})
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{}))
	ctx := context.Background()
	res, err := labclient.Ping(ctx, l.Hosts[0], l.Servers[0], labclient.PingConfig{Count: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != res.Sent {
		t.Errorf("ping: %d of %d replies", res.Received, res.Sent)
	}
	// The real ping binary too, when installed.
	if out, err := l.Hosts[0].Command(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", l.Servers[1].String()).CombinedOutput(); err != nil {
		t.Errorf("ping: %v\n%s", err, out)
	}
	hops := []struct {
		from netip.Addr
		typ  uint8
	}{
		{netip.MustParseAddr("10.77.0.1"), 11},
		{l.Uplinks[0].Gateway, 11},
		{l.Servers[0], 3},
	}
	for ttl, want := range hops {
		from, typ, code, err := traceProbe(l.Hosts[0], l.Servers[0], ttl+1)
		if err != nil {
			t.Errorf("ttl %d: %v", ttl+1, err)
			continue
		}
		t.Logf("ttl %d: ICMP %d/%d from %v", ttl+1, typ, code, from)
		if from != want.from || typ != want.typ {
			t.Errorf("ttl %d: ICMP type %d from %v, want type %d from %v", ttl+1, typ, from, want.typ, want.from)
		}
	}
}

// TestNoLeftovers: SIGINT removes everything wanflow installed; after a
// kill -9, the next start reconciles the leftovers and leaves exactly one
// copy of each object.
func TestNoLeftovers(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	yaml := labrouter.ConfigYAML(l, labrouter.Options{})
	before := kernelState(t, l)
	if before.total() != 0 {
		t.Fatalf("lab router already has wanflow state: %v", before)
	}

	r, err := labrouter.Start(l, wanflowBin, t.TempDir(), yaml, nil, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	running := kernelState(t, l)
	t.Logf("while running: %v", running)
	if running.tun != 1 || running.nftTables != 1 || running.rules == 0 || running.routes == 0 {
		t.Errorf("while running, want TUN, nft table, rules and routes: %v", running)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("%v\n%s", err, r.Log())
	}
	if after := kernelState(t, l); after.total() != 0 {
		t.Errorf("after SIGINT: %v left behind\n%s", after, r.Log())
	}

	// Crash, then start again: same state as a clean start, no duplicates.
	r, err = labrouter.Start(l, wanflowBin, t.TempDir(), yaml, nil, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r.Kill()
	crashed := kernelState(t, l)
	t.Logf("after kill -9: %v", crashed)
	r = startRouter(t, l, yaml)
	again := kernelState(t, l)
	if again != running {
		t.Errorf("after kill -9 and restart: %v, want %v", again, running)
	}
	if again.dupRules != 0 || again.dupRoutes != 0 {
		t.Errorf("duplicates after restart: %v", again)
	}
	flows := run(t, l.Hosts[0], labclient.Config{TCPFlows: 50, UDPFlows: 50, Messages: 3})
	checkSticky(t, flows)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if after := kernelState(t, l); after.total() != 0 {
		t.Errorf("after the second SIGINT: %v left behind", after)
	}
}

var _ = fmt.Sprintf
