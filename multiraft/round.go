package multiraft

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// A round is one pass of a worker over a batch of groups:
//
//  1. prepare: for each group, hand its inbox (messages, ticks, proposals,
//     reads, operations) to its RawNode and take its Ready;
//  2. send the messages that need no durability (the leader's appends go
//     out while it writes its own log);
//  3. persist every group's entries, hard state and snapshot in one Pebble
//     batch and sync it once (group commit);
//  4. send the messages that promised durability (votes, append acks);
//  5. apply every group's committed entries in one batch (no sync: the
//     synced log makes replay safe), then resolve futures;
//  6. Advance, answer reads, truncate logs, quiesce idle groups.
//
// Appends that carry nothing but a new commit index to a follower that has
// the whole log are held back in step 2, and sent only if the round applies
// a split or a membership change (see route).
//
// A round's state is reused from one round to the next by its worker.
type round struct {
	e       *Engine
	groups  []*group
	readies []raft.Ready
	// steppedDown[i]: groups[i]'s replica stopped being leader in this
	// round.
	steppedDown []bool
	// beforeSync holds the messages sent before the round's sync (they
	// promise nothing durable); afterSync, those sent once it is done
	// (append acknowledgements and votes).
	beforeSync []Message
	afterSync  []Message
	// commits are the round's commit-only appends, sent only if announce
	// is set by the time the round's entries are applied (see route).
	commits  []Message
	announce bool
	// probe is caughtUp's question and answer; visit, bound once, reads
	// it, so asking raft allocates nothing.
	probe struct {
		to, index uint64
		ok        bool
	}
	visit   func(id uint64, _ raft.ProgressType, pr tracker.Progress)
	buf     []byte
	results []applied
	ac      ApplyContext
	// layoutHeld: the round holds the layout lock (see layout.go) until
	// it ends.
	layoutHeld bool
}

// applied is a future to resolve once the apply batch is committed.
type applied struct {
	fut    *Future
	result any
	err    error
}

func newRound(e *Engine) *round {
	r := &round{e: e}
	r.ac = ApplyContext{e: e, r: r}
	r.visit = func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == r.probe.to {
			r.probe.ok = pr.State == tracker.StateReplicate && pr.Match == r.probe.index
		}
	}
	return r
}

func (r *round) run(batch []*group) {
	if r.e.Err() != nil {
		// Fail-stop: after a disk failure no group is touched again.
		for _, g := range batch {
			r.e.sched.done(g)
		}
		return
	}
	r.groups, r.readies, r.steppedDown = r.groups[:0], r.readies[:0], r.steppedDown[:0]
	defer r.unlockLayout()
	finished := 0 // batch[:finished] are done with
	defer func() {
		if p := recover(); p != nil {
			r.recoverDiskFailure(p, batch[finished:])
		}
	}()
	for _, g := range batch {
		g.round = r
		if g.removed.Load() {
			g.failAll(ErrGroupRemoved)
			continue
		}
		if r.prepare(g) {
			r.groups = append(r.groups, g)
		}
	}
	if len(r.groups) > 0 {
		// A disk failure in persist or apply stops the round there (see
		// diskfailure.go): raft never hears that the Ready was handled.
		if r.persist() && r.apply() {
			r.advance()
		} else {
			r.abandon()
		}
	}
	for _, g := range batch {
		if !g.removed.Load() && r.e.Err() == nil {
			r.maintain(g)
			if g.rn.HasReady() {
				r.e.sched.enqueue(g)
			}
		}
		r.e.sched.done(g)
		finished++
	}
	// Leader pokes (see pokeLeader) of a round in which no group had a
	// Ready to persist.
	r.flush(&r.beforeSync)
}

// recoverDiskFailure handles a panic p of the round: one that reports a
// failed read of Pebble (an error wrapping ErrDiskFailure, from a state
// machine or from the log's storage through raft) fail-stops the engine
// as a failed write does (see diskfailure.go): the round is abandoned
// where it stood, its proposers learn an ambiguous outcome, the groups of
// rest (the round's groups not yet done with) are released, and no group
// is touched again. Any other panic goes on.
func (r *round) recoverDiskFailure(p any, rest []*group) {
	err, ok := p.(error)
	if !ok || !errors.Is(err, ErrDiskFailure) {
		panic(p)
	}
	r.e.failStop(err)
	amb := fmt.Errorf("%w: %w", ErrAmbiguous, err)
	for i := range r.results {
		r.results[i].fut.resolve(nil, amb)
		r.results[i] = applied{}
	}
	r.results = r.results[:0]
	r.ac.creates = r.ac.creates[:0]
	r.abandon()
	for _, g := range rest {
		r.e.sched.done(g)
	}
}

