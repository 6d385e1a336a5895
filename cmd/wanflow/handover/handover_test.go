package handover

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/wanflow/wanflow/flowtable"
)

func sample(n int) *State {
	s := &State{
		Written: time.Unix(1700000000, 123456789),
		Workers: 2,
		Ports:   flowtable.PortRange{Lo: 20000, Hi: 32767},
		Uplinks: []Uplink{
			{Name: "adsl", Addr: netip.MustParseAddr("192.168.1.5"), Health: 2},
			{Name: "4g", Addr: netip.MustParseAddr("192.168.42.10"), Health: 1},
			{Name: "3g", Health: 0},
		},
	}
	for i := range n {
		s.Flows = append(s.Flows, flowtable.Saved{
			Key: flowtable.Key{Src: [4]byte{192, 168, 1, byte(i)}, Dst: [4]byte{203, 0, 113, byte(i * 7)},
				SrcPort: uint16(40000 + i), DstPort: 443, Proto: []uint8{6, 17, 1}[i%3]},
			Uplink: uint8(i % 3), State: flowtable.State(i % 5), TCPSeen: uint8(i % 16),
			NATAddr: [4]byte{192, 168, 1, 5}, NATPort: uint16(20000 + 2*i),
			Decision: uint32(i) << 8, RemoteSeq: uint32(i) * 1000003,
			Created: int64(i) * 1e9, LastSeen: int64(i) * 1e6,
			PacketsOut: uint64(i), BytesOut: uint64(i) * 1500, PacketsIn: uint64(i) * 2, BytesIn: 1 << 40,
		})
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 1000} {
		want := sample(n)
		var buf bytes.Buffer
		if err := Encode(&buf, want); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != 16+4+8+6+1+3*6+len("adsl4g3g")+4+n*recordSize+4 {
			t.Errorf("%d flows: %d bytes", n, buf.Len())
		}
		got, err := Decode(buf.Bytes())
		if err != nil {
			t.Fatalf("%d flows: %v", n, err)
		}
		if n == 0 {
			got.Flows = nil
		}
		if !got.Written.Equal(want.Written) {
			t.Errorf("Written %v, want %v", got.Written, want.Written)
		}
		got.Written = want.Written
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%d flows: decoded\n%+v\nwant\n%+v", n, got, want)
		}
	}
}

// TestDecodeDamaged: every truncation and every flipped bit of a valid
// file is an ErrFormat error, never a panic or a wrong state.
func TestDecodeDamaged(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, sample(5)); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	for n := range len(good) {
		if _, err := Decode(good[:n]); !errors.Is(err, ErrFormat) {
			t.Fatalf("truncated to %d bytes: %v, want ErrFormat", n, err)
		}
	}
	for i := range len(good) * 8 {
		b := bytes.Clone(good)
		b[i/8] ^= 1 << (i % 8)
		if _, err := Decode(b); !errors.Is(err, ErrFormat) {
			t.Fatalf("bit %d flipped: %v, want ErrFormat", i, err)
		}
	}
}

// TestEncodeRejects: what Decode would refuse is not written.
func TestEncodeRejects(t *testing.T) {
	for name, mod := range map[string]func(*State){
		"no workers":   func(s *State) { s.Workers = 0 },
		"long name":    func(s *State) { s.Uplinks[0].Name = string(make([]byte, 256)) },
		"many uplinks": func(s *State) { s.Uplinks = make([]Uplink, 256) },
	} {
		s := sample(1)
		mod(s)
		if err := Encode(&bytes.Buffer{}, s); err == nil {
			t.Errorf("%s: Encode succeeded", name)
		}
	}
}

func TestWriteTake(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "handover.state")
	if s, err := Take(path); s != nil || err != nil {
		t.Fatalf("Take of no file = %v, %v", s, err)
	}
	want := sample(10)
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if err := Write(path, sample(3)); err != nil { // replaced whole
		t.Fatal(err)
	}
	got, err := Take(path)
	if err != nil || len(got.Flows) != 3 {
		t.Fatalf("Take = %d flows, %v; want 3", len(got.Flows), err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file still there after Take: %v", err)
	}
	left, _ := os.ReadDir(filepath.Dir(path))
	if len(left) != 0 {
		t.Errorf("left in the directory: %v", left)
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if s, err := Take(path); s != nil || !errors.Is(err, ErrFormat) {
		t.Errorf("Take of garbage = %v, %v; want ErrFormat", s, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("garbage still there after Take: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, n := range []int{0, 3} {
		var buf bytes.Buffer
		Encode(&buf, sample(n))
		f.Add(buf.Bytes())
	}
	f.Add([]byte(magic + "\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		// What decodes encodes back to the same bytes.
		var buf bytes.Buffer
		if err := Encode(&buf, s); err != nil {
			t.Fatalf("Encode of a decoded state: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), b) {
			t.Fatalf("re-encoded %d bytes differ from the %d decoded", buf.Len(), len(b))
		}
	})
}

// BenchmarkWriteTake writes and takes back a handover of the default flow
// capacity (262,144 flows): the file part of a planned restart's pause.
func BenchmarkWriteTake(b *testing.B) {
	s := sample(262144)
	path := filepath.Join(b.TempDir(), "handover.state")
	b.ReportAllocs()
	for b.Loop() {
		if err := Write(path, s); err != nil {
			b.Fatal(err)
		}
		got, err := Take(path)
		if err != nil || len(got.Flows) != len(s.Flows) {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(262144*recordSize)/(1<<20), "MiB/file")
}

// TestTakeRefusesUntrusted: restored flows open NAT mappings towards LAN
// hosts, so a file others could have written, or another user's, is
// refused (and removed), however well-formed.
func TestTakeRefusesUntrusted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "handover.state")
	write := func() {
		t.Helper()
		if err := Write(path, sample(2)); err != nil {
			t.Fatal(err)
		}
	}
	write()
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if s, err := Take(path); s != nil || !errors.Is(err, ErrUntrusted) {
		t.Errorf("world-writable file: Take = %v, %v; want ErrUntrusted", s, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused file not removed: %v", err)
	}
	write()
	if err := os.Chmod(path, 0o620); err != nil {
		t.Fatal(err)
	}
	if _, err := Take(path); !errors.Is(err, ErrUntrusted) {
		t.Errorf("group-writable file: %v, want ErrUntrusted", err)
	}
	if os.Geteuid() != 0 {
		t.Log("not root: the ownership check is not exercised")
		return
	}
	write()
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := Take(path); !errors.Is(err, ErrUntrusted) {
		t.Errorf("file owned by nobody: %v, want ErrUntrusted", err)
	}
}
