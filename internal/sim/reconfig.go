package sim

import (
	"fmt"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// reconfig replaces one voter of a group by a fresh replica on the same
// node, the way a rebalancer moves a replica: remove the old voter, drop
// its leftover state on the node, create an empty replica there, add it as
// a learner (it catches up by snapshot), then promote it. It runs under
// the faults, so every step may fail; the driver is idempotent: each time
// it looks at the group's current membership (as its leader applied it)
// and makes the next change, until the new replica is a voter.
//
// One reconfiguration in three (byMessage) skips the two steps on the node
// and add the learner at once: the leader's first message to it destroys
// whatever replica of the group lingers on the node (the removed one,
// when it missed its removal) and creates the new one empty
// (multiraft/create.go), as a re-add of a shard to a node that still
// holds a stale replica of it does in production.
type reconfig struct {
	g      multiraft.GroupID
	node   *node               // hosts the replaced and the new replica
	leader *node               // led the group when the reconfiguration started
	old    multiraft.ReplicaID // the voter replaced
	new    multiraft.ReplicaID
	fut    *multiraft.Future // the change or removal in flight
	nextAt int               // step of the driver's next look
	start  int
	// byMessage: the engine, not the driver, replaces the node's replica.
	byMessage bool
}

// reconfigPoll is how often, in steps, a reconfiguration in progress
// looks at its group again.
const reconfigPoll = 5

// maybeStartReconfig starts replacing a random voter of a random group,
// if no reconfiguration is in progress. Reconfigurations start more often
// while the network is partitioned.
func (s *simulation) maybeStartReconfig() {
	permille := s.prof.reconfigPermille
	if s.partitionUntil > 0 {
		permille *= 3
	}
	if s.reconf != nil || s.split != nil || !s.chance(permille) {
		return
	}
	g := multiraft.GroupID(1 + s.rng.IntN(s.groupCount))
	sts := s.groupStatuses(g)
	lead := leaderOf(sts)
	if lead < 0 || sts[lead].Members.Joint {
		return
	}
	var cands []multiraft.Replica
	for _, r := range sts[lead].Members.Replicas {
		if !r.Learner && r.NodeID != s.nodes[lead].id {
			cands = append(cands, r)
		}
	}
	if len(cands) == 0 {
		return
	}
	old := cands[s.rng.IntN(len(cands))]
	s.nextReplica[g-1]++
	s.reconf = &reconfig{
		g: g, node: s.nodes[old.NodeID-1], old: old.ReplicaID,
		new: replicaID(g, s.nextReplica[g-1]), start: s.step,
	}
	s.reconf.leader = s.nodes[lead]
	// One in three, chosen without drawing from the seed's generator, so
	// that a seed's other decisions stay what they were.
	s.reconf.byMessage = s.stats.Reconfigs%3 == 2
	s.stats.Reconfigs++
	s.tracef("reconfig g%d: replace r%d on n%d by r%d (by message %v)", g, old.ReplicaID, old.NodeID, s.reconf.new, s.reconf.byMessage)
	if s.chance(s.prof.reconfCutPermille) {
		s.reconfCutAt = s.step + 1 + s.rng.IntN(6*reconfigPoll)
	}
}

// cutReconfig isolates, in the middle of the reconfiguration in
// progress, one of the nodes it involves: the node of the replaced and
// new replica (it misses its removal, or the snapshot it needs), the
// node that led the group when it started (the change in flight must be
// finished by a new leader), or at random.
func (s *simulation) cutReconfig() {
	s.reconfCutAt = 0
	var i int
	var why string
	switch rc, sp := s.reconf, s.split; {
	case rc != nil:
		switch s.rng.IntN(3) {
		case 0:
			i, why = int(rc.node.id-1), "reconfigured node"
		case 1:
			i, why = int(rc.leader.id-1), "leader of the reconfigured group"
		default:
			i, why = s.rng.IntN(len(s.nodes)), "during a reconfiguration"
		}
		why = fmt.Sprintf("%s, g%d", why, rc.g)
	case sp != nil && !sp.applied:
		i, why = s.rng.IntN(len(s.nodes)), fmt.Sprintf("during the split of g%d", sp.g)
	default:
		return
	}
	s.stats.Partitions++
	s.stats.ReconfigCuts++
	s.isolate(i, s.step+20+s.rng.IntN(200), why)
}

// driveReconfig makes the next move of the reconfiguration in progress.
func (s *simulation) driveReconfig() {
	rc := s.reconf
	if rc == nil {
		return
	}
	if rc.fut != nil {
		if !isDone(rc.fut) {
			return
		}
		_, err := rc.fut.Result()
		s.tracef("reconfig g%d: step done: %v", rc.g, err)
		rc.fut = nil
		rc.nextAt = s.step + 1
	}
	if s.step < rc.nextAt {
		return
	}
	rc.nextAt = s.step + reconfigPoll
	sts := s.groupStatuses(rc.g)
	li := leaderOf(sts)
	if li < 0 {
		return
	}
	lead, m := s.nodes[li], sts[li].Members
	if m.Joint {
		return
	}
	_, hasOld := m.Lookup(rc.old)
	newR, hasNew := m.Lookup(rc.new)
	x := rc.node
	xs := sts[x.id-1]
	switch {
	case hasOld:
		rc.fut = lead.e.ChangeReplicasFuture(rc.g, []multiraft.ReplicaChange{{Op: multiraft.RemoveReplica, Replica: multiraft.Replica{ReplicaID: rc.old}}})
	case !hasNew && !x.up():
		// Wait for the node to come back.
	case !hasNew && rc.byMessage:
		rc.fut = lead.e.ChangeReplicasFuture(rc.g, []multiraft.ReplicaChange{{Op: multiraft.AddLearner, Replica: multiraft.Replica{ReplicaID: rc.new, NodeID: x.id}}})
	case !hasNew && xs != nil && xs.Replica != rc.new:
		// The removed replica lingers (it never applied its removal):
		// garbage-collect it before the node may host the new one.
		rc.fut = x.e.RemoveGroupFuture(rc.g)
	case !hasNew && xs == nil:
		if err := x.e.JoinGroup(rc.g, rc.new); err != nil {
			if x.disk.on.Load() {
				// Its disk failed: the engine stops, the node restarts
				// and the join is tried again then.
				s.tracef("reconfig g%d: n%d: join as r%d: %v", rc.g, x.id, rc.new, err)
				return
			}
			s.violation("reconfig: n%d: join group %d as r%d: %v", x.id, rc.g, rc.new, err)
			s.reconf = nil
			return
		}
	case !hasNew:
		rc.fut = lead.e.ChangeReplicasFuture(rc.g, []multiraft.ReplicaChange{{Op: multiraft.AddLearner, Replica: multiraft.Replica{ReplicaID: rc.new, NodeID: x.id}}})
	case newR.Learner:
		// Promote once the learner holds everything the leader committed.
		if xs != nil && xs.Replica == rc.new && xs.Applied >= sts[li].Commit {
			rc.fut = lead.e.ChangeReplicasFuture(rc.g, []multiraft.ReplicaChange{{Op: multiraft.AddVoter, Replica: multiraft.Replica{ReplicaID: rc.new, NodeID: x.id}}})
		}
	default:
		s.tracef("reconfig g%d: r%d is a voter after %d steps", rc.g, rc.new, s.step-rc.start)
		s.reconf, s.reconfCutAt = nil, 0
	}
}

// groupStatuses returns the status of g's replica on every live node (nil
// where there is none), once every engine finished its work.
func (s *simulation) groupStatuses(g multiraft.GroupID) []*multiraft.Status {
	s.processAll()
	out := make([]*multiraft.Status, len(s.nodes))
	for i, n := range s.nodes {
		if !n.up() {
			continue
		}
		f := n.e.StatusFuture(g)
		n.e.Process()
		if !isDone(f) {
			s.violation("status future on n%d did not resolve after Process", n.id)
			continue
		}
		if v, err := f.Result(); err == nil {
			st := v.(multiraft.Status)
			out[i] = &st
		}
	}
	return out
}

// leaderOf returns the index of the replica that leads in the highest
// term among sts, or -1.
func leaderOf(sts []*multiraft.Status) int {
	li := -1
	for i, st := range sts {
		if st != nil && st.IsLeader && (li < 0 || st.Term > sts[li].Term) {
			li = i
		}
	}
	return li
}
