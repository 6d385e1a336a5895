package plot

import (
	"io"
	"math"
)

// BarChart is a grouped horizontal bar chart: one group per measurement
// (e.g. "TCP 1 stream", "UDP 64 B"), one bar per series within each group
// (e.g. "kernel", "wanflow"), each bar labelled with its value and unit.
type BarChart struct {
	// Title is drawn above the chart.
	Title string
	// Unit is appended to the value labels, e.g. "Gbit/s"; a group's own
	// Unit overrides it.
	Unit string
	// Series names the bars of every group, in order; the legend shows
	// them.
	Series []string
	// Groups are drawn top to bottom.
	Groups []Group
	// Colors fixes the colour of some series; the others get the palette.
	Colors map[string]string
	// Width of the image in pixels; default 800.
	Width int
}

// Group is one group of bars of a BarChart.
type Group struct {
	// Name labels the group.
	Name string
	// Unit, when not empty, replaces the chart's Unit for this group.
	Unit string
	// Values has one value per series, index for index; missing entries
	// and NaN are drawn as "n/a" without a bar, negative values as an
	// empty bar with their label.
	Values []float64
	// Note is written after the group's bars, e.g. a ratio such as
	// RatioNote(wanflow, kernel); empty for none.
	Note string
}

// Layout of a bar chart, in pixels.
const (
	barLabelW  = 90.0  // group names: at least
	barValueW  = 100.0 // value labels after the longest bar
	barTop     = 64.0  // title and legend
	barH       = 18.0
	barGap     = 4.0
	barGroupGp = 16.0
	barBottom  = 44.0 // axis
	barDefault = 800
)

// Bars writes c to w as an SVG image. When every group has the same unit
// the bars share one scale, drawn as an axis; otherwise each group is
// scaled to its own largest value and only the value labels carry the
// figures.
func Bars(w io.Writer, c BarChart) error {
	width := float64(c.Width)
	if c.Width <= 0 {
		width = barDefault
	}
	labelW, noteW := barLabelW, 0.0
	for _, g := range c.Groups {
		labelW = math.Max(labelW, textWidth(g.Name)+20)
		if g.Note != "" {
			noteW = math.Max(noteW, textWidth(g.Note)+24)
		}
	}
	width = math.Max(width, labelW+barValueW+noteW+100)
	left, right := labelW, width-barValueW-noteW
	nb := float64(max(len(c.Series), 1))
	groupH := nb*barH + (nb-1)*barGap
	ng := float64(max(len(c.Groups), 1))
	plotBottom := barTop + ng*groupH + (ng-1)*barGroupGp
	shared := true
	for _, g := range c.Groups {
		shared = shared && g.unit(c) == c.Groups[0].unit(c)
	}
	height := plotBottom + 30
	if shared {
		height = plotBottom + barBottom
	}
	colors := colorsFor(c.Series, c.Colors)

	s := newSVG(w, width, height)
	s.text(width/2, 22, "middle", c.Title, "font-size", 15, "font-weight", "bold")
	lx := left
	for _, name := range c.Series {
		s.el("rect", nil, "x", lx, "y", 36, "width", 10, "height", 10, "fill", colors[name])
		s.text(lx+14, 45, "start", name, "class", "legend")
		lx += 30 + textWidth(name)
	}

	maxOf := func(gs []Group) float64 {
		m := 0.0
		for _, g := range gs {
			for _, v := range g.Values {
				if finite(v) && v > m {
					m = v
				}
			}
		}
		return m
	}
	top := 0.0
	if shared {
		top = maxOf(c.Groups)
		ticks := niceTicks(0, top, 6)
		if len(ticks) > 0 && ticks[len(ticks)-1] < top {
			ticks = append(ticks, 2*ticks[len(ticks)-1]-ticks[len(ticks)-2])
		}
		if len(ticks) > 1 {
			top = ticks[len(ticks)-1]
		}
		x := scale{0, top, left, right}
		for _, t := range ticks {
			px := x.at(t)
			s.line(px, barTop-6, px, plotBottom, "stroke", "#e4e4e4", "class", "grid")
			s.text(px, plotBottom+16, "middle", fmtTick(t), "class", "tick")
		}
		s.line(left, plotBottom, right, plotBottom, "stroke", "#333")
		s.text((left+right)/2, plotBottom+34, "middle", c.Unit)
	} else {
		s.text(left, plotBottom+20, "start", "each group scaled to its own largest value", "font-size", 10, "fill", "#777")
	}

	for gi, g := range c.Groups {
		gy := barTop + float64(gi)*(groupH+barGroupGp)
		s.text(left-10, gy+groupH/2+4, "end", g.Name, "font-weight", "bold", "class", "group")
		gmax := top
		if !shared {
			gmax = maxOf([]Group{g})
		}
		x := scale{0, gmax, left, right}
		for bi, name := range c.Series {
			by := gy + float64(bi)*(barH+barGap)
			v := math.NaN()
			if bi < len(g.Values) {
				v = g.Values[bi]
			}
			label := fmtValue(v)
			if finite(v) && g.unit(c) != "" {
				label += " " + g.unit(c)
			}
			bw := 0.0
			if finite(v) && v > 0 && gmax > 0 {
				bw = x.at(v) - left
				s.el("rect", nil, "x", left, "y", by, "width", bw, "height", barH, "fill", colors[name], "class", "bar")
			}
			s.text(left+bw+4, by+barH/2+4, "start", label, "font-size", 11, "class", "value")
		}
		if g.Note != "" {
			s.text(right+barValueW, gy+groupH/2+4, "start", g.Note, "font-weight", "bold", "fill", "#444", "class", "note")
		}
	}
	s.line(left, barTop-6, left, plotBottom, "stroke", "#333")
	return s.close()
}

// unit returns the group's unit, or the chart's.
func (g Group) unit(c BarChart) string {
	if g.Unit != "" {
		return g.Unit
	}
	return c.Unit
}
