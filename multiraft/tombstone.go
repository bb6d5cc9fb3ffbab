package multiraft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// Tombstones
//
// A replica destroyed on this node must never come back under its replica
// ID. Its state went with it, its vote included: a replica recreated empty
// under the same ID could vote a second time in a term it already voted
// in, or acknowledge again entries it had lost, and Raft would count it
// twice. Replica IDs are never reused, so a group that wants a replica on
// this node again adds one with a new, higher ID.
//
// So destroying a replica leaves a tombstone: the highest replica ID of
// the group ever destroyed here, written in the same synced batch that
// deletes the replica's state (keys.RaftTombstone, among the group's
// raft-local keys but outside what the deletion removes) and kept in
// memory. A message, snapshot, JoinGroup, CreateGroup or split for a
// replica ID at or below the tombstone creates nothing; a higher ID is a
// new incarnation of the group on this node and may be created. Tombstones
// are small (one key per group ever removed here) and never deleted.

// Tombstone returns the highest replica ID of group that was removed from
// this node, or 0 if none was. Safe for concurrent use.
func (e *Engine) Tombstone(id GroupID) ReplicaID {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.mu.tombstones[id]
}

// checkTombstoneLocked returns ErrReplicaRemoved if replica of group was
// removed from this node. e.mu is held.
func (e *Engine) checkTombstoneLocked(id GroupID, replica ReplicaID) error {
	if t := e.mu.tombstones[id]; replica <= t {
		return fmt.Errorf("%w: replica %d of group %d (replicas up to %d were removed here)", ErrReplicaRemoved, replica, id, t)
	}
	return nil
}

// checkTombstone is checkTombstoneLocked for callers without e.mu.
func (e *Engine) checkTombstone(id GroupID, replica ReplicaID) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.checkTombstoneLocked(id, replica)
}

// writeTombstone writes into b the tombstone of a destroyed replica. It
// must follow the deletion of the group's raft-local keys in b, which
// would otherwise delete it too.
func writeTombstone(b *pebble.Batch, id GroupID, replica ReplicaID) {
	_ = b.Set(keys.RaftKey(uint64(id), keys.RaftTombstone), binary.LittleEndian.AppendUint64(nil, uint64(replica)), nil)
}

// loadTombstone reads group's tombstone from db: 0 if it has none.
func loadTombstone(db pebble.Reader, id GroupID) (ReplicaID, error) {
	v, closer, err := db.Get(keys.RaftKey(uint64(id), keys.RaftTombstone))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("multiraft: group %d: %w: tombstone", id, errCorruptState)
	}
	return ReplicaID(binary.LittleEndian.Uint64(v)), nil
}
