// Package nstest gives root-only tests throwaway network namespaces: it
// creates anonymous or named namespaces (with lo up and a netlink handle in
// each) that are removed when the test ends, runs functions inside them, and
// creates veth pairs and TUN devices in them.
//
// Nothing in this package enters or changes the namespace of the calling
// process: links are created through netlink handles that live in the
// test's namespaces, and Do runs its function on a locked OS thread in a
// fresh goroutine; a thread that cannot get back to its original namespace
// stays locked and dies with its goroutine instead of being reused. The
// functions may be called from parallel tests; an NS's netlink handle, like
// any netlink.Handle, must be used by one goroutine at a time.
//
// The package is Linux-only; on other systems it is empty.
package nstest
