package sim

import (
	"fmt"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// Minority sides. A node cut off in both directions from a majority of
// the nodes (isolated, or on the small side of a split) holds a minority
// of every group's voters: every group has at most one voter per node,
// and a reconfiguration never leaves fewer than Nodes-1 of them. So from
// the moment it is cut off until the partition heals, nothing proposed
// there can commit and no ReadIndex round there can be confirmed. The
// simulator checks that directly, on top of linearizability, for every
// request sent to such a node after it was cut off and answered before
// the partition healed:
//
//   - no write is acknowledged;
//   - no linearizable read is served;
//   - a lease read is served only while a lease confirmed before the cut
//     may still hold: before the node's engine has ticked leaseTicks
//     times since the cut, and never by a later incarnation (a restarted
//     node has no lease).
//
// The lease bound counts the cut-off node's own ticks, which is what the
// engine measures. Whether that is short enough in real time depends on
// the clocks (skew.go); linearizability checks that part.
//
// Leader isolation (isolateLeader) cuts off the node that leads the
// most groups and pins half of the clients to it, as a router with a
// stale leader cache would be: they keep sending every request for those
// groups to it, while the other clients find the new leaders on the
// majority side.

// cutOff records when a node was cut off from the majority.
type cutOff struct {
	step  int
	ticks uint64 // the node's tick counter then
	inc   int    // the node's incarnation then (0: it was down)
}

// markCut records that node index i is cut off from the majority from
// now on.
func (s *simulation) markCut(i int) {
	n := s.nodes[i]
	c := &cutOff{step: s.step, ticks: n.ticks}
	if n.up() {
		c.inc = n.incarnation
	}
	s.cut[i] = c
}

// isolate cuts node index i off from every other node, in both
// directions, until the step until.
func (s *simulation) isolate(i int, until int, why string) {
	s.partitionUntil = until
	s.tracef("isolate n%d (%s) until %d", i+1, why, until)
	for j := range s.nodes {
		if j != i {
			s.block(s.nodes[i].id, s.nodes[j].id)
			s.block(s.nodes[j].id, s.nodes[i].id)
		}
	}
	s.markCut(i)
}

// isolateLeader isolates the node that leads the most groups, and pins
// half of the clients to it for the groups it led.
func (s *simulation) isolateLeader() {
	sts := s.statuses()
	led := make([][]multiraft.GroupID, len(s.nodes))
	for g := range s.groupIDs() {
		if li := leaderOf(sts[g]); li >= 0 {
			led[li] = append(led[li], g)
		}
	}
	best := -1
	for i := range led {
		if len(led[i]) > 0 && (best < 0 || len(led[i]) > len(led[best])) {
			best = i
		}
	}
	if best < 0 {
		return
	}
	s.stats.Partitions++
	s.stats.LeaderIsolations++
	// Long enough for the majority to elect new leaders and serve.
	s.isolate(best, s.step+4*s.prof.electionTicks()*stepsPerTick+s.rng.IntN(200), fmt.Sprintf("leader of %d groups", len(led[best])))
	for _, c := range s.clients {
		if s.rng.IntN(2) == 0 {
			c.pin, c.pinGroups = s.nodes[best], led[best]
		}
	}
}

// unpinClients ends every client's pin (the partition healed).
func (s *simulation) unpinClients() {
	for _, c := range s.clients {
		c.pin, c.pinGroups = nil, nil
	}
}

// checkMinority checks a request answered successfully by p.node against
// what a node cut off from the majority may do.
func (s *simulation) checkMinority(c *client) {
	p := c.p
	cut := s.cut[p.node.id-1]
	if cut == nil || p.sentAt < cut.step || (p.rec.kind == opGet && p.rec.mode == multiraft.ReadStale) {
		return
	}
	n := p.node
	what := ""
	switch {
	case p.inc != cut.inc:
		what = fmt.Sprintf("restarted while cut off (incarnation %d, cut off in %d)", p.inc, cut.inc)
	case p.rec.kind != opGet:
		what = "acknowledged a write"
	case p.rec.mode == multiraft.ReadLinearizable:
		what = "served a linearizable read"
	case p.rec.mode == multiraft.ReadLease && n.ticks >= cut.ticks+leaseTicks:
		what = fmt.Sprintf("served a lease read %d ticks after it was cut off (lease %d ticks)", n.ticks-cut.ticks, leaseTicks)
	default:
		s.stats.MinorityLeaseReads++
		return
	}
	s.violation("minority: n%d, cut off from the majority since step %d, %s: %v sent at step %d",
		n.id, cut.step, what, p.rec, p.sentAt)
}
