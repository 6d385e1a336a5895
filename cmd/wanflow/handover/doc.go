// Package handover is the file in which a stopping wanflow leaves its flow
// table and its uplinks' health for the next start, so a planned restart
// (systemctl restart, an upgrade) keeps established connections.
//
// The file is binary, versioned and checksummed: a header (magic, version,
// the wall-clock time it was written, the dataplane's workers and NAT port
// range, each uplink's name, address and health) and fixed-size flow
// records, then a CRC-32C of everything before it. Times in it are ages
// (nanoseconds before the time written), since each process has its own
// monotonic clock. Decode checks every length and count before it
// allocates, so a damaged or hostile file is an error, never a panic or an
// unbounded allocation. Write replaces the file atomically (a temporary
// file, fsync, rename), readable by its owner only; Take refuses a file
// another user owns or others could have written.
//
// The package has no state; its functions are safe for concurrent use on
// different files.
package handover
