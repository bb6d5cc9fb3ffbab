package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// The Admin service of a simulated shardnode: what rpc.AdminServer does
// for the calls placement and the nodes' replica collectors make
// (CreateReplica, which replaces a stale replica on a re-add,
// RemoveReplica, ChangeReplicas, AddReplica, GetShardInfo, FindLeader,
// TransferLeader, Split), over the node's real engine and shard.Store,
// with the same statuses. rpc.AdminServer waits on the engine's futures,
// polls with wall-clock tickers and dials gRPC, which the simulator cannot
// interleave deterministically; these handlers run as actors and wait and
// call through the simulator (actors.go, rpc.go). Keep them in step with
// rpc/admin.go and rpc/replicagc.go.

// adminPollEvery is rpc.AdminServer's poll interval (AddReplica's catch-up).
const adminPollEvery = 20 * time.Millisecond

// status waits for the status of n's replica of id.
func (n *node) status(ctx context.Context, id shard.ShardID) (multiraft.Status, error) {
	v, err := n.s.actors.wait(ctx, n.e.StatusFuture(id))
	if err != nil {
		return multiraft.Status{}, err
	}
	return v.(multiraft.Status), nil
}

func (n *node) adminCreateReplica(ctx context.Context, req *pb.CreateReplicaRequest) (*pb.CreateReplicaResponse, error) {
	if req.GetShard() == nil {
		return nil, status.Error(codes.InvalidArgument, "descriptor: required")
	}
	desc := pbconv.DescriptorFromProto(req.GetShard())
	if desc.ShardID == 0 {
		return nil, status.Error(codes.InvalidArgument, "descriptor.shard_id: required")
	}
	if req.GetJoin() {
		if req.GetReplicaId() == 0 {
			return nil, status.Error(codes.InvalidArgument, "replica_id: required with join")
		}
		n.created[desc.ShardID] = true
		if n.hosted[desc.ShardID] {
			n.s.stats.ReAdds++
			n.s.tracef("n%d: re-add of g%d as r%d on a node that held it before", n.id, desc.ShardID, req.GetReplicaId())
		}
		if err := n.join(ctx, desc.ShardID, multiraft.ReplicaID(req.GetReplicaId())); err != nil {
			return nil, err
		}
		return &pb.CreateReplicaResponse{}, nil
	}
	if err := desc.Validate(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "descriptor: %v", err)
	}
	var mine multiraft.ReplicaID
	for _, r := range desc.Replicas {
		if r.NodeID == n.id {
			mine = r.ReplicaID
		}
	}
	if mine == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "descriptor.replicas: no replica on node %d", n.id)
	}
	n.created[desc.ShardID] = true
	if err := n.store.CreateShard(desc, mine); err != nil {
		if errors.Is(err, multiraft.ErrReplicaRemoved) || errors.Is(err, shard.ErrRangeOverlap) {
			return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
		}
		return nil, statusOf(err, desc.ShardID)
	}
	return &pb.CreateReplicaResponse{}, nil
}

// join creates n's empty replica of shard id, replacing an older replica
// of the shard that is no member any more (rpc.AdminServer.join).
func (n *node) join(ctx context.Context, id shard.ShardID, replica multiraft.ReplicaID) error {
	err := n.e.JoinGroup(id, replica)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, multiraft.ErrReplicaRemoved):
		return status.Errorf(codes.FailedPrecondition, "replica %d of shard %d was removed from node %d before; replica IDs are never reused: add a replica with a new ID",
			replica, id, n.id)
	case !errors.Is(err, multiraft.ErrGroupExists):
		return statusOf(err, id)
	}
	st, err := n.status(ctx, id)
	if err != nil {
		return statusOf(err, id)
	}
	switch old := st.Replica; {
	case old == replica:
		return status.Errorf(codes.AlreadyExists, "replica %d of shard %d already exists on node %d", replica, id, n.id)
	case old > replica:
		return status.Errorf(codes.FailedPrecondition, "node %d hosts replica %d of shard %d, newer than replica %d", n.id, old, id, replica)
	}
	old := st.Replica
	var mine *shard.Descriptor
	if d, err := n.store.Descriptor(id); err == nil {
		mine = &d
	}
	switch v, why := n.membership(ctx, id, old, mine, st.LeaderNode); v {
	case memberReplica:
		return status.Errorf(codes.FailedPrecondition,
			"node %d holds replica %d of shard %d, still a member (%s): remove it from the shard before adding replica %d here",
			n.id, old, id, why, replica)
	case unknownReplica:
		return status.Errorf(codes.Unavailable, "node %d holds replica %d of shard %d and cannot tell whether it is still a member (%s); retry",
			n.id, old, id, why)
	}
	if _, err := n.s.actors.wait(ctx, n.e.RemoveReplicaFuture(id, old, mine == nil)); err != nil {
		if errors.Is(err, multiraft.ErrReplicaChanged) {
			return status.Errorf(codes.Aborted, "replica %d of shard %d on node %d changed while being replaced: %v; retry", old, id, n.id, err)
		}
		return statusOf(err, id)
	}
	n.s.tracef("n%d: replaced its stale replica r%d of g%d by r%d", n.id, old, id, replica)
	if err := n.e.JoinGroup(id, replica); err != nil {
		if errors.Is(err, multiraft.ErrGroupExists) {
			// The leader's first message to the new replica created it
			// meanwhile.
			if st, serr := n.status(ctx, id); serr == nil && st.Replica == replica {
				return nil
			}
		}
		return statusOf(err, id)
	}
	return nil
}

