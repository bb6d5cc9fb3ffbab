package placement

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// manualFleet is a statusFleet whose leader has run its scheduler for
// longer than two heartbeat intervals, so operators may be asked for.
func manualFleet(t *testing.T, nodes int) (*statusFleet, *coordinator) {
	f := newStatusFleet(t, nodes)
	f.s.leaderSince.Store(f.now.UnixNano())
	c := &coordinator{core: f.s.core}
	c.mu.flights = map[shard.ShardID]*flight{}
	c.mu.unsplittable = map[shard.ShardID]int64{}
	f.s.coord.Store(c)
	return f, c
}

func wantCode(t *testing.T, what string, err error, code codes.Code, text string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), text) {
		t.Errorf("%s: %v, want %s saying %q", what, err, code, text)
	}
}

// TestManualOperatorsRefuse: SplitShard, MoveReplica and ForgetNode check
// what they are asked against the catalogue and the view before they
// change anything, and answer with the code that says what is wrong.
func TestManualOperatorsRefuse(t *testing.T) {
	f, c := manualFleet(t, 5)
	ctx := t.Context()
	// Before the new leader has heard from the nodes: UNAVAILABLE.
	f.beat(1, 2, 3, 4, 5)
	_, err := f.s.splitShard(ctx, &pb.SplitShardRequest{ShardId: 1})
	wantCode(t, "split while the leader is new", err, codes.Unavailable, "moments ago")
	for range 3 {
		f.tick(1, 2, 3, 4, 5)
	}

	_, err = f.s.splitShard(ctx, &pb.SplitShardRequest{})
	wantCode(t, "split without a shard", err, codes.InvalidArgument, "shard_id: required")
	_, err = f.s.splitShard(ctx, &pb.SplitShardRequest{ShardId: 99})
	wantCode(t, "split of an unknown shard", err, codes.NotFound, "no leader reports shard 99")
	// Shard 1 is ["", "m"): "m" and "z" are not inside it after its start.
	for _, key := range []string{"m", "z"} {
		_, err = f.s.splitShard(ctx, &pb.SplitShardRequest{ShardId: 1, SplitKey: []byte(key)})
		wantCode(t, "split of shard 1 at "+key, err, codes.InvalidArgument, "not inside shard 1's range")
	}

	_, err = f.s.moveReplica(ctx, &pb.MoveReplicaRequest{ShardId: 1, FromNodeId: 2, ToNodeId: 2})
	wantCode(t, "move to the same node", err, codes.InvalidArgument, "the same node")
	_, err = f.s.moveReplica(ctx, &pb.MoveReplicaRequest{})
	wantCode(t, "move of nothing", err, codes.InvalidArgument, "shard_id: required; from_node_id: required; to_node_id: required")
	_, err = f.s.moveReplica(ctx, &pb.MoveReplicaRequest{ShardId: 1, FromNodeId: 1, ToNodeId: 9})
	wantCode(t, "move to an unknown node", err, codes.NotFound, "node 9 is not registered")
	_, err = f.s.moveReplica(ctx, &pb.MoveReplicaRequest{ShardId: 1, FromNodeId: 4, ToNodeId: 1})
	wantCode(t, "move onto a node holding a replica", err, codes.FailedPrecondition, "node 1 already holds replica 11 of shard 1")
	_, err = f.s.moveReplica(ctx, &pb.MoveReplicaRequest{ShardId: 1, FromNodeId: 4, ToNodeId: 5})
	wantCode(t, "move from a node without a replica", err, codes.FailedPrecondition, "node 4 holds no replica of shard 1 (its replicas: r11@n1 r12@n2 r13@n3)")
	// Node 4 goes silent: nothing moves onto it.
	for range 3 {
		f.tick(1, 2, 3, 5)
	}
	_, err = f.s.moveReplica(ctx, &pb.MoveReplicaRequest{ShardId: 1, FromNodeId: 1, ToNodeId: 4})
	wantCode(t, "move onto a down node", err, codes.FailedPrecondition, "node 4 is down")
	// Another operator on the shard: FAILED_PRECONDITION, and nothing
	// recorded.
	c.mu.flights[1] = &flight{op: schedule.Operator{Kind: schedule.KindRepair, Shard: 1, Steps: []schedule.Step{schedule.RemoveReplica{Shard: 1, Replica: multiraft.Replica{ReplicaID: 13, NodeID: 3}}}}}
	_, err = c.runManual(ctx, kindManualSplit, schedule.Operator{Kind: schedule.KindSplit, Shard: 1}, nil)
	wantCode(t, "split while a repair runs", err, codes.FailedPrecondition, "shard 1 has an operator in flight (repair s1: remove r13@n3; running)")

	_, err = f.s.forgetNode(ctx, &pb.ForgetNodeRequest{})
	wantCode(t, "forget of no node", err, codes.InvalidArgument, "node_id: required")
	_, err = f.s.forgetNode(ctx, &pb.ForgetNodeRequest{NodeId: 9})
	wantCode(t, "forget of an unknown node", err, codes.NotFound, "node 9 is not registered")
	_, err = f.s.forgetNode(ctx, &pb.ForgetNodeRequest{NodeId: 1})
	wantCode(t, "forget of a live node", err, codes.FailedPrecondition, "node 1 is up (last heartbeat 0s ago)")
	for range 3 {
		f.tick(1, 2)
	}
	_, err = f.s.forgetNode(ctx, &pb.ForgetNodeRequest{NodeId: 3})
	wantCode(t, "forget of a node named in descriptors", err, codes.FailedPrecondition, "node 3 still holds replicas of 2 shards (1, 2)")
	if got := f.s.ops.recent(); len(got) != 0 {
		t.Errorf("refusals recorded operators: %v", got)
	}
}

