package bench

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	mdns "github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// hostileScript crafts the hostile packets with scapy (see its docstring).
//
//go:embed testdata/hostile.py
var hostileScript []byte

const (
	// debianPython is Debian's interpreter, the one python3-scapy is
	// installed for (the python3 on PATH may be another).
	debianPython = "/usr/bin/python3"
	// hostilePort is the test's own UDP listener on the first server; the
	// lab's echo servers use 7 and 9000.
	hostilePort = 9999
	// natPortLo and natPortCount: unsolicited packets go to the first
	// ports of the default dataplane.nat_ports (20000-32767).
	natPortLo, natPortCount = 20000, 32
)

// lanHostileCase is one packet (or fragment series) a LAN host sends to
// the server's hostilePort through the router.
type lanHostileCase struct {
	name string
	// forward: the datagram must reach the server with its payload
	// intact; otherwise it must not reach it at all.
	forward bool
	// spoof: checked by the spoofed-source subtest.
	spoof bool
	// where says what happens to it and who counts it.
	where string
}

// lanHostileCases must name exactly the cases testdata/hostile.py sends in
// lan mode. The router's kernel sees every packet first (it forwards lan0 →
// wf0 and decrements the TTL), so whatever its ip_rcv or ip_forward rejects
// never reaches wanflow.
var lanHostileCases = []lanHostileCase{
	{"ok-plain", true, false, "forwarded (positive control for every negative case: same host, same path)"},
	{"spoof-outside", false, true, "source 192.0.2.99: the kernel forwards it (rp_filter 0); wanflow drops it, out_drop_spoofed_source"},
	{"spoof-router-lan", false, true, "source = router's LAN address: router kernel, martian source (rt_cache in_martian_src), never reaches wf0"},
	{"spoof-router-uplink", false, true, "source = router's uplink address: router kernel, martian source"},
	{"spoof-loopback", false, true, "source 127.0.0.1: router kernel, martian source"},
	{"spoof-zero", false, true, "source 0.0.0.0: router kernel, martian source"},
	{"spoof-multicast", false, true, "source 224.0.0.5: router kernel, martian source"},
	{"trunc-hdr", false, false, "12-byte IP header: router kernel ip_rcv, Ip InHdrErrors"},
	{"ihl-short", false, false, "IHL 4: router kernel ip_rcv, Ip InHdrErrors"},
	{"ihl-beyond", false, false, "IHL 15 in a 28-byte packet: router kernel ip_rcv, Ip InHdrErrors"},
	{"len-long", false, false, "total length 100 bytes beyond the frame: router kernel ip_rcv, IpExt InTruncatedPkts"},
	{"len-short-cut", false, false, "total length cuts into the UDP payload: the kernel trims and forwards; wanflow out_drop_invalid (bad_udp_length)"},
	{"len-short-pad", true, false, "total length shorter than the frame (16 trailing bytes): the kernel trims the padding, forwarded intact"},
	{"bad-ip-csum", false, false, "bad IP header checksum: router kernel ip_rcv, IpExt InCsumErrors + Ip InHdrErrors"},
	{"bad-udp-csum", false, false, "bad UDP checksum: forwarded by kernel and wanflow, whose incremental update keeps it bad; the server's kernel drops it (Udp InCsumErrors there)"},
	{"udp-csum-zero", true, false, "UDP checksum 0 (none, RFC 768): forwarded intact, the checksum stays 0"},
	{"udp-len-big", false, false, "UDP length beyond the IP payload: the kernel forwards; wanflow out_drop_invalid (bad_udp_length)"},
	{"tcp-bad-doff", false, false, "TCP data offset 15 in a 28-byte segment: the kernel forwards; wanflow out_drop_invalid (bad_tcp_offset)"},
	{"opt-rr", true, false, "IP option record route: the kernel records its address and forwards; wanflow NATs past the options, forwarded intact"},
	{"opt-nop-eol", true, false, "IP options NOP NOP NOP EOL: forwarded intact"},
	{"ttl0", false, false, "TTL 0: router kernel ip_forward answers ICMP time exceeded from the LAN address (Icmp OutTimeExcds, Ip InHdrErrors), never reaches wf0"},
	{"ttl1", false, false, "TTL 1: router kernel ip_forward, ICMP time exceeded (Icmp OutTimeExcds, Ip InHdrErrors), never reaches wf0"},
	{"ttl3", true, false, "TTL 3: router and ISP decrement it, forwarded intact (positive control for the TTL cases)"},
	{"dst-broadcast", false, false, "destination 255.255.255.255: the router's kernel takes it as local broadcast (IpExt InBcastPkts), never forwarded"},
	{"dst-multicast", false, false, "destination 239.1.2.3 (multicast MAC): router kernel, no multicast routing, never forwarded"},
	{"dst-multicast-router-mac", false, false, "destination 239.1.2.3 to the router's MAC: router kernel, never forwarded"},
	{"proto-gre", false, false, "IP protocol 47: the kernel forwards; wanflow out_drop_unsupported_protocol"},
	{"icmp-timestamp", false, false, "ICMP timestamp request: the kernel forwards; wanflow out_drop_unsupported_protocol"},
	{"icmp-error-noflow", false, false, "ICMP port unreachable about no flow: the kernel forwards; wanflow out_drop_icmp_error_no_flow"},
	{"frag-inorder", true, false, "3 fragments in order: the router's kernel forwards each (no defrag there); wanflow reassembles (out_reassembled), forwarded intact"},
	{"frag-ooo", true, false, "3 fragments, last first: wanflow reassembles, forwarded intact"},
	{"frag-dup", true, false, "a fragment sent twice, identical: wanflow drops the duplicate, forwarded intact"},
	{"frag-overlap", false, false, "fragments overlapping by 8 bytes (consistent data): wanflow's reassembler discards the datagram (RFC 5722 style, like Linux since 4.19), counted in out_drop_fragments_overlap"},
	{"frag-missing", false, false, "middle fragment missing: held by wanflow's reassembler until its 30 s timeout; not counted in any metric"},
}