// refuseSecondReplica refuses adding a replica on a node that already
// holds another member replica of the shard (rpc's refuseSecondReplica).
// st is the leader's status.
func refuseSecondReplica(st multiraft.Status, add multiraft.Replica) error {
	for _, r := range st.Members.Replicas {
		if r.NodeID == add.NodeID && r.ReplicaID != add.ReplicaID {
			return status.Errorf(codes.FailedPrecondition,
				"node %d already holds replica %d of shard %d, a member: a shard has one replica per node; remove replica %d before adding replica %d there",
				add.NodeID, r.ReplicaID, st.Group, r.ReplicaID, add.ReplicaID)
		}
	}
	return nil
}

func (n *node) adminRemoveReplica(ctx context.Context, req *pb.RemoveReplicaRequest) (*pb.RemoveReplicaResponse, error) {
	id := shard.ShardID(req.GetShardId())
	f := n.e.RemoveGroupFuture(id)
	if r := req.GetReplicaId(); r != 0 {
		// Only that replica (FAILED_PRECONDITION if the node hosts
		// another one of the shard by now).
		f = n.e.RemoveReplicaFuture(id, multiraft.ReplicaID(r), false)
	}
	if _, err := n.s.actors.wait(ctx, f); err != nil {
		if errors.Is(err, multiraft.ErrReplicaChanged) {
			return nil, status.Errorf(codes.FailedPrecondition, "replica_id: %v", err)
		}
		return nil, statusOf(err, id)
	}
	n.s.tracef("n%d: removed its replica of g%d (Admin.RemoveReplica)", n.id, id)
	return &pb.RemoveReplicaResponse{}, nil
}

func (n *node) adminChangeReplicas(ctx context.Context, req *pb.ChangeReplicasRequest) (*pb.ChangeReplicasResponse, error) {
	id := shard.ShardID(req.GetShardId())
	if len(req.GetChanges()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "changes: at least one change is required")
	}
	changes := make([]multiraft.ReplicaChange, len(req.GetChanges()))
	for i, c := range req.GetChanges() {
		var op multiraft.ChangeOp
		switch c.GetType() {
		case pb.ChangeType_CHANGE_TYPE_ADD_VOTER:
			op = multiraft.AddVoter
		case pb.ChangeType_CHANGE_TYPE_ADD_LEARNER:
			op = multiraft.AddLearner
		case pb.ChangeType_CHANGE_TYPE_REMOVE:
			op = multiraft.RemoveReplica
		default:
			return nil, status.Errorf(codes.InvalidArgument, "changes[%d].type: unknown value", i)
		}
		changes[i] = multiraft.ReplicaChange{Op: op, Replica: pbconv.ReplicaFromProto(c.GetReplica())}
	}
	var from *multiraft.Membership
	if e := req.GetEpoch(); e != nil {
		d, err := n.store.Descriptor(id)
		if err != nil {
			return nil, statusOf(err, id)
		}
		if d.Epoch.ConfVer != e.GetConfVer() {
			return nil, statusOf(&shard.EpochNotMatchError{Requested: pbconv.EpochFromProto(e), Current: d}, id)
		}
		from = &multiraft.Membership{Replicas: d.Replicas}
	}
	before, err := n.status(ctx, id)
	if err != nil {
		return nil, statusOf(err, id)
	}
	if before.IsLeader {
		for _, c := range changes {
			if c.Op == multiraft.RemoveReplica {
				continue
			}
			if err := refuseSecondReplica(before, c.Replica); err != nil {
				return nil, err
			}
		}
	}
	var fut *multiraft.Future
	if from != nil {
		fut = n.e.ChangeReplicasFromFuture(id, *from, changes)
	} else {
		fut = n.e.ChangeReplicasFuture(id, changes)
	}
	if _, err := n.s.actors.wait(ctx, fut); err != nil {
		if errors.Is(err, multiraft.ErrMembershipChanged) {
			if d, derr := n.store.Descriptor(id); derr == nil {
				err = &shard.EpochNotMatchError{Requested: pbconv.EpochFromProto(req.GetEpoch()), Current: d}
			}
		}
		return nil, statusOf(err, id)
	}
	n.s.checkRemovalQuorum(id, before.Members, changes)
	d, err := n.store.Descriptor(id)
	if err != nil {
		return nil, statusOf(err, id)
	}
	return &pb.ChangeReplicasResponse{Shard: pbconv.DescriptorToProto(d)}, nil
}

