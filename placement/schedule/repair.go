package schedule

import (
	"fmt"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// repair restores a shard's replication, one change per round, in this
// order: remove a stray learner (one left by an interrupted AddReplica);
// add a voter to a shard with fewer than ReplicationFactor; remove the
// worst voter of a shard with more; replace a voter on a dead node, adding
// its replacement before removing it. Shards whose live voters are not a
// quorum never get here (Raft could not commit the change).
func (p *planner) repair(pos int32) {
	v := p.view(int(pos))
	rf := p.set.ReplicationFactor
	var o outcome
	switch {
	case v.learners > 0:
		i := 0
		for !v.reps[i].Learner {
			i++
		}
		o = p.remove(&v, i, KindRepair, "stray learner "+p.describe(&v, i))
	case v.voters < rf:
		o = p.addVoter(&v)
	case v.voters > rf:
		i := p.worstVoter(&v)
		o = p.remove(&v, i, KindRepair, fmt.Sprintf("%d voters > %d, %s", v.voters, rf, p.describe(&v, i)))
	case v.dead > 0:
		i := 0
		for v.reps[i].Learner || (v.nodes[i] >= 0 && !p.nodes[v.nodes[i]].dead) {
			i++
		}
		o = p.move(&v, i, KindRepair, because("replace "+p.describe(&v, i)), nil)
	}
	p.note(pos, o)
}

// addVoter adds a replica to an under-replicated shard.
func (p *planner) addVoter(v *view) outcome {
	var buf [8]int32
	n, why := p.pickTarget(targetQuery{keep: p.keepNodes(v, -1, buf[:]), holders: v.nodes, size: v.s.SizeBytes})
	if n < 0 {
		return why
	}
	rid, ok := p.newReplicaID()
	if !ok {
		return stopped
	}
	id := v.s.Descriptor.ShardID
	r := multiraft.Replica{ReplicaID: rid, NodeID: p.nodes[n].n.ID}
	p.emit(Operator{
		Kind:   KindRepair,
		Shard:  id,
		Epoch:  v.s.Descriptor.Epoch,
		Steps:  []Step{AddReplica{Shard: id, Replica: r}},
		Reason: fmt.Sprintf("%d voters < %d", v.voters, p.set.ReplicationFactor),
	}, v.pos)
	return placed
}

// worstVoter returns the index of the voter to remove from a shard with too
// many: on a dead node first, then down, then draining; then the one whose
// zone holds most of the others; a follower before the leader; then the one
// on the node with the highest metric; then the highest replica ID.
func (p *planner) worstVoter(v *view) int {
	worst := -1
	var w removalRank
	for i, r := range v.reps {
		if r.Learner {
			continue
		}
		k := removalRank{class: 3}
		if i != v.leader {
			k.follower = 1
		}
		if n := v.nodes[i]; n >= 0 {
			ni := &p.nodes[n]
			switch {
			case ni.dead:
				k.class = 3
			case ni.down:
				k.class = 2
			case ni.draining:
				k.class = 1
			default:
				k.class = 0
			}
			k.zone, _ = p.zoneDup(n, v.nodes)
			k.metric = p.metric(n)
		}
		// Replicas are sorted by ID, so ">=" prefers the highest ID on ties.
		if worst < 0 || k.cmp(w) >= 0 {
			worst, w = i, k
		}
	}
	return worst
}

// removalRank orders replicas for removal: higher removes first.
type removalRank struct {
	class    int // 3 dead or unknown, 2 down, 1 draining, 0 up
	zone     int // other replicas in its zone
	follower int // 1 unless it leads
	metric   float64
}

func (a removalRank) cmp(b removalRank) int {
	switch {
	case a.class != b.class:
		return a.class - b.class
	case a.zone != b.zone:
		return a.zone - b.zone
	case a.follower != b.follower:
		return a.follower - b.follower
	case a.metric < b.metric:
		return -1
	case a.metric > b.metric:
		return 1
	}
	return 0
}

// drain moves a voter off a draining node: its leadership first, then a
// replacement is added and it is removed. It tries the shard's voters on
// draining nodes in order until one can move. When none can, the
// leadership still moves off a draining node.
func (p *planner) drain(pos int32) {
	v := p.view(int(pos))
	o, leaving := unplaceable, -1
	for i, r := range v.reps {
		if r.Learner || v.nodes[i] < 0 || !p.nodes[v.nodes[i]].draining {
			continue
		}
		if i == v.leader {
			leaving = i
		}
		if o = p.move(&v, i, KindDrain, because(p.describe(&v, i)), nil); o == placed {
			return
		}
	}
	if leaving >= 0 {
		if to := p.pickLeaderTarget(&v, leaving, nil); to >= 0 {
			p.emit(Operator{
				Kind:   KindDrain,
				Shard:  v.s.Descriptor.ShardID,
				Epoch:  v.s.Descriptor.Epoch,
				Steps:  []Step{v.transferStep(to)},
				Reason: "leadership off " + p.describe(&v, leaving),
			}, v.pos)
		}
	}
	p.note(pos, o)
}
