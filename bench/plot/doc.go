// Package plot writes the benchmarks' charts as self-contained SVG files:
// failover timelines (Timeline) and grouped bar charts (Bars), with no
// dependency beyond the standard library.
//
// Invariants: every text from the caller is XML-escaped; every coordinate
// written is finite (NaN and infinite inputs are dropped or clamped), so
// the output always parses as XML, also for empty charts. The functions
// keep no state and start no goroutines; they are safe for concurrent use
// as long as the callers do not share a Writer or the chart values.
package plot
