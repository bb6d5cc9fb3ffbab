package schedule

import (
	"fmt"
	"math"
	"slices"
)

// maxBalanceFailures bounds how many of a source node's shards replica
// balance tries in vain before giving the node up for the round. Shards
// that no target can take by the holder and zone rules are skipped
// cheaply and do not count; what counts are targets refused for their
// fullness or, in bytes mode, for the shard's size.
const maxBalanceFailures = 16

// nodeLists lists shard positions per node, in shard ID order: node n's are
// list[start[n]:start[n+1]].
type nodeLists struct {
	start []int32
	list  []int32
}

func (l *nodeLists) of(n int32) []int32 { return l.list[l.start[n]:l.start[n+1]] }

// replicaLists returns, built once per round, the shards of every node
// (those its descriptors place on it), in shard ID order.
func (p *planner) replicaLists() *nodeLists {
	if p.lists != nil {
		return p.lists
	}
	start := make([]int32, len(p.nodes)+1)
	for n := range p.nodes {
		start[n+1] = start[n] + int32(p.nodes[n].held)
	}
	next := slices.Clone(start[:len(p.nodes)])
	list := make([]int32, start[len(p.nodes)])
	add := func(pos int) {
		for _, n := range p.repNode[p.repOff[pos]:p.repOff[pos+1]] {
			if n >= 0 {
				list[next[n]] = int32(pos)
				next[n]++
			}
		}
	}
	if p.order == nil {
		for pos := range p.c.Shards {
			add(pos)
		}
	} else {
		for _, pos := range p.order {
			add(int(pos))
		}
	}
	p.lists = &nodeLists{start: start, list: list}
	return p.lists
}

// spread describes how a per-node quantity is spread over the usable
// nodes.
type spread struct {
	mean, tol float64
	value     func(n int32) float64
}

func (s *spread) over(n int32) bool  { return s.value(n) > s.mean+s.tol }
func (s *spread) under(n int32) bool { return s.value(n) < s.mean-s.tol }

// balanced reports whether every usable node is within tol of the mean.
func (p *planner) balanced(s *spread) bool {
	for _, n := range p.usable {
		if s.over(n) || s.under(n) {
			return false
		}
	}
	return true
}

// heaviest returns the usable node with the highest value among those ok
// accepts (the lowest ID on ties), or -1.
func (p *planner) heaviest(s *spread, ok func(n int32) bool) int32 {
	best := int32(-1)
	for _, n := range p.usable {
		if ok(n) && (best < 0 || s.value(n) > s.value(best)) {
			best = n
		}
	}
	return best
}

// balanceReplicas moves replicas of healthy shards off the usable node
// with the highest metric (replica count, or used fraction of capacity in
// bytes mode) while it is above the band mean±tolerance, or some node is
// below it. A move from src to dst is made only if it does not flip them
// (dst after the move stays at or below src after it), so every move
// strictly narrows the spread and the process converges; at the fixed
// point with no constraint in the way, every node is within the band (in
// count mode with the default tolerance 1: within one replica of the
// mean). A move never lowers the number of zones the shard spans.
func (p *planner) balanceReplicas() {
	if len(p.usable) < 2 {
		return
	}
	s := spread{value: p.metric, tol: p.set.ReplicaTolerance}
	var sum, capacity float64
	for _, n := range p.usable {
		if p.bytesMode {
			sum += float64(p.nodes[n].bytes)
			capacity += float64(p.nodes[n].n.CapacityBytes)
		} else {
			sum += float64(p.nodes[n].replicas)
		}
	}
	if p.bytesMode {
		s.mean, s.tol = sum/capacity, p.set.CapacityTolerance
	} else {
		s.mean = sum / float64(len(p.usable))
	}
	if p.balanced(&s) {
		return
	}
	lists := p.replicaLists()
	cursors := make([]balanceCursor, len(p.nodes))
	canSend := func(n int32) bool {
		return !cursors[n].done && p.nodes[n].moves < p.set.MaxMovesPerNode
	}
	targets := p.newTargetSet()
	for p.open > 0 && p.err == nil {
		src := p.heaviest(&s, canSend)
		if src < 0 {
			return
		}
		// The nodes that could take a replica from src (exactly in count
		// mode; in bytes mode the shard's size decides). The conditions
		// only loosen as src's value grows, so if the heaviest source has
		// no target, no source has.
		over := s.over(src)
		targets.reset()
		for _, n := range p.usable {
			below := s.value(n) < s.value(src)
			if !p.bytesMode {
				below = s.value(n)+1 <= s.value(src)-1
			}
			if n != src && p.isOpen(n) && below && (over || s.under(n)) {
				targets.add(n)
			}
		}
		if len(targets.list) == 0 {
			return
		}
		if !p.moveReplicaFrom(src, over, &s, lists.of(src), &cursors[src], targets) {
			cursors[src].done = true
		}
	}
}

