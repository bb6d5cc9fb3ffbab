package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// AdminServer is the per-node Admin service. Safe for concurrent use.
type AdminServer struct {
	pb.UnimplementedAdminServer
	node     multiraft.NodeID
	addr     string
	engine   *multiraft.Engine
	store    *shard.Store
	resolver Resolver
	errs     errorMapper
	ready    func() bool
	dial     func(multiraft.NodeID) (*grpc.ClientConn, error)
	// transport, when set, is reported by GetNodeInfo.
	transport *Transport
	// nodes, when set, returns every node this node knows of.
	nodes func() []multiraft.NodeID
	// pollEvery is how often long operations (AddReplica, Drain) look at
	// their progress.
	pollEvery time.Duration
}

// AdminOptions are what an AdminServer serves from. Engine, Store,
// Resolver, Ready and Dial are required; the rest may be left zero.
type AdminOptions struct {
	// NodeID is this node's ID.
	NodeID multiraft.NodeID
	// Addr is the address this node advertises, reported by GetNodeInfo.
	Addr string
	// Engine is the node's engine.
	Engine *multiraft.Engine
	// Store is the node's shard store.
	Store *shard.Store
	// Resolver maps the nodes named in errors and membership checks to
	// their addresses.
	Resolver Resolver
	// Ready reports whether the node finished starting.
	Ready func() bool
	// Dial reaches other nodes (consistency and membership checks).
	Dial func(multiraft.NodeID) (*grpc.ClientConn, error)
	// Transport, when set, is reported by GetNodeInfo.
	Transport *Transport
	// Nodes, when set, returns every node this node knows of. A
	// membership check (CreateReplica replacing a stale replica, the
	// ReplicaGC) asks them about a shard when the replica in question
	// knows none of its peers.
	Nodes func() []multiraft.NodeID
}

// NewAdminServer returns the Admin service of a node, as opts describe.
func NewAdminServer(opts AdminOptions) *AdminServer {
	return &AdminServer{
		node: opts.NodeID, addr: opts.Addr, engine: opts.Engine, store: opts.Store, resolver: opts.Resolver,
		ready: opts.Ready, dial: opts.Dial, transport: opts.Transport, nodes: opts.Nodes,
		errs: errorMapper{store: opts.Store, resolver: opts.Resolver}, pollEvery: 20 * time.Millisecond,
	}
}

// replicaID checks a replica ID taken from field of a request.
func replicaID(field string, id uint64) error {
	switch {
	case id == 0:
		return invalid(field, "required")
	case id > uint64(multiraft.MaxReplicaID):
		return invalid(field, fmt.Sprintf("%d is reserved by raft (the largest replica ID is %d)", id, multiraft.MaxReplicaID))
	}
	return nil
}

func shardID(id uint64) (shard.ShardID, error) {
	if id == 0 {
		return 0, invalid("shard_id", "required")
	}
	return shard.ShardID(id), nil
}

// CreateReplica implements pb.AdminServer.
//
// With join, a node that already hosts an older replica of the shard
// (one removed from the shard while the node was away, or an empty one
// whose add never happened) replaces it by the new one, once the shard's
// other replicas confirm it is no member any more (see replicagc.go): the
// old replica is destroyed, leaving its tombstone, so it can never come
// back and vote again under its ID. A replica still a member is not
// replaced: FAILED_PRECONDITION says to remove it from the shard first;
// UNAVAILABLE that no replica of the shard could answer.
func (s *AdminServer) CreateReplica(ctx context.Context, req *pb.CreateReplicaRequest) (*pb.CreateReplicaResponse, error) {
	if req.GetShard() == nil {
		return nil, invalid("descriptor", "required")
	}
	desc := pbconv.DescriptorFromProto(req.GetShard())
	if desc.ShardID == 0 {
		return nil, invalid("descriptor.shard_id", "required")
	}
	if req.GetJoin() {
		if req.GetReplicaId() == 0 {
			return nil, invalid("replica_id", "required with join")
		}
		if err := replicaID("replica_id", req.GetReplicaId()); err != nil {
			return nil, err
		}
		if err := s.join(ctx, desc.ShardID, multiraft.ReplicaID(req.GetReplicaId())); err != nil {
			return nil, err
		}
		return &pb.CreateReplicaResponse{}, nil
	}
	if err := desc.Validate(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "descriptor: %v", err)
	}
	for i, r := range desc.Replicas {
		if err := replicaID(fmt.Sprintf("descriptor.replicas[%d].replica_id", i), uint64(r.ReplicaID)); err != nil {
			return nil, err
		}
	}
	var mine multiraft.ReplicaID
	for _, r := range desc.Replicas {
		if r.NodeID == s.node {
			mine = r.ReplicaID
		}
	}
	if mine == 0 {
		return nil, invalid("descriptor.replicas", fmt.Sprintf("no replica on node %d", s.node))
	}
	if id := req.GetReplicaId(); id != 0 && multiraft.ReplicaID(id) != mine {
		return nil, invalid("replica_id", fmt.Sprintf("%d is not this node's replica %d", id, mine))
	}
	if err := s.store.CreateShard(desc, mine); err != nil {
		if errors.Is(err, multiraft.ErrReplicaRemoved) || errors.Is(err, shard.ErrRangeOverlap) {
			return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
		}
		return nil, s.errs.toStatus(err, desc.ShardID, nil)
	}
	return &pb.CreateReplicaResponse{}, nil
}

