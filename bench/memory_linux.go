package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/flowtable"
)

// MemoryPoint is the wanflow daemon's memory with a given number of flows
// in its table.
type MemoryPoint struct {
	// Flows is the number of flows in the table, as the daemon reports it
	// (`wanflow status`).
	Flows int `json:"flows"`
	// RSSBytes is the daemon's resident memory (VmRSS of
	// /proc/<pid>/status), AnonBytes its anonymous part (RssAnon: Go heap,
	// stacks, runtime; the rest is the mapped binary) and PeakRSSBytes the
	// most it was resident so far (VmHWM).
	RSSBytes     uint64 `json:"rss_bytes"`
	AnonBytes    uint64 `json:"rss_anon_bytes"`
	PeakRSSBytes uint64 `json:"peak_rss_bytes"`
	// FillSeconds is how long the flows added since the previous point
	// took to create (from the first datagram sent to the daemon reporting
	// them all); FillPerSecond is those flows per second. Both 0 at idle.
	FillSeconds   float64 `json:"fill_seconds"`
	FillPerSecond float64 `json:"fill_per_second"`
	// StatusMs is how long the daemon took to answer one status request
	// at this point (it walks every flow to count them per uplink).
	StatusMs float64 `json:"status_ms"`
	// HeapLiveBytes is the live heap of the daemon's last garbage
	// collection before this point (see MemoryGC), HeapLiveFlows the flows
	// in the table at that collection.
	HeapLiveBytes uint64 `json:"heap_live_bytes"`
	HeapLiveFlows int    `json:"heap_live_flows"`

	at time.Time // when RSS was read
}

// MemoryGC is one garbage collection of the daemon, from its
// GODEBUG=gctrace=1 output: when it ran, how many flows the table held then
// and the heap it found live. The daemon's metrics do not expose the Go
// heap, so its collections are the only view of it.
type MemoryGC struct {
	// Seconds is when the collection ran, since the daemon started.
	Seconds float64 `json:"seconds"`
	// Flows is the number of flows in the table at the collection,
	// interpolated from the progress of the datagrams the daemon had
	// forwarded by then.
	Flows int `json:"flows"`
	// HeapLiveBytes is the heap marked live (MiB resolution). It counts
	// every packet buffer of the dataplane's pool at its full 64 KiB,
	// although a buffer that only ever held small packets is mostly not
	// resident.
	HeapLiveBytes uint64 `json:"heap_live_bytes"`
}

// MemoryResult is the wanflow daemon's memory per flow.
type MemoryResult struct {
	// Workers and Capacity are the daemon's flow-table shards and
	// dataplane.flows.capacity.
	Workers  int `json:"workers"`
	Capacity int `json:"capacity"`
	// Points holds the idle daemon first, then one point per count of
	// MemoryOptions.Counts.
	Points []MemoryPoint `json:"points"`
	// BytesPerFlow is (RSS at the last point − RSS idle) / flows at the
	// last point.
	BytesPerFlow float64 `json:"bytes_per_flow"`
	// GCs are the daemon's garbage collections from the last one before
	// the idle point on.
	GCs []MemoryGC `json:"gcs"`
	// HeapBytesPerFlow is the growth of the live heap per flow between the
	// last two collections that ran with flows in the table, at least a
	// tenth of the largest count apart (the packet buffer pool has grown to
	// what the load needs by then); 0 when there were no two such
	// collections.
	HeapBytesPerFlow float64 `json:"heap_bytes_per_flow"`
	// TargetFlows and TargetBytes are the memory target, a million flows
	// in 256 MiB of RSS. Target is "met" when the first point with at
	// least TargetFlows flows has an RSS of at most TargetBytes, "not met"
	// when it has more, and "not measured" when no point has that many
	// flows.
	TargetFlows int    `json:"target_flows"`
	TargetBytes uint64 `json:"target_bytes"`
	Target      string `json:"target"`
}

// The memory target: a million flows in 256 MiB of resident memory.
const (
	memoryTargetFlows = 1_000_000
	memoryTargetBytes = 256 << 20
)