// inetHostileCase is one kind of packet sent from the internet to the
// router's uplink address.
type inetHostileCase struct {
	name string
	// noFlow: each packet reaches the dataplane (the uplink socket's BPF
	// filter passes it) and is counted in in_drop_no_flow.
	noFlow bool
	where  string
}

// inetHostileCases must name exactly the cases hostile.py sends in inet
// mode.
var inetHostileCases = []inetHostileCase{
	{"udp-noflow-range", true, "UDP to 32 NAT ports (the live ones skipped) from a remote with no flow: BPF passes, wanflow in_drop_no_flow; nftables drops the kernel's copy (no port unreachable)"},
	{"tcp-syn-noflow-range", true, "TCP SYN to the same ports: wanflow in_drop_no_flow; nftables drops the kernel's copy (no RST)"},
	{"udp-wrong-addr", true, "UDP to the live flow's NAT port from another server: in_drop_no_flow"},
	{"udp-wrong-port", true, "UDP to the live flow's NAT port from its server but another port: in_drop_no_flow"},
	{"icmp-unreach-noflow", true, "ICMP host unreachable embedding the live NAT port towards another server: BPF passes type 3, in_drop_no_flow"},
	{"icmp-timex-noflow", true, "ICMP time exceeded embedding an unused NAT port: BPF passes type 11, in_drop_no_flow"},
	{"icmp-unreach-tcp-noflow", true, "ICMP port unreachable embedding TCP (only UDP flows exist): in_drop_no_flow"},
	{"echo-request", false, "ICMP echo request to the uplink address: BPF rejects it, the router's kernel answers (positive control for the sniffer)"},
	{"udp-legit", false, "the live flow's own reply: reaches the LAN host (positive control)"},
	{"icmp-unreach-ctrl", false, "ICMP port unreachable about the control flow: translated to the LAN host, in_icmp_error_translated (positive control)"},
}

