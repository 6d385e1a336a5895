// Package labrouter runs the wanflow daemon inside a lab's router namespace:
// it writes a config for the lab's uplinks, starts `wanflow run` there,
// waits until it is ready, and stops (or kills) it. End-to-end tests, the
// demo and the benchmarks share it.
//
// A Router is safe for concurrent use; its log is kept in memory (bounded)
// and optionally copied to a writer.
package labrouter
