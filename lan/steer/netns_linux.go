package steer

import (
	"github.com/vishvananda/netns"

	"github.com/wanflow/wanflow/uplinks/netnsrun"
)

// InNetNS runs fn on a dedicated, locked OS thread that has entered the
// network namespace ns, and returns fn's error. Use it for what has no
// namespace-aware API: /proc/sys/net sysctls, creating a TUN device, a
// socket that must live in ns.
//
// fn must not start goroutines that expect to run in ns: only fn's own
// goroutine is on the switched thread. If the thread cannot return to its
// original namespace it is never handed back to the scheduler: it stays
// locked and the runtime destroys it when InNetNS's goroutine exits.
func InNetNS(ns netns.NsHandle, fn func() error) error {
	return netnsrun.Do(ns, fn)
}