// prepare feeds g's inbox to its RawNode and takes its Ready. It reports
// whether there is a Ready to handle.
func (r *round) prepare(g *group) bool {
	g.mu.Lock()
	msgs, props, reads, ops := g.mu.msgs, g.mu.props, g.mu.reads, g.mu.ops
	g.mu.msgs, g.mu.props, g.mu.reads, g.mu.ops = nil, nil, nil, nil
	g.mu.Unlock()

	for i, op := range ops {
		op.run(g)
		if g.removed.Load() {
			for _, rest := range ops[i+1:] {
				if rest.fut != nil {
					rest.fut.resolve(nil, ErrGroupRemoved)
				}
			}
			return false
		}
	}
	quiesce := false
	for i := range msgs {
		m := &msgs[i]
		if m.Msg.GetType() == raftpb.MsgSnap || m.Msg.GetTo() != uint64(g.replica) {
			// Snapshots arrive through ReceiveSnapshot, with their data; a
			// message for another replica of the group (one this node hosted
			// before) would corrupt this one's raft state. A leader's message
			// for a newer one means this one was removed (see create.go).
			if g.supersededBy(m.Msg) {
				g.superseded = true
			}
			r.e.metrics.DroppedMisaddressed.Add(1)
			continue
		}
		if t := m.Msg.GetType(); (t == raftpb.MsgVote || t == raftpb.MsgPreVote) && r.e.tick.Load() < g.noVotesUntil {
			r.e.metrics.VotesWithheld.Add(1)
			continue // see group.noVotesUntil
		}
		g.learn(m)
		switch m.Msg.GetType() {
		case raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap:
			g.silentTicks = 0
		}
		if err := g.rn.Step(m.Msg); err != nil {
			r.e.metrics.StepErrors.Add(1)
		}
		switch {
		case m.Quiesce:
			// The leader as raft knows it now (it may have learned it from
			// this very batch), not as last published.
			quiesce = m.Msg.GetFrom() == g.rn.BasicStatus().Lead && m.Msg.GetCommit() == g.st.lastIndex
		case isHeartbeatResp(m.Msg):
		default:
			quiesce = false
			g.idleTicks = 0
			g.quiesced.Store(false)
		}
	}
	if quiesce && !g.isLead && len(props) == 0 && len(reads) == 0 {
		g.quiesced.Store(true)
	}
	// A group gets at most one tick per round: ticks that piled up while
	// the node was too busy to process it are dropped, not folded. Folded
	// ticks expire election timeouts while votes are in flight; once every
	// message hop costs an election timeout, candidates time out before
	// their votes arrive and no election completes, so an overloaded node
	// never gets its groups led and quiesced again. Dropping them makes
	// logical time run slower on an overloaded node, which only delays
	// failure detection: leases are measured in engine ticks (e.tick),
	// not in group ticks, so they stay safe.
	if n := g.pendingTicks.Swap(0); n > 0 && !g.quiesced.Load() {
		g.rn.Tick()
		g.idleTicks++
		r.e.metrics.TicksDropped.Add(uint64(n - 1))
		r.pokeLeader(g)
		r.breakSplit(g)
	}
	if len(props) > 0 {
		g.idleTicks = 0
		r.propose(g, props)
	}
	if len(reads) > 0 {
		g.idleTicks = 0
		r.read(g, reads)
	}
	if !g.rn.HasReady() {
		return false
	}
	rd := g.rn.Ready()
	down := false
	// The term first: a reader of the summary that sees leading sees the
	// term it leads in (the lessor compares it with the term in which it
	// loaded a shard's leases).
	if rd.HardState != nil {
		g.term.Store(rd.HardState.GetTerm())
	}
	if rd.SoftState != nil {
		wasLead := g.isLead
		g.isLead = rd.SoftState.RaftState == raft.StateLeader
		g.leading.Store(g.isLead)
		g.leader.Store(rd.SoftState.Lead)
		g.leaderNode.Store(uint64(g.nodeOf(rd.SoftState.Lead)))
		down = wasLead && !g.isLead
		if g.isLead && !wasLead {
			r.e.metrics.LeadersAcquired.Add(1)
		}
	}
	r.readies = append(r.readies, rd)
	r.steppedDown = append(r.steppedDown, down)
	return true
}

