package multiraft

import (
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// Entry is a committed command handed to a StateMachine.
type Entry struct {
	Index uint64
	Term  uint64
	// Cmd is the command exactly as it was passed to Propose. It aliases
	// engine memory and is valid only during the Apply call.
	Cmd []byte
}

// A StateMachine is the replicated state of one group on one node, applied
// by the engine in log order. The engine calls its methods only from the
// worker that owns the group, never concurrently for one group; different
// groups' state machines are called concurrently.
//
// Every write the state machine makes goes into the batch of the
// ApplyContext, which the engine commits together with the group's applied
// index, so a crash never separates the two.
type StateMachine interface {
	// Apply applies one committed command and returns the result delivered
	// to the proposer's future. Apply must be deterministic: every replica
	// computes the same writes and result from the same state and command.
	// An error in the result is an ordinary outcome of the command (say, a
	// failed compare-and-swap), not a failure of the engine; state that
	// cannot be applied is a bug and must panic. A read of Pebble that
	// fails (an I/O error) must panic with an error wrapping
	// ErrDiskFailure: the engine then fail-stops as after a failed write,
	// and the half-applied batch is never committed.
	Apply(ac *ApplyContext, e Entry) any

	// ApplyMembership records a change of the group's membership, applied
	// at index. Called after the engine updated its own copy.
	ApplyMembership(ac *ApplyContext, index uint64, m Membership)

	// Snapshot writes a consistent image of the state machine, read from r
	// (a Pebble snapshot taken at the applied index), to w. It runs on a
	// goroutine of the sender, not on a worker, and must not touch mutable
	// in-memory state without its own synchronisation.
	Snapshot(r pebble.Reader, w io.Writer) error

	// Restore replaces the whole state of the state machine with the image
	// read from r, writing into b. It returns an error, and must leave b
	// unusable only by returning, if the image is corrupt or truncated; the
	// engine then refuses the snapshot. After a successful Restore the
	// engine reloads the state machine with NewStateMachine.
	Restore(b *pebble.Batch, r io.Reader) error

	// Destroy writes into b the deletion of everything the state machine
	// keeps in Pebble. Called when the group is removed from this node.
	Destroy(b *pebble.Batch)
}

// Committer is a StateMachine that wants to know when what it applied is
// committed to Pebble. Committed is called on the worker that applied,
// once per round in which the group applied entries, after the round's
// batch was committed and before the applied index is published (so
// before any read waiting for it proceeds, and before any proposer learns
// the outcome). A state machine publishes there what readers of Pebble
// may rely on, such as the newest revision the data holds.
type Committer interface {
	Committed()
}

// ApplyFinisher is a StateMachine that wants to know when the entries a
// round applies for its group are done. FinishApply is called on the
// worker that applied, once per round in which the group applied entries,
// right after its last Apply (or ApplyMembership) of the round and before
// the round's batch is committed, with the same ApplyContext: what it
// writes into ac.Batch commits with the entries. A state machine writes
// there what it would otherwise write for every command (say, a record of
// the newest revision), and releases what it kept open while applying.
type ApplyFinisher interface {
	FinishApply(ac *ApplyContext)
}

// NewStateMachineFunc builds the state machine of a group on this node,
// loading whatever it keeps in memory from r. It is called when the engine
// opens, creates or restores the group.
type NewStateMachineFunc func(group GroupID, replica ReplicaID, r pebble.Reader) (StateMachine, error)

// ApplyContext is what a state machine may use while applying. It is valid
// only during the call it is passed to.
type ApplyContext struct {
	// Batch receives every write of the state machine. It is committed by
	// the engine without sync together with the applied index.
	Batch *pebble.Batch
	// Group and Replica identify the applying replica.
	Group   GroupID
	Replica ReplicaID
	// Membership is the group's current membership. Read only.
	Membership Membership

	e       *Engine
	r       *round
	leading bool // the applying replica leads its group
	creates []groupCreate
}

type groupCreate struct {
	group   GroupID
	replica ReplicaID
	members Membership
	// campaign: the parent's leader is here, so the new group elects this
	// replica at once instead of waiting out an election timeout.
	campaign bool
	// existing: the replica exists, created empty by a message of the new
	// group; the split initialises it (see createForSplit).
	existing bool
}

// CreateGroup creates this node's replica of a new group as part of the
// current batch: its Raft state is initialised at the same index on every
// replica that applies the command, so all of them start identical. It is
// how a split creates the right-hand shard. replica is this node's member
// of the new group.
//
// It returns true when the state machine must write whatever state the
// new group's state machine loads into ac.Batch before returning from
// Apply. It returns false when this node must not host that replica: it
// was removed here already (see Engine.Tombstone), or the node hosts
// another replica of the group, created empty by a message of the new
// group's leader, that will get a snapshot. The state machine then
// creates nothing for the new group, and whatever data of the new group's
// range this node holds belongs to no replica.
//
// An empty replica with the same replica ID, created by a message before
// the split applied here, is initialised from the split (keeping its vote)
// instead of created. See layout.go.
func (ac *ApplyContext) CreateGroup(group GroupID, replica ReplicaID, members Membership) bool {
	return ac.createForSplit(group, replica, members)
}
