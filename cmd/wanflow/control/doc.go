// Package control is wanflow's control API: HTTP/JSON on a root-only unix
// socket, served by the daemon and used by the wanflow CLI.
//
// The API's paths are versioned (/v1/...). Every reply is JSON; every
// error is an Error body with a 4xx or 5xx status. Requests are small and
// bounded (size, time), replies are bounded (flow listings have a limit),
// and a client without the daemon's user id is refused even if it could
// open the socket.
//
// Server is safe for concurrent use; it calls its Backend from many
// goroutines at once.
package control
