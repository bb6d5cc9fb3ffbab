package pbconv

import (
	"reflect"
	"testing"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

func TestDescriptorRoundTrip(t *testing.T) {
	for _, d := range []shard.Descriptor{
		{},
		{ShardID: 7, Start: []byte("a"), End: []byte("m"), Epoch: shard.Epoch{ConfVer: 3, Version: 2},
			Replicas: []multiraft.Replica{{ReplicaID: 1, NodeID: 1}, {ReplicaID: 9, NodeID: 4, Learner: true}}},
	} {
		got := DescriptorFromProto(DescriptorToProto(d))
		if !reflect.DeepEqual(got, d) {
			t.Errorf("round trip of %s gave %s", &d, &got)
		}
	}
	if got := DescriptorFromProto(nil); !reflect.DeepEqual(got, shard.Descriptor{}) {
		t.Errorf("nil descriptor converts to %s, want the zero descriptor", &got)
	}
}

func TestReadModeFromProto(t *testing.T) {
	for c, want := range map[pb.ReadConsistency]multiraft.ReadMode{
		pb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE: multiraft.ReadLinearizable,
		pb.ReadConsistency_READ_CONSISTENCY_LEASE:        multiraft.ReadLease,
		pb.ReadConsistency_READ_CONSISTENCY_STALE:        multiraft.ReadStale,
	} {
		if got, ok := ReadModeFromProto(c); !ok || got != want {
			t.Errorf("%v: got %v, %v; want %v", c, got, ok, want)
		}
	}
	if _, ok := ReadModeFromProto(pb.ReadConsistency(99)); ok {
		t.Error("an unknown consistency converted")
	}
}
