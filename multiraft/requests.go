package multiraft

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// ErrTransferFailed: a leadership transfer did not complete (the target
// did not win the election in time, or another replica did).
var ErrTransferFailed = errors.New("multiraft: leadership transfer failed")

// ticking (the op needs Raft to make progress).
func (e *Engine) groupOp(id GroupID, wake bool, op func(*group, *Future)) *Future {
	f := newFuture()
	g, err := e.post(id, func(g *group) { g.postOp(func(g *group) { op(g, f) }, f) })
	if err != nil {
		return failedFuture(err)
	}
	if wake {
		e.wake(g)
	} else {
		e.sched.enqueue(g)
	}
	return f
}

// post runs put (which queues work in g's inbox) unless the engine stopped
// or hosts no such group. It holds the engine's read lock, so Close, which
// fails everything queued under the write lock, cannot miss what put
// queued.
func (e *Engine) post(id GroupID, put func(*group)) (*group, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.stopped.Load() {
		return nil, e.stopErr()
	}
	g := e.mu.groups[id]
	if g == nil {
		return nil, ErrGroupNotFound
	}
	put(g)
	return g, nil
}

// CheckLeader reports whether this node's replica of group leads it, as
// of its last round: nil if it does, else a *NotLeaderError naming the
// leader it knows, ErrGroupNotFound, or ErrStopped. Leadership may change
// right after; a caller uses it to refuse early what a proposal would be
// refused anyway, before doing work for it. Safe for concurrent use; it
// takes no lock of the group.
func (e *Engine) CheckLeader(id GroupID) error {
	if e.stopped.Load() {
		return e.stopErr()
	}
	g := e.lookup(id)
	switch {
	case g == nil:
		return ErrGroupNotFound
	case !g.leading.Load():
		return g.notLeader()
	}
	return nil
}

// Propose replicates cmd through group's log and returns what the state
// machine's Apply returned for it, once applied on this (leader) replica.
//
// Errors: *NotLeaderError and ErrProposalDropped (surely not applied),
// ErrAmbiguous and ctx errors (may have applied), ErrGroupNotFound,
// ErrGroupRemoved, ErrStopped. The engine keeps no reference to cmd.
func (e *Engine) Propose(ctx context.Context, group GroupID, cmd []byte) (any, error) {
	return e.ProposeFuture(group, cmd).Wait(ctx)
}

// ProposeFuture is Propose without waiting.
func (e *Engine) ProposeFuture(id GroupID, cmd []byte) *Future {
	p := &proposal{id: e.nextID.Add(1), data: make([]byte, envelopeBytes+len(cmd)), fut: newFuture()}
	p.fut.proposed = time.Now()
	putEnvelope(p.data, e.origin, p.id)
	copy(p.data[envelopeBytes:], cmd)
	g, err := e.post(id, func(g *group) {
		g.mu.Lock()
		g.mu.props = append(g.mu.props, p)
		g.mu.Unlock()
	})
	if err != nil {
		return failedFuture(err)
	}
	e.wake(g)
	return p.fut
}

// ChangeOp is one kind of membership change.
type ChangeOp int

const (
	// AddVoter adds a new voting replica, or promotes an existing learner.
	AddVoter ChangeOp = iota
	// AddLearner adds a non-voting replica that receives the log (the first
	// step of moving a replica: it catches up before it is promoted).
	AddLearner
	// RemoveReplica removes a replica (voter or learner).
	RemoveReplica
)

// ReplicaChange is one change of a ChangeReplicas call.
type ReplicaChange struct {
	Op      ChangeOp
	Replica Replica // NodeID is required when adding
}

// ChangeReplicas changes group's membership through Raft. Several changes
// are made in one joint-consensus transition (entered and left
// automatically); a single voter change is made directly. It returns once
// the change is applied on the leader. Errors: *NotLeaderError,
// ErrProposalDropped (another change is in progress: retry),
// ErrInvalidConfChange, ErrAmbiguous, ctx errors.
func (e *Engine) ChangeReplicas(ctx context.Context, group GroupID, changes []ReplicaChange) error {
	_, err := e.ChangeReplicasFuture(group, changes).Wait(ctx)
	return err
}

