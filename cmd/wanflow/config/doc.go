// Package config loads and validates wanflow's YAML configuration file and
// renders the plan that `wanflow check` prints.
//
// Invariants:
//   - Parsing is strict: unknown keys, duplicate keys, values of the wrong
//     kind and values out of range are errors that carry the line number of
//     the offending key or value ("wanflow.yaml: line 12: uplinks[1].weight:
//     must be 1..1000, got 0"); several problems are reported together.
//   - A Config returned without error has every default applied and has
//     passed every check, including building its uplinks/policy Policy.
//   - A Config is a plain value: nothing in this package keeps a reference to
//     it or starts goroutines. It is not safe to modify concurrently with
//     readers; treat it as immutable once loaded.
//   - Parse does no I/O (Load only reads the file); checks that need the
//     running system (interfaces exist, ip_local_port_range) are made at run
//     time by the packages that own them.
package config
