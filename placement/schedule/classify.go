package schedule

import (
	"slices"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// view summarises one shard's replicas against the nodes' states.
type view struct {
	pos   int
	s     *Shard
	reps  []multiraft.Replica
	nodes []int32 // node index per replica, -1 if unknown

	voters    int
	learners  int
	live      int // voters on nodes that are not down
	dead      int // voters on dead or unknown nodes
	draining  int // voters on draining nodes
	notUsable int // replicas on nodes that are not up
	leader    int // index in reps, -1 if unknown
}

func (p *planner) view(pos int) view {
	s := &p.c.Shards[pos]
	v := view{pos: pos, s: s, reps: s.Descriptor.Replicas, nodes: p.replicaNodes(pos), leader: p.leaderIndex(pos)}
	for i, r := range v.reps {
		n := v.nodes[i]
		if n < 0 || !p.nodes[n].usable {
			v.notUsable++
		}
		if r.Learner {
			v.learners++
			continue
		}
		v.voters++
		switch {
		case n < 0 || p.nodes[n].dead:
			v.dead++
		case p.nodes[n].down:
		default:
			v.live++
			if p.nodes[n].draining {
				v.draining++
			}
		}
	}
	return v
}

// available reports whether the live voters are a quorum, so that Raft can
// change the shard's membership.
func (v *view) available() bool { return v.live >= v.voters/2+1 }

// healthy reports whether the shard has exactly rf voters, no learner, and
// every replica on an up node: only such shards are moved for zone spread
// or balance.
func (v *view) healthy(rf int) bool {
	return v.voters == rf && v.learners == 0 && v.notUsable == 0
}

// spansZones returns how many distinct zones v's voters are in.
func (p *planner) spansZones(v *view) int {
	var zones [16]int32
	nz := 0
	for i, r := range v.reps {
		n := v.nodes[i]
		if r.Learner || n < 0 {
			continue
		}
		if z := p.nodes[n].zone; !slices.Contains(zones[:nz], z) && nz < len(zones) {
			zones[nz] = z
			nz++
		}
	}
	return nz
}

// replicaOn returns the index in reps of the replica on node n, or -1.
func (v *view) replicaOn(n int32) int {
	for i, m := range v.nodes {
		if m == n {
			return i
		}
	}
	return -1
}

// classify puts the shard at pos into the checkers' candidate lists (it is
// called in shard ID order, so the lists are sorted) and counts its health
// in the statistics: under-replicated when fewer than ReplicationFactor
// of its voters are live (on a node that is not down: a node silent for a
// few heartbeats counts at once, long before DownAfter), unavailable when
// those are not a quorum. Shards with an operator in flight are listed
// too: the checkers skip them.
func (p *planner) classify(pos32 int32) {
	rf := p.set.ReplicationFactor
	v := p.view(int(pos32))
	if v.live < rf {
		p.stats.UnderReplicated++
	}
	if !v.available() {
		p.stats.Unavailable++
		return
	}
	if v.learners > 0 || v.voters != rf || v.dead > 0 {
		p.repairs = append(p.repairs, pos32)
	}
	if v.draining > 0 {
		p.drains = append(p.drains, pos32)
	}
	if p.zones > 1 && v.healthy(rf) && p.spansZones(&v) < min(rf, p.zones) {
		p.zoneMoves = append(p.zoneMoves, pos32)
	}
	if v.dead == 0 && v.learners == 0 && p.needsSplit(v.s) != "" {
		p.splits = append(p.splits, pos32)
	}
}
