package schedule

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// Health is what is wrong with a cluster, as the placement status reports
// it (flotilla status, the status page, placementd's gauges): Assess
// computes it, and every surface reads that one result.
type Health struct {
	// Shards is len(Cluster.Shards).
	Shards int
	// UnderReplicated counts shards with fewer live voters than
	// ReplicationFactor. A voter is live when its node is up or draining:
	// a node not heard from within a few heartbeats (NodeDown) holds no
	// live voter, long before DownAfter declares it dead and repair starts.
	UnderReplicated int
	// Unavailable counts shards whose live voters are not a quorum of
	// their voters: they serve nothing, and Raft cannot change their
	// membership until enough of their nodes return.
	Unavailable int
	// Lagging counts shards whose leader reports a replica behind.
	Lagging int
	// BlockedShards counts the shards in the groups of Blocked that are not
	// Waiting, each once: they need a repair or a drain that cannot happen
	// until the cluster changes.
	BlockedShards int
	// WaitingShards counts the other shards in Blocked, each once: only
	// the per-node limits hold up their repair or drain.
	WaitingShards int
	// Blocked groups the shards that need a repair or a drain the
	// scheduler cannot make this round, by what they need and why: the
	// hopeless first (Waiting false), then by count. A shard that needs
	// both a repair and a drain may be in two groups.
	Blocked []Blocked
}

// Blocked is a group of shards that need the same change and cannot get
// it for the same reason.
type Blocked struct {
	// Need is the checker that cannot act: "repair" or "drain".
	Need string
	// Reason says why, e.g. "no live node without a replica of the shard".
	Reason string
	// Waiting is true when only the per-node limits are in the way: a
	// later round acts once operators in flight finish. Otherwise nothing
	// happens until the cluster changes (a node joins or returns).
	Waiting bool
	// Shards counts the shards of the group.
	Shards int
	// Examples are the lowest IDs of the group, at most MaxBlockedExamples.
	Examples []shard.ShardID
}

// MaxBlockedExamples bounds Blocked.Examples.
const MaxBlockedExamples = 5

// String formats b on one line, as flotilla status and the status page
// do, e.g.
//
//	blocked: 16 shards: cannot repair: no live node without a replica of the shard (s1 s2 s3 s4 s5 ...)
//	waiting: 2 shards: drain waits: per-node limits reached by operators in flight (s7 s9)
func (b Blocked) String() string {
	var sb strings.Builder
	noun := "shards"
	if b.Shards == 1 {
		noun = "shard"
	}
	if b.Waiting {
		fmt.Fprintf(&sb, "waiting: %d %s: %s waits: %s (", b.Shards, noun, b.Need, b.Reason)
	} else {
		fmt.Fprintf(&sb, "blocked: %d %s: cannot %s: %s (", b.Shards, noun, b.Need, b.Reason)
	}
	for i, id := range b.Examples {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "s%d", id)
	}
	if b.Shards > len(b.Examples) {
		sb.WriteString(" ...")
	}
	sb.WriteByte(')')
	return sb.String()
}

// Reasons a shard's needed change cannot be made, as Blocked.Reason
// spells them.
const (
	ReasonNoQuorum     = "its live voters are not a quorum; bring its nodes back"
	ReasonNoFreeNode   = "no live node without a replica of the shard"
	ReasonAllFull      = "every live node without a replica of the shard is above the fullness limit"
	ReasonNoLeaderMove = "no caught-up voter on a live node to take the leadership"
	ReasonLimits       = "per-node limits reached by operators in flight"
)

// Assess computes c's Health. It decides what the checkers that must act
// (repair, then drain) would do this round, exactly as Schedule does, and
// reports the shards they could not serve and why; it allocates no ID and
// returns no operator. Like Schedule it is pure: the same Cluster gives
// the same Health, and c is neither modified nor retained. Pass the
// operators in flight in c.InFlight, or the shards they serve may be
// reported as waiting for the per-node limits. It returns Schedule's
// errors for a malformed Cluster.
func Assess(c *Cluster) (Health, error) {
	if err := c.Settings.Validate(); err != nil {
		return Health{}, err
	}
	p, err := newPlanner(c, noIDs{})
	if err != nil {
		return Health{}, err
	}
	// The urgent checkers of Schedule's run, in its order.
	for _, pos := range p.repairs {
		if !p.busy[pos] {
			p.repair(pos)
		}
	}
	for _, pos := range p.drains {
		if !p.busy[pos] {
			p.drain(pos)
		}
	}
	return p.health(), nil
}

// noIDs is the allocator of Assess, whose operators are never executed.
type noIDs struct{}

func (noIDs) NewShardID() (shard.ShardID, error)         { return 0, nil }
func (noIDs) NewReplicaID() (multiraft.ReplicaID, error) { return 0, nil }

