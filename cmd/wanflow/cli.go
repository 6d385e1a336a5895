package main

// The client commands (status, uplinks, flows, explain, events, reload; top
// is in top.go) talk to a running daemon through the control API and print
// its replies as aligned tables, or with --json as the API's JSON.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/wanflow/wanflow/cmd/wanflow/config"
	"github.com/wanflow/wanflow/cmd/wanflow/control"
	"github.com/wanflow/wanflow/uplinks/events"
)

// apiClient is the part of *control.Client the commands use; tests give
// the commands a fake.
type apiClient interface {
	Status(ctx context.Context) (control.Status, error)
	Uplinks(ctx context.Context) (control.UplinksReply, error)
	Flows(ctx context.Context, q control.FlowQuery) (control.FlowsReply, error)
	Explain(ctx context.Context, q control.ExplainQuery) (control.ExplainReply, error)
	Events(ctx context.Context, since uint64) (control.EventsReply, error)
	Follow(ctx context.Context, since uint64, fn func(events.Event) error) error
	Reload(ctx context.Context) (control.ReloadReply, error)
}

// newAPIClient returns the control API client for the unix socket at
// socket.
func newAPIClient(socket string) apiClient { return control.NewClient(socket) }

// socketEnv names the environment variable that overrides the default
// control socket.
const socketEnv = "WANFLOW_SOCKET"

// requestTimeout bounds each request of a command; a follow stream (events
// -f) and top as a whole run until interrupted.
const requestTimeout = 30 * time.Second

// cli holds what the client commands read from and write to; tests build
// one with a fake client, a fixed clock and buffers.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	dial           func(socket string) apiClient
	// tty reports whether stdout is a terminal: top then redraws the
	// screen instead of printing one frame after another.
	tty bool
	// sleep waits for d or until ctx is done, returning ctx.Err() then.
	sleep func(ctx context.Context, d time.Duration) error
}

// cmdStatus, cmdUplinks, cmdFlows, cmdExplain, cmdEvents, cmdReload and
// cmdTop run the client commands for main.
func cmdStatus(args []string) error  { return runCLI((*cli).status, args) }
func cmdUplinks(args []string) error { return runCLI((*cli).uplinks, args) }
func cmdFlows(args []string) error   { return runCLI((*cli).flows, args) }
func cmdExplain(args []string) error { return runCLI((*cli).explain, args) }
func cmdEvents(args []string) error  { return runCLI((*cli).events, args) }
func cmdReload(args []string) error  { return runCLI((*cli).reload, args) }
func cmdTop(args []string) error     { return runCLI((*cli).top, args) }

// runCLI runs a client command on the process's stdio; SIGINT or SIGTERM
// cancels its context, which ends events -f and top cleanly.
func runCLI(cmd func(*cli, context.Context, []string) error, args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
		now:    time.Now,
		dial:   newAPIClient,
		tty:    isTTY(os.Stdout),
		sleep:  sleepOrDone,
	}
	err := cmd(c, ctx, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the usage is printed already
	}
	return err
}

// isTTY reports whether f is a terminal.
func isTTY(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// sleepOrDone waits for d or until ctx is done, returning ctx.Err() then.
func sleepOrDone(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// clientFlags are the flags every client command has, on the command's
// own FlagSet.
type clientFlags struct {
	fs     *flag.FlagSet
	socket string
	config string
	json   bool
}

// flags returns a FlagSet for command name with the common flags; operands
// is the usage's operand synopsis and about one sentence on the command.
func (c *cli) flags(name, operands, about string) *clientFlags {
	f := &clientFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.fs.SetOutput(c.stderr)
	f.fs.StringVar(&f.socket, "s", "", "control socket `PATH` (default $"+socketEnv+", else "+control.DefaultSocket+")")
	f.fs.StringVar(&f.config, "c", "", "take the control socket from the config `FILE`'s control.socket")
	f.fs.BoolVar(&f.json, "json", false, "print the API's JSON instead of a table")
	f.fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: wanflow %s [flags]%s\n\n%s\n\nflags:\n", name, operands, about)
		f.fs.PrintDefaults()
	}
	return f
}

// parse parses args, flags and operands in any order (wanflow explain tcp
// A B --json), and returns the operands; there must be between lo and hi
// of them. Everything after "--" is an operand.
func (f *clientFlags) parse(args []string, lo, hi int) ([]string, error) {
	var ops []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, err
		}
		rest := f.fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			ops = append(ops, rest...)
			break
		}
		ops = append(ops, rest[0])
		args = rest[1:]
	}
	switch {
	case len(ops) > hi && hi == 0:
		return nil, fmt.Errorf("%s: unexpected argument %q", f.fs.Name(), ops[0])
	case len(ops) > hi:
		return nil, fmt.Errorf("%s: too many arguments (want at most %d): %q", f.fs.Name(), hi, ops)
	case len(ops) < lo:
		f.fs.Usage()
		return nil, fmt.Errorf("%s: want %d arguments, got %d", f.fs.Name(), lo, len(ops))
	}
	return ops, nil
}

