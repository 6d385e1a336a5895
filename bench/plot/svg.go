package plot

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Shared look of both chart types.
const (
	fontFamily = "DejaVu Sans, Helvetica, Arial, sans-serif"
	// failColor marks failed samples.
	failColor = "#d62728"
)

// palette holds the series and uplink colours, assigned in order; red is
// left out (it marks failures).
var palette = []string{"#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"}

// svgWriter writes SVG elements to a buffered writer and remembers the
// first write error.
type svgWriter struct {
	w   *bufio.Writer
	err error
}

func newSVG(w io.Writer, width, height float64) *svgWriter {
	s := &svgWriter{w: bufio.NewWriter(w)}
	s.raw(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	s.raw(fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="%s" font-size="12">`+"\n",
		num(width), num(height), num(width), num(height), esc(fontFamily)))
	s.el("rect", nil, "x", 0, "y", 0, "width", width, "height", height, "fill", "white")
	return s
}

func (s *svgWriter) raw(str string) {
	if s.err == nil {
		_, s.err = s.w.WriteString(str)
	}
}

// el writes element name with attributes kv (name, value pairs; float64
// values are formatted finite) and, when text is not nil, the text as its
// content.
func (s *svgWriter) el(name string, text *string, kv ...any) {
	var b strings.Builder
	b.WriteString("<" + name)
	for i := 0; i+1 < len(kv); i += 2 {
		var v string
		switch x := kv[i+1].(type) {
		case float64:
			v = num(x)
		case int:
			v = strconv.Itoa(x)
		case string:
			v = esc(x)
		default:
			v = esc(fmt.Sprint(x))
		}
		fmt.Fprintf(&b, ` %s="%s"`, kv[i], v)
	}
	if text == nil {
		b.WriteString("/>\n")
	} else {
		b.WriteString(">" + esc(*text) + "</" + name + ">\n")
	}
	s.raw(b.String())
}

// text writes a text element at (x, y) with the given anchor (start,
// middle, end) and extra attributes.
func (s *svgWriter) text(x, y float64, anchor, str string, kv ...any) {
	s.el("text", &str, append([]any{"x", x, "y", y, "text-anchor", anchor}, kv...)...)
}

func (s *svgWriter) line(x1, y1, x2, y2 float64, kv ...any) {
	s.el("line", nil, append([]any{"x1", x1, "y1", y1, "x2", x2, "y2", y2}, kv...)...)
}

// close ends the document and flushes it.
func (s *svgWriter) close() error {
	s.raw("</svg>\n")
	if s.err != nil {
		return fmt.Errorf("plot: write svg: %w", s.err)
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("plot: write svg: %w", err)
	}
	return nil
}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) // never fails on a strings.Builder
	return b.String()
}

// num formats a coordinate with at most two decimals; non-finite values
// become 0 so that no NaN or Inf reaches the output.
func num(f float64) string {
	if !finite(f) {
		f = 0
	}
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// scale maps [lo, hi] of data onto [a, b] of the drawing.
type scale struct{ lo, hi, a, b float64 }

func (sc scale) at(v float64) float64 {
	if sc.hi == sc.lo || !finite(v) {
		return sc.a
	}
	return sc.a + (v-sc.lo)/(sc.hi-sc.lo)*(sc.b-sc.a)
}

// niceTicks returns about n evenly spaced round values (steps of 1, 2 or 5
// times a power of ten) covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if !finite(lo) || !finite(hi) || hi <= lo || n < 1 {
		return nil
	}
	raw := (hi - lo) / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * p
	for _, m := range []float64{1, 2, 5} {
		if m*p >= raw {
			step = m * p
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9 && len(out) < 100; v += step {
		out = append(out, math.Round(v/step)*step)
	}
	return out
}

// textWidth estimates the width of s in bold 12px text.
func textWidth(s string) float64 { return 8 * float64(len([]rune(s))) }

// fmtTick formats an axis tick value, without trailing zeros.
func fmtTick(v float64) string {
	if v == 0 || !finite(v) {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 10, 64)
}

// fmtValue formats a value label with three significant digits at most.
func fmtValue(v float64) string {
	a := math.Abs(v)
	switch {
	case !finite(v):
		return "n/a"
	case v == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.01:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

// colorsFor assigns colours to names (sorted, so that a name keeps its
// colour across charts), taking fixed ones from given first.
func colorsFor(names []string, given map[string]string) map[string]string {
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	out := make(map[string]string, len(names))
	k := 0
	for _, n := range names {
		if c, ok := given[n]; ok && c != "" {
			out[n] = c
			continue
		}
		out[n] = palette[k%len(palette)]
		k++
	}
	return out
}

// RatioNote formats a/b as a group note for Bars, such as "0.93×"; it
// returns "" when the ratio is undefined (b is 0 or either value is not
// finite).
func RatioNote(a, b float64) string {
	if b == 0 || !finite(a) || !finite(b) {
		return ""
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64) + "×"
}
