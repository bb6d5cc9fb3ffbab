package multiraft

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// group is one replica of one Raft group hosted by the engine.
//
// Fields under "worker-owned" are touched only by the worker that holds the
// group (see scheduler): no lock. The inbox (mu) is how every other
// goroutine hands work to that worker. The atomics are published by the
// worker for cheap reads from anywhere.
type group struct {
	id      GroupID
	replica ReplicaID
	sched   atomic.Uint32

	// Published by the worker.
	quiesced   atomic.Bool
	leading    atomic.Bool   // this replica is the leader
	leader     atomic.Uint64 // ReplicaID of the leader, 0 if unknown
	leaderNode atomic.Uint64 // NodeID of the leader, 0 if unknown
	term       atomic.Uint64
	appliedIdx atomic.Uint64
	// logEntries and logBytes publish the log's size for Summaries; the
	// worker stores them at the end of each round.
	logEntries, logBytes atomic.Uint64
	removed              atomic.Bool
	stuck                atomic.Bool // draining, but no voter to hand leadership to
	// pubSM publishes sm for the span check of other groups' snapshots
	// (see layout.go).
	pubSM atomic.Pointer[publishedSM]

	// pendingTicks counts ticks not yet given to the RawNode.
	pendingTicks atomic.Int32

	mu struct {
		sync.Mutex
		msgs  []Message
		props []*proposal
		reads []readReq
		ops   []groupOp
	}

	// Worker-owned.
	rn      *raft.RawNode
	st      *storage
	sm      StateMachine
	isLead  bool
	pending map[uint64]*Future // proposal ID → future, on the leader
	// confFuture is the pending membership change proposed here, if any;
	// confIndex is the index its entry was appended at (raft may have
	// replaced the entry by an empty one, in which case it failed).
	confFuture *Future
	confID     uint64
	confIndex  uint64
	// Read batches: in flight (waiting for their ReadState), then ready
	// (waiting for applied >= index).
	readsInFlight []*readBatch
	readsReady    []*readBatch
	nextReadID    uint64
	// leaseUntil is the engine tick until which this leader may serve lease
	// reads; leaseTerm is the term it was won in. With a TickInterval the
	// lease also ends at leaseUntilTime (Config.Clock).
	leaseUntil, leaseTerm uint64
	leaseUntilTime        time.Time
	noLeaseTerm           uint64 // a leadership transfer began in this term: no lease
	// published is the lease as LeaseHeld sees it, written by the worker
	// whenever the lease changes (nil: none).
	published       atomic.Pointer[publishedLease]
	transferWaiters []transferWaiter
	idleTicks       int
	// silentTicks counts the ticks this awake non-leader spent without a
	// message that only a leader sends (see round.pokeLeader).
	silentTicks int
	// split is a split vote this candidate saw (see round.sawSplitVote).
	split       splitVote
	handOffTick uint64 // while draining: no new transfer before this tick
	// snap is an incoming snapshot validated and waiting for raft to hand
	// it back in a Ready.
	snap *incomingSnapshot
	// noVotesUntil: a replica recovered at Open grants no vote (and no
	// pre-vote) before this engine tick. Before the restart it may have
	// acknowledged a leader whose lease is still running; raft's own lease
	// check (CheckQuorum) needs a known leader, which a restarted replica
	// has forgotten, so without this it could help elect a new leader while
	// the old one still serves lease reads. One election timeout outlasts
	// any lease (LeaseTicks < ElectionTicks).
	noVotesUntil uint64
	// learned maps peers outside the applied membership to their nodes.
	learned map[ReplicaID]NodeID
	destroy bool // the replica applied its own removal: destroy after the round
	// superseded: a leader of the group addressed a newer replica on this
	// node, so this one was removed from the group; destroy it after the
	// round (see createForMessage).
	superseded bool
	// round is the round processing the group, set while a worker holds it.
	round *round
}

// proposal is a command waiting to be handed to raft.
type proposal struct {
	id   uint64
	data []byte // envelope + command
	fut  *Future
}

type readBatch struct {
	id        uint64
	startTick uint64
	startTime time.Time // Config.Clock at the start, with a TickInterval
	index     uint64
	reads     []*Future
	lease     bool // only renews the lease; no readers were waiting
}

type transferWaiter struct {
	to       ReplicaID
	fut      *Future
	deadline uint64 // engine tick
}

type incomingSnapshot struct {
	index   uint64
	batch   *pebble.Batch
	members Membership
}

// post queues msgs for the group's worker. Safe for concurrent use.
func (g *group) postMsgs(msgs ...Message) {
	g.mu.Lock()
	g.mu.msgs = append(g.mu.msgs, msgs...)
	g.mu.Unlock()
}

// groupOp is work for the group's worker. fut, if set, is failed with the
// engine's error when the op can no longer run (the engine stopped, the
// group was removed).
type groupOp struct {
	run func(*group)
	fut *Future
}

func (g *group) postOp(run func(*group), fut *Future) {
	g.mu.Lock()
	g.mu.ops = append(g.mu.ops, groupOp{run: run, fut: fut})
	g.mu.Unlock()
}

// nodeOf returns the node hosting replica id according to the group's
// applied membership. Worker-owned.
func (g *group) nodeOf(id uint64) NodeID {
	if r, ok := g.st.applied.members.Lookup(ReplicaID(id)); ok {
		return r.NodeID
	}
	return g.learned[ReplicaID(id)]
}

// learn remembers the node of a peer that sent us a message but is not in
// our applied membership (we are a new replica, or it is).
func (g *group) learn(m *Message) {
	from := ReplicaID(m.Msg.GetFrom())
	if m.FromNode == 0 || g.learned[from] == m.FromNode {
		return
	}
	if _, ok := g.st.applied.members.Lookup(from); ok {
		return
	}
	if g.learned == nil {
		g.learned = make(map[ReplicaID]NodeID)
	}
	g.learned[from] = m.FromNode
}

// initialized reports whether the replica has any state (a joining replica
// waiting for its first snapshot has none).
func (g *group) initialized() bool { return g.st.applied.index > 0 }

// isHeartbeatResp reports whether m is a response that must not wake a
// quiesced group (the answer to the quiescing heartbeat itself).
func isHeartbeatResp(m *raftpb.Message) bool { return m.GetType() == raftpb.MsgHeartbeatResp }

// splitVote is a split vote a candidate saw in term: it campaigns again
// after ticks more ticks unless it rejected a lower candidate (yield).
type splitVote struct {
	term  uint64
	ticks int
	yield bool
}

// notLeader builds the error for a request that needs the leader.
func (g *group) notLeader() error {
	lead := g.leader.Load()
	return &NotLeaderError{Group: g.id, Leader: ReplicaID(lead), Node: NodeID(g.leaderNode.Load())}
}

// steppedDown fails what only a leader could finish.
func (g *group) steppedDown() {
	for id, f := range g.pending {
		f.resolve(nil, ErrAmbiguous)
		delete(g.pending, id)
	}
	if g.confFuture != nil {
		g.confFuture.resolve(nil, ErrAmbiguous)
		g.confFuture = nil
	}
	g.failReads(g.notLeader())
	g.leaseUntil, g.leaseUntilTime = 0, time.Time{}
	g.published.Store(nil)
}
