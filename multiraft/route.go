package multiraft

import (
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// route sorts a Ready's messages: those that promise durable local state
// (append acks and votes) wait for the sync, everything else leaves now.
// Snapshots take their own path.
//
// Commit-only appends are held back. Raft broadcasts an append whenever its
// commit index moves, so that followers learn of the commit at once; to a
// follower that already has every entry, such an append carries nothing
// but the index, and costs a message, a round on the follower and an
// acknowledgement back, doubling the messages of a lone write. Followers
// learn the index anyway from the next append with entries, or from the
// next heartbeat (at most HeartbeatTicks later; quiescence waits for that
// heartbeat too), and only stale reads and apply on the followers wait for
// it: the leader acknowledges a write once it applies it. The exception is
// a round that applies a split or a membership change: a split's new group
// campaigns at once, and its votes would be dropped by followers that have
// not applied the split yet, so the commit goes out ahead of them (see
// apply). Dropping a message raft believes sent is safe: the network may
// always lose one, and an append to a follower not caught up, or one that
// probes or unblocks a follower, is never held back.
func (r *round) route(g *group, msgs []*raftpb.Message) {
	for _, m := range msgs {
		to := g.nodeOf(m.GetTo())
		if to == 0 {
			// A peer not in the applied membership (yet): raft may address a
			// replica that a conf change adds before we applied it. Look in
			// the config raft uses.
			r.e.metrics.DroppedNoAddress.Add(1)
			continue
		}
		out := Message{Group: g.id, ToNode: to, FromNode: r.e.cfg.NodeID, Msg: m}
		switch m.GetType() {
		case raftpb.MsgSnap:
			r.sendSnapshot(g, out)
		case raftpb.MsgVoteResp:
			if m.GetReject() {
				r.sawSplitVote(g, m)
			}
			r.afterSync = append(r.afterSync, out)
		case raftpb.MsgAppResp, raftpb.MsgPreVoteResp:
			r.afterSync = append(r.afterSync, out)
		case raftpb.MsgApp:
			if len(m.GetEntries()) == 0 && r.caughtUp(g, m) {
				r.commits = append(r.commits, out)
			} else {
				r.beforeSync = append(r.beforeSync, out)
			}
		case raftpb.MsgTimeoutNow:
			// This leader hands over: it must not serve lease reads for the
			// rest of its term, since the transferee campaigns without
			// waiting for the lease to expire.
			g.noLeaseTerm = g.term.Load()
			g.leaseUntil, g.leaseUntilTime = 0, time.Time{}
			g.published.Store(nil)
			r.beforeSync = append(r.beforeSync, out)
		default:
			r.beforeSync = append(r.beforeSync, out)
		}
	}
}

func (r *round) flush(msgs *[]Message) {
	if len(*msgs) == 0 {
		return
	}
	r.e.metrics.MessagesSent.Add(uint64(len(*msgs)))
	r.e.cfg.Transport.Send(*msgs)
	// The transport owns the slice now.
	*msgs = nil
}

// caughtUp reports whether m, an append without entries from g's leader,
// goes to a follower that is replicating and has acknowledged every entry
// before it: one from which the append can only carry a commit index.
func (r *round) caughtUp(g *group, m *raftpb.Message) bool {
	r.probe.to, r.probe.index, r.probe.ok = m.GetTo(), m.GetIndex(), false
	g.rn.WithProgress(r.visit)
	return r.probe.ok
}
