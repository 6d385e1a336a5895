package main

// `wanflow top`: the uplinks' live throughput and flows, one frame per
// interval, from the control API's Status.

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wanflow/wanflow/cmd/wanflow/control"
)

// clearScreen moves the cursor home and clears the terminal (ANSI).
const clearScreen = "\x1b[H\x1b[2J"

// shareBarWidth is the width of top's bar of an uplink's share of the
// traffic.
const shareBarWidth = 20

// minTopInterval keeps top from hammering the daemon.
const minTopInterval = 100 * time.Millisecond

func (c *cli) top(ctx context.Context, args []string) error {
	f := c.flags("top", "", "Show the uplinks' live throughput, share of the traffic and flows, refreshed\nevery interval until interrupted. With --json, one Status object per frame and line.")
	interval := f.fs.Duration("i", time.Second, "refresh every `INTERVAL`")
	frames := f.fs.Int("n", 0, "stop after `N` frames (0: run until interrupted)")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if *interval < minTopInterval {
		return fmt.Errorf("top: -i %v: want at least %v", *interval, minTopInterval)
	}
	if *frames < 0 {
		return fmt.Errorf("top: -n %d: want 0 (no limit) or more", *frames)
	}
	api, err := c.connect(f)
	if err != nil {
		return err
	}
	for i := 0; *frames == 0 || i < *frames; i++ {
		if i > 0 {
			if c.sleep(ctx, *interval) != nil {
				return nil // interrupted: the normal end of top
			}
		}
		st, err := fetchAPI(ctx, f, api.Status)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		var b bytes.Buffer
		switch {
		case f.json:
			if err := writeJSONLine(&b, st); err != nil {
				return err
			}
		case c.tty:
			b.WriteString(clearScreen)
			formatTop(&b, st, c.now(), *interval)
		default:
			if i > 0 {
				b.WriteString("\n")
			}
			formatTop(&b, st, c.now(), *interval)
		}
		if err := writeBuf(c.stdout, &b); err != nil {
			return err
		}
	}
	return nil
}

// formatTop writes one frame: a header, one line per uplink and the
// totals.
func formatTop(b *bytes.Buffer, st control.Status, now time.Time, every time.Duration) {
	fmt.Fprintf(b, "wanflow top  %s  up %s  flows %d/%d  every %v\n\n", now.Format(time.TimeOnly),
		humanDuration(secondsDur(st.Uptime)), st.Flows, st.FlowCapacity, every)
	var out, in float64
	var flows int
	for _, u := range st.Uplinks {
		out += u.RateOut
		in += u.RateIn
		flows += u.Flows
	}
	t := newTable(b)
	tableRow(t, "NAME", "STATE", "FLOWS", "OUT", "IN", "SHARE", "RTT")
	for _, u := range st.Uplinks {
		tableRow(t, u.Name, u.State, strconv.Itoa(u.Flows), humanBits(u.RateOut), humanBits(u.RateIn),
			shareBar(shareOfF(u.RateOut+u.RateIn, out+in)), showRTT(u.RTT))
	}
	tableRow(t, "total", "", strconv.Itoa(flows), humanBits(out), humanBits(in))
	t.Flush()
}

// shareBar draws share (0..1) as a bar of shareBarWidth and a percentage.
func shareBar(share float64) string {
	n := min(shareBarWidth, max(0, int(share*shareBarWidth+0.5)))
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", shareBarWidth-n) + "] " + showPercent(share)
}

// shareOfF is a/b, 0 when b is not positive.
func shareOfF(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}
