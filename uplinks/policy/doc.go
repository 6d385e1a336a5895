// Package policy makes the deterministic choice of an uplink for a new flow:
// rules, then tiers, then weighted rendezvous hashing among the available
// uplinks of the best tier.
//
// Invariants:
//   - A Policy is immutable once built by New (or WithAvailability) and is
//     safe for concurrent use by any number of goroutines; the dataplane
//     loads it from an atomic pointer once per batch.
//   - Choose is pure: the same Policy inputs and the same Flow give the same
//     Decision in every process, on every run and after every restart. The
//     hash is fixed and documented (see Hash64 and NameHash); there is no
//     per-process seed.
//   - Choose never allocates, takes no locks and does no I/O.
//   - Removing an uplink (or marking it unavailable) moves only the flows
//     whose choice was that uplink; the others keep their uplink, because
//     every uplink's score depends only on the flow key and that uplink's
//     own name and weight.
package policy
