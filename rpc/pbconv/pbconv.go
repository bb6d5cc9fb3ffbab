// Package pbconv converts between Flotilla's own types (shard descriptors
// and epochs, engine replicas and read modes) and the wire messages of
// rpc/flotillapb. It sits between the state machine and the services: rpc,
// placement and the simulator use it, so placement needs nothing of the rpc
// servers. The conversions copy nothing they need not: byte slices are
// shared with the message they came from or go into.
package pbconv

import (
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// DescriptorToProto converts a descriptor for the wire.
func DescriptorToProto(d shard.Descriptor) *pb.Descriptor {
	out := &pb.Descriptor{
		ShardId: uint64(d.ShardID), Start: d.Start, End: d.End,
		Epoch: &pb.Epoch{ConfVer: d.Epoch.ConfVer, Version: d.Epoch.Version},
	}
	if len(d.Replicas) > 0 {
		out.Replicas = make([]*pb.Replica, len(d.Replicas))
		for i, r := range d.Replicas {
			out.Replicas[i] = &pb.Replica{ReplicaId: uint64(r.ReplicaID), NodeId: uint64(r.NodeID), Learner: r.Learner}
		}
	}
	return out
}

// DescriptorFromProto converts a descriptor from the wire. It does not
// validate it (shard.Descriptor.Validate does); nil is the zero descriptor.
func DescriptorFromProto(p *pb.Descriptor) shard.Descriptor {
	d := shard.Descriptor{
		ShardID: shard.ShardID(p.GetShardId()), Start: p.GetStart(), End: p.GetEnd(),
		Epoch: EpochFromProto(p.GetEpoch()),
	}
	if rs := p.GetReplicas(); len(rs) > 0 {
		d.Replicas = make([]multiraft.Replica, len(rs))
		for i, r := range rs {
			d.Replicas[i] = ReplicaFromProto(r)
		}
	}
	return d
}

// ReplicaFromProto converts a replica from the wire; nil is the zero
// replica.
func ReplicaFromProto(r *pb.Replica) multiraft.Replica {
	return multiraft.Replica{ReplicaID: multiraft.ReplicaID(r.GetReplicaId()), NodeID: multiraft.NodeID(r.GetNodeId()), Learner: r.GetLearner()}
}

// EpochFromProto converts an epoch from the wire; nil is the zero epoch.
func EpochFromProto(e *pb.Epoch) shard.Epoch {
	return shard.Epoch{ConfVer: e.GetConfVer(), Version: e.GetVersion()}
}

// ReadModeFromProto converts a read consistency from the wire (its zero
// value is linearizable); ok is false for a value this version does not
// know.
func ReadModeFromProto(c pb.ReadConsistency) (mode multiraft.ReadMode, ok bool) {
	switch c {
	case pb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE:
		return multiraft.ReadLinearizable, true
	case pb.ReadConsistency_READ_CONSISTENCY_LEASE:
		return multiraft.ReadLease, true
	case pb.ReadConsistency_READ_CONSISTENCY_STALE:
		return multiraft.ReadStale, true
	}
	return 0, false
}