// TestHostilePackets sends hostile packets crafted with scapy through the
// running daemon: malformed and spoofed packets from a LAN host, unsolicited
// packets from the internet to the uplink address, and DNS and DHCP queries
// from the ISP's side of the uplink. Each must be a counted drop or a
// correct forward; afterwards the daemon still runs and forwards new flows.
func TestHostilePackets(t *testing.T) {
	labtest.RequireRoot(t)
	needScapy(t)
	began := time.Now()
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}}})
	up := l.Uplinks[0]
	host, hostAddr := l.Hosts[0], l.HostAddrs[0]
	routerLAN := l.RouterLANAddr.Addr()

	yaml := labrouter.ConfigYAML(l, labrouter.Options{})
	lanExtra := fmt.Sprintf("  prefixes: [%s]\n  dhcp: { range: 10.77.0.100-10.77.0.199, lease_file: %s }\n  dns: { listen: [%s] }\n",
		lab.LANPrefix, filepath.Join(t.TempDir(), "leases"), routerLAN)
	yaml = strings.Replace(yaml, "lan:\n  interface: "+l.RouterLAN+"\n", "lan:\n  interface: "+l.RouterLAN+"\n"+lanExtra, 1)
	yaml = strings.Replace(yaml, "  - name: "+up.Name+"\n", fmt.Sprintf("  - name: %s\n    dns: [%s]\n", up.Name, up.ISPDNS), 1)
	r := startRouter(t, l, yaml)

	script := filepath.Join(t.TempDir(), "hostile.py")
	if err := os.WriteFile(script, hostileScript, 0o755); err != nil {
		t.Fatal(err)
	}
	nonce := strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36)
	sink := listenTags(t, l.Internet, netip.AddrPortFrom(l.Servers[0], hostilePort), "wfh:"+nonce+":")
	hostIf := routeDev(t, host, l.Servers[0])

	// A: from the LAN, one scapy run sends every case; the subtests judge.
	dpBefore := scrape(t, l)
	rkBefore, ikBefore := kernelStats(t, l.Router), kernelStats(t, l.Internet)
	a := runScapy(t, host, script, "lan", "--iface", hostIf, "--router-mac", linkMAC(t, l.Router, l.RouterLAN).String(),
		"--src", hostAddr.String(), "--dst", l.Servers[0].String(), "--dport", strconv.Itoa(hostilePort),
		"--router-lan", routerLAN.String(), "--uplink", up.Addr.String(), "--nonce", nonce)
	checkCaseNames(t, "lan", a.order, lanHostileCases, func(c lanHostileCase) string { return c.name })
	var forward []string
	for _, c := range lanHostileCases {
		if c.forward {
			forward = append(forward, c.name)
		}
	}
	sink.waitFor(forward, 3*time.Second)
	time.Sleep(300 * time.Millisecond) // stragglers that should not come
	dpAfter := scrape(t, l)
	rkAfter, ikAfter := kernelStats(t, l.Router), kernelStats(t, l.Internet)
	got := sink.received()
	for _, c := range lanHostileCases {
		t.Logf("lan %-24s arrived=%d  %s", c.name, len(got[c.name]), c.where)
	}
	logDeltas(t, "router kernel", rkBefore, rkAfter, "Ip.InReceives", "Ip.InHdrErrors", "Ip.InAddrErrors", "Ip.ForwDatagrams",
		"Ip.InDiscards", "Ip.ReasmReqds", "IpExt.InTruncatedPkts", "IpExt.InCsumErrors", "IpExt.InBcastPkts", "IpExt.InMcastPkts",
		"Icmp.OutTimeExcds", "Udp.NoPorts", "rt_cache.in_martian_src", "rt_cache.in_martian_dst")
	logDeltas(t, "server kernel", ikBefore, ikAfter, "Udp.InDatagrams", "Udp.InErrors", "Udp.InCsumErrors")
	logDataplane(t, "lan phase", dpBefore, dpAfter)

	t.Run("lan-spoofed-source", func(t *testing.T) {
		if len(got["ok-plain"]) == 0 {
			t.Fatal("positive control ok-plain (same host, same path) did not reach the server: the checks below would prove nothing")
		}
		for _, c := range lanHostileCases {
			if c.spoof && len(got[c.name]) > 0 {
				t.Errorf("%s reached the server (%d datagrams); want it dropped: %s", c.name, len(got[c.name]), c.where)
			}
		}
		// Only spoof-outside gets past the router's kernel; the others are
		// martians there.
		const name = "out_drop_spoofed_source"
		if _, ok := dpCounter(dpAfter, name); !ok {
			t.Errorf("wanflow_dataplane_%s_total is not exported: the source check against lan.prefixes has not landed", name)
		} else if d := dpDelta(dpBefore, dpAfter, name); d != 1 {
			t.Errorf("wanflow_dataplane_%s_total moved by %v, want 1 (spoof-outside; the kernel drops the martian sources before wf0)", name, d)
		}
	})

	t.Run("lan-malformed", func(t *testing.T) {
		for _, c := range lanHostileCases {
			if c.spoof {
				continue
			}
			want, _ := hex.DecodeString(a.cases[c.name].Payload)
			ps := got[c.name]
			switch {
			case c.forward && len(ps) == 0:
				t.Errorf("%s did not reach the server; want it forwarded intact: %s", c.name, c.where)
			case !c.forward && len(ps) > 0:
				t.Errorf("%s reached the server (%d datagrams); want it dropped: %s", c.name, len(ps), c.where)
			case len(ps) > 1:
				t.Errorf("%s reached the server %d times, want once", c.name, len(ps))
			}
			for _, p := range ps {
				if !bytes.Equal(p, want) {
					t.Errorf("%s arrived corrupted:\n got %x\nwant %x", c.name, p, want)
				}
			}
		}
		for name := range got {
			if !slices.ContainsFunc(lanHostileCases, func(c lanHostileCase) bool { return c.name == name }) {
				t.Errorf("the server got an unknown tag %q", name)
			}
		}
		// The dataplane counters of the cases that reach wf0.
		for _, w := range []struct {
			what string
			want float64
			why  string
		}{
			{"out_drop_invalid", 3, "len-short-cut, udp-len-big, tcp-bad-doff"},
			{"out_drop_unsupported_protocol", 2, "proto-gre, icmp-timestamp"},
			{"out_drop_icmp_error_no_flow", 1, "icmp-error-noflow"},
			{"out_reassembled", 3, "frag-inorder, frag-ooo, frag-dup (frag-overlap and frag-missing never complete)"},
			{"out_drop_fragments_overlap", 1, "frag-overlap (frag-missing times out after 30 s, after the test)"},
			{"out_icmp_time_exceeded", 0, "TTL 0 and 1 expire in the router's kernel before wf0"},
		} {
			if d := dpDelta(dpBefore, dpAfter, w.what); d != w.want {
				t.Errorf("wanflow_dataplane_%s_total moved by %v, want %v (%s)", w.what, d, w.want, w.why)
			}
		}
		// What the kernels did (both namespaces carry only this test's
		// traffic): the router's rejects the broken headers and expires the
		// TTLs; the server's rejects the bad UDP checksum that wanflow
		// forwarded unchanged (had wanflow recomputed the checksum instead
		// of updating it, the tag would have arrived).
		for _, w := range []struct {
			ns            string
			before, after map[string]int64
			key           string
			want          int64
			why           string
		}{
			{"router", rkBefore, rkAfter, "Ip.InHdrErrors", 6, "trunc-hdr, ihl-short, ihl-beyond, bad-ip-csum, and ttl0 and ttl1 (ip_forward counts an expired TTL as a header error)"},
			{"router", rkBefore, rkAfter, "IpExt.InCsumErrors", 1, "bad-ip-csum"},
			{"router", rkBefore, rkAfter, "IpExt.InTruncatedPkts", 1, "len-long"},
			{"router", rkBefore, rkAfter, "Icmp.OutTimeExcds", 2, "ttl0, ttl1"},
			{"router", rkBefore, rkAfter, "Ip.ReasmReqds", 0, "fragments are wanflow's to reassemble, not the router kernel's"},
			{"server", ikBefore, ikAfter, "Udp.InCsumErrors", 1, "bad-udp-csum, forwarded by wanflow with its checksum still bad"},
		} {
			if d := w.after[w.key] - w.before[w.key]; d != w.want {
				t.Errorf("%s kernel %s moved by %d, want %d (%s)", w.ns, w.key, d, w.want, w.why)
			}
		}
		// TTL 0 and 1 get ICMP time exceeded from the router; TTL 3 does not.
		exceeded := map[int]bool{}
		for _, m := range a.icmp {
			if m.Type == 11 && m.Src == routerLAN.String() {
				exceeded[m.InnerSport] = true
			}
		}
		for name, want := range map[string]bool{"ttl0": true, "ttl1": true, "ttl3": false} {
			if exceeded[a.cases[name].Sport] != want {
				t.Errorf("%s: ICMP time exceeded from %v = %v, want %v (ICMP seen by the host: %+v)", name, routerLAN, !want, want, a.icmp)
			}
		}
	})

	t.Run("internet-unsolicited", func(t *testing.T) {
		s := l.Servers
		live := dialUDPIn(t, host, netip.AddrPortFrom(s[0], lab.EchoPort))
		ctrl := dialUDPIn(t, host, netip.AddrPortFrom(s[1], lab.EchoPort))
		livePeer := echoOnce(t, live, "live-1")
		ctrlPeer := echoOnce(t, ctrl, "ctrl-1")
		t.Logf("live flow %v → %v NATed to %v; control flow NATed to %v", live.LocalAddr(), live.RemoteAddr(), livePeer, ctrlPeer)
		if livePeer.Addr() != up.Addr || ctrlPeer.Addr() != up.Addr {
			t.Fatalf("server saw %v and %v, want %v", livePeer, ctrlPeer, up.Addr)
		}
		liveLocal := live.LocalAddr().(*net.UDPAddr).AddrPort()
		ctrlLocal := ctrl.LocalAddr().(*net.UDPAddr).AddrPort()

		// Everything that reaches the LAN host from outside the LAN.
		capt := captureIP(t, host, hostIf, func(p *ipPkt) bool { return !lab.LANPrefix.Contains(p.src) })
		before := scrape(t, l)
		b := runScapy(t, l.Internet, script, "inet", "--iface", routeDev(t, l.Internet, up.Addr), "--uplink", up.Addr.String(),
			"--servers", fmt.Sprintf("%v,%v,%v,%v", s[0], s[1], s[2], s[3]),
			"--live", strconv.Itoa(int(livePeer.Port())), "--ctrl", strconv.Itoa(int(ctrlPeer.Port())),
			"--port-lo", strconv.Itoa(natPortLo), "--count", strconv.Itoa(natPortCount), "--nonce", nonce)
		checkCaseNames(t, "inet", b.order, inetHostileCases, func(c inetHostileCase) string { return c.name })
		legit, _ := hex.DecodeString(b.cases["udp-legit"].Payload)

		// The live socket gets the legitimate reply and nothing else.
		var onLive [][]byte
		buf := make([]byte, 2048)
		for wait := time.Second; ; wait = 300 * time.Millisecond {
			live.SetReadDeadline(time.Now().Add(wait))
			n, err := live.Read(buf)
			if err != nil {
				break
			}
			onLive = append(onLive, slices.Clone(buf[:n]))
		}
		time.Sleep(200 * time.Millisecond)
		capt.stop()
		after := scrape(t, l)
		logDataplane(t, "internet phase", before, after)
		for _, c := range inetHostileCases {
			t.Logf("inet %-24s sent=%d  %s", c.name, b.cases[c.name].Sent, c.where)
		}

		if len(onLive) != 1 || !bytes.Equal(onLive[0], legit) {
			t.Errorf("the live flow's socket read %q, want only the legitimate reply %q", onLive, legit)
		}
		var legitSeen, ctrlSeen bool
		leaked := 0
		for _, p := range capt.packets() {
			switch {
			case p.proto == unix.IPPROTO_UDP && p.src == s[0] && p.sport == lab.EchoPort && p.dst == hostAddr &&
				p.dport == liveLocal.Port() && bytes.Equal(p.payload, legit):
				legitSeen = true
			case p.proto == unix.IPPROTO_ICMP && p.icmpType == 3 && p.src == s[1] && p.dst == hostAddr &&
				p.innerSrc == hostAddr && p.innerSport == ctrlLocal.Port() && p.innerDst == s[1] && p.innerDport == lab.EchoPort:
				ctrlSeen = true
			default:
				if leaked++; leaked <= 5 {
					t.Errorf("reached the LAN host: %v", p)
				}
			}
		}
		if leaked > 5 {
			t.Errorf("%d unsolicited packets reached the LAN host in all", leaked)
		}
		if !legitSeen || !ctrlSeen {
			t.Errorf("positive controls on the LAN host's interface: live flow's reply seen %v, translated ICMP error seen %v; want both", legitSeen, ctrlSeen)
		}

		var noFlow float64
		for _, c := range inetHostileCases {
			if c.noFlow {
				noFlow += float64(b.cases[c.name].Sent)
			}
		}
		if d := dpDelta(before, after, "in_drop_no_flow"); d != noFlow {
			t.Errorf("wanflow_dataplane_in_drop_no_flow_total moved by %v, want %v (the unsolicited TCP/UDP packets and the ICMP errors about no flow; echo requests stay the kernel's)", d, noFlow)
		}
		if d := dpDelta(before, after, "in_icmp_error_translated"); d != 1 {
			t.Errorf("wanflow_dataplane_in_icmp_error_translated_total moved by %v, want 1 (icmp-unreach-ctrl)", d)
		}

		// What the router sent back to the servers: the kernel's echo
		// reply, and nothing else (no RST, no port unreachable).
		echoReply, answered := false, 0
		for _, rp := range b.replies {
			if rp.Proto == unix.IPPROTO_ICMP && rp.Type == 0 && rp.Dst == s[1].String() {
				echoReply = true
				continue
			}
			if answered++; answered <= 5 {
				t.Errorf("the router answered a hostile packet: %+v", rp)
			}
		}
		if answered > 5 {
			t.Errorf("the router answered %d hostile packets in all", answered)
		}
		if !echoReply {
			t.Errorf("no echo reply to echo-request seen in the internet namespace (positive control for the sniffer); saw %+v", b.replies)
		}

		// The live flow still works, on the same NAT mapping.
		if again := echoOnce(t, live, "live-2"); again != livePeer {
			t.Errorf("after the hostile packets the server saw the live flow from %v, before from %v", again, livePeer)
		}
	})

	t.Run("uplink-lan-services", func(t *testing.T) {
		isp := l.ISPs[0]
		// Positive control: the LAN host gets a real answer from the forwarder.
		m, err := dnsAsk(host, netip.AddrPortFrom(routerLAN, 53), "who.example.", mdns.TypeTXT, 2*time.Second)
		if err != nil || m.Rcode != mdns.RcodeSuccess || len(m.Answer) == 0 {
			t.Errorf("positive control: DNS from the LAN host to %v: %v, %v", routerLAN, m, err)
		}
		// The ISP routes the LAN prefix to the router, as it would a
		// customer's public prefix.
		h, err := isp.Handle()
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		rt := &netlink.Route{Dst: prefixNet(lab.LANPrefix), Gw: up.Addr.AsSlice()}
		if err := h.RouteAdd(rt); err != nil {
			t.Fatal(err)
		}
		defer h.RouteDel(rt)
		for _, dst := range []netip.Addr{up.Addr, routerLAN} {
			m, err := dnsAsk(isp, netip.AddrPortFrom(dst, 53), "who.example.", mdns.TypeTXT, 1500*time.Millisecond)
			switch {
			case err != nil:
				t.Logf("DNS to %v:53 from the ISP: no answer (%v)", dst, err)
			case m.Rcode == mdns.RcodeRefused && len(m.Answer) == 0:
				// The forwarder's access control: clients outside
				// lan.dns.allow get a rate-limited REFUSED (lan/dns
				// refusedRate), never an answer.
				t.Logf("DNS to %v:53 from the ISP: REFUSED, nothing resolved", dst)
			default:
				t.Errorf("DNS to %v:53 from the ISP was served: rcode %s, answers %v", dst, mdns.RcodeToString[m.Rcode], m.Answer)
			}
		}

		if _, err := exec.LookPath("busybox"); err != nil {
			t.Skip("busybox not installed (apt-get install busybox): its udhcpc is the DHCP client")
		}
		ispIf := addrDev(t, isp, up.Gateway)
		dir := t.TempDir()
		hook := filepath.Join(dir, "script.sh")
		events := filepath.Join(dir, "events")
		if err := os.WriteFile(hook, []byte(udhcpcScript), 0o755); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		cmd := isp.Command(ctx, "busybox", "udhcpc", "-f", "-q", "-n", "-t", "2", "-T", "1", "-i", ispIf, "-s", hook)
		cmd.Env = append(os.Environ(), "OUT="+events)
		out, err := cmd.CombinedOutput()
		ev, _ := os.ReadFile(events)
		t.Logf("udhcpc on the ISP's %s: %v\n%s%s", ispIf, err, out, ev)
		if err == nil || strings.Contains(string(ev), "event=bound") {
			t.Errorf("a DHCP client on the uplink's link got a lease from the router")
		}
		// Positive control: the same client on the LAN gets one.
		if lease := udhcpc(t, host); lease["serverid"] != routerLAN.String() {
			t.Errorf("positive control: LAN lease %v, want one from %v", lease, routerLAN)
		}
	})

	t.Run("still-forwards", func(t *testing.T) {
		if r.Exited() {
			t.Fatalf("wanflow exited after the hostile packets")
		}
		if strings.Contains(r.Log(), "panic") {
			t.Errorf("the daemon's log mentions a panic")
		}
		checkSticky(t, run(t, host, labclient.Config{UDPFlows: 50, TCPFlows: 20, Messages: 3}))
	})

	final := scrape(t, l)
	logDataplane(t, "whole test", dpBefore, final)
	t.Logf("run time %v", time.Since(began).Round(time.Millisecond))
}

