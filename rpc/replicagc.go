package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// Replica garbage collection
//
// A replica removed from its shard while its node was away (down,
// partitioned) never hears of its removal: the group no longer talks to
// it. Nor does an empty replica created for an add that never happened
// (an operator that failed between CreateReplica and the membership
// change), nor one a message of a since-deposed leader created. Such a
// replica holds its shard's slot on the node: its key range (other
// replicas' snapshots that overlap it wait), and, until the engine sees a
// message for a newer replica of the shard, the shard itself.
//
// So the node looks for them (ReplicaGC, one goroutine for the whole
// node): a replica that has known no leader for a while, or has stayed
// empty for a while, is a suspect, and the node asks the shard's other
// replicas, the leader first, through their Admin service (FindLeader,
// which answers with the descriptor the answering node holds). Replica
// IDs are never reused, so the answer is decided by epochs:
//
//   - a descriptor with a higher ConfVer than the suspect's own that does
//     not name the suspect means it was removed since (a removed ID never
//     comes back);
//   - an empty suspect has no descriptor, so only the leader's answer
//     counts: the leader's descriptor not naming it means it is no member
//     (its add never happened, or was undone);
//   - any descriptor naming it, from the leader, means it is a member.
//
// A suspect found removed is destroyed (multiraft.Engine.RemoveReplica,
// which checks it is still that replica, and still empty if it was), and
// leaves a tombstone. A suspect found a member, or that nobody could
// answer for (its group lost its quorum, the network is cut), is asked
// again later: removing a replica on a guess could take a quorum's member
// away. The peers asked are the leader the suspect knows, the nodes of its
// descriptor, and, when none of them answers, every node the resolver
// knows (an empty replica knows no peer).
//
// Placement's own stray collection (placement.collectStrays) does the same
// from the other side, for replicas its view shows as strays; either may
// act first.

// ReplicaGCConfig configures a ReplicaGC. The zero value of every
// duration means its default.
type ReplicaGCConfig struct {
	// Interval between two looks at the node's replicas. Default 2 s.
	Interval time.Duration
	// LeaderlessAfter: a replica that has known no leader this long is a
	// suspect. Longer than an election with some margin, so that a group
	// that merely lost its leader is not asked about. Default 10 s.
	LeaderlessAfter time.Duration
	// EmptyAfter: an empty (uninitialised) replica is a suspect once it
	// stayed empty this long. Longer than any gap between creating a
	// replica and adding it to its shard. Default 1 minute.
	EmptyAfter time.Duration
	// RecheckAfter: a suspect found a member, or that no one could answer
	// for, is asked about again after this long. Default 30 s.
	RecheckAfter time.Duration
	// MaxChecksPerScan bounds how many suspects one look asks about (a
	// node back from a long absence may hold many). Default 64.
	MaxChecksPerScan int
	// Logger receives what the collector removes. Default slog.Default().
	Logger *slog.Logger
	// Clock reads the time. Default time.Now.
	Clock func() time.Time
}

