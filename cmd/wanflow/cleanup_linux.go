//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
	"github.com/wanflow/wanflow/cmd/wanflow/control"
	"github.com/wanflow/wanflow/lan/steer"
	"github.com/wanflow/wanflow/uplinks"
	"github.com/wanflow/wanflow/uplinks/nftguard"
)

// cmdCleanup removes what a stopped wanflow left in the kernel: after a
// SIGTERM (systemctl stop: the fail-open fallback stays) or a crash, for an
// uninstall or to go back to plain kernel routing. It refuses while a
// daemon answers on the config's control socket.
func cmdCleanup(args []string) error {
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	path := fs.String("c", defaultConfig, "config file (its kernel ids, interfaces and control socket)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: wanflow cleanup [-c FILE]   (root)\n\n"+
			"Remove what a stopped wanflow left: its nftables tables (the guard, the fail-open\n"+
			"masquerade, a restart's hold), its policy rules and routes, the handover file.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := control.NewClient(cfg.Control.Socket).Status(ctx); err == nil {
		return fmt.Errorf("cleanup: wanflow is running (it answers on %s): stop it first (Ctrl-C, or SIGINT, removes everything itself)", cfg.Control.Socket)
	}
	return cleanup(cfg)
}

// cleanup removes every kernel object wanflow installs for cfg, and the
// handover file. It tolerates their absence.
func cleanup(cfg *config.Config) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	nft, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	errs := removeInstalled(steer.New(h, steerConfig(cfg)), uplinks.NewManager(h, managerConfig(cfg), slog.Default()), nft, cfg)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	fmt.Printf("removed wanflow's policy rules and routes (protocol %d), nftables tables ip %s and ip %s, and %s\n",
		cfg.Kernel.RouteProtocol, cfg.Kernel.NFTTable, cfg.Kernel.NFTTable+nftguard.HoldSuffix, handoverPath(cfg))
	return nil
}