// targetSet is the set of nodes replica balance may move a replica to
// from the current source.
type targetSet struct {
	p      *planner
	list   []int32
	member []bool // by node
	inZone []int  // members per zone
}

func (p *planner) newTargetSet() *targetSet {
	return &targetSet{p: p, member: make([]bool, len(p.nodes)), inZone: make([]int, p.zoneIDs)}
}

func (ts *targetSet) reset() {
	for _, n := range ts.list {
		ts.member[n] = false
		ts.inZone[ts.p.nodes[n].zone]--
	}
	ts.list = ts.list[:0]
}

func (ts *targetSet) add(n int32) {
	ts.list = append(ts.list, n)
	ts.member[n] = true
	ts.inZone[ts.p.nodes[n].zone]++
}

// any reports whether some member could take v's replica on src: one that
// does not hold the shard and, unless src shares its zone with a kept
// replica (srcDup > 0), lies in a zone that no kept replica uses. It is
// a cheap test in O(replicas) that spares the search on shards that
// cannot move, so that only real failures count against the source.
func (ts *targetSet) any(v *view, keep []int32, srcDup int) bool {
	p := ts.p
	if srcDup > 0 {
		holders := 0
		for _, n := range v.nodes {
			if n >= 0 && ts.member[n] {
				holders++
			}
		}
		return holders < len(ts.list)
	}
	var zones [8]int32
	nz := 0
	avail := len(ts.list)
	for _, k := range keep {
		z := p.nodes[k].zone
		if slices.Contains(zones[:nz], z) || nz == len(zones) {
			continue
		}
		zones[nz] = z
		nz++
		avail -= ts.inZone[z]
	}
	for _, n := range v.nodes {
		if n >= 0 && ts.member[n] && !slices.Contains(zones[:nz], p.nodes[n].zone) {
			avail--
		}
	}
	return avail > 0
}

// balanceCursor is how far replica balance got in a source node's shards:
// followers first (phase 0), then the shards it leads (phase 1).
type balanceCursor struct {
	i     int
	phase int
	done  bool
}

// moveReplicaFrom emits one move of a replica off src and reports whether
// it did.
func (p *planner) moveReplicaFrom(src int32, over bool, s *spread, shards []int32, cur *balanceCursor, targets *targetSet) bool {
	rf := p.set.ReplicationFactor
	fails := 0
	var buf [8]int32
	for ; cur.phase < 2; cur.phase, cur.i = cur.phase+1, 0 {
		for cur.i < len(shards) {
			pos := int(shards[cur.i])
			cur.i++
			if p.blocked(int32(pos)) {
				continue
			}
			v := p.view(pos)
			size := v.s.SizeBytes
			if !v.healthy(rf) || (p.bytesMode && size <= 0) {
				continue
			}
			from := v.replicaOn(src)
			if (from == v.leader) != (cur.phase == 1) {
				continue
			}
			keep := p.keepNodes(&v, from, buf[:])
			srcDup, _ := p.zoneDup(src, keep)
			if !targets.any(&v, keep, srcDup) {
				continue
			}
			srcAfter := s.value(src) - p.delta(src, size)
			accept := func(n int32) bool {
				if s.value(n)+p.delta(n, size) > srcAfter || (!over && !s.under(n)) {
					return false
				}
				dup, _ := p.zoneDup(n, keep)
				return dup == 0 || srcDup > 0
			}
			srcBefore := s.value(src)
			reason := func(dst int32) string {
				if p.bytesMode {
					return fmt.Sprintf("n%d %.1f%% full, n%d %.1f%%, mean %.1f%%",
						p.nodes[src].n.ID, 100*srcBefore, p.nodes[dst].n.ID, 100*s.value(dst), 100*s.mean)
				}
				return fmt.Sprintf("n%d has %.0f replicas, n%d %.0f, mean %.1f",
					p.nodes[src].n.ID, srcBefore, p.nodes[dst].n.ID, s.value(dst), s.mean)
			}
			switch p.moveAmong(&v, from, KindReplicaBalance, reason, accept, targets.list) {
			case placed:
				return true
			case stopped:
				return false
			}
			if fails++; fails >= maxBalanceFailures {
				return false
			}
		}
	}
	return false
}

