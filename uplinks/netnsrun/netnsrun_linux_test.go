package netnsrun

import (
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// TestDo: fn runs inside the namespace, the caller's thread never moves.
func TestDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	runtime.LockOSThread() // netns.New moves this thread: keep it for the test
	defer runtime.UnlockOSThread()
	origin, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer origin.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(origin); err != nil {
		t.Fatal(err)
	}
	var inside netns.NsHandle
	if err := Do(ns, func() error {
		var err error
		inside, err = netns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if !inside.Equal(ns) {
		t.Error("fn did not run inside the namespace")
	}
	here, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer here.Close()
	if !here.Equal(origin) {
		t.Error("the caller's thread changed namespace")
	}
}