// MemoryOptions tune FlowMemory. Zero fields take the defaults.
type MemoryOptions struct {
	// Counts are the flow counts to measure at, ascending (default
	// 100000 and 1000000).
	Counts []int
	// Timeout bounds the filling of the table up to each count (default
	// 60s).
	Timeout time.Duration
}

// Flow generation (memGen): memSockets UDP sockets on the LAN host, on
// ports memSrcPort.. (outside wanflow's NAT ports), so that the flows spread
// over the daemon's workers (a worker owns every flow of a LAN endpoint).
// Flows are numbered; each block of memSockets*memBatch flows sends, from
// each socket in turn, one batch (one sendmmsg) of memBatch datagrams to
// memBatch consecutive destinations, destination d being server d % 20,
// port memDstPort + d/20.
const (
	memSockets = 64
	memSrcPort = 40000
	memDstPort = 10000
	memBatch   = 64
	// memWindow bounds the datagrams sent but not yet forwarded by the
	// daemon (or dropped by the TUN device's queue) before the next batch
	// goes: with a batch, far less than that queue (500 packets).
	memWindow = 128
	// memStall: no progress for this long means the datagrams in flight
	// were lost elsewhere; their batches are sent again.
	memStall = 50 * time.Millisecond
	// memMaxFlows bounds MemoryOptions.Counts: the capacity (4 × the
	// largest count) stays within one flow-table shard's maximum, and the
	// destination ports within 65535.
	memMaxFlows = flowtable.MaxCapacity / 4
	memProgress = 250_000
)

