package schedule

import (
	"errors"
	"fmt"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// Cluster is the input of one scheduling round: a snapshot of what the
// placement leader knows. Schedule reads it and never modifies or retains
// it; the caller may reuse it after Schedule returns. Nodes and Shards may
// come in any order (Schedule orders them by ID; passing them sorted by ID
// saves it a sort).
type Cluster struct {
	// Nodes are every registered node, including down and draining ones.
	Nodes []Node
	// Shards are every shard as its leader last reported it (the newest
	// epoch wins). A replica on a node that is not in Nodes is treated as
	// dead.
	Shards []Shard
	// InFlight are the operators the caller accepted from earlier rounds
	// and has not finished or abandoned yet, as Schedule returned them.
	// Their shards get no new operator, and their steps that are not yet
	// visible in Shards count against the per-node limits and in the
	// projected replica and leader counts. See doc.go, "Operators in flight".
	InFlight []Operator
	// Bootstrapped reports whether the initial shards were ever created.
	// The caller persists it (in the catalogue) when it accepts the
	// bootstrap operators, so that they are emitted once.
	Bootstrapped bool
	// Settings tune the checkers; the zero value means defaults.
	Settings Settings
}

// NodeState is a node's liveness and intent, as the caller judges it from
// heartbeats and drain requests. The values match flotilla.v1.NodeState.
type NodeState uint8

const (
	// NodeUp is a node that heartbeats and may receive replicas.
	NodeUp NodeState = iota
	// NodeDown is a node whose heartbeats stopped; Node.DownFor says since
	// when. Its replicas are replaced once DownFor exceeds
	// Settings.DownAfter. A draining node that stops heartbeating is Down.
	NodeDown
	// NodeDraining is a node being emptied: its leaderships and replicas
	// move away, and nothing new is placed on it.
	NodeDraining
)

// String returns "up", "down" or "draining".
func (s NodeState) String() string {
	switch s {
	case NodeUp:
		return "up"
	case NodeDown:
		return "down"
	case NodeDraining:
		return "draining"
	}
	return "unknown"
}

// Labels locate a node in the failure domains the scheduler spreads
// replicas over. The empty string is a zone (or rack) like any other.
type Labels struct {
	Zone string
	Rack string
}

// Node is one node as the placement leader sees it.
type Node struct {
	ID     multiraft.NodeID
	Labels Labels
	State  NodeState
	// DownFor is how long the node has been without a heartbeat, measured
	// by the caller (Schedule reads no clock). Meaningful when State is
	// NodeDown.
	DownFor time.Duration
	// CapacityBytes is how many bytes of user data the node may hold; 0 is
	// unknown/unlimited. When every up node has a capacity and one fills
	// Settings.CapacityTolerance of it, replicas are balanced by bytes
	// rather than by count.
	CapacityBytes int64
	// UsedBytes is the node's reported usage, used to keep replicas off
	// nodes above Settings.MaxFullness.
	UsedBytes int64
	// Load is requests per second over the last heartbeat interval; it
	// breaks ties between otherwise equal targets.
	Load float64
}

// Shard is one shard as its leader last reported it.
type Shard struct {
	Descriptor shard.Descriptor
	// Leader is the replica that leads, 0 if unknown. A leader on a node
	// that is down counts as unknown.
	Leader multiraft.ReplicaID
	// SizeBytes and Keys approximate the shard's user data. Keys == 1 means
	// the shard cannot be split; 0 means unknown.
	SizeBytes int64
	Keys      int64
	// Load is requests per second to the shard.
	Load float64
	// Lagging lists the replicas the leader considers not caught up; they
	// never receive a leadership.
	Lagging []multiraft.ReplicaID
	// Unsplittable: the shard's leader refused to split it (it holds
	// fewer than two keys: a shard's size counts every version of its
	// keys, so one key written often can make it large), and it has not
	// grown much since; it is not split.
	Unsplittable bool
}

// IDAllocator hands out IDs that were never used before, for new shards
// (bootstrap, split) and new replicas (add, split). The caller supplies it
// (the replicated catalogue allocates); Schedule calls it from the calling
// goroutine only, and only for operators it is about to return, in a
// deterministic order. It may block: a catalogue-backed allocator reserves
// IDs through Raft in blocks and hands them out locally, reserving another
// block when one runs out. It may fail (the catalogue cannot allocate, or
// the caller is stopping): Schedule then stops planning, calls it no more,
// and returns the error with no operator. IDs of operators the caller
// drops are simply never used.
type IDAllocator interface {
	NewShardID() (shard.ShardID, error)
	NewReplicaID() (multiraft.ReplicaID, error)
}

// ErrInvalidCluster is wrapped by the error Schedule returns when the
// Cluster is malformed: a zero or duplicate node or shard ID, or a
// descriptor that fails shard.Descriptor.Validate.
var ErrInvalidCluster = errors.New("schedule: invalid cluster")

// problems collects the problems of a malformed Cluster, keeping the first
// few.
type problems struct {
	errs []error
	more int
}

const maxProblems = 10

func (ps *problems) add(format string, args ...any) {
	if len(ps.errs) == maxProblems {
		ps.more++
		return
	}
	ps.errs = append(ps.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidCluster}, args...)...))
}

func (ps *problems) err() error {
	if ps.more > 0 {
		ps.errs = append(ps.errs, fmt.Errorf("%w: and %d more problems", ErrInvalidCluster, ps.more))
	}
	return errors.Join(ps.errs...)
}
