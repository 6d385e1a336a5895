//go:build linux

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/wanflow/wanflow/bench"
	"github.com/wanflow/wanflow/bench/lab"
	"github.com/wanflow/wanflow/bench/labrouter"
)

// labPrefix names the namespaces of the lab `wanflow lab up` builds.
const labPrefix = "wflab-"

func cmdLab(args []string) error {
	if len(args) < 1 || (args[0] != "up" && args[0] != "down") {
		return fmt.Errorf("usage: wanflow lab up [-uplinks N] | wanflow lab down")
	}
	if args[0] == "down" {
		return lab.Cleanup(labPrefix)
	}
	fs := flag.NewFlagSet("lab up", flag.ContinueOnError)
	n := fs.Int("uplinks", 3, "number of uplinks")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := lab.Cleanup(labPrefix); err != nil {
		return err
	}
	l, err := lab.Up(ctx, lab.Config{Prefix: labPrefix, Uplinks: make([]lab.UplinkSpec, *n)})
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.StartServers(ctx); err != nil {
		return err
	}
	dir := filepath.Join(os.TempDir(), "wanflow-lab")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "wanflow.yaml")
	if err := os.WriteFile(cfg, []byte(labrouter.ConfigYAML(l, labrouter.Options{})), 0o600); err != nil {
		return err
	}
	fmt.Printf("lab is up (namespaces %s*). A config for its router is in %s. Try:\n", labPrefix, cfg)
	fmt.Printf("  sudo ip netns exec %s wanflow run -c %s\n", l.Router.Name, cfg)
	fmt.Printf("  sudo ip netns exec %s ping %v\n", l.Hosts[0].Name, l.Servers[0])
	fmt.Printf("echo servers (TCP/UDP %d and %d) answer with the address they saw. Ctrl-C removes the lab.\n", lab.EchoPort, lab.AltEchoPort)
	<-ctx.Done()
	return nil
}

func cmdDemo(args []string) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return bench.Demo(ctx, bin, os.Stdout)
}

// benchResults is what `wanflow bench --json` prints and --out writes.
type benchResults struct {
	Throughput []bench.ThroughputResult `json:"throughput,omitempty"`
	Failover   []bench.FailoverResult   `json:"failover,omitempty"`
}

func cmdBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: wanflow bench [flags] [throughput] [failover]   (default: all scenarios)")
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print results as JSON")
	dur := fs.Duration("duration", 5*time.Second, "length of each throughput measurement")
	gro := fs.Bool("gro", true, "GRO on the lab's uplink veths")
	out := fs.String("out", "", "directory to write results.json to")
	profile := fs.String("cpuprofile", "", "CPU profile of the wanflow daemon during the throughput benchmark, to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	scen := map[string]bool{}
	for _, a := range fs.Args() {
		if a != "throughput" && a != "failover" {
			return fmt.Errorf("bench: unknown scenario %q (throughput, failover)", a)
		}
		scen[a] = true
	}
	if len(scen) == 0 {
		scen["throughput"], scen["failover"] = true, true
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var res benchResults
	if scen["throughput"] {
		fmt.Fprintln(os.Stderr, "throughput: LAN host → internet server, kernel forwarding + masquerade vs wanflow, same lab")
		o := bench.ThroughputOptions{Duration: *dur, GRO: *gro}
		if *profile != "" {
			abs, err := filepath.Abs(*profile)
			if err != nil {
				return err
			}
			o.RunArgs = []string{"-cpuprofile", abs}
		}
		if res.Throughput, err = bench.Throughput(ctx, bin, o, os.Stderr); err != nil {
			return err
		}
	}
	if scen["failover"] {
		fmt.Fprintln(os.Stderr, "failover: a new flow every 10 ms around faults on uplink 1; seed-style kernel multipath vs wanflow, same lab")
		if res.Failover, err = bench.Failover(ctx, bin, os.Stderr); err != nil {
			return err
		}
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*out, "results.json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if *asJSON {
		fmt.Println(string(b))
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	if t := res.Throughput; len(t) > 0 {
		fmt.Fprintln(tw, "router\tTCP 1 stream Gbit/s\tTCP 8 streams Gbit/s\tUDP 64 B kpps\tUDP loss\t")
		for _, r := range t {
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.0f\t%.1f%%\t\n", r.Router, r.TCP1Gbps, r.TCP8Gbps, r.UDPkpps, 100*r.UDPLoss)
		}
		if len(t) == 2 && t[0].TCP1Gbps > 0 && t[0].TCP8Gbps > 0 && t[0].UDPkpps > 0 {
			k, w := t[0], t[1]
			fmt.Fprintf(tw, "wanflow/kernel\t%.2f×\t%.2f×\t%.2f×\t\t\n", w.TCP1Gbps/k.TCP1Gbps, w.TCP8Gbps/k.TCP8Gbps, w.UDPkpps/k.UDPkpps)
		}
		fmt.Fprintln(tw)
	}
	if f := res.Failover; len(f) > 0 {
		fmt.Fprintln(tw, "router\tfault\tnew flows settled after\tnew flows failed (3 s)\tfailback after\t")
		for _, r := range f {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f%%\t%s\t\n", r.Router, r.Fault, msOrNever(r.SettledMs), r.FailedPct, msOrNever(r.FailbackMs))
		}
	}
	return tw.Flush()
}

func msOrNever(v float64) string {
	if v < 0 {
		return "never"
	}
	return fmt.Sprintf("%.0f ms", v)
}
