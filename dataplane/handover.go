package dataplane

import (
	"fmt"

	"github.com/wanflow/wanflow/flowtable"
)

// This file hands the flow table from one process to the next across a
// planned restart: SaveFlows reads every flow out, RestoreFlow puts one
// back into the shard that will see its packets. Times stay in this
// process's clock (Now); the caller moves them between processes.

// SaveFlows calls fn with every flow, shard by shard. It runs on each
// worker between batches, or directly on a stopped engine (after Close,
// when nothing can change any more: the way a handover uses it). fn must
// not call the engine.
func (e *Engine) SaveFlows(fn func(flowtable.Saved)) {
	for _, w := range e.workers {
		w.do(func() {
			w.ft.Range(func(ent *flowtable.Entry) bool {
				fn(ent.Save())
				return true
			})
		})
	}
}

// RestoreFlow puts a saved flow back, with its NAT port, into the shard
// its LAN endpoint hashes to — the worker whose port partition must hold
// that port, or replies would reach another worker. It is for an engine
// that has not started yet. A flow that cannot be restored as it was (the
// number of workers or the port range changed, another flow holds its key
// or port, a full shard) is refused with the flow table's error; nothing
// is changed then. Flows should come oldest LastSeen first (see
// flowtable.Table.Restore).
func (e *Engine) RestoreFlow(s flowtable.Saved) error {
	e.mu.Lock()
	started := e.started
	e.mu.Unlock()
	if started {
		return fmt.Errorf("dataplane: restore into a running engine")
	}
	if int(s.Uplink) >= e.cfg.MaxUplinks {
		return flowtable.ErrUplink
	}
	w := e.endpointWorker(s.Key.Src, s.Key.SrcPort, s.Key.Proto)
	if !e.workers[w].ft.PortOwner(s.NATPort) {
		return fmt.Errorf("%w: NAT port %d belongs to another worker than its LAN endpoint", flowtable.ErrConflict, s.NATPort)
	}
	_, err := e.workers[w].ft.Restore(s)
	return err
}
