package router

import (
	"fmt"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Consistency is the consistency of a read (Get, Scan).
type Consistency int

const (
	// Linearizable reads are confirmed with a quorum (Raft ReadIndex) and
	// served by the leader: they see every write acknowledged before they
	// began. The default.
	Linearizable Consistency = iota
	// Lease reads are served by the leader under its lease, without a quorum
	// round: linearizable as long as clocks drift less than the lease
	// margin.
	Lease
	// Stale reads are served by any replica from what it has applied; they
	// may miss recent writes but spread load and survive the loss of the
	// leader.
	Stale
)

func (c Consistency) valid() bool { return c >= Linearizable && c <= Stale }

func (c Consistency) String() string {
	switch c {
	case Linearizable:
		return "linearizable"
	case Lease:
		return "lease"
	case Stale:
		return "stale"
	}
	return fmt.Sprintf("Consistency(%d)", int(c))
}

func (c Consistency) proto() pb.ReadConsistency {
	switch c {
	case Lease:
		return pb.ReadConsistency_READ_CONSISTENCY_LEASE
	case Stale:
		return pb.ReadConsistency_READ_CONSISTENCY_STALE
	}
	return pb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
}

// ReadOption adjusts one read (Get, Scan).
type ReadOption func(*readOptions)

type readOptions struct {
	consistency Consistency
}

// WithConsistency reads at consistency c instead of
// Config.ReadConsistency. An invalid c makes the read fail with an
// InvalidArgument status from the node.
func WithConsistency(c Consistency) ReadOption {
	return func(o *readOptions) { o.consistency = c }
}

// KeyValue is one pair returned by Scan. The caller owns both slices.
type KeyValue struct {
	Key   []byte
	Value []byte
}

// Op is one operation of a Batch: set Key to Value, or delete Key when
// Delete is set (Value is then ignored).
type Op struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// CASResult is the outcome of a CompareAndSwap that reached a decision.
type CASResult struct {
	// Swapped reports that the key held the expected value (or was absent,
	// with expectAbsent) and now holds the new one.
	Swapped bool
	// Found and Current describe the key when the comparison failed:
	// whether it existed, and its value. Unset when Swapped.
	Found   bool
	Current []byte
}