// ChangeReplicasFrom is ChangeReplicas made only if the group's applied
// membership, when the change is proposed, is from (the same replicas,
// each a voter or a learner as there): otherwise it fails with
// ErrMembershipChanged and proposes nothing. A caller that decided the
// change from a membership it read earlier uses it, so that a change
// applied meanwhile cannot make the decision wrong: a removal planned
// while four voters were members, proposed once a change pending then had
// removed one of them, took a shard's live quorum away (the fleet
// simulator's seed 2487). The comparison runs on the group's worker, with
// the proposal, so no change applies between the two; raft itself drops
// a change proposed while another is committed but not yet applied.
func (e *Engine) ChangeReplicasFrom(ctx context.Context, group GroupID, from Membership, changes []ReplicaChange) error {
	_, err := e.ChangeReplicasFromFuture(group, from, changes).Wait(ctx)
	return err
}

// ChangeReplicasFromFuture is ChangeReplicasFrom without waiting.
func (e *Engine) ChangeReplicasFromFuture(id GroupID, from Membership, changes []ReplicaChange) *Future {
	from = from.Clone()
	return e.changeReplicasFuture(id, changes, &from)
}

// ChangeReplicasFuture is ChangeReplicas without waiting.
func (e *Engine) ChangeReplicasFuture(id GroupID, changes []ReplicaChange) *Future {
	return e.changeReplicasFuture(id, changes, nil)
}

// changeReplicasFuture proposes changes, if from is nil or the group's
// applied membership.
func (e *Engine) changeReplicasFuture(id GroupID, changes []ReplicaChange, from *Membership) *Future {
	changes = append([]ReplicaChange(nil), changes...)
	return e.groupOp(id, true, func(g *group, f *Future) {
		if !g.isLead {
			f.resolve(nil, g.notLeader())
			return
		}
		if g.confFuture != nil || g.st.applied.members.Joint {
			f.resolve(nil, fmt.Errorf("%w: a membership change is in progress", ErrProposalDropped))
			return
		}
		if from != nil && !sameMembers(*from, g.st.applied.members) {
			f.resolve(nil, fmt.Errorf("%w: decided from %v, the group has %v", ErrMembershipChanged, from.Replicas, g.st.applied.members.Replicas))
			return
		}
		cc, err := buildConfChange(g.st.applied.members, changes)
		if err != nil {
			f.resolve(nil, err)
			return
		}
		id := e.nextID.Add(1)
		env := make([]byte, envelopeBytes, envelopeBytes+len(cc.Context))
		putEnvelope(env, e.origin, id)
		cc.Context = append(env, cc.Context...)
		if err := g.rn.ProposeConfChange(cc); err != nil {
			f.resolve(nil, ErrProposalDropped)
			return
		}
		// Ops run at the start of a round, when raft's log is exactly the
		// stored log, so the change lands right after it.
		g.confFuture, g.confID, g.confIndex = f, id, g.st.lastIndex+1
	})
}

// sameMembers reports whether a and b hold the same replicas, each a
// voter in both or a learner in both.
func sameMembers(a, b Membership) bool {
	if len(a.Replicas) != len(b.Replicas) || a.Joint != b.Joint {
		return false
	}
	for _, r := range a.Replicas {
		o, ok := b.Lookup(r.ReplicaID)
		if !ok || o.Learner != r.Learner {
			return false
		}
	}
	return true
}

