package placement

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// TestCountersRaisedFromHeartbeats: a fresh catalogue (every placement
// replica lost and re-created) learns from heartbeats of shard 40 and
// replica 900, which the fleet still uses, and from then on never
// allocates an ID at or below them: not from the counters, not from a
// block the scheduler reserved before the heartbeat came.
func TestCountersRaisedFromHeartbeats(t *testing.T) {
	svc, c := newTestPlacement(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg, err := c.RegisterNode(ctx, &pb.RegisterNodeRequest{NodeId: 3, Address: "127.0.0.1:7103"})
	if err != nil {
		t.Fatal(err)
	}
	node := reg.GetNodeId()
	// The scheduler's first round reserved its blocks before this node's
	// first heartbeat arrived.
	ids := &idBlocks{core: svc.core, ctx: ctx}
	newShardID := func() shard.ShardID {
		t.Helper()
		id, err := ids.NewShardID()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	newReplicaID := func() multiraft.ReplicaID {
		t.Helper()
		id, err := ids.NewReplicaID()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	if s, r := newShardID(), newReplicaID(); s != 1 || r != 1 {
		t.Fatalf("a fresh catalogue's first IDs: shard %d, replica %d; want 1, 1", s, r)
	}
	if _, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{NodeId: node, Replicas: []*pb.ReplicaReport{
		{ShardId: 40, ReplicaId: 900, Leader: true, Shard: &pb.Descriptor{ShardId: 40, Epoch: &pb.Epoch{ConfVer: 3, Version: 2},
			Replicas: []*pb.Replica{{ReplicaId: 898, NodeId: 1}, {ReplicaId: 899, NodeId: 2}, {ReplicaId: 900, NodeId: node}}}},
		{ShardId: 12, ReplicaId: 120}, // a follower: no descriptor
	}}); err != nil {
		t.Fatal(err)
	}
	// The counters went through the catalogue's log.
	cat := svc.cat.load()
	if s, r := cat.Next(CounterShard), cat.Next(CounterReplica); s <= 40 || r <= 900 {
		t.Fatalf("catalogue counters after the heartbeat: shard %d, replica %d; want above 40 and 900", s, r)
	}
	for range 3 * idBlock {
		if s := newShardID(); s <= 40 {
			t.Fatalf("shard ID %d allocated after shard 40 was reported", s)
		}
		if r := newReplicaID(); r <= 900 {
			t.Fatalf("replica ID %d allocated after replica 900 was reported", r)
		}
	}
	for counter, reported := range map[uint64]uint64{CounterShard: 40, CounterReplica: 900} {
		first, err := svc.AllocateIDs(ctx, counter, 1)
		if err != nil || first <= reported {
			t.Fatalf("AllocateIDs(%d) = %d, %v; want above %d", counter, first, err, reported)
		}
	}
	// A second heartbeat with the same IDs proposes nothing: the counters
	// stay where they are.
	before := [2]uint64{cat.Next(CounterShard), cat.Next(CounterReplica)}
	if _, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{NodeId: node, Replicas: []*pb.ReplicaReport{{ShardId: 40, ReplicaId: 900}}}); err != nil {
		t.Fatal(err)
	}
	if after := [2]uint64{cat.Next(CounterShard), cat.Next(CounterReplica)}; after != before {
		t.Fatalf("counters moved from %v to %v on IDs already covered", before, after)
	}
}

// TestCountersNeverWrap: IDs reported or configured at the top of the ID
// space exhaust a counter instead of wrapping it around to 1, and the
// replica counter never hands out the IDs raft reserves.
func TestCountersNeverWrap(t *testing.T) {
	db := openDB(t)
	c, err := newCatalogue(db)
	if err != nil {
		t.Fatal(err)
	}
	if got := apply(t, db, c, command{Op: "register", Node: &NodeRecord{ID: 1, Address: "a:1"}}); got != uint64(1) {
		t.Fatalf("register 1 = %v", got)
	}
	if got := apply(t, db, c, command{Op: "register", Node: &NodeRecord{ID: math.MaxUint64, Address: "top:1"}}); got != uint64(math.MaxUint64) {
		t.Fatalf("register 2^64-1 = %v", got)
	}
	if got, ok := apply(t, db, c, command{Op: "register", Node: &NodeRecord{Address: "b:1"}}).(error); !ok || !errors.Is(got, ErrIDsExhausted) {
		t.Fatalf("register without ID after node 2^64-1 = %v, want ErrIDsExhausted", got)
	}
	if n, _ := c.Node(1); n.Address != "a:1" {
		t.Fatalf("node 1 was overwritten: %+v", n)
	}

	apply(t, db, c, command{Op: "raise", Kind: CounterShard, ID: math.MaxUint64})
	if got, ok := apply(t, db, c, command{Op: "alloc", Kind: CounterShard, Count: 1}).(error); !ok || !errors.Is(got, ErrIDsExhausted) {
		t.Fatalf("shard alloc after shard 2^64-1 was reported = %v, want ErrIDsExhausted", got)
	}

	apply(t, db, c, command{Op: "raise", Kind: CounterReplica, ID: uint64(multiraft.MaxReplicaID) - 3})
	first := apply(t, db, c, command{Op: "alloc", Kind: CounterReplica, Count: 3})
	if first != uint64(multiraft.MaxReplicaID-2) {
		t.Fatalf("the last three replica IDs start at %v, want %d", first, uint64(multiraft.MaxReplicaID-2))
	}
	if got, ok := apply(t, db, c, command{Op: "alloc", Kind: CounterReplica, Count: 1}).(error); !ok || !errors.Is(got, ErrIDsExhausted) {
		t.Fatalf("replica alloc past multiraft.MaxReplicaID = %v, want ErrIDsExhausted", got)
	}
	// Raising is durable and never lowers a counter.
	apply(t, db, c, command{Op: "raise", Kind: CounterReplica, ID: 5})
	reloaded, err := newCatalogue(db)
	if err != nil {
		t.Fatal(err)
	}
	if got := reloaded.Next(CounterReplica); got != uint64(multiraft.MaxReplicaID)+1 {
		t.Fatalf("reloaded replica counter = %d, want %d", got, uint64(multiraft.MaxReplicaID)+1)
	}
	if _, ok := apply(t, db, c, command{Op: "raise", Kind: 9, ID: 5}).(error); !ok {
		t.Fatal("raising an unknown counter succeeded")
	}
}
