package rpc

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestAdminRefusesImpossibleTargets: TransferLeader to a replica that is
// not a voter of the shard, and LocalChecksum at an index the replica's
// log does not hold, are refused at once with the codes admin.go
// documents, naming the field; neither waits for its deadline.
func TestAdminRefusesImpossibleTargets(t *testing.T) {
	s := newStack(t, stackConfig{})
	admin := s.admin()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A learner on a node that never answers: a member, but not a voter.
	if err := s.engine.ChangeReplicas(ctx, 1, []multiraft.ReplicaChange{
		{Op: multiraft.AddLearner, Replica: multiraft.Replica{ReplicaID: 102, NodeID: 2, Learner: true}}}); err != nil {
		t.Fatal(err)
	}
	check, err := admin.ConsistencyCheck(ctx, &pb.ConsistencyCheckRequest{ShardId: 1})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	checkBadInput(t, []badInputCase{
		{"TransferLeader to a non-member", func(ctx context.Context) error {
			_, err := admin.TransferLeader(ctx, &pb.TransferLeaderRequest{ShardId: 1, ToReplicaId: 555})
			return err
		}, codes.InvalidArgument, "to_replica_id: replica 555 is not a member of shard 1"},
		{"TransferLeader to a learner", func(ctx context.Context) error {
			_, err := admin.TransferLeader(ctx, &pb.TransferLeaderRequest{ShardId: 1, ToReplicaId: 102})
			return err
		}, codes.InvalidArgument, "to_replica_id: replica 102 of shard 1 is a learner"},
		{"LocalChecksum at a far-future index", func(ctx context.Context) error {
			_, err := admin.LocalChecksum(ctx, &pb.LocalChecksumRequest{ShardId: 1, Index: 1 << 40})
			return err
		}, codes.OutOfRange, "index: 1099511627776 is beyond the last log index"},
		{"LocalChecksum at the next index", func(ctx context.Context) error {
			_, err := admin.LocalChecksum(ctx, &pb.LocalChecksumRequest{ShardId: 1, Index: check.GetIndex() + 100})
			return err
		}, codes.OutOfRange, "index"},
		// Issue 13, bug 4: a shard has one replica per node.
		{"AddReplica on a node holding a member", func(ctx context.Context) error {
			_, err := admin.AddReplica(ctx, &pb.AddReplicaRequest{ShardId: 1, Replica: &pb.Replica{ReplicaId: 103, NodeId: 2}})
			return err
		}, codes.FailedPrecondition, "node 2 already holds replica 102 of shard 1, a member"},
		{"ChangeReplicas adding on a node holding a member", func(ctx context.Context) error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Changes: []*pb.ReplicaChange{
				{Type: pb.ChangeType_CHANGE_TYPE_ADD_LEARNER, Replica: &pb.Replica{ReplicaId: 104, NodeId: 1}}}})
			return err
		}, codes.FailedPrecondition, "node 1 already holds replica 101 of shard 1"},
		{"CreateReplica joining as an older replica than the one here", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: &pb.Descriptor{ShardId: 1}, Join: true, ReplicaId: 100})
			return err
		}, codes.FailedPrecondition, "node 1 hosts replica 101 of shard 1, newer than replica 100"},
		{"CreateReplica joining as the replica here", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: &pb.Descriptor{ShardId: 1}, Join: true, ReplicaId: 101})
			return err
		}, codes.AlreadyExists, "replica 101 of shard 1 already exists"},
		{"RemoveReplica of another replica than the one here", func(ctx context.Context) error {
			_, err := admin.RemoveReplica(ctx, &pb.RemoveReplicaRequest{ShardId: 1, ReplicaId: 999})
			return err
		}, codes.FailedPrecondition, "replica_id: multiraft: replica changed: group 1 is replica 101 here, not 999"},
		{"CreateReplica replacing a member", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: &pb.Descriptor{ShardId: 1}, Join: true, ReplicaId: 105})
			return err
		}, codes.Unavailable, "cannot tell whether it is still a member"},
	})
	// Each case has 5 s; a refusal is immediate.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the refusals took %v: something waited for its deadline", d)
	}
	// An index the log holds is still answered.
	lr, err := admin.LocalChecksum(ctx, &pb.LocalChecksumRequest{ShardId: 1, Index: check.GetIndex()})
	if err != nil || len(check.GetChecksums()) == 0 || !bytes.Equal(lr.GetChecksum(), check.GetChecksums()[0].GetChecksum()) {
		t.Fatalf("LocalChecksum at the checked index %d: %x, %v; want %v", check.GetIndex(), lr.GetChecksum(), err, check.GetChecksums())
	}
	if _, err := admin.TransferLeader(ctx, &pb.TransferLeaderRequest{ShardId: 1, ToReplicaId: 101}); err != nil {
		t.Fatalf("TransferLeader to the leader itself: %v", err)
	}
}

