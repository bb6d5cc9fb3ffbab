package placement

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// Operators an operator asks for: SplitShard, MoveReplica and ForgetNode.
// A split or a move runs on the leader as a flight of the coordinator,
// like a scheduled operator, so the scheduler starts nothing else on the
// shard meanwhile, counts it against the per-node limits, and does not
// plan it again until a heartbeat shows its effect. Unlike a scheduled
// operator it runs in the request, which is answered when its steps are
// done (or failed): the caller learns the outcome, and a caller that gives
// up cancels the steps not yet run (each step is idempotent, so what ran
// is whole). History records them as manual-split and manual-move.

// Kinds of the operators asked for through the API, as history records
// them.
const (
	kindManualSplit = "manual-split"
	kindManualMove  = "manual-move"
)

// manualReason is the Reason of an operator asked for through the API.
const manualReason = "asked for through the API"

// manualCoordinator returns the coordinator that runs the operators asked
// for, or UNAVAILABLE while there is none this replica can use: Run is not
// running, or this replica took the lead less than two heartbeat intervals
// ago and its view may still miss shards and nodes (it schedules nothing
// then either). Call it on the leader (inside forward).
func (s *Service) manualCoordinator() (*coordinator, error) {
	c := s.coord.Load()
	since := s.leaderSince.Load()
	switch {
	case c == nil:
		return nil, status.Error(codes.Unavailable, "placement: this replica's scheduler is not running; retry")
	case since == 0 || s.cfg.Now().Sub(time.Unix(0, since)) < 2*s.cfg.HeartbeatInterval:
		return nil, status.Error(codes.Unavailable, "placement: the leader took over moments ago and is still hearing from the nodes; retry in a few seconds")
	}
	return c, nil
}

// shardOf returns the view's state of shard id, or NOT_FOUND.
func (s *Service) shardOf(id uint64) (shardState, error) {
	if id == 0 {
		return shardState{}, status.Error(codes.InvalidArgument, "shard_id: required")
	}
	st, ok := s.view.shard(shard.ShardID(id))
	if !ok {
		return shardState{}, status.Errorf(codes.NotFound, "placement: no leader reports shard %d (never existed, or merged away)", id)
	}
	return st, nil
}

// runManual runs op, recorded in history as kind, as a flight of c: run
// does its steps. It refuses with FAILED_PRECONDITION when another
// operator changes the shard. It returns the operator as history records
// it, and run's error as a status (operatorStatus).
func (c *coordinator) runManual(ctx context.Context, kind string, op schedule.Operator, run func(context.Context) error) (*pb.Operator, error) {
	now := c.cfg.Now()
	c.mu.Lock()
	if other, ok := c.mu.flights[op.Shard]; ok {
		c.mu.Unlock()
		what := "running"
		if other.done {
			what = "done, waiting for a heartbeat to show its effect"
		}
		return nil, status.Errorf(codes.FailedPrecondition, "placement: shard %d has an operator in flight (%s; %s); retry when it is over",
			op.Shard, other.op.String(), what)
	}
	f := &flight{op: op, rec: c.ops.start(kind, uint64(op.Shard), op.StringAs(kind), now)}
	c.mu.flights[op.Shard] = f
	c.mu.Unlock()

	rctx, cancel := c.cfg.Runtime.WithTimeout(ctx, c.cfg.OperatorTimeout)
	err := run(rctx)
	cancel()
	now = c.cfg.Now()
	c.ops.finish(f.rec, err, now)
	c.mu.Lock()
	if err != nil {
		delete(c.mu.flights, op.Shard)
	} else {
		// As execute does: kept until a heartbeat shows the change.
		f.done, f.settled = true, now.Add(5*c.cfg.HeartbeatInterval)
	}
	rec := proto.Clone(f.rec).(*pb.Operator)
	c.mu.Unlock()
	if err != nil {
		c.cfg.Logger.Warn("operator failed", "op", op.StringAs(kind), "err", err)
		return rec, operatorStatus(kind, op, err)
	}
	c.cfg.Logger.Info("operator done", "op", op.StringAs(kind))
	return rec, nil
}

// operatorStatus turns the error of an operator's step into the status
// the caller gets: a shard leader's status keeps its code (a split key it
// refuses is INVALID_ARGUMENT), a deadline is DEADLINE_EXCEEDED, and
// anything else (no leader found, the lead lost, and a NotLeader that
// outlived onLeader's tries, which a shardnode sends as
// FAILED_PRECONDITION) UNAVAILABLE: retry.
func operatorStatus(kind string, op schedule.Operator, err error) error {
	code := codes.Unavailable
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown && !isNotLeader(err) {
		code = st.Code()
	} else if errors.Is(err, context.DeadlineExceeded) {
		code = codes.DeadlineExceeded
	} else if errors.Is(err, context.Canceled) {
		code = codes.Canceled
	}
	if code == codes.OK {
		code = codes.Unavailable
	}
	return status.Errorf(code, "placement: %s: %v", op.StringAs(kind), err)
}