// join creates this node's empty replica of shard id, replacing an older
// replica of the shard that is no member any more (see CreateReplica).
func (s *AdminServer) join(ctx context.Context, id shard.ShardID, replica multiraft.ReplicaID) error {
	err := s.engine.JoinGroup(id, replica)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, multiraft.ErrReplicaRemoved):
		return status.Errorf(codes.FailedPrecondition, "replica %d of shard %d was removed from node %d before; replica IDs are never reused: add a replica with a new ID",
			replica, id, s.node)
	case !errors.Is(err, multiraft.ErrGroupExists):
		return s.errs.toStatus(err, id, nil)
	}
	st, err := s.engine.Status(ctx, id)
	if err != nil {
		return s.errs.toStatus(err, id, nil)
	}
	switch old := st.Replica; {
	case old == replica:
		return status.Errorf(codes.AlreadyExists, "replica %d of shard %d already exists on node %d", replica, id, s.node)
	case old > replica:
		return status.Errorf(codes.FailedPrecondition, "node %d hosts replica %d of shard %d, newer than replica %d", s.node, old, id, replica)
	}
	old := st.Replica
	var mine *shard.Descriptor
	if d, err := s.store.Descriptor(id); err == nil {
		mine = &d
	}
	switch v, why := s.membership(ctx, id, old, mine, st.LeaderNode); v {
	case memberReplica:
		return status.Errorf(codes.FailedPrecondition,
			"node %d holds replica %d of shard %d, still a member (%s): remove it from the shard before adding replica %d here",
			s.node, old, id, why, replica)
	case unknownReplica:
		return status.Errorf(codes.Unavailable, "node %d holds replica %d of shard %d and cannot tell whether it is still a member (%s); retry",
			s.node, old, id, why)
	}
	if err := s.engine.RemoveReplica(ctx, id, old, mine == nil); err != nil {
		if errors.Is(err, multiraft.ErrReplicaChanged) {
			return status.Errorf(codes.Aborted, "replica %d of shard %d on node %d changed while being replaced: %v; retry", old, id, s.node, err)
		}
		return s.errs.toStatus(err, id, nil)
	}
	if err := s.engine.JoinGroup(id, replica); err != nil {
		if errors.Is(err, multiraft.ErrGroupExists) {
			// The leader's first message to the new replica created it
			// meanwhile (see multiraft/create.go).
			if st, serr := s.engine.Status(ctx, id); serr == nil && st.Replica == replica {
				return nil
			}
		}
		return s.errs.toStatus(err, id, nil)
	}
	return nil
}

// refuseSecondReplica refuses adding a replica on a node that already holds
// another member replica of the shard (a shard has at most one replica per
// node): FAILED_PRECONDITION, with what to do. st is the leader's status.
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

