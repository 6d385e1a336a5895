package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/lab/labclient"
	"github.com/wanflow/wanflow/bench/lab/labtest"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// bulkEcho sends n lines of size bytes each over one TCP connection from
// ns to srv's echo server and checks that every echoed line comes back
// intact, behind the server's "<peer> " prefix.
func bulkEcho(ns *lab.NS, srv netip.AddrPort, n, size int) (peer string, err error) {
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp4", srv.String(), 2*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	lines := make([][]byte, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range lines {
		l := make([]byte, size)
		for j := range l[:size-1] {
			l[j] = byte('a' + rng.IntN(26))
		}
		l[size-1] = '\n'
		lines[i] = l
	}
	werr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(c, 256<<10)
		for _, l := range lines {
			if _, err := w.Write(l); err != nil {
				werr <- err
				return
			}
		}
		werr <- w.Flush()
	}()
	r := bufio.NewReaderSize(c, 256<<10)
	for i := range lines {
		got, err := r.ReadBytes('\n')
		if err != nil {
			return peer, fmt.Errorf("line %d: %w", i, err)
		}
		sp := bytes.IndexByte(got, ' ')
		if sp < 0 || !bytes.Equal(got[sp+1:], lines[i]) {
			return peer, fmt.Errorf("line %d came back corrupted (%d bytes)", i, len(got))
		}
		peer = string(got[:sp])
	}
	return peer, <-werr
}

var counterRE = regexp.MustCompile(`(dataplane_[a-z_]+)=(\d+)`)

// counters parses the daemon's exit log line of dataplane counters.
func counters(log string) map[string]uint64 {
	m := map[string]uint64{}
	for _, sm := range counterRE.FindAllStringSubmatch(log, -1) {
		v, _ := strconv.ParseUint(sm[2], 10, 64)
		m[sm[1]] = v
	}
	return m
}

// TestBulkTCPSuperPackets: 16 MiB each way over one TCP connection with GRO
// on for the uplink: the LAN host's TSO super-packets leave whole through
// the uplink's packet socket, and the server's arrive whole and are written
// to the LAN whole, byte-exact at the far end, with checksums the kernel
// accepts.
func TestBulkTCPSuperPackets(t *testing.T) {
	l := labtest.UpWithServers(t, lab.Config{Uplinks: []lab.UplinkSpec{{GRO: true}}})
	r := startRouter(t, l, labrouter.ConfigYAML(l, labrouter.Options{}))
	// Traffic through the raw socket resolves the gateway's MAC; the daemon
	// picks it up within a second.
	if res, err := labclient.Ping(context.Background(), l.Hosts[0], l.Servers[0], labclient.PingConfig{Count: 2}); err != nil || res.Received == 0 {
		t.Fatalf("ping: %+v %v", res, err)
	}
	time.Sleep(1500 * time.Millisecond)
	peer, err := bulkEcho(l.Hosts[0], netip.AddrPortFrom(l.Servers[0], lab.EchoPort), 512, 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	if want := l.Uplinks[0].Addr.String(); peer[:len(want)] != want {
		t.Errorf("server saw %s, want the uplink address %s", peer, want)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	c := counters(r.Log())
	t.Logf("out_gso_frames=%d out_gso_split=%d in_gso_frames=%d in_gso_split=%d out_packets=%d in_packets=%d",
		c["dataplane_out_gso_frames"], c["dataplane_out_gso_split"], c["dataplane_in_gso_frames"], c["dataplane_in_gso_split"], c["dataplane_out_packets"], c["dataplane_in_packets"])
	if c["dataplane_out_gso_frames"] == 0 {
		t.Error("no super-packet was sent whole to the uplink")
	}
	if c["dataplane_in_gso_frames"] == 0 {
		t.Error("no super-packet was written whole to the LAN")
	}
}
