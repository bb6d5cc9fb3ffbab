package placement

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// The executor runs operator steps through the shardnodes' Admin service.
// Each step is idempotent: run again after a partial failure, it finishes
// the job or finds it done (AlreadyExists, a member already there). A step
// that changes a shard goes to the shard's leader, found through the view
// or, failing that, by asking the replicas.

// leaderOf finds the node leading shard id: the view's answer if it has
// one, else the first replica that knows.
func (c *coordinator) leaderOf(ctx context.Context, id shard.ShardID) (multiraft.NodeID, error) {
	for _, n := range c.view.leaderCandidates(id) {
		a, err := c.admin(n)
		if err != nil {
			continue
		}
		resp, err := a.FindLeader(ctx, &pb.FindLeaderRequest{ShardId: uint64(id)})
		if err == nil && resp.GetLeaderNodeId() != 0 {
			return multiraft.NodeID(resp.GetLeaderNodeId()), nil
		}
	}
	return 0, fmt.Errorf("placement: no leader known for shard %d", id)
}

// onLeader runs f against the Admin service of shard's leader, trying
// again, up to three tries in all, after a NotLeader answer (at the leader
// found anew) and after a Busy one (once the wait it asks for has passed):
// a shardnode answers Busy when raft dropped the proposal, which surely did
// not apply (say, a membership change proposed while another was still
// applying), so the same request is safe to send again. Without the
// retry, an operator asked for through the API failed on one such drop.
func (c *coordinator) onLeader(ctx context.Context, id shard.ShardID, f func(pb.AdminClient) error) error {
	for try := 1; ; try++ {
		lead, err := c.leaderOf(ctx, id)
		if err != nil {
			return err
		}
		a, err := c.admin(lead)
		if err != nil {
			return err
		}
		if err = f(a); err == nil {
			return nil
		}
		wait, again := tryAgain(err)
		if !again || try == 3 {
			return err
		}
		if wait > 0 && c.cfg.Runtime.Sleep(ctx, wait) != nil {
			return err
		}
	}
}

// maxBusyWait caps the wait a Busy answer asks for before a try again.
const maxBusyWait = time.Second

// tryAgain reports whether a shard leader's answer err asks for another
// try, and how long to wait before it: NotLeader, at once; Busy, the wait
// it asks for (at least a millisecond, at most maxBusyWait).
func tryAgain(err error) (wait time.Duration, again bool) {
	for _, d := range status.Convert(err).Details() {
		switch d := d.(type) {
		case *pb.NotLeader:
			return 0, true
		case *pb.Busy:
			return min(max(time.Duration(d.GetRetryAfterMs())*time.Millisecond, time.Millisecond), maxBusyWait), true
		}
	}
	return 0, false
}

func isNotLeader(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if _, ok := d.(*pb.NotLeader); ok {
			return true
		}
	}
	return false
}

// createShard creates every replica of a new shard.
func (c *coordinator) createShard(ctx context.Context, d shard.Descriptor) error {
	var errs []error
	for _, r := range d.Replicas {
		a, err := c.admin(r.NodeID)
		if err == nil {
			_, err = a.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: pbconv.DescriptorToProto(d)})
		}
		if err != nil && status.Code(err) != codes.AlreadyExists {
			errs = append(errs, fmt.Errorf("replica %d on node %d: %w", r.ReplicaID, r.NodeID, err))
		}
	}
	return errors.Join(errs...)
}

// addReplica creates an empty replica on its node and has the leader add it
// (as a learner, caught up, then promoted unless learner).
func (c *coordinator) addReplica(ctx context.Context, id shard.ShardID, r multiraft.Replica, learner bool) error {
	a, err := c.admin(r.NodeID)
	if err != nil {
		return err
	}
	_, err = a.CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: &pb.Descriptor{ShardId: uint64(id)}, Join: true, ReplicaId: uint64(r.ReplicaID)})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("creating replica %d on node %d: %w", r.ReplicaID, r.NodeID, err)
	}
	return c.onLeader(ctx, id, func(a pb.AdminClient) error {
		_, err := a.AddReplica(ctx, &pb.AddReplicaRequest{ShardId: uint64(id), Learner: learner,
			Replica: &pb.Replica{ReplicaId: uint64(r.ReplicaID), NodeId: uint64(r.NodeID)}})
		return err
	})
}

