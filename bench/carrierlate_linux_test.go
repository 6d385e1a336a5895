package bench

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// TestCarrierLossNoLateReplies: what the dataplane sent into an uplink
// between its carrier loss and the failover must not leave that uplink when
// the carrier returns. The kernel parks such packets behind the gateway's
// unresolved neighbour entry and sends them once ARP succeeds again — with
// the flows' old NAT mappings, which the migration released, so their
// replies are dropped as dataplane_in_drop_no_flow.
func TestCarrierLossNoLateReplies(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{}, {}}})
	startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{Tiers: []int{1, 2}, Extra: fastProbes}))
	up1, up2 := l.Uplinks[0].Addr, l.Uplinks[1].Addr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A message every 5 ms: each stream sends into the ~20 ms between the
	// carrier loss and the removal of up1's routes.
	var streams []*Stream
	for k := range 10 {
		s, err := StartStream(ctx, l.Hosts[0], "udp", 0, netip.AddrPortFrom(l.Servers[k], lab.EchoPort), 5*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	sleep(500 * time.Millisecond)
	before := scrape(t, l)
	if err := l.SetUplinkCarrier(0, false); err != nil {
		t.Fatal(err)
	}
	// Back before the parked packets' neighbour entry gives up (its last
	// ARP probe comes about 2 s after the fault with the kernel's defaults).
	sleep(1200 * time.Millisecond)
	if err := l.SetUplinkCarrier(0, true); err != nil {
		t.Fatal(err)
	}
	// Count what reaches ISP 1 from up1 for the echo servers from now on.
	var late atomic.Int32
	c := listenIP(t, l.ISPs[0], "down")
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			b := buf[:n]
			if n < 28 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_UDP {
				continue
			}
			ihl := int(b[0]&0xf) * 4
			src, _ := netip.AddrFromSlice(b[12:16])
			if n >= ihl+4 && src == up1 && binary.BigEndian.Uint16(b[ihl+2:]) == lab.EchoPort {
				late.Add(1)
			}
		}
	}()
	sleep(1300 * time.Millisecond)
	c.Close()
	<-done
	after := scrape(t, l)
	if n := late.Load(); n != 0 {
		t.Errorf("%d datagrams left up1 with an old NAT mapping after its carrier came back", n)
	}
	if d := dpDelta(before, after, "in_drop_no_flow"); d != 0 {
		t.Errorf("dataplane_in_drop_no_flow moved by %v across the carrier loss, want 0", d)
	}
	for i, s := range streams {
		if st := s.Stats(); len(st.Seen) != 2 || st.Seen[0] != up1 || st.Seen[1] != up2 {
			t.Errorf("stream %d seen from %v, want %v then %v", i, st.Seen, up1, up2)
		}
	}
}