// SplitShard implements pb.PlacementServer.
func (s *Service) SplitShard(ctx context.Context, req *pb.SplitShardRequest) (*pb.SplitShardResponse, error) {
	return forward(s, ctx, req, pb.PlacementClient.SplitShard, s.splitShard)
}

func (s *Service) splitShard(ctx context.Context, req *pb.SplitShardRequest) (*pb.SplitShardResponse, error) {
	st, err := s.shardOf(req.GetShardId())
	if err != nil {
		return nil, err
	}
	d := st.desc
	if key := req.GetSplitKey(); len(key) > 0 {
		if bytes.Compare(key, d.Start) <= 0 || (len(d.End) > 0 && bytes.Compare(key, d.End) >= 0) {
			return nil, status.Errorf(codes.InvalidArgument, "split_key: %q is not inside shard %d's range [%q, %q) after its start",
				key, d.ShardID, d.Start, d.End)
		}
	}
	c, err := s.manualCoordinator()
	if err != nil {
		return nil, err
	}
	newShard, err := s.AllocateIDs(ctx, CounterShard, 1)
	if err != nil {
		return nil, toStatus(err)
	}
	first, err := s.AllocateIDs(ctx, CounterReplica, uint64(len(d.Replicas)))
	if err != nil {
		return nil, toStatus(err)
	}
	step := schedule.Split{Shard: d.ShardID, Key: req.GetSplitKey(), NewShard: shard.ShardID(newShard)}
	for i, r := range d.Replicas {
		step.NewReplicas = append(step.NewReplicas, shard.SplitReplica{Old: r.ReplicaID, New: multiraft.ReplicaID(first + uint64(i))})
	}
	slices.SortFunc(step.NewReplicas, func(a, b shard.SplitReplica) int { return cmp.Compare(a.Old, b.Old) })
	op := schedule.Operator{Kind: schedule.KindSplit, Shard: d.ShardID, Epoch: d.Epoch, Steps: []schedule.Step{step}, Reason: manualReason}
	resp := &pb.SplitShardResponse{}
	rec, err := c.runManual(ctx, kindManualSplit, op, func(ctx context.Context) error {
		sreq := &pb.SplitRequest{ShardId: uint64(d.ShardID), SplitKey: step.Key, NewShardId: newShard, NewReplicaIds: map[uint64]uint64{}}
		for _, m := range step.NewReplicas {
			sreq.NewReplicaIds[uint64(m.Old)] = uint64(m.New)
		}
		return c.onLeader(ctx, d.ShardID, func(a pb.AdminClient) error {
			sr, err := a.Split(ctx, sreq)
			if err == nil {
				resp.Left, resp.Right = sr.GetLeft(), sr.GetRight()
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	resp.Operator = rec
	return resp, nil
}

// MoveReplica implements pb.PlacementServer.
func (s *Service) MoveReplica(ctx context.Context, req *pb.MoveReplicaRequest) (*pb.MoveReplicaResponse, error) {
	return forward(s, ctx, req, pb.PlacementClient.MoveReplica, s.moveReplica)
}

func (s *Service) moveReplica(ctx context.Context, req *pb.MoveReplicaRequest) (*pb.MoveReplicaResponse, error) {
	from, to := multiraft.NodeID(req.GetFromNodeId()), multiraft.NodeID(req.GetToNodeId())
	var bad []string
	if req.GetShardId() == 0 {
		bad = append(bad, "shard_id: required")
	}
	if from == 0 {
		bad = append(bad, "from_node_id: required")
	}
	if to == 0 {
		bad = append(bad, "to_node_id: required")
	}
	if from != 0 && from == to {
		bad = append(bad, fmt.Sprintf("to_node_id: the same node as from_node_id (%d)", from))
	}
	if len(bad) > 0 {
		return nil, status.Error(codes.InvalidArgument, strings.Join(bad, "; "))
	}
	cat := s.cat.load()
	for _, n := range []multiraft.NodeID{from, to} {
		if _, ok := cat.Node(n); !ok {
			return nil, status.Errorf(codes.NotFound, "placement: node %d is not registered", n)
		}
	}
	st, err := s.shardOf(req.GetShardId())
	if err != nil {
		return nil, err
	}
	d := st.desc
	var moving multiraft.Replica
	for _, r := range d.Replicas {
		switch r.NodeID {
		case from:
			moving = r
		case to:
			return nil, status.Errorf(codes.FailedPrecondition, "placement: node %d already holds replica %d of shard %d", to, r.ReplicaID, d.ShardID)
		}
	}
	if moving.ReplicaID == 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "placement: node %d holds no replica of shard %d (its replicas: %s)", from, d.ShardID, replicaList(d))
	}
	target, _ := cat.Node(to)
	if target.Draining {
		return nil, status.Errorf(codes.FailedPrecondition, "placement: node %d is draining; nothing moves onto it", to)
	}
	if ns, ok := s.view.nodeStates()[to]; !ok || s.cfg.Now().Sub(ns.lastBeat) >= s.downThreshold() {
		return nil, status.Errorf(codes.FailedPrecondition, "placement: node %d is down (no heartbeat for %s or more); a replica cannot be added there", to, s.downThreshold())
	}
	c, err := s.manualCoordinator()
	if err != nil {
		return nil, err
	}
	id, err := s.AllocateIDs(ctx, CounterReplica, 1)
	if err != nil {
		return nil, toStatus(err)
	}
	added := multiraft.Replica{ReplicaID: multiraft.ReplicaID(id), NodeID: to}
	op := schedule.Operator{Kind: schedule.KindReplicaBalance, Shard: d.ShardID, Epoch: d.Epoch, Reason: manualReason,
		Steps: []schedule.Step{schedule.AddReplica{Shard: d.ShardID, Replica: added}, schedule.RemoveReplica{Shard: d.ShardID, Replica: moving}}}
	rec, err := c.runManual(ctx, kindManualMove, op, func(ctx context.Context) error {
		if err := c.addReplica(ctx, d.ShardID, added, moving.Learner); err != nil {
			return err
		}
		// removeReplica hands the leadership away first if the moving
		// replica leads.
		return c.removeReplica(ctx, d.ShardID, moving.ReplicaID)
	})
	if err != nil {
		return nil, err
	}
	return &pb.MoveReplicaResponse{ReplicaId: id, Operator: rec}, nil
}

// replicaList formats d's replicas as "r11@n1 r12@n2".
func replicaList(d shard.Descriptor) string {
	parts := make([]string, len(d.Replicas))
	for i, r := range d.Replicas {
		parts[i] = fmt.Sprintf("r%d@n%d", r.ReplicaID, r.NodeID)
	}
	return strings.Join(parts, " ")
}

// ForgetNode implements pb.PlacementServer.
func (s *Service) ForgetNode(ctx context.Context, req *pb.ForgetNodeRequest) (*pb.ForgetNodeResponse, error) {
	return forward(s, ctx, req, pb.PlacementClient.ForgetNode, s.forgetNode)
}

// maxNamedShards caps the shards a ForgetNode refusal names.
const maxNamedShards = 10

func (s *Service) forgetNode(ctx context.Context, req *pb.ForgetNodeRequest) (*pb.ForgetNodeResponse, error) {
	id := multiraft.NodeID(req.GetNodeId())
	if id == 0 {
		return nil, status.Error(codes.InvalidArgument, "node_id: required")
	}
	if _, ok := s.cat.load().Node(id); !ok {
		return nil, status.Errorf(codes.NotFound, "placement: node %d is not registered", id)
	}
	// The view must be whole before it can say the node hosts nothing.
	if _, err := s.manualCoordinator(); err != nil {
		return nil, err
	}
	if ns, ok := s.view.nodeStates()[id]; ok {
		if ago := s.cfg.Now().Sub(ns.lastBeat); ago < s.downThreshold() {
			return nil, status.Errorf(codes.FailedPrecondition,
				"placement: node %d is up (last heartbeat %s ago); forget only a node that is gone for good: stop it first, or drain it to move its replicas away",
				id, ago.Round(time.Millisecond))
		}
	}
	if held := s.view.shardsOn(id); len(held) > 0 {
		named := make([]string, 0, min(len(held), maxNamedShards))
		for _, sh := range held[:min(len(held), maxNamedShards)] {
			named = append(named, fmt.Sprint(sh))
		}
		more := ""
		if len(held) > maxNamedShards {
			more = fmt.Sprintf(" and %d more", len(held)-maxNamedShards)
		}
		return nil, status.Errorf(codes.FailedPrecondition,
			"placement: node %d still holds replicas of %d shards (%s%s) in their descriptors; placement replaces them once the node has been down for --down-after (%s), then it can be forgotten",
			id, len(held), strings.Join(named, ", "), more, s.cfg.DownAfter)
	}
	if _, err := s.propose(ctx, command{Op: "forget", ID: uint64(id)}); err != nil {
		if errors.Is(err, ErrUnknownNode) {
			return nil, status.Errorf(codes.NotFound, "placement: node %d is not registered", id)
		}
		return nil, toStatus(err)
	}
	s.view.forget(id)
	s.cfg.Logger.Info("node forgotten", "node", id)
	return &pb.ForgetNodeResponse{}, nil
}
