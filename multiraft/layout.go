package multiraft

import (
	"bytes"
	"fmt"
	"github.com/cockroachdb/pebble/v2"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The layout of a node
//
// The engine knows nothing about keys, but its groups' state machines may
// share one key space: package shard keeps every shard's user data under
// the user key itself, so the replicas of a node must never own
// overlapping ranges, or one would write over another's data. A
// StateMachine that lives in such a space implements Spanner, and the
// engine keeps the spans of the node's groups disjoint:
//
//   - a snapshot is installed only if its span overlaps no other group's
//     span on this node; otherwise it is refused, the sender reports the
//     failure to raft, and the leader sends it again later. The normal
//     case is the right-hand group of a split that reaches a node whose
//     replica of the parent has not applied the split yet (the parent
//     still spans the whole range): its snapshot waits until the parent
//     applies the split (which then initialises the right-hand replica
//     itself) or installs a snapshot taken after it, or until a parent
//     replica removed from its group is garbage-collected;
//   - a split carves the right-hand span out of the parent's, so it never
//     overlaps another group.
//
// Every change of which group occupies which span happens under the
// layout lock, held from the decision to the commit of the batch that
// makes it: a round takes it when it stages a snapshot to install, when a
// split it applies creates or initialises a group (ApplyContext.CreateGroup),
// and when it destroys a replica, and keeps it until the round ends.
// CreateGroup holds it shared through its own commit, so that the
// bootstraps of many groups still sync together; they change no existing
// span, and a state machine that checks its new span against the others
// in CreateGroup's init sees no snapshot installed meanwhile (package
// shard also checks concurrent bootstraps against each other). So a check
// made under the lock sees every span as committed, never half of a
// change. These are rare events (snapshots, splits, removals); proposals,
// appends, reads and ticks never touch the lock.

// Spanner is an optional capability of a StateMachine whose state occupies
// a span of a key space shared by every group of the node (package shard:
// the shard's user key range). Spans are byte strings ordered bytewise;
// [start, end) with an empty end means unbounded above. The engine keeps
// the spans of the groups of a node disjoint (see above).
type Spanner interface {
	// Span returns the span the replica occupies, ok false if none (an
	// uninitialised replica). Safe for concurrent use; the engine calls it
	// from any worker.
	Span() (start, end []byte, ok bool)
	// SnapshotSpan returns the span of a snapshot image that Restore has
	// accepted. The engine owns image; the result must not alias it.
	SnapshotSpan(image []byte) (start, end []byte, err error)
}

// publishedSM holds a group's state machine for readers outside its
// worker: the span check of another group's snapshot.
type publishedSM struct{ sm StateMachine }

// setSM makes sm the group's state machine. Worker-owned (or before the
// group is registered).
func (g *group) setSM(sm StateMachine) {
	g.sm = sm
	g.pubSM.Store(&publishedSM{sm: sm})
}

// lockLayout takes the layout lock for the rest of the round. Worker-owned.
func (r *round) lockLayout() {
	if !r.layoutHeld {
		r.e.layoutMu.Lock()
		r.layoutHeld = true
	}
}

// unlockLayout releases the layout lock at the end of a round.
func (r *round) unlockLayout() {
	if r.layoutHeld {
		r.layoutHeld = false
		r.e.layoutMu.Unlock()
	}
}

// spansOverlap reports whether [s1, e1) and [s2, e2) intersect; an empty
// end is unbounded.
func spansOverlap(s1, e1, s2, e2 []byte) bool {
	return (len(e2) == 0 || bytes.Compare(s1, e2) < 0) && (len(e1) == 0 || bytes.Compare(s2, e1) < 0)
}

// spanConflict returns a group of this node other than g whose span
// overlaps [start, end), or 0. The caller holds the layout lock.
func (e *Engine) spanConflict(g *group, start, end []byte) GroupID {
	for _, o := range *e.list.Load() {
		if o == g || o.removed.Load() {
			continue
		}
		p := o.pubSM.Load()
		if p == nil {
			continue
		}
		sp, ok := p.sm.(Spanner)
		if !ok {
			continue
		}
		if s, en, ok := sp.Span(); ok && spansOverlap(start, end, s, en) {
			return o.id
		}
	}
	return 0
}

// Splits and replicas created by messages
//
// The right-hand group of a split starts on every node from the state the
// split leaves there (ApplyContext.CreateGroup). Its leader may however
// reach a node before that node's replica of the parent applied the
// split, and its messages then create an empty replica of the new group
// there (see createForMessage), whose snapshot waits (see above). When the
// parent then applies the split, CreateGroup finds that empty replica: if
// it has the very replica ID the split gives this node, the split
// initialises it instead of creating a group, in the same batch that
// shrinks the parent, keeping the replica's hard state (it may have voted:
// an empty replica is a voter of the new group like any other); the
// replica's worker reloads it after the commit (initFromSplit), and until
// then its new state machine is published for the span check. Any other
// replica there (a later incarnation, or an ID the split does not name)
// is left alone and gets a snapshot from its leader.

// createForSplit is ApplyContext.CreateGroup: see there.
func (ac *ApplyContext) createForSplit(id GroupID, replica ReplicaID, members Membership) bool {
	e := ac.e
	ac.r.lockLayout()
	e.createMu.Lock()
	defer e.createMu.Unlock()
	e.mu.RLock()
	g, tomb := e.mu.groups[id], e.mu.tombstones[id]
	e.mu.RUnlock()
	switch {
	case replica <= tomb:
		// This node's replica of the new group was created (empty, by a
		// message) and removed again before the split applied here.
		return false
	case e.creating[id]:
		return false // created otherwise, right now: not by this split
	case g == nil:
		e.creating[id] = true // no message creates it until it is loaded
		e.writeInitialState(ac.Batch, id, replica, members)
		ac.creates = append(ac.creates, groupCreate{group: id, replica: replica, members: members.Clone(), campaign: ac.leading})
		return true
	case g.replica != replica:
		return false
	case g.appliedIdx.Load() > 0:
		panic(fmt.Sprintf("multiraft: a split creates group %d, whose replica %d on node %d is already initialised: two groups span one range",
			id, replica, e.cfg.NodeID))
	}
	// An empty replica created by a message: initialise it here. Its hard
	// state stays as it is (see loadStorage for why its commit index is
	// raised).
	e.writeInitialLog(ac.Batch, id, replica, members)
	ac.creates = append(ac.creates, groupCreate{group: id, replica: replica, members: members.Clone(), existing: true})
	return true
}

// initFromSplit finishes the initialisation of an existing empty replica
// by a split (see createForSplit), once the split's batch committed: the
// new state machine is built and published at once, and the replica's
// worker reloads the rest. The caller holds the layout lock.
func (r *round) initFromSplit(c groupCreate) {
	g := r.e.lookup(c.group)
	if g == nil || g.replica != c.replica {
		panic(fmt.Sprintf("multiraft: group %d (replica %d) vanished while a split initialised it", c.group, c.replica))
	}
	sm, err := r.e.cfg.NewStateMachine(c.group, c.replica, r.e.db)
	if err != nil {
		panic(fmt.Sprintf("multiraft: group %d: state machine after split: %v", c.group, err))
	}
	g.pubSM.Store(&publishedSM{sm: sm})
	g.postOp(func(g *group) { g.round.reloadFromSplit(g, sm) }, nil)
	r.e.wake(g)
}

// reloadFromSplit rebuilds an empty replica's storage and RawNode from the
// state a split wrote for it. Worker-owned.
//
// The leader that created the replica found its log empty and decided to
// send it a snapshot, and raft only ever lowers its idea of a follower's
// log from a rejection. So the reloaded replica tells the leader where its
// log now ends: an append response for the initial index, which every
// replica of the group holds identically (it is the state all of them
// started from, committed from the start), so acknowledging it can make
// no entry committed that was not. The leader then appends from there
// instead of sending a snapshot.
//
// The acknowledgement is a promise that the log is durable, and the split
// wrote it in an apply batch, which is not synced: a crash could lose it,
// and the restarted replica, empty again until its parent applies the
// split once more, would then hear a heartbeat committing an index it
// lacks (raft panics: "tocommit out of range", as the simulator's engine
// runs found). So the WAL is synced first, which makes the split's batch
// and everything before it durable. This blocks the worker for one fsync,
// on a path taken only when a new group's leader reached this node before
// the node applied the split that creates it.
func (r *round) reloadFromSplit(g *group, sm StateMachine) {
	e := r.e
	if g.initialized() {
		return // a snapshot initialised it first; it is newer than the split
	}
	lead := g.rn.BasicStatus().Lead
	st, err := loadStorage(e.db, g.id, e.cfg.EntryCacheBytes)
	if err != nil {
		panic(fmt.Sprintf("multiraft: group %d: loading the state a split wrote: %v", g.id, err))
	}
	rn, err := raft.NewRawNode(e.raftConfig(g.replica, st))
	if err != nil {
		panic(fmt.Sprintf("multiraft: group %d: %v", g.id, err))
	}
	if g.snap != nil {
		_ = g.snap.batch.Close()
		g.snap = nil
	}
	g.st, g.rn = st, rn
	g.setSM(sm)
	g.isLead = false
	g.leading.Store(false)
	g.leader.Store(0)
	g.leaderNode.Store(0)
	g.term.Store(st.hardState.GetTerm())
	g.appliedIdx.Store(st.applied.index)
	// Like a restart: this replica forgot the leader it acknowledged, if
	// it acknowledged one (one that only heard vote requests did not).
	if lead != 0 {
		g.noVotesUntil = max(g.noVotesUntil, e.voteHold())
	}
	e.metrics.ReplicasInitializedBySplit.Add(1)
	if node := g.nodeOf(lead); lead != 0 && node != 0 {
		if !e.syncWAL() {
			return // fail-stop: the engine is stopping (see diskfailure.go)
		}
		r.beforeSync = append(r.beforeSync, Message{Group: g.id, ToNode: node, FromNode: e.cfg.NodeID, Msg: &raftpb.Message{
			Type:  raftpb.MsgAppResp.Enum(),
			To:    proto.Uint64(lead),
			From:  proto.Uint64(uint64(g.replica)),
			Term:  proto.Uint64(st.hardState.GetTerm()),
			Index: proto.Uint64(st.lastIndex),
		}})
	}
}

// syncWAL makes every write committed so far durable, reporting false
// after a disk failure (the engine then fail-stops). Workers call it only
// on rare paths; see reloadFromSplit.
func (e *Engine) syncWAL() bool {
	b := e.db.NewBatch()
	defer b.Close()
	_ = b.LogData(nil, nil)
	return e.commit(b, pebble.Sync) == nil
}
