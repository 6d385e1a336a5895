package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wanflow/wanflow/uplinks/events"
)

// Bounds of the Client.
const (
	// maxReply bounds a reply body the Client reads.
	maxReply = 64 << 20
	// maxEventLine bounds one line of an event stream.
	maxEventLine = 1 << 20
	// dialTimeout bounds connecting to the socket.
	dialTimeout = 5 * time.Second
)

// Client talks to a running daemon over its control socket. It is safe for
// concurrent use. Calls are bounded by their context, replies in size.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a Client for the daemon listening on socket
// (DefaultSocket when "").
func NewClient(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout}
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression:     true,
		MaxIdleConns:           2,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Status returns the daemon's summary.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var v Status
	err := c.do(ctx, http.MethodGet, PathStatus, nil, &v)
	return v, err
}

// Uplinks returns every uplink in detail.
func (c *Client) Uplinks(ctx context.Context) (UplinksReply, error) {
	var v UplinksReply
	err := c.do(ctx, http.MethodGet, PathUplinks, nil, &v)
	return v, err
}

// Flows returns the flows q selects; the daemon checks q (400 when bad).
func (c *Client) Flows(ctx context.Context, q FlowQuery) (FlowsReply, error) {
	var v FlowsReply
	err := c.do(ctx, http.MethodGet, PathFlows, q.Values(), &v)
	return v, err
}

// Explain says where the flow q names goes and why; the daemon checks q
// (400 when bad; ParseExplainArgs checks it beforehand).
func (c *Client) Explain(ctx context.Context, q ExplainQuery) (ExplainReply, error) {
	var v ExplainReply
	err := c.do(ctx, http.MethodGet, PathExplain, q.Values(), &v)
	return v, err
}

// Events returns the events in the daemon's ring whose sequence number is
// greater than since (all of them for 0).
func (c *Client) Events(ctx context.Context, since uint64) (EventsReply, error) {
	var v EventsReply
	err := c.do(ctx, http.MethodGet, PathEvents, sinceValues(since, false), &v)
	return v, err
}

// Follow calls fn with each event after since, oldest first: those in the
// daemon's ring, then live ones as they happen. It returns ctx.Err() when
// ctx is done, fn's error when fn fails, and an error wrapping io.EOF when
// the daemon ends the stream (it stopped).
func (c *Client) Follow(ctx context.Context, since uint64, fn func(events.Event) error) error {
	resp, err := c.send(ctx, http.MethodGet, PathEvents, sinceValues(since, true))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/x-ndjson" {
		return fmt.Errorf("control: follow events: reply is %q, want application/x-ndjson", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var e events.Event
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("control: follow events: decode event: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("control: follow events: %w", err)
	}
	return fmt.Errorf("control: follow events: the daemon ended the stream: %w", io.EOF)
}

// Reload asks the daemon to reload its config file.
func (c *Client) Reload(ctx context.Context) (ReloadReply, error) {
	var v ReloadReply
	err := c.do(ctx, http.MethodPost, PathReload, nil, &v)
	return v, err
}

func sinceValues(since uint64, follow bool) url.Values {
	v := url.Values{}
	if since != 0 {
		v.Set("since", strconv.FormatUint(since, 10))
	}
	if follow {
		v.Set("follow", "1")
	}
	return v
}

// do makes a request and decodes its JSON reply into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	resp, err := c.send(ctx, method, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return fmt.Errorf("control: %s %s: read reply: %w", method, path, err)
	}
	if len(body) > maxReply {
		return fmt.Errorf("control: %s %s: reply larger than %d MiB", method, path, maxReply>>20)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("control: %s %s: decode reply: %w", method, path, err)
	}
	return nil
}

// send makes a request and returns the response when its status is 2xx;
// otherwise an *APIError, or an error saying why the daemon could not be
// reached.
func (c *Client) send(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	u := "http://wanflow" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("control: %s %s: %w", method, path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.connError(ctx, method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readAPIError(resp)
}

// readAPIError turns a non-2xx reply into an *APIError with the server's
// message (its Error body, else the start of the body, else the status).
func readAPIError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{Status: resp.StatusCode}
	var eb Error
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e.Message = eb.Error
	} else if s := strings.TrimSpace(string(body)); s != "" {
		e.Message = clip(s)
	}
	return e
}

// connError explains a failed request: the daemon is not running, the
// caller may not use the socket, or the error as it is.
func (c *Client) connError(ctx context.Context, method, path string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("control: %s %s: %w", method, path, ctx.Err())
	}
	var errno syscall.Errno
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" && errors.As(err, &errno) {
		switch errno {
		case syscall.ENOENT, syscall.ECONNREFUSED, syscall.ENOTDIR:
			return fmt.Errorf("control: %w: nothing answers on %s (%w)", ErrNotRunning, c.socket, errno)
		case syscall.EACCES, syscall.EPERM:
			return fmt.Errorf("control: no permission to use %s (%w): run as root", c.socket, errno)
		}
	}
	return fmt.Errorf("control: %s %s on %s: %w", method, path, c.socket, err)
}
