package multiraft

import (
	"encoding/binary"
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
	down    []bool // the group's replica stopped being leader in this round
	early   []Message
	late    []Message
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
	r.groups, r.readies, r.down = r.groups[:0], r.readies[:0], r.down[:0]
	defer r.unlockLayout()
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
	}
	// Leader pokes (see pokeLeader) of a round in which no group had a
	// Ready to persist.
	r.flush(&r.early)
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
	if rd.HardState != nil {
		g.term.Store(rd.HardState.GetTerm())
	}
	r.readies = append(r.readies, rd)
	r.down = append(r.down, down)
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
	r.flush(&r.early)
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
	r.flush(&r.late)
	return true
}

// abandon drops what is left of a round after a disk failure: the
// durability-promising messages are not sent and the Readies are not
// advanced; the engine is stopping.
func (r *round) abandon() {
	r.late = nil
	clear(r.commits)
	r.commits, r.announce = r.commits[:0], false
	for i := range r.readies {
		r.readies[i] = raft.Ready{}
	}
}

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
			r.late = append(r.late, out)
		case raftpb.MsgAppResp, raftpb.MsgPreVoteResp:
			r.late = append(r.late, out)
		case raftpb.MsgApp:
			if len(m.GetEntries()) == 0 && r.caughtUp(g, m) {
				r.commits = append(r.commits, out)
			} else {
				r.early = append(r.early, out)
			}
		case raftpb.MsgTimeoutNow:
			// This leader hands over: it must not serve lease reads for the
			// rest of its term, since the transferee campaigns without
			// waiting for the lease to expire.
			g.noLeaseTerm = g.term.Load()
			g.leaseUntil, g.leaseUntilTime = 0, time.Time{}
			r.early = append(r.early, out)
		default:
			r.early = append(r.early, out)
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
		_, err := r.e.registerGroupLocked(c.group, c.replica, true /* publish */)
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
	writeAppliedState(b, g.id, &g.st.applied)
	r.e.metrics.EntriesApplied.Add(uint64(len(ents)))
}

func (r *round) applyConfChange(g *group, ent *raftpb.Entry) {
	var cc raftpb.ConfChangeI
	if ent.GetType() == raftpb.EntryConfChange {
		var c raftpb.ConfChange
		if err := proto.Unmarshal(ent.GetData(), &c); err != nil {
			panic(fmt.Sprintf("multiraft: group %d: decoding conf change %d: %v", g.id, ent.GetIndex(), err))
		}
		cc = &c
	} else {
		var c raftpb.ConfChangeV2
		if err := proto.Unmarshal(ent.GetData(), &c); err != nil {
			panic(fmt.Sprintf("multiraft: group %d: decoding conf change %d: %v", g.id, ent.GetIndex(), err))
		}
		cc = &c
	}
	v2 := cc.AsV2()
	nodes := make(map[ReplicaID]NodeID, len(g.st.applied.members.Replicas)+len(v2.GetChanges()))
	for _, rep := range g.st.applied.members.Replicas {
		nodes[rep.ReplicaID] = rep.NodeID
	}
	origin, id, rest, hasEnvelope := readEnvelope(v2.GetContext())
	if hasEnvelope {
		added, _, err := decodeMembership(rest)
		if err != nil {
			panic(fmt.Sprintf("multiraft: group %d: conf change %d context: %v", g.id, ent.GetIndex(), err))
		}
		for _, rep := range added.Replicas {
			nodes[rep.ReplicaID] = rep.NodeID
		}
	}
	cs := g.rn.ApplyConfChange(cc)
	g.st.applied.confState = cs
	g.st.applied.members = membershipFromConfState(cs, nodes)
	g.sm.ApplyMembership(&r.ac, ent.GetIndex(), g.st.applied.members)
	if hasEnvelope && origin == r.e.origin && g.confFuture != nil && g.confID == id {
		r.results = append(r.results, applied{fut: g.confFuture})
		g.confFuture = nil
	}
	if _, ok := g.st.applied.members.Lookup(g.replica); !ok {
		g.destroy = true
	}
	r.e.metrics.ConfChanges.Add(1)
	r.announce = true
}

// advance tells raft the round is done and answers what waited on it.
func (r *round) advance() {
	for i, g := range r.groups {
		rd := &r.readies[i]
		g.rn.Advance(*rd)
		if r.down[i] {
			g.steppedDown()
		}
		for _, rs := range rd.ReadStates {
			g.readStateReady(r.e, rs)
		}
		g.resolveReads()
		r.readies[i] = raft.Ready{}
	}
}