// TestAdminTopIDs: a shard with the largest ID, and a replica with the
// largest replica ID raft allows, are created and removed like any other,
// and removing them deletes every raft-local and shard-local key they had
// (their key prefixes do not wrap around). The replica IDs raft reserves
// are refused wherever a request brings one in, instead of panicking the
// node.
func TestAdminTopIDs(t *testing.T) {
	s := newStack(t, stackConfig{})
	admin := s.admin()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const top = math.MaxUint64
	reserved := func(id uint64) *pb.Descriptor {
		return &pb.Descriptor{ShardId: 9, Start: []byte("zz"), Epoch: &pb.Epoch{ConfVer: 1, Version: 1},
			Replicas: []*pb.Replica{{ReplicaId: id, NodeId: 1}}}
	}
	checkBadInput(t, []badInputCase{
		{"CreateReplica with replica ID 2^64-1", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: reserved(top)})
			return err
		}, codes.InvalidArgument, "descriptor.replicas[0].replica_id: 18446744073709551615 is reserved by raft"},
		{"CreateReplica with replica ID 2^64-2", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: reserved(top - 1)})
			return err
		}, codes.InvalidArgument, "descriptor.replicas[0].replica_id"},
		{"CreateReplica joining as replica 2^64-1", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: &pb.Descriptor{ShardId: 9}, Join: true, ReplicaId: top})
			return err
		}, codes.InvalidArgument, "replica_id"},
		{"AddReplica of replica 2^64-1", func(ctx context.Context) error {
			_, err := admin.AddReplica(ctx, &pb.AddReplicaRequest{ShardId: 1, Replica: &pb.Replica{ReplicaId: top, NodeId: 2}})
			return err
		}, codes.InvalidArgument, "replica.replica_id"},
		{"ChangeReplicas adding replica 2^64-2", func(ctx context.Context) error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Changes: []*pb.ReplicaChange{
				{Type: pb.ChangeType_CHANGE_TYPE_ADD_LEARNER, Replica: &pb.Replica{ReplicaId: top - 1, NodeId: 2}}}})
			return err
		}, codes.InvalidArgument, "changes[0].replica.replica_id"},
		{"Split into replica 2^64-1", func(ctx context.Context) error {
			_, err := admin.Split(ctx, &pb.SplitRequest{ShardId: 1, SplitKey: []byte("k"), NewShardId: 2, NewReplicaIds: map[uint64]uint64{101: top}})
			return err
		}, codes.InvalidArgument, "new_replica_ids[101]"},
	})
	if groups := s.engine.Groups(); len(groups) != 1 || groups[0] != 1 {
		t.Fatalf("groups after refused requests: %v, want [1]", groups)
	}

	// Free ["zz", +inf) for the top shard (a node never holds two replicas
	// whose ranges overlap): split it off shard 1 and remove it.
	if _, err := admin.Split(ctx, &pb.SplitRequest{ShardId: 1, SplitKey: []byte("zz"), NewShardId: 2, NewReplicaIds: map[uint64]uint64{101: 201}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RemoveReplica(ctx, &pb.RemoveReplicaRequest{ShardId: 2}); err != nil {
		t.Fatal(err)
	}
	d := &pb.Descriptor{ShardId: top, Start: []byte("zz"), Epoch: &pb.Epoch{ConfVer: 1, Version: 1},
		Replicas: []*pb.Replica{{ReplicaId: uint64(multiraft.MaxReplicaID), NodeId: 1}}}
	if _, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: d}); err != nil {
		t.Fatal(err)
	}
	// The single voter campaigns in its first round.
	testutil.Eventually(t, 10*time.Second, func() error {
		info, err := admin.GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: top})
		if err == nil && info.GetIsLeader() && info.GetApplied() > 0 {
			return nil
		}
		return fmt.Errorf("shard %d never led: %v, %v", uint64(top), info, err)
	})
	// Explicit bounds, not keys.RaftPrefix: the last group's keys run up
	// to the first shard-local key, the last shard's up to 0x01 't'.
	raftLo, shardLo := keys.RaftKey(top, 0)[:10], keys.ShardKey(top, 0)[:10]
	spans := [][2][]byte{{raftLo, {0x01, 'r' + 1}}, {shardLo, {0x01, 's' + 1}}}
	count := func() (n int) {
		t.Helper()
		for _, sp := range spans {
			it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sp[0], UpperBound: sp[1]})
			if err != nil {
				t.Fatal(err)
			}
			for it.First(); it.Valid(); it.Next() {
				n++
			}
			if err := it.Close(); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	if n := count(); n == 0 {
		t.Fatal("shard state of the top ID not found where the test looks for it")
	}
	if _, err := admin.RemoveReplica(ctx, &pb.RemoveReplicaRequest{ShardId: top}); err != nil {
		t.Fatal(err)
	}
	// Only the tombstone stays, so the removed replica never comes back.
	if n := count(); n != 1 {
		t.Fatalf("%d raft-local or shard-local keys of shard %d left after its removal, want 1 (the tombstone)", n, uint64(top))
	}
	if _, closer, err := s.db.Get(keys.RaftKey(top, keys.RaftTombstone)); err != nil {
		t.Fatalf("no tombstone after the removal: %v", err)
	} else {
		closer.Close()
	}
	if tomb := s.engine.Tombstone(multiraft.GroupID(top)); tomb != multiraft.MaxReplicaID {
		t.Fatalf("tombstone %d, want %d", tomb, uint64(multiraft.MaxReplicaID))
	}
	if groups := s.engine.Groups(); len(groups) != 1 || groups[0] != 1 {
		t.Fatalf("groups after the removal: %v, want [1]", groups)
	}
}

