package plot

import (
	"io"
	"maps"
	"math"
	"slices"
)

// TimelineChart is a failover timeline: time runs left to right, each
// Series is a row of marks, one per sample, coloured by the uplink that
// answered it, or a red cross when it failed; Events are vertical lines.
type TimelineChart struct {
	// Title is drawn above the chart.
	Title string
	// XLabel names the time axis; default "ms since the fault".
	XLabel string
	// Series are the rows, top to bottom, e.g. "wanflow", "kernel L4".
	Series []Series
	// Events are vertical lines with labels, e.g. "fault", "detected".
	Events []Event
	// Colors fixes the colour (any SVG colour) of some uplinks; the others
	// get the palette in the order of their sorted names, so that an
	// uplink keeps its colour from chart to chart.
	Colors map[string]string
	// ValueLabel, when not empty, names the samples' Value (e.g. "answer
	// latency, ms"): each row then becomes a band with a logarithmic value
	// axis and every mark sits at its value (failed samples at the top).
	// When empty, Value is ignored and the marks form one line per row.
	ValueLabel string
	// From and To bound the time axis in ms; when both are 0 it covers
	// every sample and event. Samples outside are not drawn.
	From, To float64
	// Width of the image in pixels; default 960.
	Width int
}

// Series is one row of a TimelineChart.
type Series struct {
	// Name labels the row.
	Name string
	// Samples in any order.
	Samples []Sample
}

// Sample is one observation of a timeline, such as a new flow or a DNS
// query: when it started and how it went.
type Sample struct {
	// Ms is the time in milliseconds relative to the chart's origin
	// (normally the fault).
	Ms float64
	// OK reports whether the sample got its answer.
	OK bool
	// Uplink names (or gives the address of) the uplink that carried the
	// answer; it picks the mark's colour. Ignored when OK is false.
	Uplink string
	// Value is plotted on the row's value axis when the chart has a
	// ValueLabel (e.g. the latency in ms); values ≤ 0 sit at the bottom.
	Value float64
}

// Event is a labelled instant of a timeline.
type Event struct {
	// Ms is when it happened, on the samples' time axis.
	Ms float64
	// Label is written at the top of the line.
	Label string
	// Series, when not empty, limits the line to the row of that name
	// (e.g. one router's detection); otherwise it crosses every row.
	Series string
}

// Layout of a timeline, in pixels.
const (
	tlLabelW  = 90.0 // row names: at least
	tlValueW  = 44.0 // value axis labels, with ValueLabel
	tlRight   = 24.0
	tlTop     = 68.0 // title and event labels
	tlRowH    = 34.0
	tlBandH   = 110.0 // row height with ValueLabel
	tlRowGap  = 10.0
	tlBottom  = 84.0 // axis, its label, legend
	tlMarkW   = 3.0
	tlCrossR  = 3.5
	tlDefault = 960
)

