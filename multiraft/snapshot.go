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
func (r *round) sendSnapshot(g *group, m Message) {
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
// waiting. The engine owns data after the call.
func (e *Engine) ReceiveSnapshotFuture(m Message, data []byte) *Future {
	if m.Msg.GetType() != raftpb.MsgSnap || m.Msg.GetSnapshot() == nil {
		return failedFuture(fmt.Errorf("%w: not a MsgSnap", ErrSnapshotRejected))
	}
	return e.groupOp(m.Group, true, func(g *group, f *Future) {
		g.learn(&m)
		err := g.stageSnapshot(e, m.Msg, data)
		if err != nil {
			e.metrics.SnapshotsRejected.Add(1)
		}
		f.resolve(nil, err)
	})
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
		// stalled (found by the simulator, seed 540).
		_ = b.Close()
		if err := g.rn.Step(msg); err != nil {
			return fmt.Errorf("%w: %w", ErrSnapshotRejected, err)
		}
		return nil
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
