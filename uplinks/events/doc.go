// Package events keeps a bounded ring of uplink events — state changes,
// hook runs, failovers, configuration reloads — for the logs, `wanflow
// events` and the control API.
//
// Invariants:
//   - A Ring holds at most its capacity; adding to a full ring discards the
//     oldest event. Sequence numbers are assigned by the ring, start at 1 and
//     strictly increase, so a reader resumes with Since(last seen Seq).
//   - A Ring is safe for concurrent use. Add never blocks on a subscriber: a
//     subscriber whose buffer is full misses the event, and the miss is
//     counted (Dropped).
//   - The ring starts no goroutine. A subscription ends, and its channel is
//     closed, when its context is done (the callback is registered with
//     context.AfterFunc), so cancelling the context is all the clean-up a
//     subscriber owes.
package events
