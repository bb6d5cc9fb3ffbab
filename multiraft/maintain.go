package multiraft

import (
	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// maintain runs after the round: destroy a removed replica, truncate the
// log, quiesce an idle group.
func (r *round) maintain(g *group) {
	if g.destroy || g.superseded {
		if !g.destroy {
			r.e.metrics.ReplicasSuperseded.Add(1)
		}
		r.destroyGroup(g)
		return
	}
	if len(g.transferWaiters) > 0 {
		g.checkTransfers(r.e.tick.Load())
	}
	r.maybeHandOff(g)
	r.maybeTruncate(g)
	g.logEntries.Store(g.st.lastIndex - g.st.truncIndex)
	g.logBytes.Store(uint64(max(g.st.logBytes, 0)))
	r.maybeQuiesce(g)
}

func (r *round) maybeTruncate(g *group) {
	st, cfg := g.st, &r.e.cfg
	overEntries := st.lastIndex-st.truncIndex > cfg.LogTruncateEntries
	overBytes := st.logBytes > cfg.LogTruncateBytes
	if !overEntries && !overBytes {
		return
	}
	target := min(st.durableApplied, st.lastIndex)
	if g.isLead && !overBytes {
		// Keep what a follower still needs, unless the log is too large.
		g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			if id != uint64(g.replica) && pr.Match > 0 {
				target = min(target, pr.Match)
			}
		})
	}
	// Truncate in halves of the threshold so a busy group does not
	// truncate on every round.
	if target <= st.truncIndex || (!overBytes && target-st.truncIndex < cfg.LogTruncateEntries/2) {
		return
	}
	term, err := st.Term(target)
	if err != nil {
		return
	}
	b := r.e.db.NewBatch()
	defer b.Close()
	st.truncate(b, target, term)
	if err := r.e.commit(b, pebble.NoSync); err != nil {
		return // fail-stop (see diskfailure.go)
	}
	st.truncated(target, term)
	r.e.metrics.LogTruncations.Add(1)
}

// maybeQuiesce puts an idle leader's group to sleep: when nothing is in
// flight and every follower has the whole log, the leader sends one last
// heartbeat marked Quiesce and stops ticking; followers that receive it
// stop too. Any message or proposal wakes the group.
func (r *round) maybeQuiesce(g *group) {
	if !g.isLead || g.quiesced.Load() || r.e.cfg.QuiesceAfterTicks < 0 || g.idleTicks < r.e.cfg.QuiesceAfterTicks || r.e.draining.Load() {
		return
	}
	st := g.st
	if len(g.pending) > 0 || g.confFuture != nil || len(g.readsInFlight) > 0 || len(g.readsReady) > 0 ||
		len(g.transferWaiters) > 0 || g.snap != nil || g.rn.HasReady() ||
		st.hardState.GetCommit() != st.lastIndex || st.applied.index != st.lastIndex || st.applied.members.Joint {
		return
	}
	caughtUp := true
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if pr.Match != st.lastIndex {
			caughtUp = false
		}
	})
	if !caughtUp {
		return
	}
	g.quiesced.Store(true)
	term := st.hardState.GetTerm()
	for _, rep := range st.applied.members.Replicas {
		if rep.ReplicaID == g.replica {
			continue
		}
		r.beforeSync = append(r.beforeSync, Message{Group: g.id, ToNode: rep.NodeID, FromNode: r.e.cfg.NodeID, Quiesce: true, Msg: &raftpb.Message{
			Type:   raftpb.MsgHeartbeat.Enum(),
			To:     proto.Uint64(uint64(rep.ReplicaID)),
			From:   proto.Uint64(uint64(g.replica)),
			Term:   proto.Uint64(term),
			Commit: proto.Uint64(st.lastIndex),
		}})
	}
	r.flush(&r.beforeSync)
	r.e.metrics.Quiesces.Add(1)
}
