package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// fastProbes is the probe setting: interval 200ms, down_after 3.
const fastProbes = `probes:
  targets: [1.1.1.1, 8.8.8.8]
  interval: 200ms
  timeout: 100ms
  down_after: 3
  up_after: 3
`

func sleep(d time.Duration) { time.Sleep(d) }

// TestISPDeathFailover: tier 1's ISP dies behind a live link. New flows go
// to tier 2 within 1 s of the fault and none fails after that; a TCP
// connection on the dead uplink is reset at the LAN host; a UDP flow on it
// carries on through tier 2; when tier 1 recovers new flows return within
// up_after × interval + 1 s, and streams that moved stay untouched.
func TestISPDeathFailover(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	yaml := labrouter.ConfigYAML(l, labrouter.Options{Tiers: []int{1, 2}, Extra: fastProbes})
	startRouter(t, l, yaml)
	up1, up2 := l.Uplinks[0].Addr, l.Uplinks[1].Addr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := netip.AddrPortFrom(l.Servers[0], lab.EchoPort)

	// Every echo request crossing each ISP's link to the router, by source:
	// probes must leave through their own uplink only.
	caps := []*echoCapture{captureEchoRequests(t, l.ISPs[0], "down"), captureEchoRequests(t, l.ISPs[1], "down")}
	smp := RunSampler(ctx, l.Hosts[0], srv, 10*time.Millisecond, 400*time.Millisecond)
	tcp1, err := StartStream(ctx, l.Hosts[0], "tcp", 0, netip.AddrPortFrom(l.Servers[1], lab.EchoPort), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	udp1, err := StartStream(ctx, l.Hosts[0], "udp", 0, netip.AddrPortFrom(l.Servers[2], lab.EchoPort), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	sleep(time.Second)

	fault := time.Now()
	if err := l.SetISPInternet(0, false); err != nil {
		t.Fatal(err)
	}
	sleep(2500 * time.Millisecond)
	sw := SwitchTo(smp.Samples(), fault, up2)
	t.Logf("ISP death: new flows through tier 2 %v after the fault; %d new flows failed before, %d after (of %d)", sw.After, sw.FailedBefore, sw.FailedAfter, sw.Total)
	if sw.After < 0 || sw.After > time.Second {
		t.Errorf("failover took %v, want ≤ 1s", sw.After)
	}
	if sw.FailedAfter != 0 {
		t.Errorf("%d new flows failed after failover", sw.FailedAfter)
	}
	detected := fault.Add(sw.After)
	ts := tcp1.Stats()
	if ts.Err == nil {
		t.Errorf("TCP connection on the dead uplink was not reset (%d replies)", ts.Replies)
	} else {
		t.Logf("TCP on the dead uplink: %v, %v after failover", ts.Err, ts.ErrAt.Sub(detected).Round(time.Millisecond))
		if ts.ErrAt.Sub(detected) > time.Second || !strings.Contains(ts.Err.Error(), "reset") {
			t.Errorf("TCP connection ended by %v %v after detection, want a reset within 1s", ts.Err, ts.ErrAt.Sub(detected))
		}
	}
	us := udp1.Stats()
	if len(us.Seen) != 2 || us.Seen[0] != up1 || us.Seen[1] != up2 {
		t.Errorf("UDP flow seen from %v, want up1 then up2", us.Seen)
	}

	// Streams opened during the outage run through tier 2 and stay there.
	tcp2, err := StartStream(ctx, l.Hosts[0], "tcp", 0, netip.AddrPortFrom(l.Servers[3], lab.EchoPort), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	sleep(500 * time.Millisecond)
	recovered := time.Now()
	if err := l.SetISPInternet(0, true); err != nil {
		t.Fatal(err)
	}
	sleep(2500 * time.Millisecond)
	back := SwitchTo(smp.Samples(), recovered, up1)
	limit := 3*200*time.Millisecond + time.Second
	t.Logf("recovery: new flows back on tier 1 %v after the ISP came back (limit %v); %d then went elsewhere", back.After, limit, back.FailedAfter)
	if back.After < 0 || back.After > limit {
		t.Errorf("failback took %v, want ≤ %v", back.After, limit)
	}
	if back.FailedAfter != 0 {
		t.Errorf("%d new flows failed or left tier 1 after failback", back.FailedAfter)
		for _, s := range smp.Samples() {
			if d := s.At.Sub(recovered); d > back.After && s.Seen != up1 {
				t.Logf("  %v: %v rtt %v", d.Round(time.Millisecond), s.Seen, s.RTT)
			}
		}
	}
	for i, c := range caps {
		own, other := l.Uplinks[i].Addr, l.Uplinks[1-i].Addr
		t.Logf("ISP %d's link saw %d echo requests from %v (its uplink) and %d from %v", i+1, c.count(own), own, c.count(other), other)
		if c.count(own) == 0 || c.count(other) != 0 {
			t.Errorf("ISP %d: %d probes from its own uplink, %d from the other: probes must leave only through their own uplink", i+1, c.count(own), c.count(other))
		}
	}
	s2 := tcp2.Stats()
	if s2.Err != nil || len(s2.Seen) != 1 || s2.Seen[0] != up2 {
		t.Errorf("TCP stream opened during the outage: err %v, seen %v; want it untouched on up2", s2.Err, s2.Seen)
	}
	if s2.MaxGap > 500*time.Millisecond {
		t.Errorf("TCP stream on tier 2 stalled for %v during failback", s2.MaxGap)
	}
}

// TestCarrierLossFailover: an uplink that loses carrier is down within
// 200 ms — new flows leave by the next uplink.
func TestCarrierLossFailover(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Tiers: []int{1, 2}, Extra: fastProbes}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	smp := RunSampler(ctx, l.Hosts[0], netip.AddrPortFrom(l.Servers[0], lab.EchoPort), 5*time.Millisecond, 300*time.Millisecond)
	sleep(700 * time.Millisecond)
	fault := time.Now()
	if err := l.SetUplinkCarrier(0, false); err != nil {
		t.Fatal(err)
	}
	sleep(time.Second)
	sw := SwitchTo(smp.Samples(), fault, l.Uplinks[1].Addr)
	t.Logf("carrier loss: new flows through the next uplink %v after the fault; %d failed before, %d after", sw.After, sw.FailedBefore, sw.FailedAfter)
	if sw.After < 0 || sw.After > 200*time.Millisecond {
		t.Errorf("carrier-loss failover took %v, want ≤ 200ms", sw.After)
	}
	if sw.FailedAfter != 0 {
		t.Errorf("%d new flows failed after failover", sw.FailedAfter)
	}
}

// TestSurvivorsUndisturbed: during failover and failback, flows on the
// surviving uplink of the same tier see no error and no gap beyond noise.
func TestSurvivorsUndisturbed(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}, {}}})
	yaml := labrouter.ConfigYAML(l, labrouter.Options{Tiers: []int{1, 1, 2}, Extra: fastProbes})
	startRouter(t, l, yaml)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	host := l.HostAddrs[0]
	var streams []*Stream
	for k, proto := range []string{"tcp", "udp"} {
		dst := netip.AddrPortFrom(l.Servers[k], lab.EchoPort)
		pn := uint8(6)
		if proto == "udp" {
			pn = 17
		}
		port, err := PortFor(yaml, pn, host, dst, 1, uint16(42000+1000*k))
		if err != nil {
			t.Fatal(err)
		}
		s, err := StartStream(ctx, l.Hosts[0], proto, port, dst, 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	sleep(700 * time.Millisecond)
	if err := l.SetISPInternet(0, false); err != nil {
		t.Fatal(err)
	}
	sleep(2 * time.Second)
	if err := l.SetISPInternet(0, true); err != nil {
		t.Fatal(err)
	}
	sleep(2 * time.Second)
	for i, s := range streams {
		st := s.Stats()
		t.Logf("survivor %d: %d/%d answered, max gap %v, seen %v, err %v", i, st.Replies, st.Sent, st.MaxGap, st.Seen, st.Err)
		if st.Err != nil || len(st.Seen) != 1 || st.Seen[0] != l.Uplinks[1].Addr {
			t.Errorf("survivor %d disturbed: err %v, seen %v", i, st.Err, st.Seen)
		}
		if st.MaxGap > 300*time.Millisecond || st.Sent-st.Replies > 2 {
			t.Errorf("survivor %d: max gap %v, %d of %d lost", i, st.MaxGap, st.Sent-st.Replies, st.Sent)
		}
	}
}

// TestReaddressed: an uplink whose address changes (a DHCP renewal to a new
// address) keeps working for new flows with the new address, and a UDP
// flow NATed to the old address moves to the new one.
func TestReaddressed(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}}})
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Extra: fastProbes}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	udp, err := StartStream(ctx, l.Hosts[0], "udp", 0, netip.AddrPortFrom(l.Servers[0], lab.EchoPort), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	sleep(300 * time.Millisecond)
	h, err := l.Router.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(l.Uplinks[0].Interface)
	if err != nil {
		t.Fatal(err)
	}
	oldP := l.Uplinks[0].Prefix
	newA := oldP.Addr().Next()
	newP := netip.PrefixFrom(newA, oldP.Bits())
	// A DHCP client renewing to a new address removes the old one, then
	// adds the new one.
	if err := h.AddrDel(link, &netlink.Addr{IPNet: prefixNet(oldP)}); err != nil {
		t.Fatal(err)
	}
	sleep(50 * time.Millisecond)
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: prefixNet(newP)}); err != nil {
		t.Fatal(err)
	}
	sleep(1500 * time.Millisecond)
	smp := RunSampler(ctx, l.Hosts[0], netip.AddrPortFrom(l.Servers[1], lab.EchoPort), 20*time.Millisecond, 300*time.Millisecond)
	sleep(500 * time.Millisecond)
	for _, s := range smp.Samples() {
		if s.Seen != newA {
			t.Errorf("new flow at %v seen from %v, want the new address %v", s.At.Format("15:04:05.000"), s.Seen, newA)
			break
		}
	}
	if st := udp.Stats(); len(st.Seen) != 2 || st.Seen[1] != newA {
		t.Errorf("UDP flow seen from %v, want the old then the new address", st.Seen)
	}
}

