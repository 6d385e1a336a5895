package dhcp

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// maxLeaseLine bounds the length of a lease file line; longer lines are
// corrupt (the longest valid line, with a 255-byte client identifier, is
// under 1 KiB).
const maxLeaseLine = 4096

// maxCorruptLogged is how many corrupt lease file lines are logged one by
// one; the rest are only counted.
const maxCorruptLogged = 10

// parseLeaseLine parses one line of the lease file (format in the package
// documentation). skip is true for blank lines, comments and dnsmasq's
// "duid" line, which carry no lease.
func parseLeaseLine(line string) (b *binding, skip bool, err error) {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") || f[0] == "duid" {
		return nil, true, nil
	}
	if len(f) != 5 {
		return nil, false, fmt.Errorf("want 5 fields, got %d", len(f))
	}
	exp, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || exp <= 0 || exp > 1<<40 {
		return nil, false, fmt.Errorf("bad expiry %q", f[0])
	}
	mac, err := parseHexColon(f[1], 16)
	if err != nil {
		return nil, false, fmt.Errorf("bad hardware address %q", f[1])
	}
	addr, err := netip.ParseAddr(f[2])
	if err != nil || !addr.Is4() {
		return nil, false, fmt.Errorf("bad address %q", f[2])
	}
	var name string
	if f[3] != "*" {
		if !validLabel(f[3]) {
			return nil, false, fmt.Errorf("bad hostname %q", f[3])
		}
		name = f[3]
	}
	var id []byte
	if f[4] != "*" {
		if id, err = parseHexColon(f[4], 255); err != nil {
			return nil, false, fmt.Errorf("bad client identifier %q", f[4])
		}
	}
	return &binding{
		addr:     addr,
		key:      keyOf(mac, id),
		mac:      mac,
		clientID: id,
		hostname: name,
		expiry:   time.Unix(exp, 0),
	}, false, nil
}

// parseHexColon parses "aa:bb:cc" (1 to max bytes).
func parseHexColon(s string, max int) ([]byte, error) {
	parts := strings.Split(s, ":")
	if len(parts) > max {
		return nil, errors.New("too long")
	}
	out := make([]byte, len(parts))
	for i, p := range parts {
		if len(p) != 2 {
			return nil, errors.New("bad byte")
		}
		if _, err := hex.Decode(out[i:i+1], []byte(p)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// formatHexColon formats b as "aa:bb:cc", or "*" if b is empty.
func formatHexColon(b []byte) string {
	if len(b) == 0 {
		return "*"
	}
	return net.HardwareAddr(b).String()
}

// appendLeaseLine appends b's lease file line.
func appendLeaseLine(dst []byte, b *binding) []byte {
	dst = strconv.AppendInt(dst, b.expiry.Unix(), 10)
	dst = append(dst, ' ')
	dst = append(dst, formatHexColon(b.mac)...)
	dst = append(dst, ' ')
	dst = b.addr.AppendTo(dst)
	dst = append(dst, ' ')
	if b.hostname == "" {
		dst = append(dst, '*')
	} else {
		dst = append(dst, b.hostname...)
	}
	dst = append(dst, ' ')
	dst = append(dst, formatHexColon(b.clientID)...)
	return append(dst, '\n')
}

// readLeaseFile parses the lease file at path. A missing file yields no
// bindings and no error; corrupt lines are returned in bad (line number
// and reason) and skipped.
func readLeaseFile(path string) (out []*binding, bad []string, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dhcp: open lease file: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, maxLeaseLine)
	for n := 1; ; n++ {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			bad = append(bad, fmt.Sprintf("line %d: longer than %d bytes", n, maxLeaseLine))
			for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of the line
				_, err = r.ReadSlice('\n')
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return out, bad, fmt.Errorf("dhcp: read lease file: %w", err)
			}
			continue
		}
		if len(line) > 0 {
			b, skip, perr := parseLeaseLine(string(line))
			switch {
			case perr != nil:
				bad = append(bad, fmt.Sprintf("line %d: %v", n, perr))
			case !skip:
				out = append(out, b)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, bad, fmt.Errorf("dhcp: read lease file: %w", err)
		}
	}
	return out, bad, nil
}

// writeFileAtomic replaces path with data so that a crash at any point
// leaves either the old or the new contents: write a temporary file in the
// same directory, fsync it, rename it over path, fsync the directory (so
// that the rename itself is durable).
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("dhcp: write lease file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("dhcp: write lease file %s: %w", tmp.Name(), err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("dhcp: chmod lease file %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("dhcp: fsync lease file %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("dhcp: close lease file %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("dhcp: rename lease file to %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("dhcp: open lease file directory %s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("dhcp: fsync lease file directory %s: %w", dir, err)
	}
	return nil
}

// encodeLeases returns the lease file contents for the active bindings of
// bs.
func encodeLeases(bs []*binding, now time.Time) []byte {
	var buf bytes.Buffer
	for _, b := range bs {
		if b.active(now) && !b.declined() {
			buf.Write(appendLeaseLine(nil, b))
		}
	}
	return buf.Bytes()
}
