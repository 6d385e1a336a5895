package handover

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/wanflow/wanflow/flowtable"
)

// magic starts every handover file; version is the format's version.
const (
	magic   = "WANFLOW-HANDOVER"
	version = 1
)

// Limits Decode enforces.
const (
	// MaxFlows is the most flows a file may hold (the flow table's
	// largest configurable capacity).
	MaxFlows = 1 << 26
	// MaxUplinks is the most uplinks a file may name.
	MaxUplinks = 255
)

// recordSize is the size of one flow record.
const recordSize = 4 + 4 + 2 + 2 + 1 + // key
	1 + 1 + 1 + 4 + 2 + 4 + 4 + // uplink, state, TCP memory, NAT address and port, decision, remote seq
	8 + 8 + // ages
	4*8 // counters

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrFormat is wrapped by every error Decode returns for a file that is not
// a well-formed handover file.
var ErrFormat = errors.New("handover: bad file")

// Uplink is one uplink's state at the handover.
type Uplink struct {
	Name   string
	Addr   netip.Addr // its IPv4 address then, or the zero Addr
	Health uint8      // its health state (uplinks/health.State)
}

// State is what a stopping daemon hands to the next start.
type State struct {
	// Written is when the file was written (wall clock).
	Written time.Time
	// Workers and Ports are the dataplane's: a flow's NAT port belongs to
	// worker port % Workers.
	Workers int
	Ports   flowtable.PortRange
	// Uplinks are indexed as the flows' Uplink field.
	Uplinks []Uplink
	// Flows have Created and LastSeen as ages: nanoseconds before
	// Written, never negative.
	Flows []flowtable.Saved
}

// Encode writes s to w.
func Encode(w io.Writer, s *State) error {
	if len(s.Flows) > MaxFlows || len(s.Uplinks) > MaxUplinks {
		return fmt.Errorf("handover: %d flows, %d uplinks: too many", len(s.Flows), len(s.Uplinks))
	}
	if s.Workers < 1 || s.Workers > 65535 {
		return fmt.Errorf("handover: %d workers", s.Workers)
	}
	h := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 64<<10)
	var b []byte
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint32(b, version)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Written.UnixNano()))
	b = binary.BigEndian.AppendUint16(b, uint16(s.Workers))
	b = binary.BigEndian.AppendUint16(b, s.Ports.Lo)
	b = binary.BigEndian.AppendUint16(b, s.Ports.Hi)
	b = append(b, byte(len(s.Uplinks)))
	for _, u := range s.Uplinks {
		if len(u.Name) > 255 {
			return fmt.Errorf("handover: uplink name of %d bytes", len(u.Name))
		}
		b = append(b, byte(len(u.Name)))
		b = append(b, u.Name...)
		var a [4]byte
		if u.Addr.Is4() {
			a = u.Addr.As4()
		}
		b = append(b, a[:]...)
		b = append(b, u.Health)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Flows)))
	if _, err := bw.Write(b); err != nil {
		return err
	}
	rec := make([]byte, 0, recordSize)
	for i := range s.Flows {
		rec = appendRecord(rec[:0], &s.Flows[i])
		if _, err := bw.Write(rec); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(binary.BigEndian.AppendUint32(nil, h.Sum32()))
	return err
}

func appendRecord(b []byte, f *flowtable.Saved) []byte {
	k := &f.Key
	b = append(b, k.Src[:]...)
	b = append(b, k.Dst[:]...)
	b = binary.BigEndian.AppendUint16(b, k.SrcPort)
	b = binary.BigEndian.AppendUint16(b, k.DstPort)
	b = append(b, k.Proto, f.Uplink, byte(f.State), f.TCPSeen)
	b = append(b, f.NATAddr[:]...)
	b = binary.BigEndian.AppendUint16(b, f.NATPort)
	b = binary.BigEndian.AppendUint32(b, f.Decision)
	b = binary.BigEndian.AppendUint32(b, f.RemoteSeq)
	b = binary.BigEndian.AppendUint64(b, uint64(max(f.Created, 0)))
	b = binary.BigEndian.AppendUint64(b, uint64(max(f.LastSeen, 0)))
	for _, c := range []uint64{f.PacketsOut, f.BytesOut, f.PacketsIn, f.BytesIn} {
		b = binary.BigEndian.AppendUint64(b, c)
	}
	return b
}

