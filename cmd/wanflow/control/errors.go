package control

import (
	"errors"
	"fmt"
	"net/http"
)

// APIError is an error with an HTTP status. The Client returns one for
// every reply whose status is not 2xx, with the server's message; a
// Backend makes one with BadRequest or Conflict so that the Server answers
// with that status instead of 500.
type APIError struct {
	// Status is the HTTP status code, e.g. 400.
	Status int
	// Message says what was wrong, for a person.
	Message string
}

// Error returns the message, or the status text when there is none.
func (e *APIError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if t := http.StatusText(e.Status); t != "" {
		return t
	}
	return fmt.Sprintf("HTTP status %d", e.Status)
}

// BadRequest returns an error that the Server answers with 400 Bad Request
// and the formatted message: the request was understood but names
// something the daemon does not have (an unknown uplink, say). It may be
// wrapped; the Server finds it with errors.As.
func BadRequest(format string, args ...any) error {
	return &APIError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// Conflict returns an error that the Server answers with 409 Conflict and
// the formatted message: the request is valid but the daemon's state
// refuses it (a reload the running daemon cannot apply, a config that does
// not validate). It may be wrapped; the Server finds it with errors.As.
func Conflict(format string, args ...any) error {
	return &APIError{Status: http.StatusConflict, Message: fmt.Sprintf(format, args...)}
}

// ErrNotRunning is wrapped by the Client's errors when nothing answers on
// the control socket: the socket file is missing, or is stale and refuses
// connections. Test with errors.Is.
var ErrNotRunning = errors.New("the wanflow daemon is not running")

// statusOf returns the HTTP status the Server replies with for an error
// from the Backend: the status of an APIError in it when that is a 4xx,
// else 500. The reply's message is the whole error text, so the Backend's
// wrapping context reaches the client.
func statusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 {
		return ae.Status
	}
	return http.StatusInternalServerError
}
