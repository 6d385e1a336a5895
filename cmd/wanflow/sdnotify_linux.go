//go:build linux

package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"time"
)

// notifier speaks systemd's notify protocol (sd_notify(3)): datagrams to
// the unix socket named by $NOTIFY_SOCKET. Without it (not started by
// systemd with Type=notify) every call does nothing.
type notifier struct {
	addr *net.UnixAddr
}

func newNotifier() notifier {
	p := os.Getenv("NOTIFY_SOCKET")
	if p == "" {
		return notifier{}
	}
	if p[0] == '@' { // abstract socket
		p = "\x00" + p[1:]
	}
	return notifier{addr: &net.UnixAddr{Name: p, Net: "unixgram"}}
}

// send sends state ("READY=1", "STOPPING=1", ...); errors are ignored, as
// sd_notify's are by convention.
func (n notifier) send(state string) {
	if n.addr == nil {
		return
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// watchdogInterval returns how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC when the watchdog is on for this process, else 0.
func watchdogInterval() time.Duration {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(us) * time.Microsecond / 2
}

// routineWatchdog sends WATCHDOG=1 every interval while alive() holds, so
// that systemd restarts a daemon whose packet path or control loop hangs.
func (n notifier) routineWatchdog(ctx context.Context, interval time.Duration, alive func() bool) {
	if n.addr == nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive() {
				n.send("WATCHDOG=1")
			}
		}
	}
}