// RemoveReplica implements pb.AdminServer. The replica leaves a tombstone:
// its ID is never created on this node again. With replica_id, only that
// replica is removed (FAILED_PRECONDITION if the node hosts another one of
// the shard by now).
func (s *AdminServer) RemoveReplica(ctx context.Context, req *pb.RemoveReplicaRequest) (*pb.RemoveReplicaResponse, error) {
	id, err := shardID(req.GetShardId())
	if err != nil {
		return nil, err
	}
	if r := req.GetReplicaId(); r != 0 {
		err := s.engine.RemoveReplica(ctx, id, multiraft.ReplicaID(r), false)
		if errors.Is(err, multiraft.ErrReplicaChanged) {
			return nil, status.Errorf(codes.FailedPrecondition, "replica_id: %v", err)
		}
		if err != nil {
			return nil, s.errs.toStatus(err, id, nil)
		}
		return &pb.RemoveReplicaResponse{}, nil
	}
	if err := s.engine.RemoveGroup(ctx, id); err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	return &pb.RemoveReplicaResponse{}, nil
}

// ChangeReplicas implements pb.AdminServer.
func (s *AdminServer) ChangeReplicas(ctx context.Context, req *pb.ChangeReplicasRequest) (*pb.ChangeReplicasResponse, error) {
	id, err := shardID(req.GetShardId())
	if err != nil {
		return nil, err
	}
	if len(req.GetChanges()) == 0 {
		return nil, invalid("changes", "at least one change is required")
	}
	changes := make([]multiraft.ReplicaChange, len(req.GetChanges()))
	for i, c := range req.GetChanges() {
		if err := replicaID(fmt.Sprintf("changes[%d].replica.replica_id", i), c.GetReplica().GetReplicaId()); err != nil {
			return nil, err
		}
		var op multiraft.ChangeOp
		switch c.GetType() {
		case pb.ChangeType_CHANGE_TYPE_ADD_VOTER:
			op = multiraft.AddVoter
		case pb.ChangeType_CHANGE_TYPE_ADD_LEARNER:
			op = multiraft.AddLearner
		case pb.ChangeType_CHANGE_TYPE_REMOVE:
			op = multiraft.RemoveReplica
		default:
			return nil, invalid(fmt.Sprintf("changes[%d].type", i), "unknown value")
		}
		changes[i] = multiraft.ReplicaChange{Op: op, Replica: pbconv.ReplicaFromProto(c.GetReplica())}
	}
	from, err := s.checkConfVer(id, req.GetEpoch())
	if err != nil {
		return nil, err
	}
	if st, err := s.engine.Status(ctx, id); err == nil && st.IsLeader {
		for _, c := range changes {
			if c.Op == multiraft.RemoveReplica {
				continue
			}
			if err := refuseSecondReplica(st, c.Replica); err != nil {
				return nil, err
			}
		}
	}
	if from == nil {
		err = s.engine.ChangeReplicas(ctx, id, changes)
	} else {
		// The members the ConfVer was checked against, checked again
		// where the change is proposed: a change applied in between
		// would otherwise be the base of this one.
		err = s.engine.ChangeReplicasFrom(ctx, id, multiraft.Membership{Replicas: from.Replicas}, changes)
		if errors.Is(err, multiraft.ErrMembershipChanged) {
			if d, derr := s.store.Descriptor(id); derr == nil {
				err = &shard.EpochNotMatchError{Requested: pbconv.EpochFromProto(req.GetEpoch()), Current: d}
			}
		}
	}
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	d, err := s.store.Descriptor(id)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	return &pb.ChangeReplicasResponse{Shard: pbconv.DescriptorToProto(d)}, nil
}

// checkConfVer refuses a membership change routed with an old ConfVer. It
// returns the descriptor it checked against (nil when e is nil: no
// check).
func (s *AdminServer) checkConfVer(id shard.ShardID, e *pb.Epoch) (*shard.Descriptor, error) {
	if e == nil {
		return nil, nil
	}
	d, err := s.store.Descriptor(id)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	if d.Epoch.ConfVer != e.GetConfVer() {
		return nil, s.errs.toStatus(&shard.EpochNotMatchError{Requested: pbconv.EpochFromProto(e), Current: d}, id, nil)
	}
	return &d, nil
}

