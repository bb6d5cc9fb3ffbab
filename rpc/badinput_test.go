package rpc

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
)

// badInputCase is one invalid request: the call, the documented gRPC code,
// and what the message must name (the field or the problem).
type badInputCase struct {
	name string
	call func(ctx context.Context) error
	code codes.Code
	want string
}

// checkBadInput runs every case and fails for each whose code or message
// is not the documented one.
func checkBadInput(t *testing.T, cases []badInputCase) {
	t.Helper()
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.call(ctx)
		cancel()
		st := status.Convert(err)
		if st.Code() != c.code || !strings.Contains(strings.ToLower(st.Message()), strings.ToLower(c.want)) {
			t.Errorf("%s: got %v %q, want %v naming %q", c.name, st.Code(), st.Message(), c.code, c.want)
		}
	}
}

// TestKVAdminBadInput sends invalid requests to every RPC of the KV and
// Admin services of an in-process node: each is refused with the
// documented code and a message naming the problem, and nothing changes.
func TestKVAdminBadInput(t *testing.T) {
	s := newStack(t, stackConfig{})
	kv, admin := s.kv(), s.admin()
	for i := range 5 {
		if _, err := kv.Put(context.Background(), &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	before := s.data()
	descBefore, err := s.store.Descriptor(1)
	if err != nil {
		t.Fatal(err)
	}
	hdr := &pb.RequestHeader{ShardId: 1}
	noShard := &pb.RequestHeader{}
	unknown := &pb.RequestHeader{ShardId: 99}
	stale := &pb.RequestHeader{ShardId: 1, Epoch: &pb.Epoch{ConfVer: 1, Version: 7}}
	bigKey := make([]byte, 5<<10)
	bigValue := make([]byte, 2<<20)
	x := []byte("x")

	kvCases := []badInputCase{
		// Get
		{"Get without header", func(ctx context.Context) error { _, err := kv.Get(ctx, &pb.GetRequest{Key: x}); return err }, codes.InvalidArgument, "header"},
		{"Get without shard", func(ctx context.Context) error {
			_, err := kv.Get(ctx, &pb.GetRequest{Header: noShard, Key: x})
			return err
		}, codes.InvalidArgument, "header.shard_id"},
		{"Get with unknown consistency", func(ctx context.Context) error {
			_, err := kv.Get(ctx, &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1, Consistency: 9}, Key: x})
			return err
		}, codes.InvalidArgument, "header.consistency"},
		{"Get of an unknown shard", func(ctx context.Context) error {
			_, err := kv.Get(ctx, &pb.GetRequest{Header: unknown, Key: x})
			return err
		}, codes.NotFound, "not found"},
		{"Get with a stale epoch", func(ctx context.Context) error {
			_, err := kv.Get(ctx, &pb.GetRequest{Header: stale, Key: x})
			return err
		}, codes.FailedPrecondition, "epoch"},
		{"Get of an empty key", func(ctx context.Context) error { _, err := kv.Get(ctx, &pb.GetRequest{Header: hdr}); return err }, codes.InvalidArgument, "empty key"},
		// Put
		{"Put without header", func(ctx context.Context) error { _, err := kv.Put(ctx, &pb.PutRequest{Key: x}); return err }, codes.InvalidArgument, "header"},
		{"Put without shard", func(ctx context.Context) error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: noShard, Key: x})
			return err
		}, codes.InvalidArgument, "header.shard_id"},
		{"Put with client_id but no seq", func(ctx context.Context) error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1, ClientId: 7}, Key: x})
			return err
		}, codes.InvalidArgument, "header.seq"},
		{"Put of an empty key", func(ctx context.Context) error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: hdr, Value: x})
			return err
		}, codes.InvalidArgument, "empty key"},
		{"Put of an oversized key", func(ctx context.Context) error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: hdr, Key: bigKey})
			return err
		}, codes.InvalidArgument, "key too large"},
		{"Put of an oversized value", func(ctx context.Context) error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: hdr, Key: x, Value: bigValue})
			return err
		}, codes.InvalidArgument, "value too large"},
		{"Put to an unknown shard", func(ctx context.Context) error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: unknown, Key: x})
			return err
		}, codes.NotFound, "not found"},
		{"Put with a stale epoch", func(ctx context.Context) error {
			_, err := kv.Put(ctx, &pb.PutRequest{Header: stale, Key: x})
			return err
		}, codes.FailedPrecondition, "epoch"},
		// Delete
		{"Delete without header", func(ctx context.Context) error { _, err := kv.Delete(ctx, &pb.DeleteRequest{Key: x}); return err }, codes.InvalidArgument, "header"},
		{"Delete of an empty key", func(ctx context.Context) error { _, err := kv.Delete(ctx, &pb.DeleteRequest{Header: hdr}); return err }, codes.InvalidArgument, "empty key"},
		{"Delete of an oversized key", func(ctx context.Context) error {
			_, err := kv.Delete(ctx, &pb.DeleteRequest{Header: hdr, Key: bigKey})
			return err
		}, codes.InvalidArgument, "key too large"},
		{"Delete with a stale epoch", func(ctx context.Context) error {
			_, err := kv.Delete(ctx, &pb.DeleteRequest{Header: stale, Key: []byte("k0")})
			return err
		}, codes.FailedPrecondition, "epoch"},
		// CompareAndSwap
		{"CompareAndSwap without header", func(ctx context.Context) error {
			_, err := kv.CompareAndSwap(ctx, &pb.CompareAndSwapRequest{Key: x})
			return err
		}, codes.InvalidArgument, "header"},
		{"CompareAndSwap of an empty key", func(ctx context.Context) error {
			_, err := kv.CompareAndSwap(ctx, &pb.CompareAndSwapRequest{Header: hdr, ExpectAbsent: true, Value: x})
			return err
		}, codes.InvalidArgument, "empty key"},
		{"CompareAndSwap of an oversized value", func(ctx context.Context) error {
			_, err := kv.CompareAndSwap(ctx, &pb.CompareAndSwapRequest{Header: hdr, Key: x, ExpectAbsent: true, Value: bigValue})
			return err
		}, codes.InvalidArgument, "value too large"},
		{"CompareAndSwap with a stale epoch", func(ctx context.Context) error {
			_, err := kv.CompareAndSwap(ctx, &pb.CompareAndSwapRequest{Header: stale, Key: x, ExpectAbsent: true, Value: x})
			return err
		}, codes.FailedPrecondition, "epoch"},
		// Scan
		{"Scan without header", func(ctx context.Context) error { _, err := kv.Scan(ctx, &pb.ScanRequest{}); return err }, codes.InvalidArgument, "header"},
		{"Scan with unknown consistency", func(ctx context.Context) error {
			_, err := kv.Scan(ctx, &pb.ScanRequest{Header: &pb.RequestHeader{ShardId: 1, Consistency: 9}})
			return err
		}, codes.InvalidArgument, "header.consistency"},
		{"Scan of an unknown shard", func(ctx context.Context) error { _, err := kv.Scan(ctx, &pb.ScanRequest{Header: unknown}); return err }, codes.NotFound, "not found"},
		{"Scan with a stale epoch", func(ctx context.Context) error { _, err := kv.Scan(ctx, &pb.ScanRequest{Header: stale}); return err }, codes.FailedPrecondition, "epoch"},
		{"Scan with end before start", func(ctx context.Context) error {
			_, err := kv.Scan(ctx, &pb.ScanRequest{Header: hdr, Start: []byte("m"), End: []byte("a")})
			return err
		}, codes.InvalidArgument, `end: "a" sorts before start "m"`},
		{"Scan with a long end before start", func(ctx context.Context) error {
			_, err := kv.Scan(ctx, &pb.ScanRequest{Header: hdr, Start: []byte("z"), End: bigKey})
			return err
		}, codes.InvalidArgument, `..." (5120 bytes) sorts before start "z"`},
		// LocalRoutes
		{"LocalRoutes with end before start", func(ctx context.Context) error {
			_, err := kv.LocalRoutes(ctx, &pb.ScanRoutesRequest{Start: []byte("m"), End: []byte("a")})
			return err
		}, codes.InvalidArgument, "sorts before start"},
		// Batch
		{"Batch without header", func(ctx context.Context) error {
			_, err := kv.Batch(ctx, &pb.BatchRequest{Ops: []*pb.BatchOp{{Key: x}}})
			return err
		}, codes.InvalidArgument, "header"},
		{"Batch without ops", func(ctx context.Context) error { _, err := kv.Batch(ctx, &pb.BatchRequest{Header: hdr}); return err }, codes.InvalidArgument, "ops"},
		{"Batch with an empty key", func(ctx context.Context) error {
			_, err := kv.Batch(ctx, &pb.BatchRequest{Header: hdr, Ops: []*pb.BatchOp{{Key: x, Value: x}, {Value: x}}})
			return err
		}, codes.InvalidArgument, "empty key"},
		{"Batch with an oversized key", func(ctx context.Context) error {
			_, err := kv.Batch(ctx, &pb.BatchRequest{Header: hdr, Ops: []*pb.BatchOp{{Key: x, Value: x}, {Key: bigKey}}})
			return err
		}, codes.InvalidArgument, "key too large"},
		{"Batch with a stale epoch", func(ctx context.Context) error {
			_, err := kv.Batch(ctx, &pb.BatchRequest{Header: stale, Ops: []*pb.BatchOp{{Key: x, Value: x}}})
			return err
		}, codes.FailedPrecondition, "epoch"},
	}

	d1 := func() *pb.Descriptor { return pbconv.DescriptorToProto(descBefore) }
	otherNode := &pb.Descriptor{ShardId: 5, Start: []byte("zz"), Epoch: &pb.Epoch{ConfVer: 1, Version: 1},
		Replicas: []*pb.Replica{{ReplicaId: 502, NodeId: 2}}}
	adminCases := []badInputCase{
		// CreateReplica
		{"CreateReplica without descriptor", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{})
			return err
		}, codes.InvalidArgument, "descriptor"},
		{"CreateReplica without shard_id", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: &pb.Descriptor{}})
			return err
		}, codes.InvalidArgument, "descriptor.shard_id"},
		{"CreateReplica join without replica_id", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: &pb.Descriptor{ShardId: 7}, Join: true})
			return err
		}, codes.InvalidArgument, "replica_id"},
		{"CreateReplica with an empty range", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: &pb.Descriptor{ShardId: 7, Start: []byte("m"), End: []byte("c"),
				Epoch: &pb.Epoch{ConfVer: 1, Version: 1}, Replicas: []*pb.Replica{{ReplicaId: 701, NodeId: 1}}}})
			return err
		}, codes.InvalidArgument, "descriptor"},
		{"CreateReplica without a replica here", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: otherNode})
			return err
		}, codes.InvalidArgument, "no replica on node 1"},
		{"CreateReplica with someone else's replica_id", func(ctx context.Context) error {
			d := d1()
			d.ShardId = 8
			d.Start = []byte("zz")
			d.Replicas = []*pb.Replica{{ReplicaId: 801, NodeId: 1}}
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: d, ReplicaId: 999})
			return err
		}, codes.InvalidArgument, "replica_id"},
		{"CreateReplica of an existing shard", func(ctx context.Context) error {
			_, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: d1()})
			return err
		}, codes.AlreadyExists, "exists"},
		// RemoveReplica
		{"RemoveReplica without shard_id", func(ctx context.Context) error {
			_, err := admin.RemoveReplica(ctx, &pb.RemoveReplicaRequest{})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"RemoveReplica of an unknown shard", func(ctx context.Context) error {
			_, err := admin.RemoveReplica(ctx, &pb.RemoveReplicaRequest{ShardId: 99})
			return err
		}, codes.NotFound, "not found"},
		// ChangeReplicas
		{"ChangeReplicas without shard_id", func(ctx context.Context) error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"ChangeReplicas without changes", func(ctx context.Context) error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1})
			return err
		}, codes.InvalidArgument, "changes"},
		{"ChangeReplicas without replica_id", func(ctx context.Context) error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Changes: []*pb.ReplicaChange{
				{Type: pb.ChangeType_CHANGE_TYPE_ADD_LEARNER, Replica: &pb.Replica{NodeId: 2}}}})
			return err
		}, codes.InvalidArgument, "changes[0].replica.replica_id"},
		{"ChangeReplicas adding a replica without node", func(ctx context.Context) error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Changes: []*pb.ReplicaChange{
				{Type: pb.ChangeType_CHANGE_TYPE_ADD_LEARNER, Replica: &pb.Replica{ReplicaId: 7}}}})
			return err
		}, codes.InvalidArgument, "replica 7 has no node"},
		{"ChangeReplicas with an unknown type", func(ctx context.Context) error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Changes: []*pb.ReplicaChange{
				{Type: 42, Replica: &pb.Replica{ReplicaId: 5, NodeId: 2}}}})
			return err
		}, codes.InvalidArgument, "changes[0].type"},
		{"ChangeReplicas removing a non-member", func(ctx context.Context) error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Changes: []*pb.ReplicaChange{
				{Type: pb.ChangeType_CHANGE_TYPE_REMOVE, Replica: &pb.Replica{ReplicaId: 12345}}}})
			return err
		}, codes.InvalidArgument, "not a member"},
		{"ChangeReplicas with a stale conf_ver", func(ctx context.Context) error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 1, Epoch: &pb.Epoch{ConfVer: 99}, Changes: []*pb.ReplicaChange{
				{Type: pb.ChangeType_CHANGE_TYPE_ADD_LEARNER, Replica: &pb.Replica{ReplicaId: 5, NodeId: 2}}}})
			return err
		}, codes.FailedPrecondition, "epoch"},
		{"ChangeReplicas of an unknown shard", func(ctx context.Context) error {
			_, err := admin.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: 99, Changes: []*pb.ReplicaChange{
				{Type: pb.ChangeType_CHANGE_TYPE_REMOVE, Replica: &pb.Replica{ReplicaId: 5}}}})
			return err
		}, codes.NotFound, "not found"},
		// AddReplica
		{"AddReplica without shard_id", func(ctx context.Context) error {
			_, err := admin.AddReplica(ctx, &pb.AddReplicaRequest{Replica: &pb.Replica{ReplicaId: 5, NodeId: 2}})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"AddReplica without replica", func(ctx context.Context) error {
			_, err := admin.AddReplica(ctx, &pb.AddReplicaRequest{ShardId: 1})
			return err
		}, codes.InvalidArgument, "replica"},
		{"AddReplica without node_id", func(ctx context.Context) error {
			_, err := admin.AddReplica(ctx, &pb.AddReplicaRequest{ShardId: 1, Replica: &pb.Replica{ReplicaId: 5}})
			return err
		}, codes.InvalidArgument, "node_id"},
		{"AddReplica to an unknown shard", func(ctx context.Context) error {
			_, err := admin.AddReplica(ctx, &pb.AddReplicaRequest{ShardId: 99, Replica: &pb.Replica{ReplicaId: 5, NodeId: 2}})
			return err
		}, codes.NotFound, "not found"},
		// GetShardInfo
		{"GetShardInfo without shard_id", func(ctx context.Context) error {
			_, err := admin.GetShardInfo(ctx, &pb.ShardInfoRequest{})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"GetShardInfo of an unknown shard", func(ctx context.Context) error {
			_, err := admin.GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: 99})
			return err
		}, codes.NotFound, "not found"},
		// FindLeader
		{"FindLeader without shard_id", func(ctx context.Context) error {
			_, err := admin.FindLeader(ctx, &pb.FindLeaderRequest{})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"FindLeader of an unknown shard", func(ctx context.Context) error {
			_, err := admin.FindLeader(ctx, &pb.FindLeaderRequest{ShardId: 99})
			return err
		}, codes.NotFound, "not found"},
		// TransferLeader
		{"TransferLeader without shard_id", func(ctx context.Context) error {
			_, err := admin.TransferLeader(ctx, &pb.TransferLeaderRequest{ToReplicaId: 101})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"TransferLeader without to_replica_id", func(ctx context.Context) error {
			_, err := admin.TransferLeader(ctx, &pb.TransferLeaderRequest{ShardId: 1})
			return err
		}, codes.InvalidArgument, "to_replica_id"},
		{"TransferLeader of an unknown shard", func(ctx context.Context) error {
			_, err := admin.TransferLeader(ctx, &pb.TransferLeaderRequest{ShardId: 99, ToReplicaId: 5})
			return err
		}, codes.NotFound, "not found"},
		// Split
		{"Split without shard_id", func(ctx context.Context) error {
			_, err := admin.Split(ctx, &pb.SplitRequest{NewShardId: 2, SplitKey: []byte("k2")})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"Split without new_shard_id", func(ctx context.Context) error {
			_, err := admin.Split(ctx, &pb.SplitRequest{ShardId: 1, SplitKey: []byte("k2")})
			return err
		}, codes.InvalidArgument, "new_shard_id"},
		{"Split with a stale epoch", func(ctx context.Context) error {
			_, err := admin.Split(ctx, &pb.SplitRequest{ShardId: 1, Epoch: &pb.Epoch{ConfVer: 1, Version: 9}, SplitKey: []byte("k2"), NewShardId: 2,
				NewReplicaIds: map[uint64]uint64{101: 201}})
			return err
		}, codes.FailedPrecondition, "epoch"},
		{"Split without new_replica_ids", func(ctx context.Context) error {
			_, err := admin.Split(ctx, &pb.SplitRequest{ShardId: 1, SplitKey: []byte("k2"), NewShardId: 2})
			return err
		}, codes.InvalidArgument, "replica mapping"},
		{"Split mapping a non-member", func(ctx context.Context) error {
			_, err := admin.Split(ctx, &pb.SplitRequest{ShardId: 1, SplitKey: []byte("k2"), NewShardId: 2, NewReplicaIds: map[uint64]uint64{555: 201}})
			return err
		}, codes.InvalidArgument, "r555 is not a replica"},
		{"Split into its own shard_id", func(ctx context.Context) error {
			_, err := admin.Split(ctx, &pb.SplitRequest{ShardId: 1, SplitKey: []byte("k2"), NewShardId: 1, NewReplicaIds: map[uint64]uint64{101: 201}})
			return err
		}, codes.InvalidArgument, "new shard id 1"},
		{"Split of an unknown shard", func(ctx context.Context) error {
			_, err := admin.Split(ctx, &pb.SplitRequest{ShardId: 99, SplitKey: []byte("k2"), NewShardId: 2, NewReplicaIds: map[uint64]uint64{101: 201}})
			return err
		}, codes.NotFound, "not found"},
		// CompactLog
		{"CompactLog without shard_id", func(ctx context.Context) error {
			_, err := admin.CompactLog(ctx, &pb.CompactLogRequest{})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"CompactLog of an unknown shard", func(ctx context.Context) error {
			_, err := admin.CompactLog(ctx, &pb.CompactLogRequest{ShardId: 99})
			return err
		}, codes.NotFound, "not found"},
		// ConsistencyCheck
		{"ConsistencyCheck without shard_id", func(ctx context.Context) error {
			_, err := admin.ConsistencyCheck(ctx, &pb.ConsistencyCheckRequest{})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"ConsistencyCheck of an unknown shard", func(ctx context.Context) error {
			_, err := admin.ConsistencyCheck(ctx, &pb.ConsistencyCheckRequest{ShardId: 99})
			return err
		}, codes.NotFound, "not found"},
		// LocalChecksum
		{"LocalChecksum without shard_id", func(ctx context.Context) error {
			_, err := admin.LocalChecksum(ctx, &pb.LocalChecksumRequest{Index: 5})
			return err
		}, codes.InvalidArgument, "shard_id"},
		{"LocalChecksum without index", func(ctx context.Context) error {
			_, err := admin.LocalChecksum(ctx, &pb.LocalChecksumRequest{ShardId: 1})
			return err
		}, codes.InvalidArgument, "index"},
		{"LocalChecksum of an unknown shard", func(ctx context.Context) error {
			_, err := admin.LocalChecksum(ctx, &pb.LocalChecksumRequest{ShardId: 99, Index: 5})
			return err
		}, codes.NotFound, "not found"},
	}
	t.Run("KV", func(t *testing.T) { checkBadInput(t, kvCases) })
	t.Run("Admin", func(t *testing.T) { checkBadInput(t, adminCases) })

	// GetNodeInfo and Drain take no input: an empty request is valid.
	if _, err := admin.GetNodeInfo(context.Background(), &pb.NodeInfoRequest{}); err != nil {
		t.Errorf("GetNodeInfo: %v", err)
	}

	// Nothing changed: the same data, the same descriptor, the same shards.
	if after := s.data(); !maps.Equal(before, after) {
		t.Errorf("data changed by refused requests:\nbefore %v\nafter  %v", before, after)
	}
	descAfter, err := s.store.Descriptor(1)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(pbconv.DescriptorToProto(descBefore), pbconv.DescriptorToProto(descAfter)) {
		t.Errorf("descriptor changed by refused requests: %v -> %v", descBefore, descAfter)
	}
	if groups := s.engine.Groups(); len(groups) != 1 || groups[0] != 1 {
		t.Errorf("shards after refused requests: %v, want [1]", groups)
	}
}

// TestRaftBadInput: the node-to-node Raft service refuses a batch
// addressed to another node and a snapshot whose first chunk has no
// header, with the codes raft.proto documents.
func TestRaftBadInput(t *testing.T) {
	s := newStack(t, stackConfig{})
	raft := pb.NewRaftClient(s.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := raft.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.RaftBatch{FromNode: 2, ToNode: 5}); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "batch for node 5") {
		t.Errorf("batch for another node: %v, want FailedPrecondition naming the node", err)
	}
	snap, err := raft.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Send(&pb.SnapshotChunk{Data: []byte("x"), Last: true, TotalBytes: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = snap.CloseAndRecv()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "header") {
		t.Errorf("snapshot without header: %v, want InvalidArgument naming the header", err)
	}
}