// TestAdminChangeReplicasAtEpoch: a change that carries the epoch it was
// decided at applies while the shard is still at it (the members are
// checked again where the change is proposed), and is refused as
// EpochNotMatch, changing nothing, once another change has moved it on.
func TestAdminChangeReplicasAtEpoch(t *testing.T) {
	s := newStack(t, stackConfig{})
	admin := s.admin()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := admin.GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: 1})
	if err != nil {
		t.Fatal(err)
	}
	read := info.GetShard().GetEpoch()
	addLearner := func(id uint64, epoch *pb.Epoch) error {
		_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Epoch: epoch, Changes: []*pb.ReplicaChange{
			{Type: pb.ChangeType_CHANGE_TYPE_ADD_LEARNER, Replica: &pb.Replica{ReplicaId: id, NodeId: 2}}}})
		return err
	}
	if err := addLearner(102, read); err != nil {
		t.Fatalf("a change at the shard's epoch %v: %v", read, err)
	}
	_, err = admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Epoch: read, Changes: []*pb.ReplicaChange{
		{Type: pb.ChangeType_CHANGE_TYPE_REMOVE, Replica: &pb.Replica{ReplicaId: 102}}}})
	if code := status.Code(err); code != codes.FailedPrecondition || !strings.Contains(err.Error(), "epoch") {
		t.Fatalf("a removal decided at %v after a change moved the shard on: %v (%v), want EpochNotMatch", read, err, code)
	}
	info, err = admin.GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(info.GetShard().GetReplicas()); n != 2 {
		t.Fatalf("%d members after a refused removal, want 2: %v", n, info.GetShard().GetReplicas())
	}
	// At the epoch the shard is at, with the learner among the members the
	// descriptor and the engine both name, the removal applies.
	_, err = admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Epoch: info.GetShard().GetEpoch(), Changes: []*pb.ReplicaChange{
		{Type: pb.ChangeType_CHANGE_TYPE_REMOVE, Replica: &pb.Replica{ReplicaId: 102}}}})
	if err != nil {
		t.Fatalf("a removal at the shard's epoch %v: %v", info.GetShard().GetEpoch(), err)
	}
}