// AddReplica implements pb.AdminServer: learner, catch up, promote.
func (s *AdminServer) AddReplica(ctx context.Context, req *pb.AddReplicaRequest) (*pb.AddReplicaResponse, error) {
	id, err := shardID(req.GetShardId())
	if err != nil {
		return nil, err
	}
	rep := pbconv.ReplicaFromProto(req.GetReplica())
	if rep.ReplicaID == 0 || rep.NodeID == 0 {
		return nil, invalid("replica", "replica_id and node_id are required")
	}
	if err := replicaID("replica.replica_id", uint64(rep.ReplicaID)); err != nil {
		return nil, err
	}
	rep.Learner = false
	st, err := s.engine.Status(ctx, id)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	if st.IsLeader {
		if err := refuseSecondReplica(st, rep); err != nil {
			return nil, err
		}
	}
	if _, ok := st.Members.Lookup(rep.ReplicaID); !ok {
		err := s.engine.ChangeReplicas(ctx, id, []multiraft.ReplicaChange{{Op: multiraft.AddLearner, Replica: rep}})
		if err != nil {
			return nil, s.errs.toStatus(err, id, nil)
		}
	}
	if !req.GetLearner() {
		if err := s.waitCaughtUp(ctx, id, rep.ReplicaID); err != nil {
			return nil, err
		}
		err := s.engine.ChangeReplicas(ctx, id, []multiraft.ReplicaChange{{Op: multiraft.AddVoter, Replica: rep}})
		if err != nil {
			return nil, s.errs.toStatus(err, id, nil)
		}
	}
	d, err := s.store.Descriptor(id)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	return &pb.AddReplicaResponse{Shard: pbconv.DescriptorToProto(d)}, nil
}

// waitCaughtUp polls until the leader sees replica's log at its commit index.
func (s *AdminServer) waitCaughtUp(ctx context.Context, id shard.ShardID, replica multiraft.ReplicaID) error {
	t := time.NewTicker(s.pollEvery)
	defer t.Stop()
	for {
		st, err := s.engine.Status(ctx, id)
		if err != nil {
			return s.errs.toStatus(err, id, nil)
		}
		if !st.IsLeader {
			return s.errs.toStatus(&multiraft.NotLeaderError{Group: id, Leader: st.Leader, Node: st.LeaderNode}, id, nil)
		}
		if pr, ok := st.Progress[replica]; ok && pr.Match >= st.Commit {
			return nil
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.DeadlineExceeded, "replica %d did not catch up: %v", replica, ctx.Err())
		case <-t.C:
		}
	}
}

// GetShardInfo implements pb.AdminServer.
func (s *AdminServer) GetShardInfo(ctx context.Context, req *pb.ShardInfoRequest) (*pb.ShardInfo, error) {
	id, err := shardID(req.GetShardId())
	if err != nil {
		return nil, err
	}
	info, err := s.shardInfo(ctx, id)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	return info, nil
}

func (s *AdminServer) shardInfo(ctx context.Context, id shard.ShardID) (*pb.ShardInfo, error) {
	st, err := s.engine.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	info := &pb.ShardInfo{
		ReplicaId: uint64(st.Replica), LeaderReplicaId: uint64(st.Leader), LeaderNodeId: uint64(st.LeaderNode),
		IsLeader: st.IsLeader, Term: st.Term, Commit: st.Commit, Applied: st.Applied,
		FirstIndex: st.FirstIndex, LastIndex: st.LastIndex, Quiesced: st.Quiesced,
	}
	for rid, pr := range st.Progress {
		info.Progress = append(info.Progress, &pb.ReplicaProgress{
			ReplicaId: uint64(rid), Match: pr.Match, Next: pr.Next, State: pr.State, RecentActive: pr.RecentActive,
		})
	}
	if d, err := s.store.Descriptor(id); err == nil {
		info.Shard = pbconv.DescriptorToProto(d)
		lo, hi := keys.UserSpan(d.Start, d.End)
		if n, err := s.engine.DB().EstimateDiskUsage(lo, hi); err == nil {
			info.ApproximateBytes = n
		}
	}
	return info, nil
}