func (n *node) adminAddReplica(ctx context.Context, req *pb.AddReplicaRequest) (*pb.AddReplicaResponse, error) {
	id := shard.ShardID(req.GetShardId())
	rep := pbconv.ReplicaFromProto(req.GetReplica())
	if rep.ReplicaID == 0 || rep.NodeID == 0 {
		return nil, status.Error(codes.InvalidArgument, "replica: replica_id and node_id are required")
	}
	rep.Learner = false
	st, err := n.status(ctx, id)
	if err != nil {
		return nil, statusOf(err, id)
	}
	if st.IsLeader {
		if err := refuseSecondReplica(st, rep); err != nil {
			return nil, err
		}
	}
	if n.s.cfg.bug == bugAddIsNoop {
		n.s.phantoms[id] = append(n.s.phantoms[id], rep)
		return &pb.AddReplicaResponse{}, nil
	}
	if _, ok := st.Members.Lookup(rep.ReplicaID); !ok {
		f := n.e.ChangeReplicasFuture(id, []multiraft.ReplicaChange{{Op: multiraft.AddLearner, Replica: rep}})
		if _, err := n.s.actors.wait(ctx, f); err != nil {
			return nil, statusOf(err, id)
		}
	}
	if !req.GetLearner() && n.s.cfg.bug != bugAddLeavesLearner {
		if err := n.waitCaughtUp(ctx, id, rep.ReplicaID); err != nil {
			return nil, err
		}
		f := n.e.ChangeReplicasFuture(id, []multiraft.ReplicaChange{{Op: multiraft.AddVoter, Replica: rep}})
		if _, err := n.s.actors.wait(ctx, f); err != nil {
			return nil, statusOf(err, id)
		}
	}
	d, err := n.store.Descriptor(id)
	if err != nil {
		return nil, statusOf(err, id)
	}
	return &pb.AddReplicaResponse{Shard: pbconv.DescriptorToProto(d)}, nil
}

// waitCaughtUp polls until the leader sees replica's log at its commit
// index.
func (n *node) waitCaughtUp(ctx context.Context, id shard.ShardID, replica multiraft.ReplicaID) error {
	for {
		st, err := n.status(ctx, id)
		if err != nil {
			return statusOf(err, id)
		}
		if !st.IsLeader {
			return statusOf(&multiraft.NotLeaderError{Group: id, Leader: st.Leader, Node: st.LeaderNode}, id)
		}
		if pr, ok := st.Progress[replica]; ok && pr.Match >= st.Commit {
			return nil
		}
		if n.s.actors.sleep(ctx, adminPollEvery) != nil {
			return status.Errorf(codes.DeadlineExceeded, "replica %d did not catch up: %v", replica, ctx.Err())
		}
	}
}

