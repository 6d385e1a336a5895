// Package netnsrun is wanflow's one way into another network namespace: Do
// runs a function on a locked OS thread that has entered the namespace.
//
// Only Do's own goroutine is switched; the caller's goroutine and thread
// never change namespace. A thread that cannot be moved back is never
// handed back to the scheduler: its goroutine exits still locked and the
// runtime destroys the thread. Sockets the function opens belong to the
// namespace and may be used from any goroutine afterwards. Do is safe for
// concurrent use.
package netnsrun
