package multiraft

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// CreateGroup bootstraps this node's replica of a new group whose initial
// members are m. Every replica in m must be created the same way (with the
// same m); they then start from identical state and elect a leader among
// themselves. init writes the state machine's initial state into the same
// batch; it may be nil. It runs under the layout lock (see layout.go), so
// it may check the new state against the other groups of the node. The
// state is synced before CreateGroup returns. Errors: ErrGroupExists,
// ErrReplicaRemoved, ErrStopped, init's error.
func (e *Engine) CreateGroup(id GroupID, replica ReplicaID, m Membership, init func(b *pebble.Batch) error) error {
	if e.stopped.Load() {
		return ErrStopped
	}
	// Shared: bootstraps of many groups commit (and sync) together, while
	// no span changes under them (see layout.go).
	e.layoutMu.RLock()
	defer e.layoutMu.RUnlock()
	if err := e.reserveCreate(id, replica); err != nil {
		return err
	}
	registered := false
	defer func() {
		if !registered {
			e.createMu.Lock()
			delete(e.creating, id)
			e.createMu.Unlock()
		}
	}()
	self, ok := m.Lookup(replica)
	if !ok || self.NodeID != e.cfg.NodeID {
		return fmt.Errorf("multiraft: create group %d: replica %d on node %d is not among the members %v", id, replica, e.cfg.NodeID, m.Replicas)
	}
	if m.Joint {
		return fmt.Errorf("multiraft: create group %d: initial membership cannot be joint", id)
	}
	b := e.db.NewBatch()
	defer b.Close()
	e.writeInitialState(b, id, replica, m)
	if init != nil {
		if err := init(b); err != nil {
			return err
		}
	}
	if err := e.commit(b, pebble.Sync); err != nil {
		return err
	}
	e.createMu.Lock()
	defer e.createMu.Unlock()
	_, err := e.registerGroupLocked(id, replica, true /* publish */, 0)
	delete(e.creating, id)
	registered = true
	return err
}

// reserveCreate checks that replica of group may be created here and
// marks the group as being created, so that neither a message nor another
// creation creates it before the creator registers it (and clears the
// mark).
func (e *Engine) reserveCreate(id GroupID, replica ReplicaID) error {
	e.createMu.Lock()
	defer e.createMu.Unlock()
	if e.lookup(id) != nil || e.creating[id] {
		return fmt.Errorf("%w: %d", ErrGroupExists, id)
	}
	if err := e.checkTombstone(id, replica); err != nil {
		return err
	}
	e.creating[id] = true
	return nil
}

// writeInitialState writes into b the state every replica of a new group
// starts from: an empty log truncated at initialIndex, committed there, with
// m as the configuration.
func (e *Engine) writeInitialState(b *pebble.Batch, group GroupID, replica ReplicaID, m Membership) {
	hs, err := proto.Marshal(&raftpb.HardState{Term: proto.Uint64(initialTerm), Commit: proto.Uint64(initialIndex)})
	if err != nil {
		panic(err)
	}
	_ = b.Set(keys.RaftKey(uint64(group), keys.RaftHardState), hs, nil)
	e.writeInitialLog(b, group, replica, m)
}

// writeInitialLog writes into b the part of a new group's initial state
// besides its hard state: the replica ID, the empty log truncated at
// initialIndex, and the applied state there with m as the configuration.
func (e *Engine) writeInitialLog(b *pebble.Batch, group GroupID, replica ReplicaID, m Membership) {
	g := uint64(group)
	_ = b.Set(keys.RaftKey(g, keys.RaftReplicaID), binary.LittleEndian.AppendUint64(nil, uint64(replica)), nil)
	_ = b.Set(keys.RaftKey(g, keys.RaftTruncated), encodeTruncated(initialIndex, initialTerm), nil)
	writeAppliedState(b, group, &appliedState{
		index: initialIndex, term: initialTerm, confState: confStateFromMembership(m), members: m.Clone(),
	})
}