// FlowMemory measures the resident memory of the wanflow daemon (bin)
// idle and with each count of o.Counts of UDP flows in its table. A LAN
// host creates the flows: each is one datagram from one of 64 sockets to
// one of the internet's 20 server addresses on a distinct port (nothing
// answers), paced by the datagrams the daemon has forwarded so none is
// lost in the TUN device's queue. The daemon runs with
// dataplane.flows.capacity of 4 × the largest count (room for an uneven
// spread of the 64 LAN endpoints over the workers' shards; memory is
// allocated as flows arrive, not for the capacity), a 2 h UDP timeout and
// GODEBUG=gctrace=1, whose output is the only view of its Go heap. Each
// count is verified with `wanflow status`.
func FlowMemory(ctx context.Context, bin string, o MemoryOptions, w io.Writer) (MemoryResult, error) {
	res := MemoryResult{TargetFlows: memoryTargetFlows, TargetBytes: memoryTargetBytes, Target: "not measured"}
	if len(o.Counts) == 0 {
		o.Counts = []int{100_000, 1_000_000}
	}
	if !slices.IsSorted(o.Counts) || o.Counts[0] <= 0 {
		return res, fmt.Errorf("bench: memory: counts %v not positive and ascending", o.Counts)
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	maxFlows := o.Counts[len(o.Counts)-1]
	if maxFlows > memMaxFlows {
		return res, fmt.Errorf("bench: memory: %d flows: at most %d", maxFlows, memMaxFlows)
	}
	res.Capacity = max(4*maxFlows, 1024)

	l, err := lab.Up(ctx, lab.Config{Uplinks: []lab.UplinkSpec{{}}})
	if err != nil {
		return res, err
	}
	defer l.Close()

	g, err := newMemGen(l, "wf0") // dataplane.tun's default
	if err != nil {
		return res, err
	}
	defer g.close()
	g.w = w

	extra := fmt.Sprintf("dataplane:\n  flows:\n    capacity: %d\n    per_host: 0\n    timeouts:\n      udp: 2h\n", res.Capacity) // one host makes them all: no per-host limit
	fmt.Fprintf(w, "  wanflow: starting the scenDaemon (capacity %d flows)\n", res.Capacity)
	started := time.Now()
	d, err := startScenDaemon(ctx, l, bin, scenDaemonOptions{Extra: extra, Env: []string{"GODEBUG=gctrace=1"}})
	if err != nil {
		return res, err
	}
	defer d.stop()
	pid := d.r.Pid()
	if err := memCheckExe(pid, bin); err != nil {
		return res, err
	}

	point := func() (MemoryPoint, error) {
		var p MemoryPoint
		t0 := time.Now()
		st, err := d.status(ctx)
		if err != nil {
			return p, err
		}
		p.StatusMs = ms(time.Since(t0))
		res.Workers = st.Workers
		p.Flows = st.Flows
		p.RSSBytes, p.AnonBytes, p.PeakRSSBytes, err = scenProcStatus(pid)
		p.at = time.Now()
		return p, err
	}
	time.Sleep(time.Second) // let the start settle
	idle, err := point()
	if err != nil {
		return res, err
	}
	fmt.Fprintf(w, "  wanflow: idle: RSS %.1f MiB\n", memMiB(idle.RSSBytes))
	res.Points = append(res.Points, idle)

	for _, n := range o.Counts {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		fmt.Fprintf(w, "  wanflow: creating flows up to %d...\n", n)
		t0 := time.Now()
		before := g.flows
		if err := g.fill(ctx, d, n, o.Timeout); err != nil {
			return res, err
		}
		fill := time.Since(t0)
		time.Sleep(time.Second) // let the last batches and the runtime settle
		p, err := point()
		if err != nil {
			return res, err
		}
		if p.Flows < n {
			return res, fmt.Errorf("bench: memory: %d flows in the table, want %d", p.Flows, n)
		}
		p.FillSeconds = fill.Seconds()
		p.FillPerSecond = float64(n-before) / p.FillSeconds
		fmt.Fprintf(w, "  wanflow: %d flows (%.0f new flows/s): RSS %.1f MiB, status in %.0f ms\n", p.Flows, p.FillPerSecond, memMiB(p.RSSBytes), p.StatusMs)
		res.Points = append(res.Points, p)
	}

	last := res.Points[len(res.Points)-1]
	if last.Flows > 0 {
		res.BytesPerFlow = (float64(last.RSSBytes) - float64(idle.RSSBytes)) / float64(last.Flows)
	}
	for _, p := range res.Points {
		if p.Flows >= memoryTargetFlows {
			res.Target = "not met"
			if p.RSSBytes <= memoryTargetBytes {
				res.Target = "met"
			}
			break
		}
	}
	gcs := g.gcs(d.r.Log(), started)
	for i := range res.Points {
		for _, gc := range gcs {
			if gc.at.After(res.Points[i].at) {
				break
			}
			res.Points[i].HeapLiveBytes, res.Points[i].HeapLiveFlows = gc.HeapLiveBytes, gc.Flows
		}
	}
	var with []MemoryGC
	for i, gc := range gcs {
		if i+1 < len(gcs) && !gcs[i+1].at.After(res.Points[0].at) {
			continue // before the last collection before idle
		}
		res.GCs = append(res.GCs, gc.MemoryGC)
		if gc.Flows > 0 {
			with = append(with, gc.MemoryGC)
		}
	}
	if len(with) > 1 {
		b := with[len(with)-1]
		for j := len(with) - 2; j >= 0; j-- {
			if a := with[j]; b.Flows-a.Flows >= maxFlows/10 {
				res.HeapBytesPerFlow = (float64(b.HeapLiveBytes) - float64(a.HeapLiveBytes)) / float64(b.Flows-a.Flows)
				break
			}
		}
	}
	return res, nil
}

func memMiB(b uint64) float64 { return float64(b) / (1 << 20) }

// memCheckExe checks that process pid runs bin: the daemon's pid is that of
// `ip netns exec` (and of the wrapper script), which exec it.
func memCheckExe(pid int, bin string) error {
	if !strings.Contains(bin, "/") {
		p, err := exec.LookPath(bin)
		if err != nil {
			return err
		}
		bin = p
	}
	want, err := filepath.EvalSymlinks(bin)
	if err == nil {
		want, err = filepath.Abs(want)
	}
	if err != nil {
		return err
	}
	got, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("bench: memory: process %d runs %s, not the scenDaemon %s", pid, got, want)
	}
	return nil
}

// memGen sends the flows of FlowMemory from the LAN host.
type memGen struct {
	l     *lab.Lab
	socks []*ipv4.PacketConn
	conns []*net.UDPConn
	rh    *netlink.Handle // router namespace: uplink and TUN device counters
	tun   string          // the daemon's TUN device
	flows int             // flows sent so far (0..flows-1)
	w     io.Writer       // progress, a line every memProgress flows

	msgs  []ipv4.Message
	addrs []net.UDPAddr

	// Accounting of the datagrams: sent, and seen forwarded (out of the
	// uplink) or dropped (by the TUN device) since base.
	sent, seen, dropped  uint64
	baseFwd, baseDropped uint64
	recent               [4][2]int // the last batches sent, [from, to)
	repair               [][2]int  // batches of which a datagram was lost
	// progress: when the daemon had forwarded how many datagrams, since
	// the first fill.
	progress []memProgressSample
}

