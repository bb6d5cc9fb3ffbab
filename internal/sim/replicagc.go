package sim

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// The replica collector of a simulated shardnode, as rpc.ReplicaGC does
// it (the shardnode runs one): a replica that has known no leader for a
// while, or stayed empty for a while, is checked with the shard's other
// replicas (FindLeader, the leader first), and removed, leaving its
// tombstone, when a newer descriptor leaves it out. The membership check
// is also what CreateReplica's re-add uses (admin.go). It runs as an actor
// of the node. Keep it in step with rpc/replicagc.go; its timing is
// scaled to the simulator's, like placement's (fleet.go).

const (
	gcInterval        = 500 * time.Millisecond
	gcLeaderlessAfter = 3 * time.Second
	gcEmptyAfter      = 15 * time.Second
	gcRecheckAfter    = 5 * time.Second
	gcMaxChecks       = 64
	// membershipAskTimeout bounds one FindLeader call of a membership
	// check (rpc's).
	membershipAskTimeout = 2 * time.Second
)

// verdict is what a replica's shard says of it.
type verdict int

const (
	unknownReplica verdict = iota // no one who knows answered
	memberReplica
	removedReplica
)

// gcSuspect is a replica that looked stale at some look.
type gcSuspect struct {
	replica   multiraft.ReplicaID
	since     int // step first seen leaderless or empty
	empty     bool
	nextCheck int
}

// runReplicaGC is the collector's loop; it ends when the node crashes.
func (n *node) runReplicaGC() {
	ctx := context.Background()
	suspects := map[multiraft.GroupID]*gcSuspect{}
	for {
		_ = n.s.actors.sleep(ctx, gcInterval)
		n.scanReplicas(ctx, suspects)
	}
}

// scanReplicas is one look (rpc.ReplicaGC.Scan).
func (n *node) scanReplicas(ctx context.Context, suspects map[multiraft.GroupID]*gcSuspect) {
	s := n.s
	seen := map[multiraft.GroupID]bool{}
	var due []multiraft.GroupSummary
	for _, g := range n.e.Summaries() {
		empty := g.Applied == 0
		if !empty && (g.Leading || g.Leader != 0) {
			continue
		}
		seen[g.Group] = true
		sp := suspects[g.Group]
		if sp == nil || sp.replica != g.Replica || sp.empty != empty {
			sp = &gcSuspect{replica: g.Replica, since: s.step, empty: empty}
			suspects[g.Group] = sp
		}
		after := stepsOf(gcLeaderlessAfter)
		if empty {
			after = stepsOf(gcEmptyAfter)
		}
		if s.step-sp.since >= after && s.step >= sp.nextCheck && len(due) < gcMaxChecks {
			due = append(due, g)
		}
	}
	for _, id := range sortedGroups(suspects) {
		if !seen[id] {
			delete(suspects, id)
		}
	}
	for _, g := range due {
		sp := suspects[g.Group]
		sp.nextCheck = s.step + stepsOf(gcRecheckAfter)
		if n.collect(ctx, g, sp.empty) {
			delete(suspects, g.Group)
		}
	}
}

// collect asks about one suspect and removes it if it was removed from
// its shard (rpc.ReplicaGC.collect).
func (n *node) collect(ctx context.Context, g multiraft.GroupSummary, empty bool) bool {
	var mine *shard.Descriptor
	if d, err := n.store.Descriptor(g.Group); err == nil {
		mine = &d
	}
	v, why := n.membership(ctx, g.Group, g.Replica, mine, g.LeaderNode)
	if v != removedReplica {
		return false
	}
	if _, err := n.s.actors.wait(ctx, n.e.RemoveReplicaFuture(g.Group, g.Replica, empty || mine == nil)); err != nil {
		n.s.tracef("n%d: replica GC: removing r%d of g%d failed: %v", n.id, g.Replica, g.Group, err)
		return false
	}
	n.s.stats.ReplicasCollected++
	n.s.tracef("n%d: replica GC removed r%d of g%d: %s", n.id, g.Replica, g.Group, why)
	return true
}

// membership asks the shard's replicas on other nodes whether replica,
// n's replica of shard id (with descriptor mine, nil if it is empty), is
// still a member (rpc.AdminServer.membership). hint is the node of the
// leader the replica knows, or 0.
func (n *node) membership(ctx context.Context, id shard.ShardID, replica multiraft.ReplicaID, mine *shard.Descriptor,
	hint multiraft.NodeID) (verdict, string) {
	asked := map[multiraft.NodeID]bool{n.id: true}
	queue := []multiraft.NodeID{hint}
	if mine != nil {
		for _, r := range mine.Replicas {
			queue = append(queue, r.NodeID)
		}
	}
	all := false
	namedBy := multiraft.NodeID(0)
	for i := 0; ; i++ {
		if i == len(queue) {
			if all {
				break
			}
			all = true
			queue = append(queue, n.s.knownNodes()...)
			if i == len(queue) {
				break
			}
		}
		o := queue[i]
		if o == 0 || asked[o] {
			continue
		}
		asked[o] = true
		resp, err := n.findLeaderOn(ctx, o, id)
		if err != nil {
			continue // unreachable, or hosts no replica of the shard
		}
		if lead := multiraft.NodeID(resp.GetLeaderNodeId()); lead != 0 && !asked[lead] {
			queue = append(queue[:i+1], append([]multiraft.NodeID{lead}, queue[i+1:]...)...)
		}
		if resp.GetShard() == nil {
			continue
		}
		d := pbconv.DescriptorFromProto(resp.GetShard())
		fromLeader := multiraft.NodeID(resp.GetLeaderNodeId()) == o
		_, named := d.Replica(replica)
		switch {
		case named && fromLeader:
			return memberReplica, fmt.Sprintf("the leader on node %d names it in %s", o, &d)
		case named:
			namedBy = o
		case mine != nil && d.Epoch.ConfVer > mine.Epoch.ConfVer:
			return removedReplica, fmt.Sprintf("node %d holds %s, newer than its own %s, without it", o, &d, mine.Epoch)
		case mine == nil && fromLeader:
			return removedReplica, fmt.Sprintf("it is empty and the leader on node %d does not name it in %s", o, &d)
		}
	}
	if namedBy != 0 {
		return memberReplica, fmt.Sprintf("node %d names it (no leader answered)", namedBy)
	}
	var nodes []multiraft.NodeID
	for o := range asked {
		nodes = append(nodes, o)
	}
	slices.Sort(nodes)
	return unknownReplica, fmt.Sprintf("none of nodes %v answered for shard %d with a newer descriptor or as its leader", nodes, id)
}

// findLeaderOn asks node o's Admin service about shard id.
func (n *node) findLeaderOn(ctx context.Context, o multiraft.NodeID, id shard.ShardID) (*pb.FindLeaderResponse, error) {
	if int(o) < 1 || int(o) > len(n.s.nodes) {
		return nil, fmt.Errorf("sim: no node %d", o)
	}
	cctx, cancel := n.s.actors.withTimeout(ctx, membershipAskTimeout)
	defer cancel()
	return adminClient{s: n.s, from: n, to: n.s.nodes[o-1]}.FindLeader(cctx, &pb.FindLeaderRequest{ShardId: uint64(id)})
}

// knownNodes is every node a shardnode's resolver knows: those that joined
// (placement's heartbeat answers list every registered node).
func (s *simulation) knownNodes() []multiraft.NodeID {
	var out []multiraft.NodeID
	for _, o := range s.nodes {
		if o.joined {
			out = append(out, o.id)
		}
	}
	return out
}
