package schedule

import (
	"fmt"
	"slices"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// outcome says why a placement did or did not happen.
type outcome uint8

const (
	placed outcome = iota
	throttled
	unplaceable
	noLeaderTarget
	// stopped: the allocator failed; the round stops (see planner.err).
	stopped
)

// note counts a failed placement for the shard at pos in the statistics,
// once per shard.
func (p *planner) note(pos int32, o outcome) {
	if o == placed {
		return
	}
	if p.noted == nil {
		p.noted = make([]bool, len(p.c.Shards))
	}
	if p.noted[pos] {
		return
	}
	p.noted[pos] = true
	switch o {
	case throttled:
		p.stats.Throttled++
	case unplaceable, noLeaderTarget:
		p.stats.Unplaceable++
	}
}

// verifyRanking makes pickTarget check pickRanked against a full scan
// (tests set it).
var verifyRanking = false

// targetQuery asks for the best node to receive a new replica of a shard.
type targetQuery struct {
	keep    []int32 // nodes of the replicas that stay, for diversity
	holders []int32 // nodes that hold a replica of the shard: excluded
	size    int64   // bytes the new replica brings
	free    bool    // ignore the per-node limits (bootstrap copies nothing)
	accept  func(n int32) bool
	among   []int32 // candidate nodes, by ID; nil: every usable node
}

// pickTarget returns the best usable node for q, or -1 and why not. Best
// is, in order: fewest kept replicas in its zone, then in its rack (zone
// diversity first), lowest metric (replica count or used fraction), lowest
// load, lowest ID.
func (p *planner) pickTarget(q targetQuery) (int32, outcome) {
	if !q.free && p.open == 0 {
		return -1, throttled
	}
	if !q.free && q.among == nil {
		n, o := p.pickRanked(q)
		if verifyRanking {
			q.among = p.usable
			if m, mo := p.pickTarget(q); m != n || mo != o {
				panic(fmt.Sprintf("schedule: ranked target n%d (%v) differs from scanned n%d (%v)", n, o, m, mo))
			}
		}
		return n, o
	}
	best, why := int32(-1), unplaceable
	var bz, br int
	var bm float64
	among := q.among
	if among == nil {
		among = p.usable
	}
	for _, n := range among {
		ni := &p.nodes[n]
		if slices.Contains(q.holders, n) || p.full(n, q.size) {
			continue
		}
		if q.accept != nil && !q.accept(n) {
			continue
		}
		if !q.free && !p.isOpen(n) {
			why = throttled
			continue
		}
		z, r := p.zoneDup(n, q.keep)
		m := p.metric(n)
		if best >= 0 {
			bn := &p.nodes[best]
			if c := cmpTuple(z, bz, r, br, m, bm, ni.n.Load, bn.n.Load); c >= 0 {
				continue // equal scores keep the lower ID, seen first
			}
		}
		best, bz, br, bm = n, z, r, m
	}
	if best >= 0 {
		return best, placed
	}
	return -1, why
}

// pickRanked is pickTarget for a query within the limits over every
// usable node. It walks the open nodes in (metric, load, ID) order, so the
// first one in a zone and rack that the kept replicas do not use is the
// best, and the walk stops there.
func (p *planner) pickRanked(q targetQuery) (int32, outcome) {
	p.rerank()
	best := int32(-1)
	var bz, br int
	for _, n := range p.ranked {
		if slices.Contains(q.holders, n) || p.full(n, q.size) || (q.accept != nil && !q.accept(n)) {
			continue
		}
		z, r := p.zoneDup(n, q.keep)
		if best < 0 || z < bz || (z == bz && r < br) {
			best, bz, br = n, z, r
			if z == 0 && r == 0 {
				break
			}
		}
	}
	if best >= 0 {
		return best, placed
	}
	// Why not: would a node outside the limits have done?
	for _, n := range p.usable {
		if !p.isOpen(n) && !slices.Contains(q.holders, n) && !p.full(n, q.size) && (q.accept == nil || q.accept(n)) {
			return -1, throttled
		}
	}
	return -1, unplaceable
}

// rankCmp orders nodes for pickRanked: by metric, load, then ID.
func (p *planner) rankCmp(a, b int32) int {
	if c := cmpTuple(0, 0, 0, 0, p.metric(a), p.metric(b), p.nodes[a].n.Load, p.nodes[b].n.Load); c != 0 {
		return c
	}
	return cmpID(p.nodes[a].n.ID, p.nodes[b].n.ID)
}

// rerank builds the ranking of open nodes, or repositions the dirty ones.
func (p *planner) rerank() {
	if p.ranked == nil {
		p.ranked = make([]int32, 0, len(p.usable))
		for _, n := range p.usable {
			if p.isOpen(n) {
				p.ranked = append(p.ranked, n)
			}
		}
		slices.SortFunc(p.ranked, p.rankCmp)
		p.dirty = p.dirty[:0]
		return
	}
	for _, n := range p.dirty {
		if i := slices.Index(p.ranked, n); i >= 0 {
			p.ranked = slices.Delete(p.ranked, i, i+1)
		}
		if p.isOpen(n) && !slices.Contains(p.ranked, n) {
			i, _ := slices.BinarySearchFunc(p.ranked, n, p.rankCmp)
			p.ranked = slices.Insert(p.ranked, i, n)
		}
	}
	p.dirty = p.dirty[:0]
}

func cmpTuple(z1, z2, r1, r2 int, m1, m2, l1, l2 float64) int {
	switch {
	case z1 != z2:
		return z1 - z2
	case r1 != r2:
		return r1 - r2
	case m1 < m2:
		return -1
	case m1 > m2:
		return 1
	case l1 < l2:
		return -1
	case l1 > l2:
		return 1
	}
	return 0
}

// zoneDup returns how many of the nodes in keep share node n's zone, and
// how many share its zone and rack.
func (p *planner) zoneDup(n int32, keep []int32) (zone, rack int) {
	ni := &p.nodes[n]
	for _, k := range keep {
		if k < 0 || k == n {
			continue
		}
		if kz := &p.nodes[k]; kz.zone == ni.zone {
			zone++
			if kz.rack == ni.rack {
				rack++
			}
		}
	}
	return zone, rack
}

// full reports whether a replica of size bytes would push node n past
// MaxFullness of its capacity.
func (p *planner) full(n int32, size int64) bool {
	ni := &p.nodes[n]
	c := ni.n.CapacityBytes
	if c <= 0 {
		return false
	}
	return float64(ni.n.UsedBytes+ni.incoming+size) > p.set.MaxFullness*float64(c)
}

// pickLeaderTarget returns the index in v.reps of the best replica to take
// v's leadership, other than skip: a caught-up voter on a usable node under
// its transfer limit, accepted by accept (if set), on the node leading the
// fewest shards (then lowest ID). It returns -1 if there is none.
func (p *planner) pickLeaderTarget(v *view, skip int, accept func(n int32) bool) int {
	best := -1
	for i, r := range v.reps {
		n := v.nodes[i]
		if i == skip || i == v.leader || r.Learner || n < 0 || !p.nodes[n].usable ||
			p.nodes[n].transfers >= p.set.MaxLeaderTransfersPerNode ||
			slices.Contains(v.s.Lagging, r.ReplicaID) || (accept != nil && !accept(n)) {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		bn, ni := &p.nodes[v.nodes[best]], &p.nodes[n]
		if ni.leaders < bn.leaders || (ni.leaders == bn.leaders && ni.n.ID < bn.n.ID) {
			best = i
		}
	}
	return best
}

// transferStep returns the step moving v's leadership to replica i.
func (v *view) transferStep(i int) Step {
	r := v.reps[i]
	return TransferLeader{Shard: v.s.Descriptor.ShardID, To: r.ReplicaID, ToNode: r.NodeID}
}

// keepNodes returns the nodes of v's voters other than replica skip that
// are not dead: the replicas a placement keeps.
func (p *planner) keepNodes(v *view, skip int, buf []int32) []int32 {
	keep := buf[:0]
	for i, r := range v.reps {
		n := v.nodes[i]
		if i == skip || r.Learner || n < 0 || p.nodes[n].dead {
			continue
		}
		keep = append(keep, n)
	}
	return keep
}

// sourceOK reports whether the replica at index i may be removed under its
// node's move limit (nodes that are down or unknown are never charged).
func (p *planner) sourceOK(v *view, i int) bool {
	n := v.nodes[i]
	return n < 0 || p.nodes[n].down || p.nodes[n].moves < p.set.MaxMovesPerNode
}

// move plans replacing v's replica at index from with a new replica on the
// best node accepted by accept: add the new replica, remove the old one.
// If the old one leads, the leadership moves first to a caught-up voter,
// or, when there is none (a single replica, or all lagging), to the new
// replica once it is added. It emits the operator and returns placed, or
// returns why not.
func (p *planner) move(v *view, from int, kind Kind, reason func(to int32) string, accept func(n int32) bool) outcome {
	return p.moveAmong(v, from, kind, reason, accept, nil)
}

// moveAmong is move with the targets limited to among (nil: any).
func (p *planner) moveAmong(v *view, from int, kind Kind, reason func(to int32) string, accept func(n int32) bool, among []int32) outcome {
	if !p.sourceOK(v, from) {
		return throttled
	}
	var steps []Step
	transferToNew := false
	if from == v.leader {
		if to := p.pickLeaderTarget(v, from, nil); to >= 0 {
			steps = append(steps, v.transferStep(to))
		} else {
			transferToNew = true
		}
	}
	if transferToNew {
		// The new replica will take the leadership: it must be allowed to.
		inner := accept
		accept = func(n int32) bool {
			return p.nodes[n].transfers < p.set.MaxLeaderTransfersPerNode && (inner == nil || inner(n))
		}
	}
	var buf [8]int32
	n, why := p.pickTarget(targetQuery{
		keep:    p.keepNodes(v, from, buf[:]),
		holders: v.nodes,
		size:    v.s.SizeBytes,
		accept:  accept,
		among:   among,
	})
	if n < 0 {
		return why
	}
	rid, ok := p.newReplicaID()
	if !ok {
		return stopped
	}
	id := v.s.Descriptor.ShardID
	add := multiraft.Replica{ReplicaID: rid, NodeID: p.nodes[n].n.ID}
	steps = append(steps, AddReplica{Shard: id, Replica: add})
	if transferToNew {
		steps = append(steps, TransferLeader{Shard: id, To: add.ReplicaID, ToNode: add.NodeID})
	}
	steps = append(steps, RemoveReplica{Shard: id, Replica: v.reps[from]})
	op := Operator{Kind: kind, Shard: id, Epoch: v.s.Descriptor.Epoch, Steps: steps, Reason: reason(n)}
	p.emit(op, v.pos)
	return placed
}

// because returns a reason that does not depend on the target.
func because(s string) func(int32) string { return func(int32) string { return s } }

// remove plans removing v's replica at index i, transferring the
// leadership away first if it leads.
func (p *planner) remove(v *view, i int, kind Kind, reason string) outcome {
	if !p.sourceOK(v, i) {
		return throttled
	}
	var steps []Step
	if i == v.leader {
		to := p.pickLeaderTarget(v, i, nil)
		if to < 0 {
			return noLeaderTarget
		}
		steps = append(steps, v.transferStep(to))
	}
	id := v.s.Descriptor.ShardID
	steps = append(steps, RemoveReplica{Shard: id, Replica: v.reps[i]})
	p.emit(Operator{Kind: kind, Shard: id, Epoch: v.s.Descriptor.Epoch, Steps: steps, Reason: reason}, v.pos)
	return placed
}

// describe names replica i of v and what is wrong with its node.
func (p *planner) describe(v *view, i int) string {
	r := v.reps[i]
	n := v.nodes[i]
	if n < 0 {
		return fmt.Sprintf("%v: n%d unknown", r, r.NodeID)
	}
	ni := &p.nodes[n]
	switch {
	case ni.down:
		// Whole seconds: the nanoseconds of the heartbeat's age tell a
		// reader nothing.
		return fmt.Sprintf("%v: n%d down for %v", r, r.NodeID, ni.n.DownFor.Round(time.Second))
	case ni.draining:
		return fmt.Sprintf("%v: n%d draining", r, r.NodeID)
	}
	return r.String()
}