// TestL3UplinkReadopted: a layer-3 uplink (PPP-like) whose device vanishes
// and comes back is adopted again without restart; its while_down hook runs
// every retry while the device is gone.
func TestL3UplinkReadopted(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {Kind: lab.KindL3}}})
	marks := filepath.Join(t.TempDir(), "redial")
	hook := fmt.Sprintf("    hook_shell: true\n    retry: 1s\n    while_down: echo \"$WANFLOW_UPLINK $WANFLOW_STATE $WANFLOW_INTERFACE\" >> %s\n", marks)
	yaml := labrouter.ConfigYAML(l, labrouter.Options{Tiers: []int{2, 1}, Extra: fastProbes})
	yaml = strings.Replace(yaml, "  - name: up2\n", "  - name: up2\n"+hook, 1)
	startRouter(t, l, yaml)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := netip.AddrPortFrom(l.Servers[0], lab.EchoPort)
	smp := RunSampler(ctx, l.Hosts[0], srv, 20*time.Millisecond, 300*time.Millisecond)
	sleep(500 * time.Millisecond)
	gone := time.Now()
	if err := l.SetUplinkCarrier(1, false); err != nil {
		t.Fatal(err)
	}
	sleep(3500 * time.Millisecond)
	back := time.Now()
	if err := l.SetUplinkCarrier(1, true); err != nil {
		t.Fatal(err)
	}
	sleep(2500 * time.Millisecond)
	samples := smp.Samples()
	if sw := SwitchTo(samples, gone, l.Uplinks[0].Addr); sw.After < 0 || sw.After > 300*time.Millisecond {
		t.Errorf("device gone: new flows through up1 after %v", sw.After)
	}
	sw := SwitchTo(samples, back, l.Uplinks[1].Addr)
	t.Logf("device back: new flows through it again %v after it reappeared", sw.After)
	if sw.After < 0 || sw.After > 3*200*time.Millisecond+time.Second {
		t.Errorf("re-adoption took %v", sw.After)
	}
	b, _ := os.ReadFile(marks)
	runs := strings.Count(string(b), "\n")
	t.Logf("while_down ran %d times in 3.5 s: %q", runs, b)
	if runs < 3 || runs > 5 || !strings.HasPrefix(string(b), "up2 down up2") {
		t.Errorf("while_down ran %d times (%q), want 3 to 5 runs with the uplink's environment", runs, b)
	}
}

