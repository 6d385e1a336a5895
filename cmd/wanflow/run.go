package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
)

const defaultConfig = "/etc/wanflow/wanflow.yaml"

func cmdCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("c", defaultConfig, "config file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Printf("warning: %s\n", w)
	}
	fmt.Printf("%s: OK\n\n%s", *path, cfg.Plan())
	return nil
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("c", defaultConfig, "config file")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text (key=value) or json, one line per event")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(*level))); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log, err := newLogger(os.Stderr, *format, lv, os.Getenv("JOURNAL_STREAM") != "")
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		log.Warn("config", "warning", w)
	}
	return runDaemon(*path, cfg, log)
}

// newLogger returns the daemon's logger: one line per event, key=value
// (text) or JSON, at level lv and above. Under systemd (journal is true:
// JOURNAL_STREAM is set, stderr goes to the journal) the time is left out,
// since the journal stamps every line itself.
func newLogger(w io.Writer, format string, lv slog.Level, journal bool) (*slog.Logger, error) {
	o := &slog.HandlerOptions{Level: lv}
	if journal {
		o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("-log-format: want text or json, got %q", format)
}