// removeReplica removes a replica from its shard; when it leads, its
// leadership moves to another voter first. Every removal placement plans
// leaves at least ReplicationFactor voters (repair removes only from a
// shard with more, a move adds before it removes), so a removal of a voter
// that the leader's current descriptor says would leave fewer was planned
// from a stale view (an earlier change whose outcome was unknown had
// applied, say) and is refused: it could take the shard's live quorum away.
//
// A removal whose replica turns out to lead (the view, a heartbeat behind,
// said it followed) moves the leadership, then removes it through the new
// leader within the same operator. Failing the operator instead let the
// next round, from a view still a heartbeat behind, pick the new leader
// for removal, whose leadership then moved back: the fleet simulator's
// seed 3667 alternated between two replicas for 6,000 steps.
func (c *coordinator) removeReplica(ctx context.Context, id shard.ShardID, replica multiraft.ReplicaID) error {
	var err error
	for range 3 {
		if err = c.removeOnLeader(ctx, id, replica); !errors.Is(err, errLeadershipMoved) {
			return err
		}
	}
	return status.Error(codes.Unavailable, err.Error())
}

// errLeadershipMoved: removeOnLeader moved the leadership away from the
// replica to remove; the removal goes to the new leader.
var errLeadershipMoved = errors.New("leadership moved before removal")

// removeOnLeader is one attempt of removeReplica.
func (c *coordinator) removeOnLeader(ctx context.Context, id shard.ShardID, replica multiraft.ReplicaID) error {
	return c.onLeader(ctx, id, func(a pb.AdminClient) error {
		info, err := a.GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: uint64(id)})
		if err != nil {
			return err
		}
		if info.GetReplicaId() == uint64(replica) {
			for _, r := range info.GetShard().GetReplicas() {
				if r.GetReplicaId() != uint64(replica) && !r.GetLearner() {
					if _, err := a.TransferLeader(ctx, &pb.TransferLeaderRequest{ShardId: uint64(id), ToReplicaId: r.GetReplicaId()}); err != nil {
						return err
					}
					return errLeadershipMoved
				}
			}
		}
		found, voter, voters := false, false, 0
		for _, r := range info.GetShard().GetReplicas() {
			found = found || r.GetReplicaId() == uint64(replica)
			if !r.GetLearner() {
				voters++
				voter = voter || r.GetReplicaId() == uint64(replica)
			}
		}
		if !found {
			return nil // already removed
		}
		if voter && voters-1 < c.cfg.ReplicationFactor {
			return fmt.Errorf("placement: removing voter %d of shard %d would leave %d voters, fewer than %d: planned from a stale view",
				replica, id, voters-1, c.cfg.ReplicationFactor)
		}
		// At the epoch just read: the leader proposes the removal only if
		// the members are still those counted above. A change committed
		// but not yet applied when they were read (a removal of an earlier
		// operator whose outcome was unknown, say) may apply before the
		// proposal; counted from the members before it, the removal left
		// a shard two voters, one of them down (the fleet simulator's seed
		// 2487).
		_, err = a.ChangeReplicas(ctx, &pb.ChangeReplicasRequest{ShardId: uint64(id), Epoch: info.GetShard().GetEpoch(),
			Changes: []*pb.ReplicaChange{{Type: pb.ChangeType_CHANGE_TYPE_REMOVE, Replica: &pb.Replica{ReplicaId: uint64(replica)}}}})
		return err
	})
}

// transferLeader moves shard's leadership to replica to.
func (c *coordinator) transferLeader(ctx context.Context, id shard.ShardID, to multiraft.ReplicaID) error {
	return c.onLeader(ctx, id, func(a pb.AdminClient) error {
		_, err := a.TransferLeader(ctx, &pb.TransferLeaderRequest{ShardId: uint64(id), ToReplicaId: uint64(to)})
		return err
	})
}

// split splits shard at key (empty: the leader picks the middle key).
func (c *coordinator) split(ctx context.Context, id shard.ShardID, key []byte, newShard shard.ShardID, mapping map[multiraft.ReplicaID]multiraft.ReplicaID) error {
	req := &pb.SplitRequest{ShardId: uint64(id), SplitKey: key, NewShardId: uint64(newShard), NewReplicaIds: map[uint64]uint64{}}
	for o, n := range mapping {
		req.NewReplicaIds[uint64(o)] = uint64(n)
	}
	return c.onLeader(ctx, id, func(a pb.AdminClient) error {
		_, err := a.Split(ctx, req)
		return err
	})
}