// needScapy skips the test unless Debian's interpreter imports scapy.
func needScapy(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(debianPython, "-c", "import scapy.all").CombinedOutput(); err != nil {
		t.Skipf("scapy is not importable by Debian's %s (apt-get install python3-scapy; the python3 on PATH may not be Debian's): %v\n%s", debianPython, err, out)
	}
}

// scapyCase is one case hostile.py reports having sent.
type scapyCase struct {
	Case    string `json:"case"`
	Tag     string `json:"tag"`
	Payload string `json:"payload"` // hex
	Sport   int    `json:"sport"`
	Sent    int    `json:"sent"` // packets (frames) sent
}

// scapyPacket is a packet hostile.py's sniffer saw.
type scapyPacket struct {
	Src        string `json:"src"`
	Dst        string `json:"dst"`
	Proto      int    `json:"proto"`
	Type       int    `json:"type"`
	Code       int    `json:"code"`
	Sport      int    `json:"sport"`
	Dport      int    `json:"dport"`
	Flags      string `json:"flags"`
	InnerSrc   string `json:"inner_src"`
	InnerDst   string `json:"inner_dst"`
	InnerSport int    `json:"inner_sport"`
	InnerDport int    `json:"inner_dport"`
}

// scapyRun is what one hostile.py run reported.
type scapyRun struct {
	cases   map[string]scapyCase
	order   []string
	icmp    []scapyPacket // lan mode: ICMP the LAN host received
	replies []scapyPacket // inet mode: what the uplink address sent to the servers
}