func (c ReplicaGCConfig) withDefaults() ReplicaGCConfig {
	if c.Interval <= 0 {
		c.Interval = 2 * time.Second
	}
	if c.LeaderlessAfter <= 0 {
		c.LeaderlessAfter = 10 * time.Second
	}
	if c.EmptyAfter <= 0 {
		c.EmptyAfter = time.Minute
	}
	if c.RecheckAfter <= 0 {
		c.RecheckAfter = 30 * time.Second
	}
	if c.MaxChecksPerScan <= 0 {
		c.MaxChecksPerScan = 64
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// ReplicaGC removes the node's replicas that their shard no longer counts
// as members (see above). Run it in one goroutine; Scan is one look, for
// tests. Not safe for concurrent use.
type ReplicaGC struct {
	cfg      ReplicaGCConfig
	admin    *AdminServer
	suspects map[multiraft.GroupID]*suspect
}

// suspect is a replica that looked stale at some look.
type suspect struct {
	replica   multiraft.ReplicaID
	since     time.Time // first seen leaderless or empty
	empty     bool
	nextCheck time.Time
}

// NewReplicaGC returns the collector of the node that a serves: it uses
// a's engine, store, dialer and Nodes.
func NewReplicaGC(a *AdminServer, cfg ReplicaGCConfig) *ReplicaGC {
	return &ReplicaGC{cfg: cfg.withDefaults(), admin: a, suspects: make(map[multiraft.GroupID]*suspect)}
}

// Run looks at the node's replicas every Interval until ctx ends.
func (gc *ReplicaGC) Run(ctx context.Context) {
	t := time.NewTicker(gc.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		gc.Scan(ctx)
	}
}

// Scan looks at the node's replicas once, asks about the suspects that are
// due, removes those found removed, and returns how many it removed.
func (gc *ReplicaGC) Scan(ctx context.Context) int {
	now := gc.cfg.Clock()
	seen := make(map[multiraft.GroupID]bool)
	var due []multiraft.GroupSummary
	for _, g := range gc.admin.engine.Summaries() {
		empty := g.Applied == 0
		if !empty && (g.Leading || g.Leader != 0) {
			continue
		}
		seen[g.Group] = true
		s := gc.suspects[g.Group]
		if s == nil || s.replica != g.Replica || s.empty != empty {
			s = &suspect{replica: g.Replica, since: now, empty: empty}
			gc.suspects[g.Group] = s
		}
		after := gc.cfg.LeaderlessAfter
		if empty {
			after = gc.cfg.EmptyAfter
		}
		if now.Sub(s.since) >= after && !now.Before(s.nextCheck) && len(due) < gc.cfg.MaxChecksPerScan {
			due = append(due, g)
		}
	}
	for id := range gc.suspects {
		if !seen[id] {
			delete(gc.suspects, id)
		}
	}
	removed := 0
	for _, g := range due {
		if ctx.Err() != nil {
			break
		}
		s := gc.suspects[g.Group]
		s.nextCheck = now.Add(gc.cfg.RecheckAfter)
		if gc.collect(ctx, g, s.empty) {
			delete(gc.suspects, g.Group)
			removed++
		}
	}
	return removed
}

// collect asks about one suspect and removes it if it was removed from its
// shard. It reports whether it removed it.
func (gc *ReplicaGC) collect(ctx context.Context, g multiraft.GroupSummary, empty bool) bool {
	a := gc.admin
	var mine *shard.Descriptor
	if d, err := a.store.Descriptor(g.Group); err == nil {
		mine = &d
	}
	v, why := a.membership(ctx, g.Group, g.Replica, mine, g.LeaderNode)
	if v != removedReplica {
		gc.cfg.Logger.Debug("replica GC: keeping a suspect replica", "shard", g.Group, "replica", g.Replica, "verdict", v, "why", why)
		return false
	}
	err := a.engine.RemoveReplica(ctx, g.Group, g.Replica, empty || mine == nil)
	if err != nil {
		gc.cfg.Logger.Info("replica GC: removing a stale replica failed", "shard", g.Group, "replica", g.Replica, "err", err)
		return false
	}
	gc.cfg.Logger.Info("replica GC: removed a replica its shard no longer counts", "shard", g.Group, "replica", g.Replica, "why", why)
	return true
}

// verdict is what a replica's shard says of it.
type verdict int

const (
	unknownReplica verdict = iota // no one who knows answered
	memberReplica
	removedReplica
)

func (v verdict) String() string {
	switch v {
	case memberReplica:
		return "member"
	case removedReplica:
		return "removed"
	}
	return "unknown"
}

// membershipAskTimeout bounds one FindLeader call of a membership check.
const membershipAskTimeout = 2 * time.Second

// membership asks the shard's replicas on other nodes whether replica,
// this node's replica of shard id (with descriptor mine, nil if it is
// empty), is still a member (see the comment at the top of this file).
// hint is the node of the leader the replica knows, or 0. It returns the
// verdict and what decided it.
func (s *AdminServer) membership(ctx context.Context, id shard.ShardID, replica multiraft.ReplicaID, mine *shard.Descriptor,
	hint multiraft.NodeID) (verdict, string) {
	asked := map[multiraft.NodeID]bool{s.node: true}
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
			if all || s.nodes == nil {
				break
			}
			all = true
			queue = append(queue, s.nodes()...)
			if i == len(queue) {
				break
			}
		}
		n := queue[i]
		if n == 0 || asked[n] {
			continue
		}
		asked[n] = true
		resp, err := s.findLeaderOn(ctx, n, id)
		if err != nil {
			continue // unreachable, or hosts no replica of the shard
		}
		if lead := multiraft.NodeID(resp.GetLeaderNodeId()); lead != 0 && !asked[lead] {
			// Ask the leader next: its descriptor is the freshest.
			queue = append(queue[:i+1], append([]multiraft.NodeID{lead}, queue[i+1:]...)...)
		}
		if resp.GetShard() == nil {
			continue // an empty replica there knows nothing
		}
		d := pbconv.DescriptorFromProto(resp.GetShard())
		fromLeader := multiraft.NodeID(resp.GetLeaderNodeId()) == n
		_, named := d.Replica(replica)
		switch {
		case named && fromLeader:
			return memberReplica, fmt.Sprintf("the leader on node %d names it in %s", n, &d)
		case named:
			namedBy = n
		case mine != nil && d.Epoch.ConfVer > mine.Epoch.ConfVer:
			return removedReplica, fmt.Sprintf("node %d holds %s, newer than its own %s, without it", n, &d, mine.Epoch)
		case mine == nil && fromLeader:
			return removedReplica, fmt.Sprintf("it is empty and the leader on node %d does not name it in %s", n, &d)
		}
	}
	if namedBy != 0 {
		return memberReplica, fmt.Sprintf("node %d names it (no leader answered)", namedBy)
	}
	return unknownReplica, fmt.Sprintf("none of nodes %v answered for shard %d with a newer descriptor or as its leader", nodeList(asked), id)
}

// findLeaderOn asks node n's Admin service about shard id.
func (s *AdminServer) findLeaderOn(ctx context.Context, n multiraft.NodeID, id shard.ShardID) (*pb.FindLeaderResponse, error) {
	if s.dial == nil {
		return nil, errors.New("rpc: no dialer")
	}
	conn, err := s.dial(n)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, membershipAskTimeout)
	defer cancel()
	return pb.NewAdminClient(conn).FindLeader(cctx, &pb.FindLeaderRequest{ShardId: uint64(id)})
}

// nodeList returns the nodes of m other than 0, sorted, for messages.
func nodeList(m map[multiraft.NodeID]bool) []multiraft.NodeID {
	out := make([]multiraft.NodeID, 0, len(m))
	for n := range m {
		if n != 0 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