// socketPath is the control socket to use: -s, else -c's control.socket,
// else $WANFLOW_SOCKET, else control.DefaultSocket.
func (c *cli) socketPath(f *clientFlags) (string, error) {
	switch {
	case f.socket != "" && f.config != "":
		return "", fmt.Errorf("%s: -s and -c both name the socket; give one", f.fs.Name())
	case f.socket != "":
		return f.socket, nil
	case f.config != "":
		cfg, err := config.Load(f.config)
		if err != nil {
			return "", err
		}
		return cfg.Control.Socket, nil
	}
	if s := c.getenv(socketEnv); s != "" {
		return s, nil
	}
	return control.DefaultSocket, nil
}

// connect returns the client for the socket f names.
func (c *cli) connect(f *clientFlags) (apiClient, error) {
	socket, err := c.socketPath(f)
	if err != nil {
		return nil, err
	}
	return c.dial(socket), nil
}

// fetchAPI makes one request with requestTimeout and explains a failure.
func fetchAPI[T any](ctx context.Context, f *clientFlags, call func(context.Context) (T, error)) (T, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	v, err := call(rctx)
	if err != nil {
		return v, apiError(ctx, f.fs.Name(), err)
	}
	return v, nil
}

// apiError names the command in err and adds a hint for the usual causes.
func apiError(ctx context.Context, cmd string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: interrupted", cmd)
	case errors.Is(err, control.ErrNotRunning):
		// says so itself
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: %w (is the daemon running?)", cmd, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: %w (the control socket is root-only)", cmd, err)
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

// writeIndentedJSON writes v as indented JSON.
func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONLine writes v as JSON on one line (NDJSON).
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeBuf writes b's content to w.
func writeBuf(w io.Writer, b *bytes.Buffer) error {
	_, err := w.Write(b.Bytes())
	return err
}

// newTable returns a tabwriter for aligned columns: cells separated by
// tabs, two spaces between columns. Flush it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// tableRow writes cells as one tab-separated line of a table.
func tableRow(w io.Writer, cells ...string) {
	io.WriteString(w, strings.Join(cells, "\t")+"\n")
}

func (c *cli) status(ctx context.Context, args []string) error {
	f := c.flags("status", "", "Show the daemon: uplinks, flows, DNS, DHCP and drops.")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	api, err := c.connect(f)
	if err != nil {
		return err
	}
	st, err := fetchAPI(ctx, f, api.Status)
	if err != nil {
		return err
	}
	if f.json {
		return writeIndentedJSON(c.stdout, st)
	}
	var b bytes.Buffer
	formatStatus(&b, st, c.now())
	return writeBuf(c.stdout, &b)
}