// GetNodeInfo implements pb.AdminServer.
func (s *AdminServer) GetNodeInfo(ctx context.Context, _ *pb.NodeInfoRequest) (*pb.NodeInfo, error) {
	n := &pb.NodeInfo{NodeId: uint64(s.node), Address: s.addr, Ready: s.ready(), Draining: s.engine.Draining()}
	m := s.engine.Metrics()
	n.Engine = &pb.EngineStats{
		Proposals: m.Proposals.Load(), EntriesApplied: m.EntriesApplied.Load(), Syncs: m.Syncs.Load(),
		SyncGroups: m.SyncGroups.Load(), SyncEntries: m.SyncEntries.Load(), SyncNanos: m.SyncNanos.Load(),
		MessagesSent: m.MessagesSent.Load(),
	}
	for _, g := range s.engine.Summaries() {
		if g.Quiesced {
			n.Engine.QuiescedGroups++
		}
	}
	if s.transport != nil {
		ts := s.transport.Stats.Load()
		n.Transport = &pb.TransportStats{
			Batches: ts.Batches, Messages: ts.Messages, Bytes: ts.Bytes, Received: ts.Received, Dropped: ts.Dropped,
			StreamFailures: ts.StreamFailures, SnapshotsSent: ts.SnapshotsSent, SnapshotsReceived: ts.SnapshotsReceived,
		}
	}
	for _, id := range s.engine.Groups() {
		info, err := s.shardInfo(ctx, id)
		if err != nil {
			continue // removed meanwhile
		}
		n.Shards++
		if info.IsLeader {
			n.Leaders++
		}
		n.ShardInfos = append(n.ShardInfos, info)
	}
	return n, nil
}

// FindLeader implements pb.AdminServer.
func (s *AdminServer) FindLeader(ctx context.Context, req *pb.FindLeaderRequest) (*pb.FindLeaderResponse, error) {
	id, err := shardID(req.GetShardId())
	if err != nil {
		return nil, err
	}
	st, err := s.engine.Status(ctx, id)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	resp := &pb.FindLeaderResponse{LeaderReplicaId: uint64(st.Leader), LeaderNodeId: uint64(st.LeaderNode)}
	if st.LeaderNode != 0 {
		resp.LeaderAddress, _ = s.resolver.Resolve(st.LeaderNode)
	}
	if d, err := s.store.Descriptor(id); err == nil {
		resp.Shard = pbconv.DescriptorToProto(d)
	}
	return resp, nil
}

// TransferLeader implements pb.AdminServer.
func (s *AdminServer) TransferLeader(ctx context.Context, req *pb.TransferLeaderRequest) (*pb.TransferLeaderResponse, error) {
	id, err := shardID(req.GetShardId())
	if err != nil {
		return nil, err
	}
	to := multiraft.ReplicaID(req.GetToReplicaId())
	if to == 0 {
		return nil, invalid("to_replica_id", "required")
	}
	// The leader refuses a target outside its membership as invalid input
	// (a follower, whose membership may lag, answers NotLeader below).
	st, err := s.engine.Status(ctx, id)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	if st.IsLeader {
		switch r, ok := st.Members.Lookup(to); {
		case !ok:
			return nil, invalid("to_replica_id", fmt.Sprintf("replica %d is not a member of shard %d", to, id))
		case r.Learner:
			return nil, invalid("to_replica_id", fmt.Sprintf("replica %d of shard %d is a learner; only a voter can lead", to, id))
		}
	}
	if err := s.engine.TransferLeadership(ctx, id, to); err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	return &pb.TransferLeaderResponse{}, nil
}

// Split implements pb.AdminServer.
func (s *AdminServer) Split(ctx context.Context, req *pb.SplitRequest) (*pb.SplitResponse, error) {
	id, err := shardID(req.GetShardId())
	if err != nil {
		return nil, err
	}
	if req.GetNewShardId() == 0 {
		return nil, invalid("new_shard_id", "required")
	}
	key := req.GetSplitKey()
	if len(key) == 0 {
		// The leader picks the key that halves the shard.
		if key, err = s.store.MidKey(id); err != nil {
			return nil, s.errs.toStatus(err, id, nil)
		}
	}
	var mapping []shard.SplitReplica
	for old, nu := range req.GetNewReplicaIds() {
		if err := replicaID(fmt.Sprintf("new_replica_ids[%d]", old), nu); err != nil {
			return nil, err
		}
		mapping = append(mapping, shard.SplitReplica{Old: multiraft.ReplicaID(old), New: multiraft.ReplicaID(nu)})
	}
	left, right, err := s.store.Split(ctx, id, shard.Header{Epoch: pbconv.EpochFromProto(req.GetEpoch())}, key, shard.ShardID(req.GetNewShardId()), mapping)
	if err != nil {
		return nil, s.errs.toStatus(err, id, key)
	}
	return &pb.SplitResponse{Left: pbconv.DescriptorToProto(left), Right: pbconv.DescriptorToProto(right)}, nil
}

