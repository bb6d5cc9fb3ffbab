package schedule

import "fmt"

// crowdedZone returns the zone holding the most (at least two) of v's
// voters, the lowest zone on ties, or -1 if every voter has its own zone.
func (p *planner) crowdedZone(v *view) int32 {
	best, bestCount := int32(-1), 1
	for i, r := range v.reps {
		n := v.nodes[i]
		if r.Learner || n < 0 {
			continue
		}
		z := p.nodes[n].zone
		count := 0
		for j, m := range v.nodes {
			if m >= 0 && !v.reps[j].Learner && p.nodes[m].zone == z {
				count++
			}
		}
		if count > bestCount || (count == bestCount && count > 1 && z < best) {
			best, bestCount = z, count
		}
	}
	return best
}

// spreadZones moves one replica of a healthy shard out of the zone that
// holds the most of its voters into a zone that holds none, when the shard
// spans fewer zones than it could: min(ReplicationFactor, zones of the up
// nodes). With at least RF zones that means no two replicas share a zone;
// with fewer, that every zone holds one. The replica that moves is a
// follower if possible, then the one on the node with the highest metric.
func (p *planner) spreadZones(pos int32) {
	v := p.view(int(pos))
	z := p.crowdedZone(&v)
	from := -1
	var w removalRank
	count := 0
	for i, r := range v.reps {
		n := v.nodes[i]
		if r.Learner || n < 0 || p.nodes[n].zone != z {
			continue
		}
		count++
		k := removalRank{metric: p.metric(n)}
		if i != v.leader {
			k.follower = 1
		}
		if from < 0 || k.cmp(w) >= 0 {
			from, w = i, k
		}
	}
	var buf [8]int32
	keep := p.keepNodes(&v, from, buf[:])
	accept := func(n int32) bool {
		dup, _ := p.zoneDup(n, keep)
		return dup == 0
	}
	reason := fmt.Sprintf("zone %q holds %d of %d voters", p.nodes[v.nodes[from]].n.Labels.Zone, count, v.voters)
	p.note(pos, p.move(&v, from, KindZone, because(reason), accept))
}