// TestLearnedDNSProbe: an uplink probed with the "dns" target asks the DNS
// servers its PPP/DHCP client wrote into its resolv file, followed as the
// file changes: a server that does not answer takes the uplink down, the
// ISP's real server brings it back.
func TestLearnedDNSProbe(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	resolv := filepath.Join(t.TempDir(), "up2.resolv")
	yaml := labrouter.ConfigYAML(l, labrouter.Options{Tiers: []int{2, 1}, Extra: fastProbes})
	yaml = strings.Replace(yaml, "  - name: up2\n", "  - name: up2\n    resolv_file: "+resolv+"\n    probes: { targets: [dns] }\n", 1)
	startRouter(t, l, yaml)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	smp := RunSampler(ctx, l.Hosts[0], netip.AddrPortFrom(l.Servers[0], lab.EchoPort), 20*time.Millisecond, 300*time.Millisecond)
	write := func(server netip.Addr) {
		if err := os.WriteFile(resolv, []byte("# written by pppd\nnameserver "+server.String()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// No file yet: up2 is judged by its link alone and carries new flows.
	sleep(500 * time.Millisecond)
	if s := smp.Samples(); len(s) == 0 || s[len(s)-1].Seen != l.Uplinks[1].Addr {
		t.Fatalf("before any DNS server is known, new flows should use up2 (tier 1)")
	}
	// A server nobody answers at: up2 goes down, new flows move to up1.
	dead := netip.MustParseAddr("100.64.2.99")
	write(dead)
	wrote := time.Now()
	sleep(3500 * time.Millisecond)
	sw := SwitchTo(smp.Samples(), wrote, l.Uplinks[0].Addr)
	t.Logf("dead DNS server learned: new flows on up1 %v after the file changed", sw.After)
	if sw.After < 0 || sw.After > 3500*time.Millisecond {
		t.Errorf("up2 not taken down by its failing DNS probes (switch after %v)", sw.After)
	}
	// The ISP's own server: up2 is back.
	write(l.Uplinks[1].ISPDNS)
	wrote = time.Now()
	sleep(4 * time.Second)
	sw = SwitchTo(smp.Samples(), wrote, l.Uplinks[1].Addr)
	t.Logf("working DNS server learned: new flows back on up2 %v after the file changed", sw.After)
	if sw.After < 0 || sw.After > 4*time.Second || sw.FailedAfter != 0 {
		t.Errorf("up2 not back after its DNS server answered: %+v", sw)
	}
}