// propose hands proposals to raft, or fails them at once.
func (r *round) propose(g *group, props []*proposal) {
	if !g.isLead {
		err := g.notLeader()
		for _, p := range props {
			p.fut.resolve(nil, err)
		}
		return
	}
	ents := make([]*raftpb.Entry, len(props))
	for i, p := range props {
		ents[i] = &raftpb.Entry{Data: p.data}
	}
	err := g.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: proto.Uint64(uint64(g.replica)), Entries: ents})
	if err != nil {
		r.e.metrics.ProposalsDropped.Add(uint64(len(props)))
		for _, p := range props {
			p.fut.resolve(nil, ErrProposalDropped)
		}
		return
	}
	r.e.metrics.Proposals.Add(uint64(len(props)))
	for _, p := range props {
		g.pending[p.id] = p.fut
	}
}

// persist writes every Ready of the round in one batch, syncing once, and
// sends the round's messages around that write. It returns false after a
// disk failure, having sent none of the messages that promise durability.
func (r *round) persist() bool {
	b := r.e.db.NewBatch()
	defer b.Close()
	sync := false
	entries := 0
	for i, g := range r.groups {
		rd := &r.readies[i]
		r.route(g, rd.Messages)
		if !raft.IsEmptySnap(rd.Snapshot) {
			meta := rd.Snapshot.GetMetadata()
			if g.snap == nil || g.snap.index != meta.GetIndex() {
				panic(fmt.Sprintf("multiraft: group %d: raft applies snapshot %d that was not received", g.id, meta.GetIndex()))
			}
			if err := b.Apply(g.snap.batch, nil); err != nil {
				panic(fmt.Sprintf("multiraft: group %d: staging snapshot: %v", g.id, err))
			}
			g.st.writeSnapshotState(b, meta, g.snap.members)
			sync = true
		}
		if len(rd.Entries) > 0 {
			r.buf = g.st.appendEntries(b, rd.Entries, r.buf)
			entries += len(rd.Entries)
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			r.buf = g.st.setHardState(b, rd.HardState, r.buf)
		}
		sync = sync || rd.MustSync
	}
	r.flush(&r.beforeSync)
	if !b.Empty() {
		opts := pebble.NoSync
		if sync {
			opts = pebble.Sync
		}
		start := time.Now()
		if err := r.e.commit(b, opts); err != nil {
			// A failed write leaves the log in an unknown state: the engine
			// stops (commit made it fail-stop) and this round ends here,
			// before it acknowledges anything.
			return false
		}
		if sync {
			r.e.metrics.observeSync(time.Since(start), len(r.groups), entries)
			// Everything applied before this commit (applies run after
			// persist, so applied.index has not moved since) is durable now.
			for _, g := range r.groups {
				g.st.durableApplied = max(g.st.durableApplied, g.st.applied.index)
			}
		}
	}
	for i, g := range r.groups {
		rd := &r.readies[i]
		if !raft.IsEmptySnap(rd.Snapshot) {
			r.snapshotApplied(g, rd.Snapshot.GetMetadata())
		}
		if len(rd.Entries) > 0 {
			g.st.entriesAppended(rd.Entries)
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			g.st.hardState.Term = proto.Uint64(rd.HardState.GetTerm())
			g.st.hardState.Vote = proto.Uint64(rd.HardState.GetVote())
			g.st.hardState.Commit = proto.Uint64(rd.HardState.GetCommit())
		}
	}
	r.flush(&r.afterSync)
	return true
}

// abandon drops what is left of a round after a disk failure: the
// durability-promising messages are not sent and the Readies are not
// advanced; the engine is stopping.
func (r *round) abandon() {
	r.afterSync = nil
	clear(r.commits)
	r.commits, r.announce = r.commits[:0], false
	for i := range r.readies {
		r.readies[i] = raft.Ready{}
	}
}

