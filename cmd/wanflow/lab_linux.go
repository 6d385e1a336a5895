//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

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