type memProgressSample struct {
	at    time.Time
	flows int
}

func newMemGen(l *lab.Lab, tun string) (*memGen, error) {
	g := &memGen{l: l, tun: tun}
	if err := l.Hosts[0].Do(func() error {
		for i := range memSockets {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: memSrcPort + i})
			if err != nil {
				return err
			}
			g.conns = append(g.conns, c)
			g.socks = append(g.socks, ipv4.NewPacketConn(c))
		}
		return nil
	}); err != nil {
		g.close()
		return nil, fmt.Errorf("bench: memory: LAN sockets: %w", err)
	}
	rh, err := l.Router.Handle()
	if err != nil {
		g.close()
		return nil, err
	}
	g.rh = rh
	g.msgs = make([]ipv4.Message, memBatch)
	g.addrs = make([]net.UDPAddr, memBatch)
	payload := []byte("flow")
	for i := range g.msgs {
		g.addrs[i].IP = make(net.IP, 4)
		g.msgs[i] = ipv4.Message{Buffers: [][]byte{payload}, Addr: &g.addrs[i]}
	}
	return g, nil
}

func (g *memGen) close() {
	for _, c := range g.conns {
		c.Close()
	}
	if g.rh != nil {
		g.rh.Close()
	}
}

// counters returns the packets the router sent out of its uplink and the
// packets its TUN device's queue dropped.
func (g *memGen) counters() (fwd, dropped uint64, err error) {
	for _, name := range []string{g.l.Uplinks[0].Interface, g.tun} {
		lk, err := g.rh.LinkByName(name)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: memory: link %s: %w", name, err)
		}
		s := lk.Attrs().Statistics
		if s == nil {
			return 0, 0, fmt.Errorf("bench: memory: link %s: no statistics", name)
		}
		if name == g.tun {
			dropped = s.TxDropped
		} else {
			fwd = s.TxPackets
		}
	}
	return fwd, dropped, nil
}

// flow returns the socket and destination of flow i.
func memFlow(i int) (sock, dst int) {
	block, r := i/(memSockets*memBatch), i%(memSockets*memBatch)
	return r / memBatch, block*memBatch + r%memBatch
}

// send sends flows [from, to), a batch at a time, paced on what the daemon
// forwards. Batches of which a datagram was lost are noted for repair.
func (g *memGen) send(ctx context.Context, from, to int) error {
	if g.progress == nil {
		fwd, dropped, err := g.counters()
		if err != nil {
			return err
		}
		g.baseFwd, g.baseDropped = fwd, dropped
		g.progress = append(g.progress, memProgressSample{time.Now(), 0})
	}
	for i := from; i < to; {
		sock, d0 := memFlow(i)
		n := min(memBatch-(i%memBatch), to-i)
		for k := range n {
			a := &g.addrs[k]
			d := d0 + k
			copy(a.IP, g.l.Servers[d%len(g.l.Servers)].AsSlice())
			a.Port = memDstPort + d/len(g.l.Servers)
		}
		for m := g.msgs[:n]; len(m) > 0; {
			k, err := g.socks[sock].WriteBatch(m, 0)
			if err != nil {
				return fmt.Errorf("bench: memory: send: %w", err)
			}
			m = m[k:]
		}
		g.sent += uint64(n)
		copy(g.recent[1:], g.recent[:])
		g.recent[0] = [2]int{i, i + n}
		if g.w != nil && (i+n)/memProgress > i/memProgress && to-from > memProgress {
			fmt.Fprintf(g.w, "  wanflow: %d flows sent\n", (i+n)/memProgress*memProgress)
		}
		i += n
		if err := g.pace(ctx, memWindow); err != nil {
			return err
		}
	}
	return g.pace(ctx, 0)
}