// health summarises the round so far: the counts classify made, and the
// shards the urgent checkers noted as not served, grouped by reason.
func (p *planner) health() Health {
	h := Health{Shards: p.stats.Shards, UnderReplicated: p.stats.UnderReplicated, Unavailable: p.stats.Unavailable}
	rf := p.set.ReplicationFactor
	type key struct {
		need, reason string
		waiting      bool
	}
	groups := map[key]*Blocked{}
	hopeless := false // the current shard is in a group that is not Waiting
	add := func(need, reason string, waiting bool, id shard.ShardID) {
		hopeless = hopeless || !waiting
		k := key{need, reason, waiting}
		b := groups[k]
		if b == nil {
			b = &Blocked{Need: need, Reason: reason, Waiting: waiting}
			groups[k] = b
		}
		b.Shards++
		if len(b.Examples) < MaxBlockedExamples {
			b.Examples = append(b.Examples, id)
		}
	}
	for i := range p.c.Shards {
		pos := i
		if p.order != nil {
			pos = int(p.order[i])
		}
		s := &p.c.Shards[pos]
		id := s.Descriptor.ShardID
		if len(s.Lagging) > 0 {
			h.Lagging++
		}
		v := p.view(pos)
		hopeless = false
		switch {
		case !v.available():
			add("repair", ReasonNoQuorum, false, id)
		case p.noted == nil || !p.noted[pos]:
			continue
		default:
			// A noted shard may be busy too: a drain that cannot move the
			// replica still moves the leadership.
			if v.learners > 0 || v.voters != rf || v.dead > 0 {
				reason, waiting := p.whyNotRepaired(&v)
				add("repair", reason, waiting, id)
			}
			if v.draining > 0 {
				reason, waiting := p.whyNoTarget(&v)
				add("drain", reason, waiting, id)
			}
		}
		if hopeless {
			h.BlockedShards++
		} else {
			h.WaitingShards++
		}
	}
	for _, b := range groups {
		h.Blocked = append(h.Blocked, *b)
	}
	slices.SortFunc(h.Blocked, func(a, b Blocked) int {
		if a.Waiting != b.Waiting {
			if a.Waiting {
				return 1
			}
			return -1
		}
		if c := cmp.Compare(b.Shards, a.Shards); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Need, b.Need); c != 0 {
			return c
		}
		return cmp.Compare(a.Reason, b.Reason)
	})
	return h
}

// whyNotRepaired explains why repair could not act on v (see repair for
// the order of its cases), and whether only the limits were in the way.
func (p *planner) whyNotRepaired(v *view) (string, bool) {
	rf := p.set.ReplicationFactor
	switch {
	case v.learners > 0:
		return ReasonLimits, true // a learner's removal waits only for its node's moves
	case v.voters < rf:
		return p.whyNoTarget(v)
	case v.voters > rf:
		if i := p.worstVoter(v); i == v.leader && !p.anyLeaderTarget(v, i) {
			return ReasonNoLeaderMove, false
		}
		return ReasonLimits, true
	}
	return p.whyNoTarget(v)
}

// whyNoTarget explains why no node could take a new replica of v: there
// is none that is up and does not hold the shard, or every such node is
// full; otherwise only the per-node limits were in the way.
func (p *planner) whyNoTarget(v *view) (string, bool) {
	free, roomy := 0, 0
	for _, n := range p.usable {
		if v.replicaOn(n) >= 0 {
			continue
		}
		free++
		if !p.full(n, v.s.SizeBytes) {
			roomy++
		}
	}
	switch {
	case free == 0:
		return ReasonNoFreeNode, false
	case roomy == 0:
		return ReasonAllFull, false
	}
	return ReasonLimits, true
}

// anyLeaderTarget reports whether a replica of v other than skip could take
// its leadership, the transfer limits aside: a caught-up voter on an up
// node.
func (p *planner) anyLeaderTarget(v *view, skip int) bool {
	for i, r := range v.reps {
		n := v.nodes[i]
		if i != skip && i != v.leader && !r.Learner && n >= 0 && p.nodes[n].usable && !slices.Contains(v.s.Lagging, r.ReplicaID) {
			return true
		}
	}
	return false
}

// waitsForLimits reports whether an urgent checker noted the shard at pos
// this round as needing a repair or a drain that only the per-node limits
// hold up.
func (p *planner) waitsForLimits(pos int32) bool {
	if p.noted == nil || !p.noted[pos] {
		return false
	}
	v := p.view(int(pos))
	if v.learners > 0 || v.voters != p.set.ReplicationFactor || v.dead > 0 {
		if _, waiting := p.whyNotRepaired(&v); waiting {
			return true
		}
	}
	if v.draining > 0 {
		if _, waiting := p.whyNoTarget(&v); waiting {
			return true
		}
	}
	return false
}