// runScapy runs hostile.py with args inside ns and parses its report.
func runScapy(t *testing.T, ns *lab.NS, script string, args ...string) scapyRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := ns.Command(ctx, debianPython, append([]string{script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hostile.py %s in %s: %v\n%s", args[0], ns.Name, err, stderr.Bytes())
	}
	res := scapyRun{cases: map[string]scapyCase{}}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var v struct {
			scapyCase
			ICMP  *scapyPacket `json:"icmp"`
			Reply *scapyPacket `json:"reply"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("hostile.py %s: bad output line %q: %v", args[0], line, err)
		}
		switch {
		case v.ICMP != nil:
			res.icmp = append(res.icmp, *v.ICMP)
		case v.Reply != nil:
			res.replies = append(res.replies, *v.Reply)
		case v.Case != "":
			res.cases[v.Case] = v.scapyCase
			res.order = append(res.order, v.Case)
		}
	}
	return res
}

// checkCaseNames fails the test unless the script sent exactly the cases
// the test has expectations for.
func checkCaseNames[C any](t *testing.T, mode string, sent []string, cases []C, name func(C) string) {
	t.Helper()
	var want []string
	for _, c := range cases {
		want = append(want, name(c))
	}
	if !slices.Equal(slices.Sorted(slices.Values(sent)), slices.Sorted(slices.Values(want))) {
		t.Fatalf("hostile.py %s sent cases %v, the test expects %v", mode, sent, want)
	}
}

// tagSink is a UDP listener that records the payloads whose tag starts
// with prefix, by case name (the tag's rest).
type tagSink struct {
	prefix string
	conn   *net.UDPConn
	done   chan struct{}
	mu     sync.Mutex
	got    map[string][][]byte
}

func listenTags(t *testing.T, ns *lab.NS, addr netip.AddrPort, prefix string) *tagSink {
	t.Helper()
	s := &tagSink{prefix: prefix, done: make(chan struct{}), got: map[string][][]byte{}}
	if err := ns.Do(func() error {
		var err error
		s.conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		buf := make([]byte, 65536)
		for {
			n, err := s.conn.Read(buf)
			if err != nil {
				return
			}
			p := buf[:n]
			if !bytes.HasPrefix(p, []byte(prefix)) {
				continue
			}
			name, _, _ := strings.Cut(string(p[len(prefix):]), " ")
			s.mu.Lock()
			s.got[name] = append(s.got[name], slices.Clone(p))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.conn.Close()
		<-s.done
	})
	return s
}

// received returns a copy of what arrived so far.
func (s *tagSink) received() map[string][][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string][][]byte, len(s.got))
	for k, v := range s.got {
		m[k] = slices.Clone(v)
	}
	return m
}

// waitFor waits up to d for every one of names to arrive.
func (s *tagSink) waitFor(names []string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		got := s.received()
		if !slices.ContainsFunc(names, func(n string) bool { return len(got[n]) == 0 }) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ipPkt is a captured IPv4 packet, decoded as far as the checks need.
type ipPkt struct {
	src, dst           netip.Addr
	proto              uint8
	sport, dport       uint16 // TCP/UDP, first fragment or whole
	icmpType, icmpCode uint8
	// For ICMP errors: the embedded header.
	innerSrc, innerDst     netip.Addr
	innerProto             uint8
	innerSport, innerDport uint16
	payload                []byte // UDP payload
}

func (p ipPkt) String() string {
	switch p.proto {
	case unix.IPPROTO_ICMP:
		return fmt.Sprintf("ICMP %d/%d %v → %v about %d %v:%d → %v:%d", p.icmpType, p.icmpCode, p.src, p.dst,
			p.innerProto, p.innerSrc, p.innerSport, p.innerDst, p.innerDport)
	case unix.IPPROTO_UDP, unix.IPPROTO_TCP:
		return fmt.Sprintf("proto %d %v:%d → %v:%d %q", p.proto, p.src, p.sport, p.dst, p.dport, p.payload)
	}
	return fmt.Sprintf("proto %d %v → %v", p.proto, p.src, p.dst)
}

// parseIPv4 decodes b, an IPv4 packet; inner parses an ICMP error's
// embedded header, which may be cut short.
func parseIPv4(b []byte, inner bool) (p ipPkt, ok bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return p, false
	}
	ihl := int(b[0]&0xf) * 4
	if ihl < 20 || len(b) < ihl {
		return p, false
	}
	if !inner {
		tot := int(binary.BigEndian.Uint16(b[2:]))
		if tot < ihl || tot > len(b) {
			return p, false
		}
		b = b[:tot]
	}
	p.src = netip.AddrFrom4([4]byte(b[12:16]))
	p.dst = netip.AddrFrom4([4]byte(b[16:20]))
	p.proto = b[9]
	if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
		return p, true
	}
	l4 := b[ihl:]
	switch p.proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP:
		if len(l4) >= 4 {
			p.sport, p.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		}
		if p.proto == unix.IPPROTO_UDP && len(l4) >= 8 && !inner {
			p.payload = slices.Clone(l4[8:])
		}
	case unix.IPPROTO_ICMP:
		if len(l4) < 8 {
			break
		}
		p.icmpType, p.icmpCode = l4[0], l4[1]
		if inner {
			break
		}
		switch p.icmpType {
		case 3, 4, 11, 12:
			if in, ok := parseIPv4(l4[8:], true); ok {
				p.innerSrc, p.innerDst, p.innerProto = in.src, in.dst, in.proto
				p.innerSport, p.innerDport = in.sport, in.dport
			}
		}
	}
	return p, true
}

// ipCapture records the IPv4 packets keep accepts on one interface of a
// lab namespace (both directions: a packet socket sees what is sent too).
type ipCapture struct {
	conn *packet.Conn
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	pkts []ipPkt
}

func captureIP(t *testing.T, ns *lab.NS, ifname string, keep func(*ipPkt) bool) *ipCapture {
	t.Helper()
	c := &ipCapture{done: make(chan struct{})}
	c.conn = listenIP(t, ns, ifname)
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := c.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if p, ok := parseIPv4(buf[:n], false); ok && keep(&p) {
				c.mu.Lock()
				c.pkts = append(c.pkts, p)
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *ipCapture) stop() {
	c.once.Do(func() {
		c.conn.Close()
		<-c.done
	})
}

func (c *ipCapture) packets() []ipPkt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pkts)
}

// dialUDPIn returns a UDP socket in ns connected to dst.
func dialUDPIn(t *testing.T, ns *lab.NS, dst netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoOnce sends msg to a lab echo server over c and returns the source
// address:port the server saw (its reply is "<ip>:<port> msg").
func echoOnce(t *testing.T, c *net.UDPConn, msg string) netip.AddrPort {
	t.Helper()
	buf := make([]byte, 2048)
	var last error
	for try := 0; try < 3; try++ {
		if _, err := c.Write([]byte(msg)); err != nil {
			last = err
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			last = err
			continue
		}
		seen, rest, ok := strings.Cut(string(buf[:n]), " ")
		if !ok || rest != msg {
			last = fmt.Errorf("reply %q", buf[:n])
			continue
		}
		ap, err := netip.ParseAddrPort(seen)
		if err != nil {
			t.Fatalf("echo reply %q: %v", buf[:n], err)
		}
		return ap
	}
	t.Fatalf("echo %q to %v: %v", msg, c.RemoteAddr(), last)
	return netip.AddrPort{}
}

// dnsAsk sends one UDP query from ns to server and returns the answer with
// the query's ID, or the error that ended the wait (a timeout, or
// ECONNREFUSED when an ICMP port unreachable came back).
func dnsAsk(ns *lab.NS, server netip.AddrPort, name string, qtype uint16, timeout time.Duration) (*mdns.Msg, error) {
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.Dial("udp4", server.String())
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	dc := &mdns.Conn{Conn: c}
	c.SetDeadline(time.Now().Add(timeout))
	if err := dc.WriteMsg(q); err != nil {
		return nil, err
	}
	for {
		m, err := dc.ReadMsg()
		if err != nil {
			return nil, err
		}
		if m.Id == q.Id {
			return m, nil
		}
	}
}

// linkMAC returns the MAC address of ifname in ns.
func linkMAC(t *testing.T, ns *lab.NS, ifname string) net.HardwareAddr {
	t.Helper()
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	return link.Attrs().HardwareAddr
}

// routeDev returns the interface ns routes dst through.
func routeDev(t *testing.T, ns *lab.NS, dst netip.Addr) string {
	t.Helper()
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rs, err := h.RouteGet(dst.AsSlice())
	if err != nil || len(rs) == 0 {
		t.Fatalf("route to %v in %s: %v", dst, ns.Name, err)
	}
	link, err := h.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		t.Fatal(err)
	}
	return link.Attrs().Name
}

// addrDev returns the interface of ns that holds address a.
func addrDev(t *testing.T, ns *lab.NS, a netip.Addr) string {
	t.Helper()
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range addrs {
		if x, ok := netip.AddrFromSlice(ad.IP.To4()); ok && x == a {
			link, err := h.LinkByIndex(ad.LinkIndex)
			if err != nil {
				t.Fatal(err)
			}
			return link.Attrs().Name
		}
	}
	t.Fatalf("no interface with %v in %s", a, ns.Name)
	return ""
}

// kernelStats reads the IP, ICMP and UDP MIB counters of ns
// (/proc/net/snmp and netstat, keys like "Ip.InHdrErrors") and the
// martian counts of /proc/net/stat/rt_cache ("rt_cache.in_martian_src";
// those are global to the machine, not per namespace).
func kernelStats(t *testing.T, ns *lab.NS) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	if err := ns.Do(func() error {
		for _, f := range []string{"snmp", "netstat"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil {
				return err
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			for i := 0; i+1 < len(lines); i += 2 {
				keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
				if len(keys) == 0 || len(vals) == 0 || keys[0] != vals[0] {
					continue
				}
				pre := strings.TrimSuffix(keys[0], ":")
				for j := 1; j < len(keys) && j < len(vals); j++ {
					v, _ := strconv.ParseInt(vals[j], 10, 64)
					m[pre+"."+keys[j]] = v
				}
			}
		}
		b, err := os.ReadFile("/proc/thread-self/net/stat/rt_cache")
		if err != nil {
			return nil // optional
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) < 2 {
			return nil
		}
		keys := strings.Fields(lines[0])
		for _, row := range lines[1:] {
			for j, f := range strings.Fields(row) {
				if j < len(keys) && strings.HasPrefix(keys[j], "in_martian") {
					v, _ := strconv.ParseInt(f, 16, 64)
					m["rt_cache."+keys[j]] += v
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// logDeltas logs how keys moved between two kernelStats readings.
func logDeltas(t *testing.T, what string, before, after map[string]int64, keys ...string) {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		if d := after[k] - before[k]; d != 0 {
			fmt.Fprintf(&b, " %s+%d", k, d)
		}
	}
	t.Logf("%s:%s", what, b.String())
}

// dpCounter returns the daemon's dataplane counter what
// ("out_drop_invalid") and whether it is exported.
func dpCounter(fams map[string]*dto.MetricFamily, what string) (float64, bool) {
	f := fams["wanflow_dataplane_"+what+"_total"]
	if f == nil {
		return 0, false
	}
	return value(f), true
}

// dpDelta returns how far the dataplane counter what moved (0 if it is
// not exported).
func dpDelta(before, after map[string]*dto.MetricFamily, what string) float64 {
	b, _ := dpCounter(before, what)
	a, _ := dpCounter(after, what)
	return a - b
}

// logDataplane logs every dataplane drop counter that moved, and the
// reassembly and ICMP counters.
func logDataplane(t *testing.T, what string, before, after map[string]*dto.MetricFamily) {
	t.Helper()
	var names []string
	for name := range after {
		if strings.HasPrefix(name, "wanflow_dataplane_") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		c := strings.TrimSuffix(strings.TrimPrefix(name, "wanflow_dataplane_"), "_total")
		if !strings.Contains(c, "drop") && !strings.Contains(c, "reassembled") && !strings.Contains(c, "icmp") {
			continue
		}
		if d := dpDelta(before, after, c); d != 0 {
			a, _ := dpCounter(after, c)
			fmt.Fprintf(&b, "\n  %s +%v (now %v)", c, d, a)
		}
	}
	t.Logf("dataplane counters that moved during the %s:%s", what, b.String())
}
