package multiraft

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"
)

// SetDraining makes this node give up every leadership it holds and hand
// away any it wins later, so it can be stopped or decommissioned without
// unavailability. Each leader transfers to its most caught-up active voter.
// SetDraining(false) stops that.
func (e *Engine) SetDraining(on bool) {
	e.draining.Store(on)
	if on {
		for _, g := range *e.list.Load() {
			if g.leading.Load() {
				e.wake(g)
			}
		}
	}
}

// Leaders returns how many groups this node currently leads.
func (e *Engine) Leaders() int {
	n := 0
	for _, g := range *e.list.Load() {
		if g.leading.Load() {
			n++
		}
	}
	return n
}

// LeadersToHandOff returns how many groups this node leads and, while
// draining, could still hand off: it leaves out groups with no other
// active voter to take over (a single-replica group, or one whose other
// replicas are down), which a drain cannot empty.
func (e *Engine) LeadersToHandOff() int {
	n := 0
	for _, g := range *e.list.Load() {
		if g.leading.Load() && !g.stuck.Load() {
			n++
		}
	}
	return n
}

// maybeHandOff transfers g's leadership away while the node drains.
// Worker-owned.
func (r *round) maybeHandOff(g *group) {
	if !r.e.draining.Load() || !g.isLead || len(g.transferWaiters) > 0 {
		return
	}
	if r.e.tick.Load() < g.handOffTick {
		return // a transfer is under way
	}
	best, bestMatch := uint64(0), uint64(0)
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == uint64(g.replica) || pr.IsLearner || !pr.RecentActive {
			return
		}
		if pr.Match > bestMatch {
			best, bestMatch = id, pr.Match
		}
	})
	if best == 0 {
		g.stuck.Store(true) // no voter to hand off to: do not wait for it
		return
	}
	g.stuck.Store(false)
	g.rn.TransferLeader(best)
	g.handOffTick = r.e.tick.Load() + uint64(r.e.cfg.ElectionTicks)
}

// CompactLog truncates this replica's log up to its durable applied index
// and returns the new first index. Without force a leader keeps the entries
// its followers still need; with force it does not, so followers behind
// the new first index get a snapshot.
func (e *Engine) CompactLog(ctx context.Context, id GroupID, force bool) (uint64, error) {
	v, err := e.CompactLogFuture(id, force).Wait(ctx)
	if err != nil {
		return 0, err
	}
	return v.(uint64), nil
}

// CompactLogFuture is CompactLog without waiting; the future's value is
// the new first index (a uint64).
func (e *Engine) CompactLogFuture(id GroupID, force bool) *Future {
	return e.groupOp(id, false, func(g *group, f *Future) {
		st := g.st
		target := min(st.durableApplied, st.lastIndex)
		if g.isLead && !force {
			g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
				if id != uint64(g.replica) && pr.Match > 0 {
					target = min(target, pr.Match)
				}
			})
		}
		if target <= st.truncIndex {
			f.resolve(st.truncIndex+1, nil)
			return
		}
		term, err := st.Term(target)
		if err != nil {
			f.resolve(nil, fmt.Errorf("multiraft: compact group %d: %w", g.id, err))
			return
		}
		b := e.db.NewBatch()
		defer b.Close()
		st.truncate(b, target, term)
		if err := e.commit(b, pebble.NoSync); err != nil {
			f.resolve(nil, err) // fail-stop (see diskfailure.go)
			return
		}
		st.truncated(target, term)
		e.metrics.LogTruncations.Add(1)
		f.resolve(st.truncIndex+1, nil)
	})
}

// Draining reports whether SetDraining(true) is in force.
func (e *Engine) Draining() bool { return e.draining.Load() }
