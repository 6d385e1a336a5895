package plot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parsed is what a test needs to know about an SVG document.
type parsed struct {
	root    string
	classes map[string]int // elements by class attribute
	texts   []string       // text contents
}

// parseSVG parses b with encoding/xml and checks that no attribute holds
// NaN or Inf.
func parseSVG(t *testing.T, b []byte) parsed {
	t.Helper()
	p := parsed{classes: map[string]int{}}
	d := xml.NewDecoder(bytes.NewReader(b))
	depth := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("invalid XML: %v\n%s", err, b)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				p.root = x.Name.Space + " " + x.Name.Local
			}
			depth++
			for _, a := range x.Attr {
				if a.Name.Local == "class" {
					p.classes[a.Value]++
				}
				if v := strings.ToLower(a.Value); strings.Contains(v, "nan") || strings.Contains(v, "inf") {
					t.Errorf("attribute %s=%q of <%s>", a.Name.Local, a.Value, x.Name.Local)
				}
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if s := strings.TrimSpace(string(x)); s != "" {
				p.texts = append(p.texts, s)
			}
		}
	}
	if p.root != "http://www.w3.org/2000/svg svg" {
		t.Errorf("root element %q, want svg in the SVG namespace", p.root)
	}
	return p
}

func (p parsed) has(s string) bool {
	for _, x := range p.texts {
		if x == s {
			return true
		}
	}
	return false
}

