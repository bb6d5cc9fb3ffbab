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

// KeyValue is a key as a read saw it (Scan, ScanAt, GetAt, GetMany,
// Watch). Revisions are timestamps of the fleet's oracle: CreateRevision
// is the revision of the write that created the key (its first put, or
// its first after a delete), ModRevision that of its last write, and
// Version counts its writes since its creation. For a Watch DELETE event
// only Key and ModRevision (the delete's revision) are set. The caller
// owns both slices.
type KeyValue struct {
	Key            []byte
	Value          []byte
	CreateRevision uint64
	ModRevision    uint64
	Version        uint64
	// Lease is the lease the key is attached to (0: none).
	Lease uint64
}

// kvFromProto converts a wire KeyValue; a nil value becomes empty (the
// key exists), so Value is nil only for a DELETE event's KV.
func kvFromProto(kv *pb.KeyValue) KeyValue {
	v := kv.GetValue()
	if v == nil {
		v = []byte{}
	}
	return KeyValue{Key: kv.GetKey(), Value: v, CreateRevision: kv.GetCreateRevision(), ModRevision: kv.GetModRevision(), Version: kv.GetVersion(), Lease: kv.GetLease()}
}

// GetResult is the outcome of GetAt and of each key of GetMany.
type GetResult struct {
	// KV is the key as read, when Found (KV.Key is always set).
	KV KeyValue
	// Found reports that the key existed at Revision.
	Found bool
	// Revision is the revision the read saw: the one asked for, or for a
	// read of the latest state the shard's resolved revision when it was
	// read (the read saw every write at or below it and none above).
	Revision uint64
}

// ScanResult is the outcome of ScanAt.
type ScanResult struct {
	// KVs are the pairs in key order.
	KVs []KeyValue
	// Revision is the one revision every page of the scan read at.
	Revision uint64
}

// WriteResult is the outcome of PutRev, DeleteRev and BatchRev.
type WriteResult struct {
	// Revision is the write's revision: the ModRevision of every key it
	// wrote, and the revision its Watch events carry. A delete of an
	// absent key writes nothing but is ordered at it too.
	Revision uint64
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
	// Revision is the revision the CAS was ordered at: the revision of
	// the new value when Swapped.
	Revision uint64
}
