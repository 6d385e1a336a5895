package hooks

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"sync"
)

// maxLine is the longest output line logged as one; longer lines are logged
// in pieces.
const maxLine = 4096

// maxDetail bounds the last output line kept for events.Event.Detail.
const maxDetail = 256

type outLine struct {
	stream, text string
	n            int // bytes read, including the line end
}

// output logs the lines a run prints: the first OutputLimit bytes as they
// arrive, then only a tail of TailLimit bytes, logged by flush. It is shared
// by the stdout and stderr readers.
type output struct {
	log *slog.Logger

	mu        sync.Mutex
	logged    int  // bytes logged live
	over      bool // OutputLimit reached: only the tail is kept from now on
	skipped   int  // bytes neither logged live nor kept in tail
	tail      []outLine
	tailBytes int
	last      string
}

// routineRead reads one stream of a run until EOF or error and logs its lines.
func (o *output) routineRead(wg *sync.WaitGroup, r io.Reader, stream string) {
	defer wg.Done()
	br := bufio.NewReaderSize(r, maxLine)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			o.line(stream, b)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

func (o *output) line(stream string, b []byte) {
	n := len(b)
	b = bytes.TrimRight(b, "\r\n")
	text := string(b)
	o.mu.Lock()
	defer o.mu.Unlock()
	if t := bytes.TrimSpace(b); len(t) > 0 {
		if len(t) > maxDetail {
			t = t[:maxDetail]
		}
		o.last = string(t)
	}
	if !o.over && o.logged+n <= OutputLimit {
		o.logged += n
		o.log.Info("hook output", "stream", stream, "line", text)
		return
	}
	o.over = true
	o.tail = append(o.tail, outLine{stream, text, n})
	o.tailBytes += n
	for o.tailBytes > TailLimit && len(o.tail) > 1 {
		o.skipped += o.tail[0].n
		o.tailBytes -= o.tail[0].n
		o.tail[0] = outLine{}
		o.tail = o.tail[1:]
	}
}

// flush logs what was held back; call it after both readers returned.
func (o *output) flush() (lastLine string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.skipped > 0 {
		o.log.Warn("hook output truncated", "skipped_bytes", o.skipped, "limit", OutputLimit)
	}
	for _, l := range o.tail {
		o.log.Info("hook output", "stream", l.stream, "line", l.text)
	}
	o.tail = nil
	return o.last
}