// Timeline writes c to w as an SVG image.
func Timeline(w io.Writer, c TimelineChart) error {
	width := float64(c.Width)
	if c.Width <= 0 {
		width = tlDefault
	}
	labelW := tlLabelW
	for _, ser := range c.Series {
		labelW = max(labelW, textWidth(ser.Name)+20)
	}
	rowH := tlRowH
	left := labelW
	if c.ValueLabel != "" {
		rowH, left = tlBandH, labelW+tlValueW
	}
	if width < left+tlRight+100 {
		width = left + tlRight + 100
	}
	xLabel := c.XLabel
	if xLabel == "" {
		xLabel = "ms since the fault"
	}

	lo, hi := c.timeRange()
	x := scale{lo, hi, left, width - tlRight}
	vlo, vhi := c.valueDecades()
	rows := float64(max(len(c.Series), 1))
	plotBottom := tlTop + rows*(rowH+tlRowGap) - tlRowGap
	height := plotBottom + tlBottom

	var uplinks []string
	failed := false
	for _, s := range c.Series {
		for _, p := range s.Samples {
			if p.OK {
				uplinks = append(uplinks, p.Uplink)
			} else {
				failed = true
			}
		}
	}
	colors := colorsFor(uplinks, c.Colors)

	s := newSVG(w, width, height)
	s.text(width/2, 22, "middle", c.Title, "font-size", 15, "font-weight", "bold")

	// Grid and time axis.
	for _, t := range niceTicks(lo, hi, 10) {
		px := x.at(t)
		s.line(px, tlTop-4, px, plotBottom, "stroke", "#e4e4e4", "class", "grid")
		s.line(px, plotBottom, px, plotBottom+5, "stroke", "#333")
		s.text(px, plotBottom+18, "middle", fmtTick(t), "class", "tick")
	}
	s.line(left, plotBottom, width-tlRight, plotBottom, "stroke", "#333")
	s.text((left+width-tlRight)/2, plotBottom+36, "middle", xLabel)

	// Rows.
	rowTop := func(i int) float64 { return tlTop + float64(i)*(rowH+tlRowGap) }
	for i, ser := range c.Series {
		top := rowTop(i)
		y := scale{vlo, vhi, top + rowH - 6, top + 10}
		s.el("rect", nil, "x", left, "y", top, "width", width-tlRight-left, "height", rowH, "fill", "#f7f7f7", "fill-opacity", 0.6, "class", "row")
		s.text(labelW-10, top+rowH/2+4, "end", ser.Name, "font-weight", "bold", "class", "series")
		if c.ValueLabel != "" {
			for d := vlo; d <= vhi; d++ {
				py := y.at(d)
				s.line(left, py, width-tlRight, py, "stroke", "#e4e4e4")
				s.text(left-4, py+4, "end", fmtTick(math.Pow(10, d)), "font-size", 10, "class", "tick")
			}
		}
		for _, p := range ser.Samples {
			if !finite(p.Ms) || p.Ms < lo || p.Ms > hi {
				continue
			}
			px := x.at(p.Ms)
			py := top + rowH/2
			if c.ValueLabel != "" {
				switch {
				case !p.OK:
					py = top + 5
				case p.Value > 0 && finite(p.Value):
					py = y.at(math.Log10(p.Value))
				default:
					py = top + rowH - 6
				}
			}
			if !p.OK {
				r := tlCrossR
				s.el("path", nil, "d", "M"+num(px-r)+" "+num(py-r)+"L"+num(px+r)+" "+num(py+r)+"M"+num(px-r)+" "+num(py+r)+"L"+num(px+r)+" "+num(py-r),
					"stroke", failColor, "stroke-width", 1.5, "class", "fail")
				continue
			}
			h := 14.0
			if c.ValueLabel != "" {
				h = tlMarkW
			}
			s.el("rect", nil, "x", px-tlMarkW/2, "y", py-h/2, "width", tlMarkW, "height", h, "fill", colors[p.Uplink], "class", "mark")
		}
	}

	// Events.
	k := 0
	for _, e := range c.Events {
		if !finite(e.Ms) || e.Ms < lo || e.Ms > hi {
			continue
		}
		px := x.at(e.Ms)
		if e.Series == "" {
			s.line(px, tlTop-8, px, plotBottom, "stroke", "#333", "stroke-dasharray", "4 3", "class", "event")
			s.text(px, tlTop-12-14*float64(k%2), "middle", e.Label, "font-size", 11, "class", "event-label")
			k++
			continue
		}
		for i, ser := range c.Series {
			if ser.Name != e.Series {
				continue
			}
			top := rowTop(i)
			s.line(px, top, px, top+rowH, "stroke", "#333", "stroke-dasharray", "2 2", "class", "event")
			s.text(px+3, top+11, "start", e.Label, "font-size", 10, "class", "event-label")
		}
	}

	// Legend.
	lx, ly := left, plotBottom+60
	for _, u := range slices.Sorted(maps.Keys(colors)) {
		name := u
		if name == "" {
			name = "(unnamed)"
		}
		s.el("rect", nil, "x", lx, "y", ly-9, "width", 10, "height", 10, "fill", colors[u])
		s.text(lx+14, ly, "start", name, "class", "legend")
		lx += 24 + textWidth(name)
	}
	if failed {
		s.el("path", nil, "d", "M"+num(lx)+" "+num(ly-9)+"l8 8m-8 0l8 -8", "stroke", failColor, "stroke-width", 1.5)
		s.text(lx+14, ly, "start", "failed", "class", "legend")
		lx += 70
	}
	if c.ValueLabel != "" {
		s.text(lx+10, ly, "start", "rows: "+c.ValueLabel+" (log scale)", "fill", "#555")
	}
	return s.close()
}

// timeRange returns the time axis: From..To, or the samples' and events'
// extent with a little room on both sides.
func (c TimelineChart) timeRange() (lo, hi float64) {
	if (c.From != 0 || c.To != 0) && finite(c.From) && finite(c.To) && c.To > c.From {
		return c.From, c.To
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	see := func(v float64) {
		if finite(v) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	for _, s := range c.Series {
		for _, p := range s.Samples {
			see(p.Ms)
		}
	}
	for _, e := range c.Events {
		see(e.Ms)
	}
	switch {
	case lo > hi:
		return 0, 1
	case lo == hi:
		return lo - 1, hi + 1
	}
	pad := (hi - lo) * 0.02
	return lo - pad, hi + pad
}

// valueDecades returns the powers of ten that bound the answered samples'
// values (1 to 10 when there are none).
func (c TimelineChart) valueDecades() (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Samples {
			if p.OK && p.Value > 0 && finite(p.Value) {
				l := math.Log10(p.Value)
				lo, hi = math.Min(lo, math.Floor(l)), math.Max(hi, math.Ceil(l))
			}
		}
	}
	if lo > hi {
		return 0, 1
	}
	if lo == hi {
		hi++
	}
	return lo, hi
}