// snapshotApplied finishes adopting an incoming snapshot once its batch
// committed: the in-memory state follows and the state machine reloads.
func (r *round) snapshotApplied(g *group, meta *raftpb.SnapshotMetadata) {
	g.st.snapshotApplied(meta, g.snap.members)
	g.st.durableApplied = g.st.applied.index
	_ = g.snap.batch.Close()
	g.snap = nil
	sm, err := r.e.cfg.NewStateMachine(g.id, g.replica, r.e.db)
	if err != nil {
		panic(fmt.Sprintf("multiraft: group %d: reloading state machine after snapshot: %v", g.id, err))
	}
	g.setSM(sm)
	g.appliedIdx.Store(g.st.applied.index)
	g.leaderNode.Store(uint64(g.nodeOf(g.leader.Load())))
	r.e.metrics.SnapshotsApplied.Add(1)
}

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
		r.early = append(r.early, Message{Group: g.id, ToNode: rep.NodeID, FromNode: r.e.cfg.NodeID, Quiesce: true, Msg: &raftpb.Message{
			Type:   raftpb.MsgHeartbeat.Enum(),
			To:     proto.Uint64(uint64(rep.ReplicaID)),
			From:   proto.Uint64(uint64(g.replica)),
			Term:   proto.Uint64(term),
			Commit: proto.Uint64(st.lastIndex),
		}})
	}
	r.flush(&r.early)
	r.e.metrics.Quiesces.Add(1)
}

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
// that counted it could commit entries no quorum holds (simulator seed 141
// found this with the sender's commit index as the index).
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
		r.early = append(r.early, Message{Group: g.id, ToNode: node, FromNode: r.e.cfg.NodeID, Msg: &raftpb.Message{
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
}

func readCtx(id uint64) []byte { return binary.LittleEndian.AppendUint64(make([]byte, 0, 8), id) }

// caughtUp reports whether m, an append without entries from g's leader,
// goes to a follower that is replicating and has acknowledged every entry
// before it: one from which the append can only carry a commit index.
func (r *round) caughtUp(g *group, m *raftpb.Message) bool {
	r.probe.to, r.probe.index, r.probe.ok = m.GetTo(), m.GetIndex(), false
	g.rn.WithProgress(r.visit)
	return r.probe.ok
}

// splitVoteTicks is how long the lowest candidate of a split vote waits
// before it campaigns again: long enough for the other candidates' vote
// responses to land, far shorter than an election timeout.
const splitVoteTicks = 2

// sawSplitVote records a split vote: candidate g rejects the vote request of
// another candidate of the same term (each voted for itself).
//
// Raft ends a split vote only when a candidate's randomized election
// timeout expires, one to two election timeouts later. It happens when the
// survivors of a lost leader time out within a message's flight of each
// other; with two survivors of three neither can win, and the bench's
// failover runs saw writes to such a shard stop for 3 s instead of 1.7.
// So the candidate with the lowest replica ID among those it rejected
// campaigns again splitVoteTicks later; the others wait for their timers.
// A fresh pre-vote carries the next term, which the other candidates grant
// (a pre-vote for a higher term needs no free vote), and the vote that
// follows makes them followers. Starting an election is always safe in
// Raft, so this only changes who campaigns when.
func (r *round) sawSplitVote(g *group, m *raftpb.Message) {
	st := g.rn.BasicStatus()
	term := st.HardState.GetTerm()
	if st.RaftState != raft.StateCandidate || m.GetTerm() != term {
		return // not a split: the rejection came with a step down
	}
	if g.split.term != term {
		g.split = splitVote{term: term, ticks: splitVoteTicks}
	}
	if m.GetTo() < uint64(g.replica) {
		g.split.yield = true // a lower candidate campaigns again
	}
}

// breakSplit runs on every tick of g: once a split vote's ticks are up, a
// candidate that is still one in the split's term, and the lowest of it,
// campaigns again.
func (r *round) breakSplit(g *group) {
	if g.split.ticks == 0 {
		return
	}
	if g.split.ticks--; g.split.ticks > 0 {
		return
	}
	st := g.rn.BasicStatus()
	if !g.split.yield && st.RaftState == raft.StateCandidate && st.HardState.GetTerm() == g.split.term {
		r.e.metrics.SplitVotesBroken.Add(1)
		_ = g.rn.Campaign()
	}
	g.split = splitVote{}
}