// TestOperatorStatusCodes: a manual operator's error keeps a shard
// leader's code (a refused split key), but a NotLeader that outlived the
// tries, which a shardnode sends as FAILED_PRECONDITION, is UNAVAILABLE,
// as the API documents for a shard whose leader cannot be reached.
func TestOperatorStatusCodes(t *testing.T) {
	op := schedule.Operator{Kind: schedule.KindSplit, Shard: 3}
	notLeader, err := status.New(codes.FailedPrecondition, "multiraft: not leader of group 3 (leader unknown)").WithDetails(&pb.NotLeader{ShardId: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{notLeader.Err(), codes.Unavailable},
		{status.Error(codes.InvalidArgument, "split key outside the shard"), codes.InvalidArgument},
		{status.Error(codes.FailedPrecondition, "epoch changed"), codes.FailedPrecondition},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{errors.New("no leader reports shard 3"), codes.Unavailable},
	} {
		if got := status.Code(operatorStatus(kindManualSplit, op, tc.err)); got != tc.want {
			t.Errorf("operatorStatus(%v) has code %v, want %v", tc.err, got, tc.want)
		}
	}
}

// busyAdmin is the Admin service of a shardnode that leads every shard
// and answers its first busy AddReplica calls RESOURCE_EXHAUSTED with a
// Busy detail, as a shardnode answers a proposal raft dropped; it creates
// any replica asked for.
type busyAdmin struct {
	pb.AdminClient // nil: only FindLeader, CreateReplica and AddReplica are served
	busy, adds     int
}

func (a *busyAdmin) FindLeader(context.Context, *pb.FindLeaderRequest, ...grpc.CallOption) (*pb.FindLeaderResponse, error) {
	return &pb.FindLeaderResponse{LeaderNodeId: 1}, nil
}

func (a *busyAdmin) CreateReplica(context.Context, *pb.CreateReplicaRequest, ...grpc.CallOption) (*pb.CreateReplicaResponse, error) {
	return &pb.CreateReplicaResponse{}, nil
}

func (a *busyAdmin) AddReplica(context.Context, *pb.AddReplicaRequest, ...grpc.CallOption) (*pb.AddReplicaResponse, error) {
	a.adds++
	if a.adds <= a.busy {
		st, err := status.New(codes.ResourceExhausted, "multiraft: proposal dropped").WithDetails(&pb.Busy{RetryAfterMs: 1})
		if err != nil {
			panic(err)
		}
		return nil, st.Err()
	}
	return &pb.AddReplicaResponse{}, nil
}

type adminConnector struct{ a pb.AdminClient }

func (c adminConnector) Admin(multiraft.NodeID, string) (pb.AdminClient, error) { return c.a, nil }
func (c adminConnector) Placement(string) (pb.PlacementClient, error) {
	return nil, errors.New("no placement peers")
}

// TestOnLeaderTriesBusyAgain: a step the shard leader answers Busy (a
// dropped proposal, which did not apply) is sent again after the wait the
// answer asks for, up to three tries; past them the operator fails with
// the leader's code, named as what was asked for.
func TestOnLeaderTriesBusyAgain(t *testing.T) {
	f, c := manualFleet(t, 3)
	f.beat(1, 2, 3)
	add := func(busy int) (*busyAdmin, error) {
		a := &busyAdmin{busy: busy}
		f.s.cfg.Connect = adminConnector{a}
		return a, c.addReplica(t.Context(), 1, multiraft.Replica{ReplicaID: 20, NodeID: 3}, false)
	}
	if a, err := add(2); err != nil || a.adds != 3 {
		t.Fatalf("two Busy answers: %v after %d tries; want success at the third", err, a.adds)
	}
	a, err := add(3)
	if status.Code(err) != codes.ResourceExhausted || a.adds != 3 {
		t.Fatalf("three Busy answers: %v after %d tries; want RESOURCE_EXHAUSTED after 3", err, a.adds)
	}
	op := schedule.Operator{Kind: schedule.KindReplicaBalance, Shard: 1, Reason: manualReason,
		Steps: []schedule.Step{schedule.AddReplica{Shard: 1, Replica: multiraft.Replica{ReplicaID: 20, NodeID: 3}}}}
	wantCode(t, "a move whose add stayed busy", operatorStatus(kindManualMove, op, err), codes.ResourceExhausted,
		"manual-move s1: add r20@n3 (asked for through the API): ")
}
