package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/wanflow/wanflow/uplinks/events"
)

// Bounds of the Server: what a client may send and how long each step may
// take.
const (
	// maxRequestBody bounds request bodies: larger ones get 413.
	maxRequestBody = 64 << 10
	// maxRequestURI bounds the path and query: longer ones get 414.
	maxRequestURI = 8 << 10
	// maxHeaderBytes bounds the request header (net/http answers 431).
	maxHeaderBytes = 64 << 10
	// readHeaderTimeout bounds reading a request's header, readBodyTimeout
	// its body.
	readHeaderTimeout = 5 * time.Second
	readBodyTimeout   = 5 * time.Second
	// idleTimeout closes kept-alive connections nobody uses.
	idleTimeout = 60 * time.Second
	// callTimeout bounds a Backend call, reloadTimeout a Reload (it
	// reconciles kernel state). A call that takes longer gets 503.
	callTimeout   = 10 * time.Second
	reloadTimeout = 60 * time.Second
	// writeTimeout bounds each write of a reply or of a streamed event to
	// a client that does not read.
	writeTimeout = 10 * time.Second
	// shutdownGrace is how long Serve lets in-flight requests finish.
	shutdownGrace = 2 * time.Second
	// followBuffer is the event subscription's buffer per follower.
	followBuffer = 256
	// maxCalls bounds the Backend calls in progress, counting those that
	// timed out and still run: more requests get 503 rather than pile up
	// goroutines behind a wedged Backend.
	maxCalls = 32
)

// Server serves the control API for a Backend. It is safe for concurrent
// use; one Server may Serve several listeners.
type Server struct {
	b     Backend
	log   *slog.Logger
	euid  int
	calls chan struct{} // semaphore of Backend calls, maxCalls

	// Bounds, the constants above; tests shorten them before serving.
	callTimeout, reloadTimeout, writeTimeout, grace time.Duration
}

// NewServer returns a Server for b that logs to log (nothing when log is
// nil). It allows clients whose user id is 0 or the process's effective
// user id.
func NewServer(b Backend, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		b:             b,
		log:           log,
		euid:          os.Geteuid(),
		calls:         make(chan struct{}, maxCalls),
		callTimeout:   callTimeout,
		reloadTimeout: reloadTimeout,
		writeTimeout:  writeTimeout,
		grace:         shutdownGrace,
	}
}

// Handler returns the API as an http.Handler, for tests. It checks a
// client's credentials only when the connection's context carries them, as
// Serve arranges; its event streams end only when their client goes.
func (s *Server) Handler() http.Handler {
	return &handler{s: s, stop: context.Background()}
}

// Serve serves the API on l until ctx is done, then shuts down: it stops
// accepting, ends event streams, gives in-flight requests a short grace
// before closing their connections, and removes l's socket file. It returns
// nil after a shutdown asked for by ctx, an error when l fails. Every
// connection's client must be root or the daemon's own user, as the kernel
// reports it (SO_PEERCRED); requests from anyone else get 403, and so do
// all requests when l is not a unix socket.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	sock, sockInfo := socketFile(l)
	stop, stopStreams := context.WithCancel(context.Background())
	defer stopStreams()
	srv := &http.Server{
		Handler:           &handler{s: s, stop: stop},
		ReadHeaderTimeout: readHeaderTimeout,
		// "OPTIONS *" goes to the handler too (404), not net/http's 200.
		DisableGeneralOptionsHandler: true,
		IdleTimeout:                  idleTimeout,
		MaxHeaderBytes:               maxHeaderBytes,
		ConnContext:                  connContext,
		ErrorLog:                     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go s.routineHTTP(srv, l, errc)

	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("control: serve %v: %w", l.Addr(), err)
		srv.Close()
	case <-ctx.Done():
		stopStreams()
		gctx, cancel := context.WithTimeout(context.Background(), s.grace)
		if serr := srv.Shutdown(gctx); serr != nil {
			s.log.Warn("control: in-flight requests cut at shutdown", "error", serr)
			srv.Close()
		}
		cancel()
		<-errc // http.ErrServerClosed
	}
	removeSocket(sock, sockInfo)
	return err
}