func TestTimeline(t *testing.T) {
	ok := func(ms float64, up string, v float64) Sample { return Sample{Ms: ms, OK: true, Uplink: up, Value: v} }
	fail := func(ms float64) Sample { return Sample{Ms: ms} }
	tests := []struct {
		name         string
		c            TimelineChart
		marks, fails int
		texts        []string
	}{
		{
			name: "two rows",
			c: TimelineChart{
				Title: `failover <up1> & "friends"`,
				Series: []Series{
					{Name: "wanflow", Samples: []Sample{ok(-100, "up1", 1), fail(10), ok(20, "up2", 2), ok(30, "up2", 3)}},
					{Name: "kernel L4", Samples: []Sample{ok(-100, "up1", 1), fail(10), fail(20)}},
				},
				Events: []Event{{Ms: 0, Label: "fault"}, {Ms: 600, Label: "detected", Series: "wanflow"}},
			},
			marks: 4, fails: 3,
			texts: []string{`failover <up1> & "friends"`, "wanflow", "kernel L4", "fault", "detected", "up1", "up2", "failed", "ms since the fault"},
		},
		{name: "empty", c: TimelineChart{}},
		{name: "empty series", c: TimelineChart{Title: "t", Series: []Series{{Name: "a"}, {Name: "b"}}, Events: []Event{{Ms: 5, Label: "e"}}}, texts: []string{"a", "b", "e"}},
		{name: "one sample", c: TimelineChart{Series: []Series{{Name: "a", Samples: []Sample{ok(0, "up1", 0)}}}}, marks: 1, texts: []string{"up1"}},
		{
			name: "values",
			c: TimelineChart{
				ValueLabel: "latency, ms",
				Series: []Series{{Name: "dns", Samples: []Sample{
					ok(0, "isp1", 0), ok(1, "isp1", 0.3), ok(2, "isp2", 5000), ok(3, "isp2", math.Inf(1)),
					ok(math.NaN(), "isp1", 1), fail(4), ok(5, "", -1),
				}}},
			},
			marks: 5, fails: 1,
			texts: []string{"isp1", "isp2", "(unnamed)", "rows: latency, ms (log scale)", "0.1", "1000"},
		},
		{name: "values all zero", c: TimelineChart{ValueLabel: "v", Series: []Series{{Name: "a", Samples: []Sample{ok(0, "x", 0), ok(0, "x", 0)}}}}, marks: 2},
		{
			name:  "clipped",
			c:     TimelineChart{From: 0, To: 100, Series: []Series{{Name: "a", Samples: []Sample{ok(-5, "x", 0), ok(50, "x", 0), fail(101)}}}, Events: []Event{{Ms: 200, Label: "late"}}},
			marks: 1,
		},
		{name: "NaN range", c: TimelineChart{From: math.NaN(), To: math.Inf(1), Events: []Event{{Ms: math.NaN(), Label: "nan"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Timeline(&b, tt.c); err != nil {
				t.Fatal(err)
			}
			p := parseSVG(t, b.Bytes())
			if got := p.classes["mark"]; got != tt.marks {
				t.Errorf("marks: got %d, want %d", got, tt.marks)
			}
			if got := p.classes["fail"]; got != tt.fails {
				t.Errorf("failed marks: got %d, want %d", got, tt.fails)
			}
			if got, want := p.classes["row"], len(tt.c.Series); got != want {
				t.Errorf("rows: got %d, want %d", got, want)
			}
			for _, s := range tt.texts {
				if !p.has(s) {
					t.Errorf("text %q missing; have %q", s, p.texts)
				}
			}
		})
	}
}

func TestBars(t *testing.T) {
	tests := []struct {
		name  string
		c     BarChart
		bars  int
		notes int
		texts []string
	}{
		{
			name: "throughput",
			c: BarChart{
				Title: "Throughput <LAN → internet>", Unit: "Gbit/s", Series: []string{"kernel", "wanflow"},
				Groups: []Group{
					{Name: "TCP 1 stream", Values: []float64{9.41, 8.72}, Note: RatioNote(8.72, 9.41)},
					{Name: "TCP 8 streams", Values: []float64{20.5, 15.25}, Note: RatioNote(15.25, 20.5)},
				},
			},
			bars: 4, notes: 2,
			texts: []string{"Throughput <LAN → internet>", "TCP 1 stream", "TCP 8 streams", "kernel", "wanflow", "9.41 Gbit/s", "20.5 Gbit/s", "0.93×", "Gbit/s"},
		},
		{
			name: "mixed units",
			c: BarChart{
				Unit: "Gbit/s", Series: []string{"kernel", "wanflow"},
				Groups: []Group{{Name: "TCP", Values: []float64{9, 8}}, {Name: "UDP 64 B", Unit: "kpps", Values: []float64{410, 380}}},
			},
			bars: 4, texts: []string{"410 kpps", "9.00 Gbit/s"},
		},
		{
			name:  "zeros",
			c:     BarChart{Unit: "x", Series: []string{"a", "b"}, Groups: []Group{{Name: "g", Values: []float64{0, 0}, Note: RatioNote(0, 0)}}},
			texts: []string{"0 x", "g"},
		},
		{
			name:  "missing and NaN",
			c:     BarChart{Series: []string{"a", "b", "c"}, Groups: []Group{{Name: "g", Values: []float64{math.NaN(), -3}}, {Name: "h", Values: []float64{math.Inf(1), 2, 1}}}},
			bars:  2,
			texts: []string{"n/a", "-3.00", "2.00"},
		},
		{name: "empty", c: BarChart{}},
		{name: "no series", c: BarChart{Groups: []Group{{Name: "g"}}}, texts: []string{"g"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Bars(&b, tt.c); err != nil {
				t.Fatal(err)
			}
			p := parseSVG(t, b.Bytes())
			if got := p.classes["bar"]; got != tt.bars {
				t.Errorf("bars: got %d, want %d", got, tt.bars)
			}
			if got := p.classes["note"]; got != tt.notes {
				t.Errorf("notes: got %d, want %d", got, tt.notes)
			}
			if got, want := p.classes["value"], len(tt.c.Groups)*len(tt.c.Series); got != want {
				t.Errorf("value labels: got %d, want %d", got, want)
			}
			for _, s := range tt.texts {
				if !p.has(s) {
					t.Errorf("text %q missing; have %q", s, p.texts)
				}
			}
		})
	}
}

func TestRatioNote(t *testing.T) {
	for _, tt := range []struct {
		a, b float64
		want string
	}{{1, 2, "0.50×"}, {3, 0, ""}, {math.NaN(), 1, ""}, {0, 1, "0.00×"}} {
		if got := RatioNote(tt.a, tt.b); got != tt.want {
			t.Errorf("RatioNote(%v, %v) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestWriteFiles is a smoke test: both charts written to files parse back.
func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	var samples []Sample
	for ms := -1000.0; ms < 3000; ms += 10 {
		up := "up1"
		if ms > 600 {
			up = "up2"
		}
		samples = append(samples, Sample{Ms: ms, OK: ms < 0 || ms > 600, Uplink: up, Value: 1 + math.Mod(ms, 7)})
	}
	write := func(name string, fn func(io.Writer) error) {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := fn(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		parseSVG(t, b)
	}
	write("timeline.svg", func(w io.Writer) error {
		return Timeline(w, TimelineChart{Title: "smoke", ValueLabel: "ms", Series: []Series{{Name: "r", Samples: samples}}, Events: []Event{{Label: "fault"}}})
	})
	write("bars.svg", func(w io.Writer) error {
		return Bars(w, BarChart{Title: "smoke", Unit: "u", Series: []string{"a", "b"}, Groups: []Group{{Name: "g", Values: []float64{1, 2}, Note: RatioNote(2, 1)}}})
	})
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	if err := Timeline(failWriter{}, TimelineChart{}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Timeline to a failing writer: %v", err)
	}
	if err := Bars(failWriter{}, BarChart{}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Bars to a failing writer: %v", err)
	}
}
