package sim

import (
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// The history collector (shard/gc.go), as a shardnode runs it through
// Store.CollectGarbage: every historyGCEvery steps, each live node plans
// a pass over every shard it leads (shard.PlanGC over its own Pebble,
// examining at most historyGCBudget keys and records, resuming where its
// last pass over that shard stopped) and, if it found candidates,
// proposes one KindGC through its engine. The run's oracle stamps it
// (shardBackend.nextRevision), as it stamps every write: the stores'
// own oracles are never asked in a run (node.go), which is why the
// simulator plans and proposes itself rather than call CollectGarbage.
// A pass that finds nothing proposes nothing, so idle groups stay
// quiesced. The cursor moves on at once: candidates of a proposal that
// is dropped are found again in the next round.
//
// So every check of the run (reads at a revision, watches, the bank,
// leases) runs with collection on; TxnRecordRetention in shardConfig is
// short enough that records of a run's transactions are collected
// during it, with the lock sweeper (locksweep.go) bounding how long a
// lock may wait for its record.
const (
	historyGCEvery  = 50
	historyGCBudget = 16
)

// historyGC is the collector's state across the run.
type historyGC struct {
	cursors map[historyGCKey]shard.GCCursor
	pending []*multiraft.Future
	// passes counts the KindGC commands proposed; keys and txns the
	// deleted keys and outcome records the applied ones collected.
	passes, keys, txns int
}

type historyGCKey struct {
	node  multiraft.NodeID
	group multiraft.GroupID
}

// collectHistory runs one round of the collector on every live node
// with a shard store.
func (s *simulation) collectHistory() {
	b, ok := s.sm.(*shardBackend)
	if !ok {
		return
	}
	gc := &s.historyGC
	if gc.cursors == nil {
		gc.cursors = make(map[historyGCKey]shard.GCCursor)
	}
	kept := gc.pending[:0]
	for _, f := range gc.pending {
		if !isDone(f) {
			kept = append(kept, f)
			continue
		}
		if res, err := f.Result(); err == nil {
			if r, ok := res.(*shard.Result); ok {
				gc.keys += r.CollectedKeys
				gc.txns += r.CollectedTxns
			}
		}
	}
	clear(gc.pending[len(kept):])
	gc.pending = kept
	for _, n := range s.nodes {
		if !n.up() || n.store == nil {
			continue
		}
		for _, g := range n.e.Summaries() {
			if !g.Leading {
				continue
			}
			d, err := n.store.Descriptor(g.Group)
			if err != nil {
				continue
			}
			k := historyGCKey{n.id, g.Group}
			now := b.nextRevision()
			p, err := shard.PlanGC(n.db, s.shardConfig(), &d, gc.cursors[k], now, historyGCBudget)
			if err != nil {
				s.violation("history gc: planning g%d on n%d: %v", g.Group, n.id, err)
				continue
			}
			gc.cursors[k] = p.Next
			if p.Empty() {
				continue
			}
			c := shard.Command{Kind: shard.KindGC, Revision: now, GC: &p.Step}
			gc.pending = append(gc.pending, n.e.ProposeFuture(g.Group, c.AppendEncoded(nil)))
			gc.passes++
			s.tracef("history gc: g%d on n%d: %d keys, %d records", g.Group, n.id, len(p.Step.Keys), len(p.Step.Txns))
		}
	}
}
