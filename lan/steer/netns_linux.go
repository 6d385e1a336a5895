package steer

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
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
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("steer: get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			// setns failed: the thread is still where it was.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("steer: enter netns %v: %w", ns, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread dies with this goroutine.
			errc <- fmt.Errorf("steer: return from netns %v: %w (after fn: %v)", ns, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