// formatStatus writes the status page: header, uplink table, DNS, DHCP and
// drops.
func formatStatus(b *bytes.Buffer, st control.Status, now time.Time) {
	fmt.Fprintf(b, "wanflow %s, up %s, %d workers, %d/%d flows\n", st.Version,
		humanDuration(secondsDur(st.Uptime)), st.Workers, st.Flows, st.FlowCapacity)
	fmt.Fprintf(b, "config %s", st.Config)
	if !st.Loaded.IsZero() {
		fmt.Fprintf(b, ", loaded %s", showAgo(now, st.Loaded))
	}
	b.WriteString("\n\n")
	t := newTable(b)
	tableRow(t, "NAME", "IFACE", "STATE", "TIER", "WEIGHT", "ADDR", "GATEWAY", "RTT", "LOSS", "FLOWS", "OUT", "IN", "SINCE")
	for _, u := range st.Uplinks {
		tableRow(t, u.Name, orDash(u.Interface), u.State, strconv.Itoa(u.Tier), showWeight(u), orDash(u.Addr), orDash(u.Gateway),
			showRTT(u.RTT), showPercent(u.Loss), strconv.Itoa(u.Flows), humanBits(u.RateOut), humanBits(u.RateIn), showAgo(now, u.Since))
	}
	t.Flush()
	if d := st.DNS; d != nil {
		fmt.Fprintf(b, "\ndns: %d queries, %s cache hits (%d entries), %d servfail", d.Queries,
			showPercent(shareOf(d.CacheHits, d.Queries)), d.CacheEntries, d.ServFail)
		if len(d.Upstreams) > 0 {
			ups := make([]string, len(d.Upstreams))
			for i, u := range d.Upstreams {
				ups[i] = u.Uplink + " " + u.Server
			}
			fmt.Fprintf(b, "; upstreams in order: %s", strings.Join(ups, ", "))
		}
		b.WriteString("\n")
	}
	if d := st.DHCP; d != nil {
		if st.DNS == nil {
			b.WriteString("\n")
		}
		fmt.Fprintf(b, "dhcp on %s: %d/%d leases (%s), pool exhausted %d times\n",
			d.Interface, d.Leases, d.PoolSize, d.Range, d.PoolExhausted)
	}
	var drops []string
	for _, k := range slices.Sorted(maps.Keys(st.Drops)) {
		if n := st.Drops[k]; n > 0 {
			drops = append(drops, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(drops) > 0 {
		fmt.Fprintf(b, "\ndrops: %s\n", strings.Join(drops, ", "))
	}
}

// showWeight is "configured", or "effective/configured" when they differ.
func showWeight(u control.UplinkStatus) string {
	if u.EffectiveWeight == u.Weight {
		return strconv.FormatUint(uint64(u.Weight), 10)
	}
	return fmt.Sprintf("%d/%d", u.EffectiveWeight, u.Weight)
}

func (c *cli) uplinks(ctx context.Context, args []string) error {
	f := c.flags("uplinks", "", "Show every uplink in detail: state, addresses, DNS, failure actions, probes.")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	api, err := c.connect(f)
	if err != nil {
		return err
	}
	rep, err := fetchAPI(ctx, f, api.Uplinks)
	if err != nil {
		return err
	}
	if f.json {
		return writeIndentedJSON(c.stdout, rep)
	}
	var b bytes.Buffer
	for i, u := range rep.Uplinks {
		if i > 0 {
			b.WriteString("\n")
		}
		formatUplink(&b, u, c.now())
	}
	return writeBuf(c.stdout, &b)
}

// historyRounds is how many probe rounds `wanflow uplinks` shows.
const historyRounds = 20

// formatUplink writes one uplink's block.
func formatUplink(b *bytes.Buffer, u control.UplinkDetail, now time.Time) {
	avail := "available"
	if !u.Available {
		avail = "unavailable"
	}
	fmt.Fprintf(b, "%s (%s, index %d): %s, %s since %s\n", u.Name, orDash(u.Interface), u.Index, u.State, avail, showAgo(now, u.Since))
	t := newTable(b)
	kv := func(k, format string, a ...any) { fmt.Fprintf(t, "  %s\t"+format+"\n", append([]any{k}, a...)...) }
	kv("tier", "%d", u.Tier)
	if u.EffectiveWeight != u.Weight {
		kv("weight", "%d (effective %d)", u.Weight, u.EffectiveWeight)
	} else {
		kv("weight", "%d", u.Weight)
	}
	if u.MTU > 0 {
		kv("carrier", "%s, mtu %d", showYesNo(u.Carrier), u.MTU)
	} else {
		kv("carrier", "%s", showYesNo(u.Carrier))
	}
	kv("address", "%s, gateway %s", orDash(u.Addr), orDash(u.Gateway))
	kv("dns", "%s", orDash(strings.Join(u.DNS, ", ")))
	kv("rtt", "%s, loss %s", showRTT(u.RTT), showPercent(u.Loss))
	kv("flows", "%d", u.Flows)
	kv("out", "%s, %s in %d packets", humanBits(u.RateOut), humanBytes(u.BytesOut), u.PacketsOut)
	kv("in", "%s, %s in %d packets", humanBits(u.RateIn), humanBytes(u.BytesIn), u.PacketsIn)
	kv("on failure", "tcp %s, udp %s", orDash(u.OnFailureTCP), orDash(u.OnFailureUDP))
	p := u.Probes
	if p == nil {
		kv("probes", "none")
		t.Flush()
		return
	}
	kv("probes", "every %s, timeout %s, min ok %d", showMs(p.Interval), showMs(p.Timeout), p.MinOK)
	kv("rounds", "%d ok, %d failed, %d skipped; %d transitions", p.RoundsOK, p.RoundsFailed, p.RoundsSkipped, p.Transitions)
	if len(p.History) > 0 {
		h := p.History[max(0, len(p.History)-historyRounds):]
		kv("history", "%s (rtt ms, oldest first)", probeHistory(h, p.MinOK))
	}
	t.Flush()
	if len(p.Targets) == 0 {
		return
	}
	t = newTable(b)
	for _, pt := range p.Targets {
		outcome, r := "ok", showRTT(pt.RTT)
		if !pt.OK {
			outcome, r = "FAIL", "-"
		}
		cells := []string{"    " + pt.Kind, pt.Target, outcome, r, showAgo(now, pt.At)}
		if pt.Err != "" {
			cells = append(cells, pt.Err)
		}
		tableRow(t, cells...)
	}
	t.Flush()
}

// probeHistory is one token per round: its RTT in milliseconds, "x" when
// the round failed (fewer than minOK targets answered).
func probeHistory(h []control.ProbeRound, minOK int) string {
	s := make([]string, len(h))
	for i, r := range h {
		if r.OK == 0 || r.OK < minOK {
			s[i] = "x"
		} else {
			s[i] = strconv.FormatFloat(r.RTT, 'f', rttDecimals(r.RTT), 64)
		}
	}
	return strings.Join(s, " ")
}

func (c *cli) flows(ctx context.Context, args []string) error {
	f := c.flags("flows", "", "List the flows of the flow table.")
	var q control.FlowQuery
	var port uint
	f.fs.StringVar(&q.Uplink, "uplink", "", "only flows pinned to the uplink `NAME`")
	f.fs.StringVar(&q.Host, "host", "", "only flows of the LAN host `ADDR`")
	f.fs.StringVar(&q.Remote, "remote", "", "only flows to the internet address `ADDR`")
	f.fs.StringVar(&q.Proto, "proto", "", "only `PROTO` flows: tcp, udp or icmp")
	f.fs.UintVar(&port, "port", 0, "only flows with the LAN, remote or NAT `PORT`")
	f.fs.StringVar(&q.Sort, "sort", "", "`ORDER`: bytes, packets (largest first) or age (oldest first)")
	f.fs.IntVar(&q.Limit, "limit", 0, fmt.Sprintf("show at most `N` flows (default %d, at most %d)", control.DefaultFlowLimit, control.MaxFlowLimit))
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := checkFlowQuery(&q, port); err != nil {
		return err
	}
	api, err := c.connect(f)
	if err != nil {
		return err
	}
	rep, err := fetchAPI(ctx, f, func(ctx context.Context) (control.FlowsReply, error) { return api.Flows(ctx, q) })
	if err != nil {
		return err
	}
	if f.json {
		return writeIndentedJSON(c.stdout, rep)
	}
	var b bytes.Buffer
	formatFlows(&b, rep)
	return writeBuf(c.stdout, &b)
}

// checkFlowQuery checks the flags of `wanflow flows` before asking the
// daemon, for an error that names the flag.
func checkFlowQuery(q *control.FlowQuery, port uint) error {
	if port > math.MaxUint16 {
		return fmt.Errorf("flows: --port %d: not a port", port)
	}
	q.Port = uint16(port)
	for _, a := range []struct{ flag, v string }{{"host", q.Host}, {"remote", q.Remote}} {
		if a.v == "" {
			continue
		}
		if _, err := netip.ParseAddr(a.v); err != nil {
			return fmt.Errorf("flows: --%s: %w", a.flag, err)
		}
	}
	q.Proto = strings.ToLower(q.Proto)
	if !slices.Contains([]string{"", "tcp", "udp", "icmp"}, q.Proto) {
		return fmt.Errorf("flows: --proto %q: want tcp, udp or icmp", q.Proto)
	}
	if !slices.Contains([]string{"", "bytes", "packets", "age"}, q.Sort) {
		return fmt.Errorf("flows: --sort %q: want bytes, packets or age", q.Sort)
	}
	if q.Limit < 0 || q.Limit > control.MaxFlowLimit {
		return fmt.Errorf("flows: --limit %d: want 1..%d", q.Limit, control.MaxFlowLimit)
	}
	return nil
}

// formatFlows writes the flow table and, when the reply is truncated, how
// many flows matched.
func formatFlows(b *bytes.Buffer, rep control.FlowsReply) {
	if len(rep.Flows) == 0 {
		fmt.Fprintf(b, "no flows (%d matched)\n", rep.Matched)
		return
	}
	t := newTable(b)
	tableRow(t, "PROTO", "SRC", "DST", "NAT", "UPLINK", "STATE", "AGE", "PKTS", "BYTES", "WHY")
	for _, fl := range rep.Flows {
		tableRow(t, fl.Proto, fl.Src, fl.Dst, orDash(fl.NAT), orDash(fl.Uplink), fl.State, humanDuration(secondsDur(fl.Age)),
			fmt.Sprintf("%d/%d", fl.PacketsOut, fl.PacketsIn),
			humanBytes(fl.BytesOut)+"/"+humanBytes(fl.BytesIn), showWhy(fl))
	}
	t.Flush()
	if rep.Truncated {
		fmt.Fprintf(b, "%d of %d flows (--limit to see more)\n", len(rep.Flows), rep.Matched)
	}
}

// showWhy is "reason, tier N[, rule R]".
func showWhy(fl control.Flow) string {
	s := fmt.Sprintf("%s, tier %d", orDash(fl.Reason), fl.Tier)
	if fl.Rule != "" {
		s += ", rule " + fl.Rule
	}
	if fl.PortsFallback {
		s += ", first choice out of NAT ports"
	}
	return s
}

func (c *cli) explain(ctx context.Context, args []string) error {
	f := c.flags("explain", " <proto> <src>[:port] <dst>[:port]",
		"Say which uplink a flow uses and why; ports are required for tcp and udp,\nfor icmp src's port is the echo identifier.")
	ops, err := f.parse(args, 3, 3)
	if err != nil {
		return err
	}
	q, err := control.ParseExplainArgs(ops)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	api, err := c.connect(f)
	if err != nil {
		return err
	}
	rep, err := fetchAPI(ctx, f, func(ctx context.Context) (control.ExplainReply, error) { return api.Explain(ctx, q) })
	if err != nil {
		return err
	}
	if f.json {
		return writeIndentedJSON(c.stdout, rep)
	}
	var b bytes.Buffer
	formatExplain(&b, rep)
	return writeBuf(c.stdout, &b)
}

// formatExplain writes the existing flow, the policy's reasoning with its
// candidate table, the Why sentence and the verdict.
func formatExplain(b *bytes.Buffer, rep control.ExplainReply) {
	q := rep.Query
	fmt.Fprintf(b, "%s %s → %s\n", q.Proto, q.Src, q.Dst)
	if e := rep.Existing; e != nil {
		placed := fmt.Sprintf("tier %d", e.Tier)
		if e.Rule != "" {
			placed += ", rule " + e.Rule
		}
		if e.PortsFallback {
			placed += ", its first choice having no free NAT port"
		}
		fmt.Fprintf(b, "existing flow: pinned to %s since %s (%s ago), placed by %s (%s)\n", orDash(e.Uplink),
			e.Created.Format(time.DateTime), humanDuration(secondsDur(e.Age)), orDash(e.Reason), placed)
	} else {
		b.WriteString("no existing flow: the policy places it\n")
	}
	p := rep.Policy
	rule := "no rule matched"
	if p.Rule != "" {
		rule = "rule " + p.Rule + " matched"
	}
	choice := "no uplink"
	if p.Uplink != "" {
		choice = fmt.Sprintf("%s (%s, tier %d)", p.Uplink, orDash(p.Reason), p.Tier)
	}
	fmt.Fprintf(b, "policy now: affinity %s, %s, choice %s\n\n", orDash(p.Affinity), rule, choice)
	t := newTable(b)
	tableRow(t, "NAME", "TIER", "WEIGHT", "AVAILABLE", "ALLOWED", "SCORE", "VERDICT")
	for _, c := range p.Candidates {
		score := "-"
		if c.Score != 0 {
			score = strconv.FormatFloat(c.Score, 'g', 4, 64)
		}
		tableRow(t, c.Name, strconv.Itoa(c.Tier), strconv.FormatUint(uint64(c.Weight), 10), showYesNo(c.Available),
			showYesNo(c.Allowed), score, c.Verdict)
	}
	t.Flush()
	b.WriteString("\n")
	if rep.Why != "" {
		b.WriteString(rep.Why + "\n")
	}
	if rep.Uplink == "" {
		b.WriteString("→ dropped: no uplink\n")
	} else {
		fmt.Fprintf(b, "→ uplink %s\n", rep.Uplink)
	}
}

func (c *cli) events(ctx context.Context, args []string) error {
	f := c.flags("events", "", "Print the daemon's recent events; with -f, then follow new ones until interrupted.\nWith --json, one JSON object per event and line.")
	follow := f.fs.Bool("f", false, "follow: print new events as they happen, until interrupted")
	since := f.fs.Uint64("since", 0, "only events after sequence number `N`")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	api, err := c.connect(f)
	if err != nil {
		return err
	}
	rep, err := fetchAPI(ctx, f, func(ctx context.Context) (control.EventsReply, error) { return api.Events(ctx, *since) })
	if err != nil {
		return err
	}
	last := *since
	emit := func(e events.Event) error {
		if e.Seq != 0 && e.Seq <= last {
			return nil // already printed
		}
		last = max(last, e.Seq)
		if f.json {
			return writeJSONLine(c.stdout, e)
		}
		_, err := io.WriteString(c.stdout, formatEvent(e)+"\n")
		return err
	}
	for _, e := range rep.Events {
		if err := emit(e); err != nil {
			return err
		}
	}
	if !*follow {
		return nil
	}
	last = max(last, rep.Last)
	err = api.Follow(ctx, last, emit)
	switch {
	case ctx.Err() != nil:
		return nil // interrupted: the normal end of -f
	case err == nil, errors.Is(err, io.EOF):
		return errors.New("events: the daemon closed the event stream (did it stop?)")
	}
	return apiError(ctx, "events", err)
}

// formatEvent is one event on one line: time, sequence number, kind,
// uplink, from→to, then the fields that are set as key=value.
func formatEvent(e events.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d %-8s %s", e.Time.Format("2006-01-02T15:04:05.000Z07:00"), e.Seq, e.Kind, orDash(e.Uplink))
	if e.Interface != "" {
		fmt.Fprintf(&b, "(%s)", e.Interface)
	}
	if e.From != "" || e.To != "" {
		fmt.Fprintf(&b, " %s→%s", orDash(e.From), orDash(e.To))
	}
	kv := func(k, v string) {
		if v == "" {
			return
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r == '"' || r == '=' || unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	kv("cause", e.Cause)
	if e.Duration != 0 {
		kv("duration", eventDuration(e.Duration))
	}
	kv("hook", e.Hook)
	if e.PID != 0 {
		kv("pid", strconv.Itoa(e.PID))
	}
	if e.Kind == events.KindHook {
		kv("exit", strconv.Itoa(e.Exit))
	}
	kv("err", e.Err)
	kv("detail", e.Detail)
	return b.String()
}

// eventDuration is d to the millisecond under a minute, else to the second.
func eventDuration(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func (c *cli) reload(ctx context.Context, args []string) error {
	f := c.flags("reload", "", "Make the daemon reload its config file and say what changed.")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	api, err := c.connect(f)
	if err != nil {
		return err
	}
	rep, err := fetchAPI(ctx, f, api.Reload)
	if err != nil {
		return err
	}
	if f.json {
		return writeIndentedJSON(c.stdout, rep)
	}
	_, err = io.WriteString(c.stdout, formatReload(rep)+"\n")
	return err
}

// formatReload is "reloaded FILE: N changes: key, key" or "reloaded FILE:
// no change".
func formatReload(rep control.ReloadReply) string {
	switch n := len(rep.Changed); n {
	case 0:
		return fmt.Sprintf("reloaded %s: no change", rep.Config)
	case 1:
		return fmt.Sprintf("reloaded %s: 1 change: %s", rep.Config, rep.Changed[0])
	default:
		return fmt.Sprintf("reloaded %s: %d changes: %s", rep.Config, n, strings.Join(rep.Changed, ", "))
	}
}

// Human-readable values.

// secondsDur converts the API's float seconds to a Duration.
func secondsDur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// showMs converts the API's float milliseconds to a Duration's string.
func showMs(v float64) string { return time.Duration(v * float64(time.Millisecond)).String() }

// humanDuration is d in its two largest units: 850ms, 42s, 3m12s, 5h07m,
// 12d03h. Negative durations (clock skew) count as zero.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd%02dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

// showAgo is "3m12s ago", "-" for the zero time.
func showAgo(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return humanDuration(now.Sub(t)) + " ago"
}

// humanBits is a rate in bits per second with SI prefixes: 950 bit/s,
// 1.2 Mbit/s, 15 Gbit/s.
func humanBits(bps float64) string {
	return humanScaled(bps, 1000, []string{"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"})
}

// humanBytes is a byte count with binary prefixes: 512 B, 1.5 KiB,
// 12 MiB.
func humanBytes(n uint64) string {
	return humanScaled(float64(n), 1024, []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"})
}

// humanScaled divides v by base until it is below base (or the units run out)
// and prints it with one decimal under 10 in a prefixed unit, else none.
func humanScaled(v, base float64, units []string) string {
	if v < 0 || math.IsNaN(v) {
		v = 0
	}
	i := 0
	for v >= base && i < len(units)-1 {
		v /= base
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", v, units[0])
	}
	// Round first so that 9.96 prints as "10", not "10.0".
	if math.Round(v*10)/10 < 10 {
		return fmt.Sprintf("%.1f %s", v, units[i])
	}
	return fmt.Sprintf("%.0f %s", v, units[i])
}

// rttDecimals is 1 for values under 10, else 0.
func rttDecimals(v float64) int {
	if math.Round(v*10)/10 < 10 {
		return 1
	}
	return 0
}

// showRTT is an RTT in milliseconds, to a tenth under 100ms, "-" for
// none.
func showRTT(v float64) string {
	if v <= 0 {
		return "-"
	}
	d := 1
	if math.Round(v*10)/10 >= 100 {
		d = 0
	}
	return strconv.FormatFloat(v, 'f', d, 64) + "ms"
}

// showPercent is a share 0..1 as a whole percentage.
func showPercent(share float64) string {
	return fmt.Sprintf("%.0f%%", 100*share)
}

// shareOf is a/b, 0 when b is 0.
func shareOf(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// orDash is s, "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// showYesNo is "yes" or "no".
func showYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