// buildConfChange validates changes against m and builds the ConfChangeV2;
// its Context holds the added replicas (with their nodes).
func buildConfChange(m Membership, changes []ReplicaChange) (*raftpb.ConfChangeV2, error) {
	if len(changes) == 0 {
		return nil, fmt.Errorf("%w: no changes", ErrInvalidConfChange)
	}
	cc := &raftpb.ConfChangeV2{Transition: raftpb.ConfChangeTransitionAuto.Enum()}
	var added Membership
	seen := make(map[ReplicaID]bool, len(changes))
	voters := 0
	for _, r := range m.Replicas {
		if !r.Learner {
			voters++
		}
	}
	for _, c := range changes {
		id := c.Replica.ReplicaID
		if id == 0 {
			return nil, fmt.Errorf("%w: replica ID 0", ErrInvalidConfChange)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: replica %d changed twice", ErrInvalidConfChange, id)
		}
		seen[id] = true
		cur, exists := m.Lookup(id)
		var t raftpb.ConfChangeType
		switch c.Op {
		case AddVoter:
			if exists && !cur.Learner {
				return nil, fmt.Errorf("%w: replica %d is already a voter", ErrInvalidConfChange, id)
			}
			t = raftpb.ConfChangeAddNode
			voters++
		case AddLearner:
			if exists {
				return nil, fmt.Errorf("%w: replica %d is already a member", ErrInvalidConfChange, id)
			}
			t = raftpb.ConfChangeAddLearnerNode
		case RemoveReplica:
			if !exists {
				return nil, fmt.Errorf("%w: replica %d is not a member", ErrInvalidConfChange, id)
			}
			if !cur.Learner {
				voters--
			}
			t = raftpb.ConfChangeRemoveNode
		default:
			return nil, fmt.Errorf("%w: unknown op %d", ErrInvalidConfChange, c.Op)
		}
		if c.Op != RemoveReplica && !exists {
			if c.Replica.NodeID == 0 {
				return nil, fmt.Errorf("%w: replica %d has no node", ErrInvalidConfChange, id)
			}
			for _, r := range m.Replicas {
				if r.NodeID == c.Replica.NodeID {
					return nil, fmt.Errorf("%w: node %d already hosts replica %d", ErrInvalidConfChange, r.NodeID, r.ReplicaID)
				}
			}
			added.Replicas = append(added.Replicas, c.Replica)
		}
		cc.Changes = append(cc.Changes, &raftpb.ConfChangeSingle{Type: t.Enum(), NodeId: proto.Uint64(uint64(id))})
	}
	if voters < 1 {
		return nil, fmt.Errorf("%w: no voter would remain", ErrInvalidConfChange)
	}
	cc.Context = encodeMembership(nil, added)
	return cc, nil
}

// TransferLeadership asks the leader of group (this replica) to hand
// leadership to replica to, and returns once to leads. Errors:
// *NotLeaderError, ErrTransferFailed, ctx errors.
func (e *Engine) TransferLeadership(ctx context.Context, group GroupID, to ReplicaID) error {
	_, err := e.TransferLeadershipFuture(group, to).Wait(ctx)
	return err
}

// TransferLeadershipFuture is TransferLeadership without waiting.
func (e *Engine) TransferLeadershipFuture(id GroupID, to ReplicaID) *Future {
	return e.groupOp(id, true, func(g *group, f *Future) {
		switch r, ok := g.st.applied.members.Lookup(to); {
		case to == g.replica && g.isLead:
			f.resolve(nil, nil)
		case !g.isLead:
			f.resolve(nil, g.notLeader())
		case !ok || r.Learner:
			f.resolve(nil, fmt.Errorf("%w: replica %d is not a voter", ErrTransferFailed, to))
		default:
			g.rn.TransferLeader(uint64(to))
			deadline := e.tick.Load() + 2*uint64(e.cfg.ElectionTicks)
			g.transferWaiters = append(g.transferWaiters, transferWaiter{to: to, fut: f, deadline: deadline})
		}
	})
}

// checkTransfers resolves leadership transfers that finished or failed.
func (g *group) checkTransfers(now uint64) {
	n := 0
	lead := ReplicaID(g.leader.Load())
	for _, w := range g.transferWaiters {
		switch {
		case lead == w.to:
			w.fut.resolve(nil, nil)
		case lead != 0 && lead != g.replica:
			w.fut.resolve(nil, fmt.Errorf("%w: replica %d leads instead", ErrTransferFailed, lead))
		case now > w.deadline:
			w.fut.resolve(nil, fmt.Errorf("%w: timed out", ErrTransferFailed))
		default:
			g.transferWaiters[n] = w
			n++
		}
	}
	clear(g.transferWaiters[n:])
	g.transferWaiters = g.transferWaiters[:n]
}

