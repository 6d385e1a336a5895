// Package hooks runs the commands an uplink's configuration attaches to its
// state changes: on_down once when it goes down, on_up once when it comes
// up, and while_down right after on_down and then every retry while it
// stays down — the 3G redial loop of the reference setup
// (RunJob_WvDialPPP.sh), without its polling.
//
// Invariants:
//   - One Runner per uplink. Its hooks never overlap: a single goroutine
//     (routineRun, started by New, stopped and waited for by Close) runs
//     them one at a time in the order of the Down and Up calls; an Up that
//     arrives during a while_down run waits for that run instead of killing
//     it. A Runner is safe for concurrent use; Down, Up and SetInterface
//     never wait for a hook.
//   - Each run has its own process group and a timeout (SIGTERM to the
//     group, SIGKILL after KillGrace); when the run's first process exits,
//     whatever is left in its group is killed, so no hook outlives its run
//     (a daemon a hook starts must detach into its own session). Each run
//     uses three short-lived goroutines (two output readers and an exit
//     waiter), all finished before the run is logged and recorded.
//   - No injection: a command line comes only from the configuration. The
//     values of the event — interface name, cause, uplink name — are passed
//     only as environment variables (WANFLOW_UPLINK, WANFLOW_HOOK,
//     WANFLOW_STATE, WANFLOW_INTERFACE, WANFLOW_CAUSE), never spliced into
//     the line, so an interface named "x; touch /tmp/pwned" or a cause
//     containing $(...) or backticks is only ever data. Without Spec.Shell
//     the line is split by Split and executed directly, with no expansion
//     at all; with Shell, /bin/sh substitutes "$WANFLOW_INTERFACE" by its
//     value without parsing that value as shell code (quote it anyway, to
//     avoid field splitting and globbing).
//   - Runs get a clean environment — only the variables above and PATH set
//     to Path — stdin from /dev/null, and "/" as working directory. Their
//     stdout and stderr are logged line by line (bounded by OutputLimit and
//     TailLimit) with the attributes uplink, hook and pid, then the exit
//     status and duration.
//   - Hooks run only on Linux; on other systems every run fails with a
//     "not supported" error, which is logged and recorded.
package hooks
