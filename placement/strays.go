package placement

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// stray is a replica that a node hosts but its shard's descriptor does not
// count.
type stray struct {
	node    multiraft.NodeID
	shard   shard.ShardID
	replica multiraft.ReplicaID
	epoch   shard.Epoch // of the descriptor that leaves it out
}

// collectStrays removes replicas that nodes still host but whose shard, as
// its leader reports it, no longer counts them: replicas removed while their
// node was away. A replica targeted by an operator in flight (an added
// replica not yet in the descriptor) is left alone.
func (c *coordinator) collectStrays(ctx context.Context, now time.Time) {
	strays := c.view.strays(now, c.downThreshold(), 2*c.cfg.HeartbeatInterval)
	// In a fixed order, so a seed of the simulator replays.
	slices.SortFunc(strays, func(a, b stray) int {
		return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.shard, b.shard))
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range strays {
		if _, busy := c.mu.flights[st.shard]; busy {
			continue
		}
		c.cfg.Runtime.Go("remove stray", func() {
			cctx, cancel := c.cfg.Runtime.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := c.removeStray(cctx, st.node, st.shard, st.replica, st.epoch); err != nil {
				c.cfg.Logger.Debug("removing a stray replica", "node", st.node, "shard", st.shard, "err", err)
			} else {
				c.cfg.Logger.Info("removed a stray replica", "node", st.node, "shard", st.shard)
			}
		})
	}
}

// removeStray deletes replica, which a node still hosts although its shard,
// as seen at epoch, no longer counts it as a member (it was removed while
// its node was away). The view may hold a stale leader's report (a new
// placement leader's first one, say), so the removal is proven the way
// rpc's replica collector proves it: the replica's own descriptor must be
// older (a lower ConfVer) than the one that leaves it out, replica IDs
// being never reused; an empty replica (no descriptor) has nothing to
// lose. Naming the replica makes the node keep a newer replica of the
// shard that an operator added there since the heartbeat was taken.
func (c *coordinator) removeStray(ctx context.Context, node multiraft.NodeID, id shard.ShardID, replica multiraft.ReplicaID, epoch shard.Epoch) error {
	a, err := c.admin(node)
	if err != nil {
		return err
	}
	info, err := a.GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: uint64(id)})
	switch {
	case status.Code(err) == codes.NotFound:
		return nil // gone already
	case err != nil:
		return err
	case info.GetReplicaId() != uint64(replica):
		return nil // replaced by a newer replica
	case info.GetShard() != nil && info.GetShard().GetEpoch().GetConfVer() >= epoch.ConfVer:
		return fmt.Errorf("placement: replica %d of shard %d on node %d holds epoch %s, not older than %s: not proven removed",
			replica, id, node, pbconv.EpochFromProto(info.GetShard().GetEpoch()), epoch)
	}
	_, err = a.RemoveReplica(ctx, &pb.RemoveReplicaRequest{ShardId: uint64(id), ReplicaId: uint64(replica)})
	switch status.Code(err) {
	case codes.NotFound, codes.FailedPrecondition:
		return nil // gone already, or replaced by a newer replica
	}
	return err
}
