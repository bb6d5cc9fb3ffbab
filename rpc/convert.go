package rpc

import (
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// Conversions between the wire types and the shard and engine types. They
// copy nothing they need not: byte slices are shared.

// DescriptorToProto converts a descriptor for the wire.
func DescriptorToProto(d shard.Descriptor) *pb.Descriptor {
	out := &pb.Descriptor{
		ShardId: uint64(d.ShardID), Start: d.Start, End: d.End,
		Epoch: &pb.Epoch{ConfVer: d.Epoch.ConfVer, Version: d.Epoch.Version},
	}
	for _, r := range d.Replicas {
		out.Replicas = append(out.Replicas, &pb.Replica{ReplicaId: uint64(r.ReplicaID), NodeId: uint64(r.NodeID), Learner: r.Learner})
	}
	return out
}

// DescriptorFromProto converts a descriptor from the wire. It does not
// validate it (shard.Descriptor.Validate does).
func DescriptorFromProto(p *pb.Descriptor) shard.Descriptor {
	d := shard.Descriptor{
		ShardID: shard.ShardID(p.GetShardId()), Start: p.GetStart(), End: p.GetEnd(),
		Epoch: EpochFromProto(p.GetEpoch()),
	}
	for _, r := range p.GetReplicas() {
		d.Replicas = append(d.Replicas, ReplicaFromProto(r))
	}
	return d
}

// ReplicaFromProto converts a replica from the wire.
func ReplicaFromProto(r *pb.Replica) multiraft.Replica {
	return multiraft.Replica{ReplicaID: multiraft.ReplicaID(r.GetReplicaId()), NodeID: multiraft.NodeID(r.GetNodeId()), Learner: r.GetLearner()}
}

// EpochFromProto converts an epoch from the wire; nil is the zero epoch.
func EpochFromProto(e *pb.Epoch) shard.Epoch {
	return shard.Epoch{ConfVer: e.GetConfVer(), Version: e.GetVersion()}
}

// ReadModeFromProto converts a read consistency from the wire.
func ReadModeFromProto(c pb.ReadConsistency) (multiraft.ReadMode, bool) {
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
