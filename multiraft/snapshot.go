package multiraft

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Snapshots travel outside the Raft message stream. When raft wants to
// send one, the round takes a Pebble snapshot at once (the applied index
// cannot move before the round's apply step) and hands the transport an
// OutgoingSnapshot that streams the state machine's image from it. The
// receiver reads the whole body, validates it by restoring it into a
// staging batch on the group's worker, and only then steps the MsgSnap;
// when raft hands the snapshot back in a Ready, the staged batch is
// committed with the new Raft state in one synced write.

// sendSnapshot hands an outgoing MsgSnap to the transport. Worker-owned.
// The snapshot's span, if its state machine has one, follows the
// membership in the MsgSnap's Data, so a receiver can refuse a snapshot
// that would overlap another of its groups before the body travels (see
// PrecheckSnapshot).
func (r *round) sendSnapshot(g *group, m Message) {
	if sp, ok := g.sm.(Spanner); ok {
		if start, end, ok := sp.Span(); ok && m.Msg.GetSnapshot() != nil {
			m.Msg.Snapshot.Data = appendSpan(m.Msg.Snapshot.Data, start, end)
		}
	}
	ps := r.e.db.NewSnapshot()
	sm := g.sm
	r.e.metrics.SnapshotsSent.Add(1)
	r.e.cfg.Transport.SendSnapshot(&OutgoingSnapshot{
		Message: m,
		write:   func(_ context.Context, w io.Writer) error { return sm.Snapshot(ps, w) },
		close:   func() { _ = ps.Close() },
	})
}

// ReportSnapshot tells the leader how sending a snapshot ended; err nil
// means the receiver accepted it. The transport calls it once per
// OutgoingSnapshot.
func (e *Engine) ReportSnapshot(m Message, err error) {
	status := raft.SnapshotFinish
	if err != nil {
		status = raft.SnapshotFailure
	}
	if g := e.lookup(m.Group); g != nil {
		to := m.Msg.GetTo()
		g.postOp(func(g *group) { g.rn.ReportSnapshot(to, status) }, nil)
		e.sched.enqueue(g)
	}
}

// MaxSnapshotBytes bounds the body of an incoming snapshot held in memory.
const MaxSnapshotBytes = 512 << 20

// ReceiveSnapshot accepts a snapshot streamed from a leader: m is its
// MsgSnap and body the state machine's image. It returns once the snapshot
// was validated and handed to raft, or refused (ErrSnapshotRejected,
// ErrGroupNotFound).
func (e *Engine) ReceiveSnapshot(ctx context.Context, m Message, body io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(body, MaxSnapshotBytes+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %w", ErrSnapshotRejected, err)
	}
	if len(data) > MaxSnapshotBytes {
		return fmt.Errorf("%w: body exceeds %d bytes", ErrSnapshotRejected, MaxSnapshotBytes)
	}
	_, err = e.ReceiveSnapshotFuture(m, data).Wait(ctx)
	return err
}

// ReceiveSnapshotFuture is ReceiveSnapshot with the body already read, without
// waiting. The engine owns data after the call. A snapshot for a group
// this node does not host creates an empty replica to receive it, unless
// that replica was removed here (see create.go).
func (e *Engine) ReceiveSnapshotFuture(m Message, data []byte) *Future {
	if m.Msg.GetType() != raftpb.MsgSnap || m.Msg.GetSnapshot() == nil {
		return failedFuture(fmt.Errorf("%w: not a MsgSnap", ErrSnapshotRejected))
	}
	if e.lookup(m.Group) == nil {
		if _, tombstoned := e.createForMessage(&m); tombstoned {
			e.metrics.SnapshotsRejected.Add(1)
			return failedFuture(fmt.Errorf("%w: replica %d of group %d was removed from this node", ErrSnapshotRejected, m.Msg.GetTo(), m.Group))
		}
	}
	return e.groupOp(m.Group, true, func(g *group, f *Future) {
		if to := m.Msg.GetTo(); to != uint64(g.replica) {
			if g.supersededBy(m.Msg) {
				g.superseded = true // destroyed after the round; the next snapshot creates the new one
			}
			e.metrics.SnapshotsRejected.Add(1)
			f.resolve(nil, fmt.Errorf("%w: addressed to replica %d of group %d, this node hosts replica %d", ErrSnapshotRejected, to, g.id, g.replica))
			return
		}
		g.learn(&m)
		err := g.stageSnapshot(e, m.Msg, data)
		if err != nil {
			e.metrics.SnapshotsRejected.Add(1)
		}
		f.resolve(nil, err)
	})
}