// Status describes one replica of a group.
type Status struct {
	Group      GroupID
	Replica    ReplicaID
	Leader     ReplicaID // 0 if unknown
	LeaderNode NodeID
	IsLeader   bool
	Term       uint64
	Commit     uint64
	Applied    uint64
	FirstIndex uint64
	LastIndex  uint64
	Members    Membership
	Quiesced   bool
	// Progress of every member as seen by the leader; nil on followers.
	Progress map[ReplicaID]Progress
}

// Progress is the leader's view of one member's log.
type Progress struct {
	Match, Next  uint64
	State        string // probe, replicate or snapshot
	RecentActive bool
}

// Status returns the status of this node's replica of group.
func (e *Engine) Status(ctx context.Context, group GroupID) (Status, error) {
	v, err := e.StatusFuture(group).Wait(ctx)
	if err != nil {
		return Status{}, err
	}
	return v.(Status), nil
}

// StatusFuture is Status without waiting.
func (e *Engine) StatusFuture(id GroupID) *Future {
	return e.groupOp(id, false, func(g *group, f *Future) {
		f.resolve(g.status(), nil)
	})
}

func (g *group) status() Status {
	s := Status{
		Group: g.id, Replica: g.replica, Leader: ReplicaID(g.leader.Load()), LeaderNode: NodeID(g.leaderNode.Load()),
		IsLeader: g.isLead, Term: g.st.hardState.GetTerm(), Commit: g.st.hardState.GetCommit(),
		Applied: g.st.applied.index, FirstIndex: g.st.truncIndex + 1, LastIndex: g.st.lastIndex,
		Members: g.st.applied.members.Clone(), Quiesced: g.quiesced.Load(),
	}
	if g.isLead {
		s.Progress = make(map[ReplicaID]Progress)
		g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			s.Progress[ReplicaID(id)] = Progress{Match: pr.Match, Next: pr.Next, State: pr.State.String(), RecentActive: pr.RecentActive}
		})
	}
	return s
}

// Campaign makes this replica start an election now instead of waiting for
// its election timeout. Used after a node learns its group's leader is gone.
func (e *Engine) Campaign(id GroupID) *Future {
	return e.groupOp(id, true, func(g *group, f *Future) {
		f.resolve(nil, g.rn.Campaign())
	})
}

// GroupSummary is what the engine publishes about a group without
// touching it: every field is read from atomics the worker updates.
type GroupSummary struct {
	Group      GroupID
	Replica    ReplicaID
	Leading    bool
	Leader     ReplicaID
	LeaderNode NodeID
	Term       uint64
	Applied    uint64
	Quiesced   bool
	// LogEntries and LogBytes measure the replica's log above its last
	// truncation (LogBytes approximately), as of its last round.
	LogEntries, LogBytes uint64
}

// Summary returns the summary of group id (as Summaries), or false if
// this node has no replica of it. Like Summaries it touches no group.
func (e *Engine) Summary(id GroupID) (GroupSummary, bool) {
	g := e.lookup(id)
	if g == nil {
		return GroupSummary{}, false
	}
	return g.summary(), true
}

// Summaries returns a summary of every group, in ascending group order. It
// does not wake or schedule any group, so it is cheap enough to call for
// thousands of groups every second.
func (e *Engine) Summaries() []GroupSummary {
	l := *e.list.Load()
	out := make([]GroupSummary, len(l))
	for i, g := range l {
		out[i] = g.summary()
	}
	return out
}

// summary reads g's summary from its atomics.
func (g *group) summary() GroupSummary {
	return GroupSummary{
		Group: g.id, Replica: g.replica, Leading: g.leading.Load(), Leader: ReplicaID(g.leader.Load()),
		LeaderNode: NodeID(g.leaderNode.Load()), Term: g.term.Load(), Applied: g.appliedIdx.Load(),
		Quiesced: g.quiesced.Load(), LogEntries: g.logEntries.Load(), LogBytes: g.logBytes.Load(),
	}
}
