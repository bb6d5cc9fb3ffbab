package rpc

import (
	"context"
	"strings"
	"testing"
	"time"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestSnapshotForRemovedReplicaRefusedBeforeBody: the Raft service asks
// the engine about a snapshot as soon as its header arrives, and refuses
// one the engine would refuse anyway (here: for a replica removed from the
// node) without reading the rest of the body.
func TestSnapshotForRemovedReplicaRefusedBeforeBody(t *testing.T) {
	s := newStack(t, stackConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin := s.admin()
	if _, err := admin.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: &pb.Descriptor{ShardId: 99}, Join: true, ReplicaId: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RemoveReplica(ctx, &pb.RemoveReplicaRequest{ShardId: 99}); err != nil {
		t.Fatal(err)
	}
	chunks := snapshotChunks(make([]byte, 4096), 256, 99) // addressed to replica 1 of group 99
	st := &snapStream{ctx: ctx, chunks: chunks}
	if err := s.raftSrv.Snapshot(st); err != nil {
		t.Fatal(err)
	}
	if st.resp == nil || st.resp.GetAccepted() || !strings.Contains(st.resp.GetReason(), "removed") {
		t.Fatalf("snapshot for a removed replica: %v", st.resp)
	}
	if left := len(st.chunks); left != len(chunks)-1 {
		t.Fatalf("the receiver read %d of %d chunks before refusing, want 1", len(chunks)-left, len(chunks))
	}
	if n := s.raftSrv.buffered.Load(); n != 0 {
		t.Fatalf("%d bytes of snapshot memory still accounted", n)
	}
}