// routineHTTP runs srv on l until srv is shut down or l fails, and sends
// the outcome to errc.
func (s *Server) routineHTTP(srv *http.Server, l net.Listener, errc chan<- error) {
	errc <- srv.Serve(l)
}

// socketFile returns the path of l's socket file and its identity, or ""
// when l is not a unix socket with a file.
func socketFile(l net.Listener) (string, os.FileInfo) {
	a, ok := l.Addr().(*net.UnixAddr)
	if !ok || a.Name == "" || a.Name[0] == '@' {
		return "", nil
	}
	fi, err := os.Lstat(a.Name)
	if err != nil {
		return "", nil
	}
	return a.Name, fi
}

// removeSocket removes the socket file at path if it is still the one
// Serve started with, not one a newer daemon has made since.
func removeSocket(path string, was os.FileInfo) {
	if path == "" {
		return
	}
	if fi, err := os.Lstat(path); err == nil && os.SameFile(fi, was) {
		os.Remove(path)
	}
}

// peerKey is the context key of a connection's peer.
type peerKey struct{}

// peer is a connection's client as the kernel reports it; err says why it
// is unknown.
type peer struct {
	uid uint32
	pid int32
	err error
}

// connContext stashes the peer of c in its connection's context, where
// every request on it finds it.
func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, peerOf(c))
}

// checkPeer allows root and the daemon's own user.
func (s *Server) checkPeer(p peer) error {
	if p.err != nil {
		return fmt.Errorf("permission denied: cannot check the client's credentials: %v", p.err)
	}
	if p.uid == 0 || int64(p.uid) == int64(s.euid) {
		return nil
	}
	return fmt.Errorf("permission denied: uid %d may not use the wanflow control API: run as root", p.uid)
}

// handler is the API for one Serve (or for Handler); stop is done when
// that Serve shuts down.
type handler struct {
	s    *Server
	stop context.Context
}

// route is one path of the API.
type route struct {
	method string
	serve  func(h *handler, w *recorder, r *http.Request, q url.Values)
}

var routes = map[string]route{
	PathStatus:  {http.MethodGet, (*handler).status},
	PathUplinks: {http.MethodGet, (*handler).uplinks},
	PathFlows:   {http.MethodGet, (*handler).flows},
	PathExplain: {http.MethodGet, (*handler).explain},
	PathEvents:  {http.MethodGet, (*handler).events},
	PathReload:  {http.MethodPost, (*handler).reload},
}