// Decode parses a handover file. Every error wraps ErrFormat.
func Decode(b []byte) (*State, error) {
	bad := func(what string) (*State, error) { return nil, fmt.Errorf("%w: %s", ErrFormat, what) }
	if len(b) < len(magic)+4 || string(b[:len(magic)]) != magic {
		return bad("not a handover file")
	}
	if v := binary.BigEndian.Uint32(b[len(magic):]); v != version {
		return bad(fmt.Sprintf("version %d, want %d", v, version))
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return bad("checksum mismatch")
	}
	r := reader{b: body[len(magic)+4:]}
	s := &State{}
	s.Written = time.Unix(0, int64(r.u64()))
	s.Workers = int(r.u16())
	s.Ports = flowtable.PortRange{Lo: r.u16(), Hi: r.u16()}
	nup := int(r.u8())
	for range nup {
		name := string(r.bytes(int(r.u8())))
		var a [4]byte
		copy(a[:], r.bytes(4))
		u := Uplink{Name: name, Health: r.u8()}
		if a != [4]byte{} {
			u.Addr = netip.AddrFrom4(a)
		}
		s.Uplinks = append(s.Uplinks, u)
	}
	n := int(r.u32())
	if r.short {
		return bad("truncated header")
	}
	switch {
	case s.Workers < 1:
		return bad("no workers")
	case s.Ports.Lo == 0 || s.Ports.Lo > s.Ports.Hi:
		return bad(fmt.Sprintf("port range %d-%d", s.Ports.Lo, s.Ports.Hi))
	case n > MaxFlows:
		return bad(fmt.Sprintf("%d flows", n))
	case len(r.b) != n*recordSize:
		return bad(fmt.Sprintf("%d bytes of flow records for %d flows", len(r.b), n))
	}
	s.Flows = make([]flowtable.Saved, n)
	for i := range s.Flows {
		f := &s.Flows[i]
		copy(f.Key.Src[:], r.bytes(4))
		copy(f.Key.Dst[:], r.bytes(4))
		f.Key.SrcPort, f.Key.DstPort = r.u16(), r.u16()
		f.Key.Proto, f.Uplink, f.State, f.TCPSeen = r.u8(), r.u8(), flowtable.State(r.u8()), r.u8()
		copy(f.NATAddr[:], r.bytes(4))
		f.NATPort = r.u16()
		f.Decision, f.RemoteSeq = r.u32(), r.u32()
		f.Created, f.LastSeen = int64(r.u64()), int64(r.u64())
		f.PacketsOut, f.BytesOut, f.PacketsIn, f.BytesIn = r.u64(), r.u64(), r.u64(), r.u64()
		if f.Created < 0 || f.LastSeen < 0 {
			return bad(fmt.Sprintf("flow %d has a negative age", i))
		}
		if int(f.Uplink) >= len(s.Uplinks) {
			return bad(fmt.Sprintf("flow %d names uplink %d of %d", i, f.Uplink, len(s.Uplinks)))
		}
	}
	return s, nil
}

// reader reads big-endian fields; past the end it returns zeros and sets
// short.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) bytes(n int) []byte {
	if len(r.b) < n {
		r.short = true
		r.b = nil
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() uint8   { return r.bytes(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.bytes(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.bytes(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.bytes(8)) }

// Write writes s to path atomically: a temporary file in the same
// directory (created if missing, mode 0755), fsynced, then renamed over
// path. The file is mode 0600.
func Write(path string, s *State) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".handover-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = Encode(f, s)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("handover: write %s: %w", path, err)
	}
	return nil
}

// Take reads and removes the handover file at path, so that a later start
// (after a crash) never takes the same flows again. It returns nil, nil if
// there is none.
//
// A file that another user owns, or that others could have written (group
// or world writable), is removed and refused: restored flows open NAT
// mappings towards LAN hosts, so only the daemon's own user may write them.
func Take(path string) (*State, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	defer f.Close()
	if err := os.Remove(path); err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	if err := trusted(fi); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	s, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