// balanceLeaders transfers leaderships to caught-up voters on usable
// nodes that lead few shards from nodes that lead more: from L to T when L
// is above mean+LeaderTolerance or T is below mean-LeaderTolerance, never
// flipping the two (after the transfer T leads at most as many shards as
// L). Every transfer strictly lowers the sum of squares, so balancing
// converges; the fixed point without constraints has every usable node
// within LeaderTolerance of the mean.
//
// Two passes share the round's budget. The first is strict: a receiver
// takes from a node above the band only up to the mean (rounded up), and
// a node gives to one below the band only down to the mean (rounded
// down), so leaderships move straight from the heavy nodes to the light
// ones and the number of transfers is close to the least that evens the
// counts out. (The plain rule alone would let the lightest receiver fill
// up to the heaviest node's level, and the surplus move again later.) The
// second pass applies the plain rule with whatever budget is left: it
// moves leaderships through intermediate nodes when no heavy node shares
// a shard with a light one, and it is what reaches the fixed point above.
//
// Shards with an operator in flight or emitted this round are skipped,
// and so are shards without a live quorum, and shards whose repair or
// drain waits for the per-node limits (a later round makes it; a transfer
// in flight would hold it up). A shard whose repair or drain cannot happen
// at all (no node to take a replica: RF nodes and one of them dead, or
// draining) still has its leadership balanced: a transfer copies nothing
// and needs no new node, and without it such a cluster would keep its
// leaderships wherever failures and drains left them, for as long as it
// stays short of nodes.
//
// It is driven by the receivers, lightest first, each scanning the shards
// it follows: the per-node transfer limit makes receivers the scarce side,
// and a receiver finds a shard led by a heavy node within a few tries.
func (p *planner) balanceLeaders() {
	if len(p.usable) < 2 {
		return
	}
	s := spread{value: func(n int32) float64 { return float64(p.nodes[n].leaders) }, tol: p.set.LeaderTolerance}
	sum := 0
	for _, n := range p.usable {
		sum += p.nodes[n].leaders
	}
	s.mean = float64(sum) / float64(len(p.usable))
	if p.balanced(&s) {
		return
	}
	lists := p.replicaLists()
	canReceive := func(n int32) bool { return p.nodes[n].transfers < p.set.MaxLeaderTransfersPerNode }
	// heaviest returns the most leaderships of a usable node, and of one
	// above the band (-1 if none).
	heaviest := func() (all, over int) {
		all, over = -1, -1
		for _, n := range p.usable {
			v := p.nodes[n].leaders
			all = max(all, v)
			if float64(v) > s.mean+s.tol {
				over = max(over, v)
			}
		}
		return all, over
	}
	for _, strict := range []bool{true, false} {
		receivers := slices.Clone(p.usable)
		slices.SortStableFunc(receivers, func(a, b int32) int { return p.nodes[a].leaders - p.nodes[b].leaders })
		maxAll, maxOver := heaviest()
		for _, t := range receivers {
			for _, pos := range lists.of(t) {
				// The conditions of mayTransfer that depend on t and the
				// heaviest nodes only: once they fail, no shard of t helps.
				lt := p.nodes[t].leaders
				if !canReceive(t) || !s.mayTransfer(maxOver, lt, strict) && !(s.under(t) && s.mayTransfer(maxAll, lt, strict)) {
					break
				}
				// Only the source's count fell, so the maxima change only
				// if it held one of them.
				if src := p.transferLeaderTo(int(pos), t, &s, strict); src >= 0 {
					if v := p.nodes[src].leaders + 1; v == maxAll || v == maxOver {
						maxAll, maxOver = heaviest()
					}
				}
			}
		}
	}
}

// mayTransfer reports whether a node leading from shards may give one to a
// node leading to (see balanceLeaders): from is at least two above to, and
// from is above the band or to below it; when strict, to stays at or
// below the mean (rounded up) if from is above the band, and from stays at
// or above the mean (rounded down) if to is below it.
func (s *spread) mayTransfer(from, to int, strict bool) bool {
	if from < to+2 {
		return false
	}
	over, under := float64(from) > s.mean+s.tol, float64(to) < s.mean-s.tol
	if !strict {
		return over || under
	}
	return (over && float64(to+1) <= math.Ceil(s.mean)) || (under && float64(from-1) >= math.Floor(s.mean))
}

// transferLeaderTo emits a transfer of the leadership of the shard at pos
// to its replica on t, if t's replica is a caught-up voter, the shard has
// a live quorum and no operator, and its leader's node L may give to t
// (mayTransfer). It returns L, or -1 if it emitted nothing.
func (p *planner) transferLeaderTo(pos int, t int32, s *spread, strict bool) int32 {
	if p.busy[pos] || p.waitsForLimits(int32(pos)) {
		return -1
	}
	li := p.leaderIndex(pos)
	if li < 0 {
		return -1
	}
	nodes := p.replicaNodes(pos)
	src := nodes[li]
	if src == t || !s.mayTransfer(p.nodes[src].leaders, p.nodes[t].leaders, strict) {
		return -1
	}
	v := p.view(pos)
	if !v.available() {
		return -1
	}
	to := p.pickLeaderTarget(&v, -1, func(n int32) bool { return n == t })
	if to < 0 {
		return -1
	}
	p.emit(Operator{
		Kind:  KindLeaderBalance,
		Shard: v.s.Descriptor.ShardID,
		Epoch: v.s.Descriptor.Epoch,
		Steps: []Step{v.transferStep(to)},
		Reason: fmt.Sprintf("n%d leads %.0f, n%d %.0f, mean %.1f",
			p.nodes[src].n.ID, s.value(src), p.nodes[t].n.ID, s.value(t), s.mean),
	}, pos)
	return src
}