// JoinGroup creates an empty replica of an existing group on this node. It
// takes no part in the group until the leader, once the replica was added
// to the membership (ChangeReplicas), sends it a snapshot. (The leader's
// first message would create it too; see create.go.) Errors:
// ErrGroupExists (the node hosts a replica of the group, this one or
// another), ErrReplicaRemoved, ErrStopped.
func (e *Engine) JoinGroup(id GroupID, replica ReplicaID) error {
	if e.stopped.Load() {
		return ErrStopped
	}
	e.createMu.Lock()
	defer e.createMu.Unlock()
	if g := e.lookup(id); g != nil {
		return fmt.Errorf("%w: %d (replica %d)", ErrGroupExists, id, g.replica)
	}
	if e.creating[id] {
		return fmt.Errorf("%w: %d (being created)", ErrGroupExists, id)
	}
	if err := e.checkTombstone(id, replica); err != nil {
		return err
	}
	b := e.db.NewBatch()
	defer b.Close()
	_ = b.Set(keys.RaftKey(uint64(id), keys.RaftReplicaID), binary.LittleEndian.AppendUint64(nil, uint64(replica)), nil)
	if err := e.commit(b, pebble.Sync); err != nil {
		return err
	}
	_, err := e.registerGroupLocked(id, replica, true /* publish */, 0)
	return err
}

// RemoveGroup deletes this node's replica of group and all its data,
// leaving a tombstone so that the replica is never created here again
// (see Engine.Tombstone). Call it once the replica is no longer a member
// (a replica that applies its own removal deletes itself). Pending
// requests fail with ErrGroupRemoved.
func (e *Engine) RemoveGroup(ctx context.Context, group GroupID) error {
	_, err := e.RemoveGroupFuture(group).Wait(ctx)
	return err
}

// RemoveGroupFuture is RemoveGroup without waiting.
func (e *Engine) RemoveGroupFuture(id GroupID) *Future {
	return e.groupOp(id, false, func(g *group, f *Future) {
		g.round.destroyGroup(g)
		f.resolve(nil, nil)
	})
}

// RemoveReplica is RemoveGroup for a replica known by its ID, as a
// garbage collector that looked at it before deciding uses it: it fails
// with ErrReplicaChanged, removing nothing, if the node hosts another
// replica of group by then, or, with emptyOnly, if the replica is no
// longer empty (a snapshot filled it). Errors also: ErrGroupNotFound,
// ErrStopped, ctx errors.
func (e *Engine) RemoveReplica(ctx context.Context, id GroupID, replica ReplicaID, emptyOnly bool) error {
	_, err := e.RemoveReplicaFuture(id, replica, emptyOnly).Wait(ctx)
	return err
}

// RemoveReplicaFuture is RemoveReplica without waiting.
func (e *Engine) RemoveReplicaFuture(id GroupID, replica ReplicaID, emptyOnly bool) *Future {
	return e.groupOp(id, false, func(g *group, f *Future) {
		switch {
		case g.replica != replica:
			f.resolve(nil, fmt.Errorf("%w: group %d is replica %d here, not %d", ErrReplicaChanged, id, g.replica, replica))
		case emptyOnly && g.initialized():
			f.resolve(nil, fmt.Errorf("%w: replica %d of group %d is initialised", ErrReplicaChanged, replica, id))
		default:
			g.round.destroyGroup(g)
			f.resolve(nil, nil)
		}
	})
}

// destroyGroup deletes g's state, leaves its tombstone and forgets it.
// Worker-owned; it takes the layout lock (the state machine's data goes).
func (r *round) destroyGroup(g *group) {
	e := r.e
	r.lockLayout()
	g.removed.Store(true)
	b := e.db.NewBatch()
	defer b.Close()
	lo, hi := keys.RaftPrefix(uint64(g.id))
	_ = b.DeleteRange(lo, hi, nil)
	tomb := max(g.replica, e.Tombstone(g.id))
	writeTombstone(b, g.id, tomb)
	g.sm.Destroy(b)
	if err := e.commit(b, pebble.Sync); err != nil {
		return // fail-stop (see diskfailure.go); Close fails what is pending
	}
	if g.snap != nil {
		_ = g.snap.batch.Close()
		g.snap = nil
	}
	e.mu.Lock()
	e.mu.tombstones[g.id] = tomb
	if e.mu.groups[g.id] == g {
		delete(e.mu.groups, g.id)
		e.publishListLocked()
	}
	e.mu.Unlock()
	g.failAll(ErrGroupRemoved)
}

// groupOp runs op on g's worker. With wake, a quiesced group resumes