// pace waits until at most window datagrams are in flight.
func (g *memGen) pace(ctx context.Context, window uint64) error {
	lastProgress := time.Now()
	for {
		fwd, dropped, err := g.counters()
		if err != nil {
			return err
		}
		fwd -= g.baseFwd
		dropped -= g.baseDropped
		if dropped != g.dropped {
			// A drop since the last look: it was one of the recent
			// batches (at most memWindow+memBatch are in flight).
			g.markRecent()
			g.dropped = dropped
		}
		if seen := fwd + dropped; seen != g.seen {
			g.seen = seen
			lastProgress = time.Now()
			g.progress = append(g.progress, memProgressSample{lastProgress, int(fwd)})
		}
		if g.sent <= g.seen+window {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Since(lastProgress) > memStall {
			// Lost elsewhere: count them as seen, repair their batches.
			g.markRecent()
			g.baseFwd -= g.sent - g.seen
			g.seen = g.sent
			return nil
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// markRecent notes the recent batches for repair.
func (g *memGen) markRecent() {
	for _, r := range g.recent {
		if r[1] > r[0] && (len(g.repair) == 0 || !slices.Contains(g.repair, r)) {
			g.repair = append(g.repair, r)
		}
	}
}

// fill creates flows up to n in total and waits until the daemon reports
// them. Batches that lost a datagram are sent again (their other flows are
// only hits); if flows are still missing, all of them.
func (g *memGen) fill(ctx context.Context, d *scenDaemon, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if err := g.send(ctx, g.flows, n); err != nil {
		return err
	}
	g.flows = n
	for waits := 0; ; {
		st, err := d.status(ctx)
		if err != nil {
			return err
		}
		if st.Flows >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: memory: %d of %d flows in the table after %v", st.Flows, n, timeout)
		}
		var repair [][2]int
		switch {
		case len(g.repair) > 0:
			repair, g.repair = g.repair, nil
		case waits < 5:
			// The last datagrams may still be on their way (the uplink's
			// counter also counts the daemon's probes).
			waits++
			time.Sleep(100 * time.Millisecond)
			continue
		default:
			repair = [][2]int{{0, n}}
		}
		waits = 0
		for _, r := range repair {
			if err := g.send(ctx, r[0], min(r[1], n)); err != nil {
				return err
			}
		}
	}
}

// flowsAt interpolates the flows created by time t from the progress
// samples.
func (g *memGen) flowsAt(t time.Time) int {
	p := g.progress
	i, _ := slices.BinarySearchFunc(p, t, func(s memProgressSample, t time.Time) int { return s.at.Compare(t) })
	switch {
	case len(p) == 0 || i == 0:
		return 0
	case i == len(p):
		return min(p[len(p)-1].flows, g.flows)
	}
	a, b := p[i-1], p[i]
	frac := float64(t.Sub(a.at)) / float64(b.at.Sub(a.at))
	return min(a.flows+int(frac*float64(b.flows-a.flows)), g.flows)
}

// memGCTraceRE matches a line of GODEBUG=gctrace=1: "gc 12 @3.456s 2%: ...,
// 40->42->21 MB, 43 MB goal, ...": collection number, seconds since the
// process started, heap at start -> at end -> marked live.
var memGCTraceRE = regexp.MustCompile(`(?m)^gc (\d+) @([0-9.]+)s [^\n]*? (\d+)->(\d+)->(\d+) MB`)

// memGCTrace is a MemoryGC with its wall-clock time.
type memGCTrace struct {
	MemoryGC
	at time.Time
}

// gcs returns the collections in the daemon's log, with the flows in the
// table at each. started is when the daemon was started, which the
// collections' "@" times count from (within milliseconds).
func (g *memGen) gcs(log string, started time.Time) []memGCTrace {
	var out []memGCTrace
	for _, m := range memGCTraceRE.FindAllStringSubmatch(log, -1) {
		secs, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		live, err := strconv.ParseUint(m[5], 10, 64)
		if err != nil {
			continue
		}
		at := started.Add(time.Duration(secs * float64(time.Second)))
		out = append(out, memGCTrace{MemoryGC{Seconds: secs, Flows: g.flowsAt(at), HeapLiveBytes: live << 20}, at})
	}
	return out
}