// recorder remembers a reply's status and error message for the log.
type recorder struct {
	http.ResponseWriter
	status int
	err    string
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (Flush,
// deadlines).
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (h *handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &recorder{ResponseWriter: rw}
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			h.s.log.Error("control: panic serving request", "method", r.Method, "path", clip(r.URL.Path),
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if w.status == 0 {
				h.fail(w, http.StatusInternalServerError, "internal error in the daemon (see its log)")
			}
		}
		h.s.logRequest(r, w, time.Since(start))
		if p == http.ErrAbortHandler {
			panic(p)
		}
	}()
	h.serve(w, r)
}

// serve checks the request and hands it to its route: peer, size, path,
// method, body, query, in that order.
func (h *handler) serve(w *recorder, r *http.Request) {
	if p, ok := r.Context().Value(peerKey{}).(peer); ok {
		if err := h.s.checkPeer(p); err != nil {
			h.s.log.Warn("control: client refused", "uid", p.uid, "pid", p.pid, "error", err)
			h.fail(w, http.StatusForbidden, err.Error())
			return
		}
	}
	if len(r.URL.Path)+len(r.URL.RawQuery) > maxRequestURI {
		h.fail(w, http.StatusRequestURITooLong, fmt.Sprintf("request URI longer than %d bytes", maxRequestURI))
		return
	}
	rt, ok := routes[r.URL.Path]
	if !ok {
		h.fail(w, http.StatusNotFound, fmt.Sprintf("no such path %q in the control API", clip(r.URL.Path)))
		return
	}
	if r.Method != rt.method {
		w.Header().Set("Allow", rt.method)
		h.fail(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %q not allowed on %s: use %s", clip(r.Method), r.URL.Path, rt.method))
		return
	}
	if status, err := h.drainBody(w, r); err != nil {
		h.fail(w, status, err.Error())
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.fail(w, http.StatusBadRequest, fmt.Sprintf("bad query string: %v", err))
		return
	}
	rt.serve(h, w, r, q)
}

// drainBody reads and discards the request body, up to maxRequestBody and
// within readBodyTimeout; no route uses it.
func (h *handler) drainBody(w *recorder, r *http.Request) (int, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return 0, nil
	}
	if r.ContentLength > maxRequestBody {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body of %d bytes is larger than %d bytes", r.ContentLength, maxRequestBody)
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(readBodyTimeout))
	// No deadline afterwards: net/http's background read, which notices a
	// client that goes away, must not time out during an event stream.
	defer rc.SetReadDeadline(time.Time{})
	_, err := io.Copy(io.Discard, http.MaxBytesReader(w.ResponseWriter, r.Body, maxRequestBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", maxRequestBody)
	case err != nil:
		return http.StatusBadRequest, fmt.Errorf("read request body: %v", err)
	}
	return 0, nil
}

func (h *handler) status(w *recorder, r *http.Request, q url.Values) {
	if !h.noParams(w, q) {
		return
	}
	v, err := call(h, r, h.s.callTimeout, "status", func() (Status, error) { return h.s.b.Status(), nil })
	h.reply(w, v, err)
}

func (h *handler) uplinks(w *recorder, r *http.Request, q url.Values) {
	if !h.noParams(w, q) {
		return
	}
	v, err := call(h, r, h.s.callTimeout, "uplinks", func() (UplinksReply, error) { return h.s.b.Uplinks(), nil })
	h.reply(w, v, err)
}

func (h *handler) flows(w *recorder, r *http.Request, q url.Values) {
	f, err := ParseFlowQuery(q)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	v, err := call(h, r, h.s.callTimeout, "flows", func() (FlowsReply, error) { return h.s.b.Flows(f) })
	h.reply(w, v, err)
}

func (h *handler) explain(w *recorder, r *http.Request, q url.Values) {
	k, err := ParseExplainQuery(q)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	v, err := call(h, r, h.s.callTimeout, "explain", func() (ExplainReply, error) { return h.s.b.Explain(k) })
	h.reply(w, v, err)
}

func (h *handler) reload(w *recorder, r *http.Request, q url.Values) {
	if !h.noParams(w, q) {
		return
	}
	v, err := call(h, r, h.s.reloadTimeout, "reload", h.s.b.Reload)
	h.reply(w, v, err)
}

func (h *handler) events(w *recorder, r *http.Request, q url.Values) {
	p, err := singleValues(q, eventsParams)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	var since uint64
	if s := p["since"]; s != "" {
		if since, err = strconv.ParseUint(s, 10, 64); err != nil {
			h.fail(w, http.StatusBadRequest, fmt.Sprintf("since %q: not a sequence number", clip(s)))
			return
		}
	}
	var follow bool
	switch s := p["follow"]; s {
	case "", "0", "false":
	case "1", "true":
		follow = true
	default:
		h.fail(w, http.StatusBadRequest, fmt.Sprintf("follow %q: want 1 or 0", clip(s)))
		return
	}
	ring := h.s.b.Events()
	if ring == nil {
		h.fail(w, http.StatusInternalServerError, "the daemon has no event ring")
		return
	}
	if follow {
		h.follow(w, r, ring, since)
		return
	}
	// Last before Since: every event up to Last is in the reply (or was
	// evicted), so a client resuming from Last misses nothing.
	last := ring.Last()
	evs := ring.Since(since)
	if n := len(evs); n > 0 && evs[n-1].Seq > last {
		last = evs[n-1].Seq
	}
	if evs == nil {
		evs = []events.Event{}
	}
	h.reply(w, EventsReply{Events: evs, Last: last, Dropped: ring.Dropped()}, nil)
}

// follow streams the events after since as NDJSON: those in the ring,
// then live ones, each flushed, until the client goes or Serve stops. A
// gap in the live events (the subscription's buffer overflowed) is filled
// from the ring when it still holds them.
func (h *handler) follow(w *recorder, r *http.Request, ring *events.Ring, since uint64) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(h.stop, cancel)()
	live := ring.Subscribe(ctx, followBuffer) // before Since: no gap between them

	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	last := since
	send := func(e events.Event) error {
		if e.Seq <= last {
			return nil
		}
		rc.SetWriteDeadline(time.Now().Add(h.s.writeTimeout))
		if err := enc.Encode(e); err != nil {
			return err
		}
		last = e.Seq
		return nil
	}
	flush := func() error {
		rc.SetWriteDeadline(time.Now().Add(h.s.writeTimeout))
		return rc.Flush()
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	for _, e := range ring.Since(since) {
		if send(e) != nil {
			return
		}
	}
	if flush() != nil {
		return
	}
	for e := range live { // closed when ctx is done
		if e.Seq > last+1 {
			for _, m := range ring.Since(last) {
				if m.Seq >= e.Seq {
					break
				}
				if send(m) != nil {
					return
				}
			}
		}
		if send(e) != nil || flush() != nil {
			return
		}
	}
}

// noParams answers 400 when a route that takes no parameters gets some.
func (h *handler) noParams(w *recorder, q url.Values) bool {
	if _, err := singleValues(q, nil); err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// serverError is an error the Server makes itself, with its status.
type serverError struct {
	status int
	msg    string
}

func (e *serverError) Error() string { return e.msg }

// call runs f, a Backend call, for at most d. A call that panics becomes
// a 500 (the daemon lives on), one that takes longer than d a 503 (it
// goes on in the background until it returns), and so does one that finds
// maxCalls calls in progress.
func call[T any](h *handler, r *http.Request, d time.Duration, what string, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	var zero T
	select {
	case h.s.calls <- struct{}{}:
	default:
		return zero, &serverError{http.StatusServiceUnavailable, fmt.Sprintf("%s: %d requests to the daemon in progress; try again later", what, maxCalls)}
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-h.s.calls }()
		defer func() {
			if p := recover(); p != nil {
				h.s.log.Error("control: panic in backend", "call", what, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				done <- result{err: &serverError{http.StatusInternalServerError, what + ": internal error in the daemon (see its log)"}}
			}
		}()
		v, err := f()
		done <- result{v, err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case res := <-done:
		return res.v, res.err
	case <-t.C:
		return zero, &serverError{http.StatusServiceUnavailable, fmt.Sprintf("%s: the daemon did not answer within %v", what, d)}
	case <-r.Context().Done():
		return zero, &serverError{http.StatusServiceUnavailable, fmt.Sprintf("%s: %v", what, r.Context().Err())}
	}
}

// reply writes v as JSON with status 200, or err as an Error.
func (h *handler) reply(w *recorder, v any, err error) {
	if err != nil {
		var se *serverError
		if errors.As(err, &se) {
			h.fail(w, se.status, se.msg)
		} else {
			h.fail(w, statusOf(err), err.Error())
		}
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		h.fail(w, http.StatusInternalServerError, fmt.Sprintf("encode reply: %v", err))
		return
	}
	h.write(w, http.StatusOK, b)
}

// fail writes an Error reply.
func (h *handler) fail(w *recorder, status int, msg string) {
	w.err = msg
	b, err := json.Marshal(Error{Status: status, Error: msg})
	if err != nil { // cannot happen: an int and a string
		b = []byte(`{"status":500,"error":"encode error reply"}`)
	}
	h.write(w, status, b)
}

func (h *handler) write(w *recorder, status int, body []byte) {
	body = append(body, '\n')
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	hd.Set("X-Content-Type-Options", "nosniff")
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.s.writeTimeout))
	w.WriteHeader(status)
	w.Write(body)
}

// logRequest logs a request at debug level, or at error level with its
// error when it failed with a 5xx.
func (s *Server) logRequest(r *http.Request, w *recorder, d time.Duration) {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	attrs := []slog.Attr{
		slog.String("method", clip(r.Method)),
		slog.String("path", clip(r.URL.Path)),
		slog.Int("status", status),
		slog.Duration("duration", d),
	}
	if status >= 500 {
		attrs = append(attrs, slog.String("error", w.err))
		s.log.LogAttrs(context.Background(), slog.LevelError, "control request failed", attrs...)
		return
	}
	s.log.LogAttrs(context.Background(), slog.LevelDebug, "control request", attrs...)
}
