package placement

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// orphanAfter is how long nodes must host a shard that no leader reports
// before the leader looks into it (recreateOrphans).
func (c *coordinator) orphanAfter() time.Duration { return 10 * c.cfg.HeartbeatInterval }

// recreateOrphans finishes the bootstraps a placement failover cut short.
// A bootstrap records itself in the catalogue before it creates its
// shards; if the leader dies before a shard has a replica on a quorum of
// its nodes, no replica of it can ever lead, so no leader reports it and
// no round sees it, and its key range stays unavailable. The replicas
// that were created do show in their nodes' heartbeats. A shard that nodes
// have hosted for orphanAfter without any leader reporting it, and whose
// hosted replica still holds its initial descriptor (epoch 1/1: it never
// changed since the bootstrap), is created again on every node of that
// descriptor: every replica of a new shard starts from the same state, so
// creating the missing ones now is the bootstrap finishing late
// (recreateShard).
func (c *coordinator) recreateOrphans(ctx context.Context, now time.Time) {
	hosts := c.view.unreported(now, c.downThreshold())
	for id := range c.orphans {
		if hosts[id] == nil {
			delete(c.orphans, id)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(hosts)) {
		first, seen := c.orphans[id]
		if _, busy := c.mu.flights[id]; busy || !seen {
			c.orphans[id] = now
			continue
		}
		if now.Sub(first) < c.orphanAfter() {
			continue
		}
		c.orphans[id] = now // look again after orphanAfter
		nodes := hosts[id]
		slices.Sort(nodes)
		c.cfg.Runtime.Go("recreate orphan", func() {
			cctx, cancel := c.cfg.Runtime.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := c.recreateShard(cctx, id, nodes); err != nil {
				c.cfg.Logger.Warn("recreating a shard no leader reports", "shard", id, "err", err)
			}
		})
	}
}

// recreateShard creates again the replicas of shard id that a bootstrap
// cut short left missing (see recreateOrphans): it reads the descriptor of
// a replica on one of nodes and, if it is still the initial one and knows
// no leader, creates every replica of it (CreateReplica answers
// AlreadyExists for those that exist).
func (c *coordinator) recreateShard(ctx context.Context, id shard.ShardID, nodes []multiraft.NodeID) error {
	var errs []error
	for _, n := range nodes {
		a, err := c.admin(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		info, err := a.GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: uint64(id)})
		if err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", n, err))
			continue
		}
		if info.GetShard() == nil {
			continue // an empty replica knows nothing
		}
		d := pbconv.DescriptorFromProto(info.GetShard())
		if d.Epoch != (shard.Epoch{ConfVer: 1, Version: 1}) || info.GetLeaderReplicaId() != 0 {
			return nil // not a bootstrap left unfinished: its own replicas sort it out
		}
		if err := c.createShard(ctx, d); err != nil {
			return err
		}
		c.cfg.Logger.Info("created the missing replicas of a shard whose bootstrap was cut short", "shard", id, "descriptor", d.String())
		return nil
	}
	return errors.Join(errs...)
}
