package testutil

import pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"

// ShardDesc returns the descriptor of shard i (1-based) of n spread over
// the first byte of the key space, at epoch 1/1, with one replica on each
// of nodes (replica ID i*100+node). The caller owns the result.
func ShardDesc(i, n int, nodes []uint64) *pb.Descriptor {
	d := &pb.Descriptor{ShardId: uint64(i), Epoch: &pb.Epoch{ConfVer: 1, Version: 1}}
	if i > 1 {
		d.Start = []byte{byte((i - 1) * 256 / n)}
	}
	if i < n {
		d.End = []byte{byte(i * 256 / n)}
	}
	for _, node := range nodes {
		d.Replicas = append(d.Replicas, &pb.Replica{ReplicaId: uint64(i)*100 + node, NodeId: node})
	}
	return d
}