func (n *node) adminGetShardInfo(ctx context.Context, req *pb.ShardInfoRequest) (*pb.ShardInfo, error) {
	id := shard.ShardID(req.GetShardId())
	st, err := n.status(ctx, id)
	if err != nil {
		return nil, statusOf(err, id)
	}
	info := &pb.ShardInfo{
		ReplicaId: uint64(st.Replica), LeaderReplicaId: uint64(st.Leader), LeaderNodeId: uint64(st.LeaderNode),
		IsLeader: st.IsLeader, Term: st.Term, Commit: st.Commit, Applied: st.Applied,
		FirstIndex: st.FirstIndex, LastIndex: st.LastIndex, Quiesced: st.Quiesced,
	}
	ids := make([]multiraft.ReplicaID, 0, len(st.Progress))
	for rid := range st.Progress {
		ids = append(ids, rid)
	}
	slices.Sort(ids)
	for _, rid := range ids {
		pr := st.Progress[rid]
		info.Progress = append(info.Progress, &pb.ReplicaProgress{
			ReplicaId: uint64(rid), Match: pr.Match, Next: pr.Next, State: pr.State, RecentActive: pr.RecentActive,
		})
	}
	if d, err := n.store.Descriptor(id); err == nil {
		info.Shard = pbconv.DescriptorToProto(d)
		info.ApproximateBytes = n.dataBytes(d)
		for _, r := range n.s.phantoms[id] {
			// bugAddIsNoop: the replicas it claimed to add.
			info.Shard.Replicas = append(info.Shard.Replicas, &pb.Replica{ReplicaId: uint64(r.ReplicaID), NodeId: uint64(r.NodeID)})
		}
	}
	return info, nil
}

func (n *node) adminFindLeader(ctx context.Context, req *pb.FindLeaderRequest) (*pb.FindLeaderResponse, error) {
	id := shard.ShardID(req.GetShardId())
	st, err := n.status(ctx, id)
	if err != nil {
		return nil, statusOf(err, id)
	}
	resp := &pb.FindLeaderResponse{LeaderReplicaId: uint64(st.Leader), LeaderNodeId: uint64(st.LeaderNode)}
	if st.LeaderNode != 0 {
		resp.LeaderAddress = fmt.Sprintf("n%d", st.LeaderNode)
	}
	if d, err := n.store.Descriptor(id); err == nil {
		resp.Shard = pbconv.DescriptorToProto(d)
	}
	return resp, nil
}

func (n *node) adminTransferLeader(ctx context.Context, req *pb.TransferLeaderRequest) (*pb.TransferLeaderResponse, error) {
	id := shard.ShardID(req.GetShardId())
	to := multiraft.ReplicaID(req.GetToReplicaId())
	if to == 0 {
		return nil, status.Error(codes.InvalidArgument, "to_replica_id: required")
	}
	st, err := n.status(ctx, id)
	if err != nil {
		return nil, statusOf(err, id)
	}
	if st.IsLeader {
		switch r, ok := st.Members.Lookup(to); {
		case !ok:
			return nil, status.Errorf(codes.InvalidArgument, "to_replica_id: replica %d is not a member of shard %d", to, id)
		case r.Learner:
			return nil, status.Errorf(codes.InvalidArgument, "to_replica_id: replica %d of shard %d is a learner; only a voter can lead", to, id)
		}
	}
	if _, err := n.s.actors.wait(ctx, n.e.TransferLeadershipFuture(id, to)); err != nil {
		return nil, statusOf(err, id)
	}
	return &pb.TransferLeaderResponse{}, nil
}