// CompactLog implements pb.AdminServer.
func (s *AdminServer) CompactLog(ctx context.Context, req *pb.CompactLogRequest) (*pb.CompactLogResponse, error) {
	id, err := shardID(req.GetShardId())
	if err != nil {
		return nil, err
	}
	first, err := s.engine.CompactLog(ctx, id, req.GetForce())
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	return &pb.CompactLogResponse{FirstIndex: first}, nil
}

// Drain implements pb.AdminServer: it returns once this node leads nothing
// or ctx ends (then with the leaderships left).
func (s *AdminServer) Drain(ctx context.Context, _ *pb.DrainRequest) (*pb.DrainResponse, error) {
	return &pb.DrainResponse{RemainingLeaders: uint32(Drain(ctx, s.engine, s.pollEvery))}, nil
}

// Drain makes e hand away its leaderships and waits until it holds none it
// could hand off (a group with no other live voter keeps its leader) or
// ctx ends; it returns how many it still holds.
func Drain(ctx context.Context, e *multiraft.Engine, pollEvery time.Duration) int {
	e.SetDraining(true)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		if e.LeadersToHandOff() == 0 {
			return e.Leaders()
		}
		select {
		case <-ctx.Done():
			return e.Leaders()
		case <-t.C:
		}
	}
}

// ConsistencyCheck implements pb.AdminServer: it proposes a checksum
// command, so every replica computes a checksum at the same log index, then
// collects them.
func (s *AdminServer) ConsistencyCheck(ctx context.Context, req *pb.ConsistencyCheckRequest) (*pb.ConsistencyCheckResponse, error) {
	id, err := shardID(req.GetShardId())
	if err != nil {
		return nil, err
	}
	index, sum, err := s.store.Checksum(ctx, id)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	d, err := s.store.Descriptor(id)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	resp := &pb.ConsistencyCheckResponse{Index: index, Consistent: true}
	for _, r := range d.Replicas {
		rc := &pb.ReplicaChecksum{ReplicaId: uint64(r.ReplicaID), NodeId: uint64(r.NodeID)}
		if r.NodeID == s.node {
			rc.Checksum = sum
		} else if conn, err := s.dial(r.NodeID); err != nil {
			rc.Error = err.Error()
		} else if theirs, err := s.remoteChecksum(ctx, pb.NewAdminClient(conn), id, index); err != nil {
			rc.Error = err.Error()
		} else {
			rc.Checksum = theirs
		}
		if rc.Error != "" || !bytes.Equal(rc.Checksum, sum) {
			resp.Consistent = false
		}
		resp.Checksums = append(resp.Checksums, rc)
	}
	return resp, nil
}

// remoteChecksum asks another replica for its checksum at index. A replica
// whose log does not reach index yet (OUT_OF_RANGE: it lags behind the
// quorum that committed the checksum command) is asked again every
// pollEvery until it answers otherwise or ctx ends.
func (s *AdminServer) remoteChecksum(ctx context.Context, c pb.AdminClient, id shard.ShardID, index uint64) ([]byte, error) {
	t := time.NewTicker(s.pollEvery)
	defer t.Stop()
	for {
		lr, err := c.LocalChecksum(ctx, &pb.LocalChecksumRequest{ShardId: uint64(id), Index: index})
		if status.Code(err) != codes.OutOfRange {
			return lr.GetChecksum(), err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-t.C:
		}
	}
}

// LocalChecksum implements pb.AdminServer. It waits for the checksum
// command at index to apply, but only for an index this replica's log
// already holds: a later one gets OUT_OF_RANGE at once (the caller retries
// if it knows the index was committed), not a wait until the deadline.
func (s *AdminServer) LocalChecksum(ctx context.Context, req *pb.LocalChecksumRequest) (*pb.LocalChecksumResponse, error) {
	id, err := shardID(req.GetShardId())
	if err != nil {
		return nil, err
	}
	if req.GetIndex() == 0 {
		return nil, invalid("index", "required")
	}
	st, err := s.engine.Status(ctx, id)
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	if req.GetIndex() > st.LastIndex {
		return nil, status.Errorf(codes.OutOfRange, "index: %d is beyond the last log index %d of replica %d of shard %d",
			req.GetIndex(), st.LastIndex, st.Replica, id)
	}
	sum, err := s.store.LocalChecksum(ctx, id, req.GetIndex())
	if err != nil {
		return nil, s.errs.toStatus(err, id, nil)
	}
	return &pb.LocalChecksumResponse{Checksum: sum}, nil
}
