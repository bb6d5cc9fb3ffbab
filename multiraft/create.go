package multiraft

import (
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// Replicas created by messages
//
// A group's leader may address a replica on this node that the node does
// not host. It happens when the node's replica of a split's parent skipped
// the split by installing a snapshot taken after it (nothing ran the split
// here, so nothing created the right-hand replica), when the right-hand
// group's leader is quicker than the local split, and when a replica was
// added to a group (AddLearner) before anyone created it on its node. The
// engine then creates an empty replica with the addressed ID, as JoinGroup
// would: no descriptor, no key range, no data, and no configuration, so it
// never campaigns. Raft on the leader finds its log empty and sends it a
// snapshot, which fills it (or, for a right-hand group, the local split
// initialises it first; see layout.go). This is how CockroachDB creates
// uninitialised replicas.
//
// A leader's message creates one (MsgApp and MsgHeartbeat through Step,
// MsgSnap through ReceiveSnapshot), and so does a candidate's vote request
// (MsgVote, MsgPreVote), but never for a replica ID at or below the
// group's tombstone: a late message for a replica this node removed is
// dropped. The check costs nothing on the hot path: it runs only when the
// group is not hosted.
//
// Vote requests must create one. A split's right-hand group may have a
// single initialised replica: the node that applied the split, when the
// other members' parents skipped it by installing a snapshot taken after
// it. That replica cannot lead without another member's vote, and nothing
// else would create the other members' replicas, so the group would never
// elect a leader (the simulator's fleet seed 32). An empty replica's log
// is empty, so it votes for any candidate whose term is current, which is
// safe: it holds no entry a candidate could lack, and every candidate is
// initialised (an empty replica has no configuration, so it never
// campaigns).
//
// An empty replica may vote (it is a voter of the group like any other;
// its vote is persisted like any vote), and it harms nothing else: it
// holds no range, so it conflicts with no snapshot, and it serves no
// request. Created in the engine's first election timeout, it grants no
// vote until that timeout ends, as a recovered replica does (see
// group.noVotesUntil): its creation is not synced, so it may be this
// node's replica of the group recreated after a crash lost it, which may
// have acknowledged a leader whose lease still runs; any such lease began
// before the crash, so it has run out once the restarted engine has
// ticked an election timeout. Later a created replica votes at once, so a
// split's right-hand group elects as fast as it did before vote requests
// created replicas. One that is never filled (the group removed it again, or the
// leader that addressed it was deposed) is garbage-collected by the node
// (rpc.ReplicaGC asks the group whether it is a member).
//
// A leader's message to a newer replica ID than the one this node hosts
// means the node's replica was removed from the group: a group never has
// two replicas on one node, and IDs are never reused, so a configuration
// that places the newer ID here came after the older one left. The older
// replica is then destroyed at the end of the round (leaving its
// tombstone), and the leader's next message creates the newer one. This is
// what makes re-adding a shard to a node that still holds a stale replica
// of it work without any cleanup first.

// isLeaderMessage reports whether only a leader sends messages of type t.
func isLeaderMessage(t raftpb.MessageType) bool {
	return t == raftpb.MsgApp || t == raftpb.MsgHeartbeat || t == raftpb.MsgSnap
}

// createsReplica reports whether a message of type t for a replica this
// node does not host creates it (see above).
func createsReplica(t raftpb.MessageType) bool {
	return isLeaderMessage(t) || t == raftpb.MsgVote || t == raftpb.MsgPreVote
}

// createForMessage returns the group that m addresses, creating an empty
// replica if the node hosts none and m may create one (see above), or nil;
// tombstoned reports that m is for a replica removed here. It is the slow
// path of Step and ReceiveSnapshotFuture, run when the group is not hosted.
func (e *Engine) createForMessage(m *Message) (g *group, tombstoned bool) {
	to := ReplicaID(m.Msg.GetTo())
	if !createsReplica(m.Msg.GetType()) || to == 0 || uint64(to) >= raft.LocalApplyThread ||
		m.Msg.GetTerm() == 0 || m.FromNode == 0 || e.stopped.Load() {
		return nil, false
	}
	e.createMu.Lock()
	defer e.createMu.Unlock()
	e.mu.RLock()
	g = e.mu.groups[m.Group]
	err := e.checkTombstoneLocked(m.Group, to)
	e.mu.RUnlock()
	switch {
	case g != nil:
		return g, false
	case err != nil:
		return nil, true
	case e.creating[m.Group]:
		return nil, false // a split is creating it: its state is being written
	}
	b := e.db.NewBatch()
	defer b.Close()
	_ = b.Set(keys.RaftKey(uint64(m.Group), keys.RaftReplicaID), binary.LittleEndian.AppendUint64(nil, uint64(to)), nil)
	// No sync: an empty replica has nothing to lose. The first state it
	// must keep (a vote, a snapshot) is synced, and syncs this write with
	// it; a crash before that loses a replica that promised nothing.
	if err := e.commit(b, pebble.NoSync); err != nil {
		return nil, false // fail-stop (see diskfailure.go)
	}
	g, err = e.registerGroupLocked(m.Group, to, true /* publish */, uint64(e.cfg.ElectionTicks))
	if err != nil {
		e.cfg.Logger.Error("multiraft: creating an empty replica for a message", "group", m.Group, "replica", to, "err", err)
		return nil, false
	}
	e.metrics.ReplicasCreated.Add(1)
	return g, false
}

// supersededBy reports whether m, addressed to another replica of g's
// group than g, is a leader's message to a newer replica on this node,
// which means g was removed from its group (see above). Worker-owned.
func (g *group) supersededBy(m *raftpb.Message) bool {
	return m.GetTo() > uint64(g.replica) && uint64(m.GetTo()) < raft.LocalApplyThread && isLeaderMessage(m.GetType())
}