func (n *node) adminSplit(ctx context.Context, req *pb.SplitRequest) (*pb.SplitResponse, error) {
	id := shard.ShardID(req.GetShardId())
	if req.GetNewShardId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "new_shard_id: required")
	}
	key := req.GetSplitKey()
	if len(key) == 0 {
		var err error
		if key, err = n.store.MidKey(id); err != nil {
			return nil, statusOf(err, id)
		}
	}
	var mapping []shard.SplitReplica
	for old, nu := range req.GetNewReplicaIds() {
		mapping = append(mapping, shard.SplitReplica{Old: multiraft.ReplicaID(old), New: multiraft.ReplicaID(nu)})
	}
	// rpc.AdminServer keeps the map's order; a seed must not depend on it.
	slices.SortFunc(mapping, func(a, b shard.SplitReplica) int { return cmpU64(uint64(a.Old), uint64(b.Old)) })
	cmd := shard.Command{
		Header: shard.Header{Epoch: pbconv.EpochFromProto(req.GetEpoch())}, Kind: shard.KindSplit,
		Key: key, NewShard: shard.ShardID(req.GetNewShardId()), NewReplicas: mapping,
	}
	res, err := n.s.actors.wait(ctx, n.e.ProposeFuture(id, cmd.AppendEncoded(nil)))
	if err != nil {
		return nil, statusOf(err, id)
	}
	switch r := res.(type) {
	case *shard.Result:
		if r.Left == nil || r.Right == nil {
			panic(fmt.Sprintf("sim: split of shard %d returned no descriptors", id))
		}
		n.s.tracef("n%d: split g%d at %q into g%d", n.id, id, key, req.GetNewShardId())
		for _, rp := range r.Left.Replicas {
			if o := n.s.nodes[rp.NodeID-1]; !o.up() || n.s.net.isBlocked(n.id, o.id) {
				n.s.stats.SplitsWhileDown++
				n.s.tracef("n%d: split g%d while n%d, which holds r%d, is down or cut off", n.id, id, o.id, rp.ReplicaID)
				break
			}
		}
		return &pb.SplitResponse{Left: pbconv.DescriptorToProto(*r.Left), Right: pbconv.DescriptorToProto(*r.Right)}, nil
	case error:
		return nil, statusOf(r, id)
	}
	panic(fmt.Sprintf("sim: split of shard %d returned %T", id, res))
}

// dataBytes is the size of d's user data on n: the bytes of its keys and
// values. (A shardnode reports Pebble's EstimateDiskUsage, which counts
// only sstables; the simulator's data stays in memtables.)
func (n *node) dataBytes(d shard.Descriptor) uint64 {
	lo, hi := keys.UserSpan(d.Start, d.End)
	var sum uint64
	n.s.scanSpan(n, lo, hi, func(k, v []byte) { sum += uint64(len(k) + len(v)) })
	return sum
}

// statusOf maps an engine or shard error to the status rpc.AdminServer
// answers with (rpc's errorMapper, for the errors Admin calls meet).
func statusOf(err error, id shard.ShardID) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	msg := err.Error()
	var nle *multiraft.NotLeaderError
	var enm *shard.EpochNotMatchError
	switch {
	case errors.As(err, &nle):
		d := &pb.NotLeader{ShardId: uint64(id), LeaderReplicaId: uint64(nle.Leader), LeaderNodeId: uint64(nle.Node)}
		if nle.Node != 0 {
			d.LeaderAddress = fmt.Sprintf("n%d", nle.Node)
		}
		return withDetail(codes.FailedPrecondition, msg, d)
	case errors.As(err, &enm):
		return withDetail(codes.FailedPrecondition, msg, &pb.EpochNotMatch{Current: []*pb.Descriptor{pbconv.DescriptorToProto(enm.Current)}})
	case errors.Is(err, shard.ErrShardNotFound), errors.Is(err, multiraft.ErrGroupNotFound), errors.Is(err, multiraft.ErrGroupRemoved):
		return withDetail(codes.NotFound, msg, &pb.ShardNotFound{ShardId: uint64(id)})
	case errors.Is(err, multiraft.ErrAmbiguous):
		return withDetail(codes.Unknown, msg, &pb.Ambiguous{Reason: msg})
	case errors.Is(err, multiraft.ErrProposalDropped):
		return withDetail(codes.ResourceExhausted, msg, &pb.Busy{RetryAfterMs: 10})
	case errors.Is(err, shard.ErrKeyNotInShard):
		return withDetail(codes.OutOfRange, msg, &pb.KeyNotInShard{ShardId: uint64(id)})
	case errors.Is(err, shard.ErrInvalidSplit), errors.Is(err, shard.ErrBadCommand), errors.Is(err, shard.ErrBadDescriptor),
		errors.Is(err, multiraft.ErrInvalidConfChange):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, multiraft.ErrGroupExists):
		return status.Error(codes.AlreadyExists, msg)
	case errors.Is(err, shard.ErrNotReady), errors.Is(err, multiraft.ErrStopped):
		return status.Error(codes.Unavailable, msg)
	case errors.Is(err, multiraft.ErrTransferFailed):
		return status.Error(codes.Aborted, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	}
	return status.Error(codes.Internal, msg)
}

func withDetail(c codes.Code, msg string, d protoadapt.MessageV1) error {
	s, err := status.New(c, msg).WithDetails(d)
	if err != nil {
		return status.Error(c, msg)
	}
	return s.Err()
}