// PrecheckSnapshot tells a transport, before it reads the body of the
// snapshot m, whether the engine would refuse it anyway: it is addressed
// to a replica removed from this node, or its span (when the sender's
// state machine is a Spanner) overlaps another group of this node. It
// returns nil or an error wrapping ErrSnapshotRejected. The answer is
// advisory (the engine checks again, authoritatively, when it receives
// the snapshot); it only spares transferring a body in vain. Safe for
// concurrent use.
func (e *Engine) PrecheckSnapshot(m Message) error {
	to := ReplicaID(m.Msg.GetTo())
	if err := e.checkTombstone(m.Group, to); err != nil {
		return fmt.Errorf("%w: %w", ErrSnapshotRejected, err)
	}
	_, rest, err := decodeMembership(m.Msg.GetSnapshot().GetData())
	if err != nil {
		return nil // the engine refuses it with the reason
	}
	start, end, ok := decodeSpan(rest)
	if !ok {
		return nil
	}
	g := e.lookup(m.Group)
	if o := e.spanConflict(g, start, end); o != 0 {
		e.metrics.SnapshotsOverlapping.Add(1)
		return fmt.Errorf("%w: %s", ErrSnapshotRejected, overlapReason(m.Group, o))
	}
	return nil
}

// overlapReason explains the refusal of a snapshot of group that overlaps
// group other on this node.
func overlapReason(group, other GroupID) string {
	return fmt.Sprintf("the snapshot of group %d overlaps group %d on this node; it waits until group %d moves out of the range (applies its split, or is removed)",
		group, other, other)
}

// stageSnapshot validates an incoming snapshot by restoring it into a
// batch of its own, keeps the batch, and steps the MsgSnap. Worker-owned.
func (g *group) stageSnapshot(e *Engine, msg *raftpb.Message, data []byte) error {
	meta := msg.GetSnapshot().GetMetadata()
	members, _, err := decodeMembership(msg.GetSnapshot().GetData())
	if err != nil {
		return fmt.Errorf("%w: membership: %w", ErrSnapshotRejected, err)
	}
	b := e.db.NewBatch()
	if err := g.sm.Restore(b, bytes.NewReader(data)); err != nil {
		_ = b.Close()
		return fmt.Errorf("%w: %w", ErrSnapshotRejected, err)
	}
	if meta.GetIndex() <= g.st.applied.index {
		// Nothing to restore, but raft must still see the (valid)
		// message: it answers a snapshot at or below its commit index with
		// its commit index, which is how a leader that lost track of this
		// replica (an acknowledgement dropped, its log truncated past our
		// match) learns where we are and goes back to appending. Refusing
		// it here instead kept the leader sending the same snapshot
		// forever, and a group that needed this replica for its quorum
		// stalled (found by the simulator; see snapshot_stale_test.go).
		_ = b.Close()
		if err := g.rn.Step(msg); err != nil {
			return fmt.Errorf("%w: %w", ErrSnapshotRejected, err)
		}
		return nil
	}
	// Installing it changes the node's layout: the span check and the
	// install (this round's persist) happen under the layout lock.
	g.round.lockLayout()
	if sp, ok := g.sm.(Spanner); ok {
		start, end, err := sp.SnapshotSpan(data)
		if err != nil {
			_ = b.Close()
			return fmt.Errorf("%w: %w", ErrSnapshotRejected, err)
		}
		if o := e.spanConflict(g, start, end); o != 0 {
			_ = b.Close()
			e.metrics.SnapshotsOverlapping.Add(1)
			return fmt.Errorf("%w: %s", ErrSnapshotRejected, overlapReason(g.id, o))
		}
	}
	if g.snap != nil {
		_ = g.snap.batch.Close()
	}
	g.snap = &incomingSnapshot{index: meta.GetIndex(), batch: b, members: members}
	if err := g.rn.Step(msg); err != nil {
		return fmt.Errorf("%w: %w", ErrSnapshotRejected, err)
	}
	return nil
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
