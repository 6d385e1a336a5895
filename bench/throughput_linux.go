package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"time"

	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// ThroughputResult is one router's figures in the throughput benchmark.
type ThroughputResult struct {
	Router   string  `json:"router"`     // "kernel" or "wanflow"
	TCP1Gbps float64 `json:"tcp_1_gbps"` // one TCP stream, LAN host → internet
	TCP8Gbps float64 `json:"tcp_8_gbps"` // eight TCP streams
	UDPkpps  float64 `json:"udp_kpps"`   // 64-byte UDP datagrams received per second, thousands
	UDPLoss  float64 `json:"udp_loss"`   // fraction of those datagrams lost
}

// ThroughputOptions tune the benchmark.
type ThroughputOptions struct {
	Duration time.Duration // per measurement (default 5s)
	GRO      bool          // GRO on the uplink veths
	RunArgs  []string      // extra arguments for `wanflow run`, e.g. -cpuprofile FILE
}

// Throughput measures TCP bulk throughput (1 and 8 streams) and the
// small-packet UDP rate from a LAN host to an internet server, first
// through plain kernel forwarding with nftables masquerade, then through
// wanflow (the binary bin), in the same lab in the same run. It needs
// iperf3.
func Throughput(ctx context.Context, bin string, o ThroughputOptions, w io.Writer) ([]ThroughputResult, error) {
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return nil, errors.New("bench: iperf3 not found (apt-get install iperf3)")
	}
	l, err := lab.Up(ctx, lab.Config{Uplinks: []lab.UplinkSpec{{GRO: o.GRO}}})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	srv := l.Servers[0]
	server := l.Internet.Command(ctx, "iperf3", "-s", "-B", srv.String(), "-p", "5201")
	if err := server.Start(); err != nil {
		return nil, fmt.Errorf("bench: start iperf3 server: %w", err)
	}
	defer func() { server.Process.Kill(); server.Wait() }()
	time.Sleep(300 * time.Millisecond)

	measure := func(name string) (ThroughputResult, error) {
		r := ThroughputResult{Router: name}
		var err error
		fmt.Fprintf(w, "  %s: TCP 1 stream...\n", name)
		if r.TCP1Gbps, err = iperfTCP(ctx, l, srv, 1, o.Duration); err != nil {
			return r, err
		}
		fmt.Fprintf(w, "  %s: TCP 8 streams...\n", name)
		if r.TCP8Gbps, err = iperfTCP(ctx, l, srv, 8, o.Duration); err != nil {
			return r, err
		}
		fmt.Fprintf(w, "  %s: UDP 64-byte datagrams...\n", name)
		if r.UDPkpps, r.UDPLoss, err = iperfUDP(ctx, l, srv, o.Duration); err != nil {
			return r, err
		}
		return r, nil
	}

	var results []ThroughputResult
	undo, err := l.KernelBaseline(lab.BaselineMultipathL4, []int{1})
	if err != nil {
		return nil, err
	}
	kr, err := measure("kernel")
	if uerr := undo(); uerr != nil && err == nil {
		err = uerr
	}
	if err != nil {
		return nil, err
	}
	results = append(results, kr)

	router, err := labrouter.StartArgs(l, bin, "", labrouter.ConfigYAML(l, labrouter.Options{}), nil, 15*time.Second, o.RunArgs...)
	if err != nil {
		return nil, err
	}
	wr, err := measure("wanflow")
	if serr := router.Stop(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	results = append(results, wr)
	return results, nil
}

// iperfReport is the part of iperf3's JSON output the benchmark reads.
type iperfReport struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		Sum struct {
			Packets     float64 `json:"packets"`
			LostPackets float64 `json:"lost_packets"`
			Seconds     float64 `json:"seconds"`
		} `json:"sum"`
	} `json:"end"`
	Error string `json:"error"`
}

func runIperf(ctx context.Context, l *lab.Lab, args ...string) (iperfReport, error) {
	var rep iperfReport
	out, err := l.Hosts[0].Command(ctx, "iperf3", append(args, "-J")...).Output()
	if jerr := json.Unmarshal(out, &rep); jerr != nil && err == nil {
		err = jerr
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("iperf3: %s", rep.Error)
	}
	if err != nil {
		return rep, fmt.Errorf("iperf3 %v: %w", args, err)
	}
	return rep, nil
}

func iperfTCP(ctx context.Context, l *lab.Lab, srv fmt.Stringer, streams int, d time.Duration) (float64, error) {
	rep, err := runIperf(ctx, l, "-c", srv.String(), "-p", "5201", "-t", secs(d), "-P", strconv.Itoa(streams), "-O", "1")
	if err != nil {
		return 0, err
	}
	return rep.End.SumReceived.BitsPerSecond / 1e9, nil
}

func iperfUDP(ctx context.Context, l *lab.Lab, srv fmt.Stringer, d time.Duration) (kpps, loss float64, err error) {
	rep, err := runIperf(ctx, l, "-c", srv.String(), "-p", "5201", "-t", secs(d), "-u", "-l", "64", "-b", "0")
	if err != nil {
		return 0, 0, err
	}
	s := rep.End.Sum
	if s.Seconds <= 0 || s.Packets <= 0 {
		return 0, 0, errors.New("iperf3: no UDP summary")
	}
	return (s.Packets - s.LostPackets) / s.Seconds / 1e3, s.LostPackets / s.Packets, nil
}

func secs(d time.Duration) string { return strconv.Itoa(int(d.Round(time.Second) / time.Second)) }
