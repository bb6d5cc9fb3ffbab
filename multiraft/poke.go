package multiraft

import (
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// pokeLeader wakes a quiesced leader that left this replica behind. A
// leader quiesces once every follower has its whole log, and tells the
// followers the commit index in its last heartbeat. When that heartbeat is
// lost, a follower keeps ticking with an old commit index while the leader
// sleeps. A voter would campaign and so wake the leader, but a learner never
// campaigns, nor does a voter whose promotion is in the very entry it has
// not seen committed, and with pre-vote and CheckQuorum a quiesced leader
// ignores campaigns anyway. So an awake non-leader that has heard nothing a
// leader sends for an election timeout pokes its leader (every member when
// it knows none). Any message but a heartbeat response wakes a quiesced
// group, and the woken leader's heartbeats carry the commit index. A
// replica cut off from its leader pokes once per election timeout, no more.
//
// The poke must tell raft nothing, since whoever gets it may be in another
// term than its sender. It is an MsgAppResp with term 0 and index 0. Term
// 0 is stepped without a term check, so the poke never raises a term: with
// its sender's term it could (the sender campaigned and lost), and a
// replica that adopts a higher term forgets its leader and grants votes
// before an election timeout passed, while the old leader may still serve
// lease reads. Index 0 is below every Match, so the poke never advances a
// Match either: an index acknowledged under another term than the
// receiver's says nothing about the receiver's log, and a deposed leader
// that counted it could commit entries no quorum holds (the simulator
// found this with the sender's commit index as the index; see
// TestQuiescedLeaderWokenByFollowerThatMissedCommit).
func (r *round) pokeLeader(g *group) {
	if g.isLead || !g.initialized() {
		g.silentTicks = 0
		return
	}
	g.silentTicks++
	if g.silentTicks < r.e.cfg.ElectionTicks {
		return
	}
	g.silentTicks = 0
	poke := func(to ReplicaID, node NodeID) {
		if to == g.replica || node == 0 {
			return
		}
		r.beforeSync = append(r.beforeSync, Message{Group: g.id, ToNode: node, FromNode: r.e.cfg.NodeID, Msg: &raftpb.Message{
			Type: raftpb.MsgAppResp.Enum(),
			To:   proto.Uint64(uint64(to)),
			From: proto.Uint64(uint64(g.replica)),
		}})
	}
	if lead := g.leader.Load(); lead != 0 {
		poke(ReplicaID(lead), g.nodeOf(lead))
	} else {
		for _, rep := range g.st.applied.members.Replicas {
			poke(rep.ReplicaID, rep.NodeID)
		}
	}
	r.e.metrics.LeaderPokes.Add(1)
}
