package bench

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// TestFragmentedUDP: UDP datagrams larger than every MTU on the way cross
// the router both ways. The LAN host's kernel fragments them; wanflow
// reassembles, NATs and fragments them again for the uplink (MTU 1400 here,
// below the LAN's 1500); the server's fragmented replies are reassembled
// from the uplink's packet socket and delivered to the LAN host.
func TestFragmentedUDP(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{MTU: 1400}}})
	r := startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{}))
	var c net.Conn
	if err := l.Hosts[0].Do(func() error {
		var err error
		c, err = net.Dial("udp4", netip.AddrPortFrom(l.Servers[0], lab.EchoPort).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 65536)
	for _, size := range []int{1473, 3000, 8000, 20000} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		got := false
		for attempt := 0; attempt < 3 && !got; attempt++ {
			if _, err := c.Write(msg); err != nil {
				t.Fatalf("%d bytes: %v", size, err)
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			if err != nil {
				continue
			}
			sp := bytes.IndexByte(buf[:n], ' ')
			if sp < 0 || !bytes.Equal(buf[sp+1:n], msg) {
				t.Fatalf("%d bytes: reply corrupted (%d bytes)", size, n)
			}
			if want := l.Uplinks[0].Addr.String(); string(buf[:len(want)]) != want {
				t.Errorf("%d bytes: server saw %s", size, buf[:sp])
			}
			got = true
		}
		if !got {
			t.Errorf("%d-byte datagram: no reply", size)
		}
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	cs := counters(r.Log())
	t.Logf("out_reassembled=%d out_fragmented=%d in_reassembled=%d", cs["dataplane_out_reassembled"], cs["dataplane_out_fragmented"], cs["dataplane_in_reassembled"])
	for _, k := range []string{"dataplane_out_reassembled", "dataplane_out_fragmented", "dataplane_in_reassembled"} {
		if cs[k] == 0 {
			t.Errorf("%s = 0: the datagrams did not take the fragment path", k)
		}
	}
}
