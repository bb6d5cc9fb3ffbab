package multiraft

import (
	"errors"
	"fmt"
)

// Errors returned by the engine. Test for them with errors.Is; a
// *NotLeaderError also matches ErrNotLeader.
var (
	// ErrGroupNotFound: no group with that ID is hosted on this node.
	ErrGroupNotFound = errors.New("multiraft: group not found")
	// ErrGroupExists: CreateGroup or JoinGroup of a group this node already hosts.
	ErrGroupExists = errors.New("multiraft: group already exists")
	// ErrReplicaRemoved: CreateGroup or JoinGroup of a replica that was
	// removed from this node before (see Tombstone). Replica IDs are never
	// reused: add a replica with a new ID instead.
	ErrReplicaRemoved = errors.New("multiraft: replica was removed from this node")
	// ErrReplicaChanged: RemoveReplica found another replica of the group
	// than the one to remove, or an initialised one where it expected an
	// empty one. Nothing was removed.
	ErrReplicaChanged = errors.New("multiraft: replica changed")
	// ErrNotLeader: the request needs the leader and this replica is not it.
	// The command was not applied.
	ErrNotLeader = errors.New("multiraft: not leader")
	// ErrProposalDropped: Raft refused the proposal (no leader, leadership
	// transfer in progress, too many uncommitted entries, a conf change
	// already pending). The command surely did not apply; retry.
	ErrProposalDropped = errors.New("multiraft: proposal dropped")
	// ErrAmbiguous: the command was appended to the log but this replica
	// lost leadership before learning whether it committed. It may or may
	// not apply; only an idempotent retry is safe.
	ErrAmbiguous = errors.New("multiraft: result ambiguous")
	// ErrStopped: the engine is closed.
	ErrStopped = errors.New("multiraft: engine stopped")
	// ErrGroupRemoved: the group was removed from this node while the
	// request was pending. Writes that were pending are ambiguous as well.
	ErrGroupRemoved = errors.New("multiraft: group removed")
	// ErrSnapshotRejected: an incoming snapshot was refused (corrupt,
	// truncated, stale, or for a group that is gone).
	ErrSnapshotRejected = errors.New("multiraft: snapshot rejected")
	// ErrInvalidConfChange: the requested membership change is not valid
	// for the group's current membership.
	ErrInvalidConfChange = errors.New("multiraft: invalid membership change")
	// ErrMembershipChanged: ChangeReplicasFrom found the group's applied
	// membership other than the one the change was decided from. Nothing
	// was proposed; decide again from the new membership.
	ErrMembershipChanged = errors.New("multiraft: membership changed since it was read")
)

// NotLeaderError is returned by requests that need the leader when this
// replica is not it. Leader and Node are zero when no leader is known.
type NotLeaderError struct {
	Group  GroupID
	Leader ReplicaID
	Node   NodeID
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return fmt.Sprintf("multiraft: not leader of group %d (leader unknown)", e.Group)
	}
	return fmt.Sprintf("multiraft: not leader of group %d (leader r%d on n%d)", e.Group, e.Leader, e.Node)
}

// Is makes errors.Is(err, ErrNotLeader) true for a *NotLeaderError.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