// apply applies every group's committed entries in one batch. It returns
// false after a disk failure.
func (r *round) apply() bool {
	b := r.e.db.NewIndexedBatch()
	defer b.Close()
	start := time.Now()
	any := false
	for i, g := range r.groups {
		if ents := r.readies[i].CommittedEntries; len(ents) > 0 {
			r.applyGroup(g, b, ents)
			any = true
		}
	}
	if any {
		if err := r.e.commit(b, pebble.NoSync); err != nil {
			// Fail-stop. The entries are committed in raft, so they may
			// well apply after a restart: their proposers get an
			// ambiguous error, and the split groups are not created.
			amb := fmt.Errorf("%w: %w", ErrAmbiguous, err)
			for i := range r.results {
				r.results[i].fut.resolve(nil, amb)
				r.results[i] = applied{}
			}
			r.results = r.results[:0]
			r.ac.creates = r.ac.creates[:0]
			return false
		}
	}
	// What the batch applied is readable now: publish the applied indexes
	// (Summaries, a replica's readiness), never before.
	for i, g := range r.groups {
		if len(r.readies[i].CommittedEntries) > 0 {
			if c, ok := g.sm.(Committer); ok {
				c.Committed()
			}
			g.appliedIdx.Store(g.st.applied.index)
		}
	}
	// Commit-only appends go out when the round applied a split or a
	// membership change (see route): ahead of a new group's campaign,
	// which the peer streams deliver in order.
	if r.announce || len(r.ac.creates) > 0 {
		r.flush(&r.commits)
	} else if n := len(r.commits); n > 0 {
		r.e.metrics.CommitsHeldBack.Add(uint64(n))
		clear(r.commits)
		r.commits = r.commits[:0]
	}
	r.announce = false
	// Groups created by splits exist once their state is committed, and
	// before anyone learns that the split applied.
	for _, c := range r.ac.creates {
		if c.existing {
			r.initFromSplit(c)
			continue
		}
		r.e.createMu.Lock()
		_, err := r.e.registerGroupLocked(c.group, c.replica, true /* publish */, 0)
		delete(r.e.creating, c.group)
		r.e.createMu.Unlock()
		if err != nil {
			panic(fmt.Sprintf("multiraft: creating group %d from split: %v", c.group, err))
		}
		if c.campaign {
			// The new group's replicas start identical; the one beside the
			// parent's leader campaigns now, so the new range is writable
			// without waiting out an election timeout.
			r.e.Campaign(c.group)
		}
	}
	r.ac.creates = r.ac.creates[:0]
	var end time.Time
	if len(r.results) > 0 {
		end = time.Now()
	}
	for i := range r.results {
		a := &r.results[i]
		if p := a.fut.proposed; !p.IsZero() {
			r.e.metrics.CommitLatency.Observe(start.Sub(p))
			r.e.metrics.ApplyLatency.Observe(end.Sub(start))
		}
		a.fut.resolve(a.result, a.err)
		r.results[i] = applied{}
	}
	r.results = r.results[:0]
	return true
}

func (r *round) applyGroup(g *group, b *pebble.Batch, ents []*raftpb.Entry) {
	ac := &r.ac
	ac.Batch, ac.Group, ac.Replica, ac.Membership, ac.leading = b, g.id, g.replica, g.st.applied.members, g.isLead
	for _, ent := range ents {
		idx := ent.GetIndex()
		switch ent.GetType() {
		case raftpb.EntryNormal:
			if len(ent.GetData()) == 0 {
				if g.confFuture != nil && g.confIndex == idx {
					// Raft replaced our membership change by an empty entry:
					// it was refused.
					r.results = append(r.results, applied{fut: g.confFuture, err: ErrProposalDropped})
					g.confFuture = nil
				}
				break
			}
			origin, id, cmd, ok := readEnvelope(ent.GetData())
			if !ok {
				panic(fmt.Sprintf("multiraft: group %d: entry %d has no envelope", g.id, idx))
			}
			res := g.sm.Apply(ac, Entry{Index: idx, Term: ent.GetTerm(), Cmd: cmd})
			if origin == r.e.origin {
				if f, ok := g.pending[id]; ok {
					delete(g.pending, id)
					r.results = append(r.results, applied{fut: f, result: res})
				}
			}
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			r.applyConfChange(g, ent)
			ac.Membership = g.st.applied.members
		}
		g.st.applied.index, g.st.applied.term = idx, ent.GetTerm()
	}
	if f, ok := g.sm.(ApplyFinisher); ok {
		f.FinishApply(ac)
	}
	writeAppliedState(b, g.id, &g.st.applied)
	r.e.metrics.EntriesApplied.Add(uint64(len(ents)))
}

// advance tells raft the round is done and answers what waited on it.
func (r *round) advance() {
	for i, g := range r.groups {
		rd := &r.readies[i]
		g.rn.Advance(*rd)
		if r.steppedDown[i] {
			g.steppedDown()
		}
		for _, rs := range rd.ReadStates {
			g.readStateReady(r.e, rs)
		}
		g.resolveReads()
		r.readies[i] = raft.Ready{}
	}
}
