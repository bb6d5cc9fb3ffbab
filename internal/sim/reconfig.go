package sim

import (
	"github.com/flotilla-kv/flotilla/multiraft"
)

// reconfig replaces one voter of a group by a fresh replica on the same
// node, the way a rebalancer moves a replica: remove the old voter, drop
// its leftover state on the node, create an empty replica there, add it as
// a learner (it catches up by snapshot), then promote it. It runs under
// the faults, so every step may fail; the driver is idempotent: each time
// it looks at the group's current membership (as its leader applied it)
// and makes the next change, until the new replica is a voter.
type reconfig struct {
	g      multiraft.GroupID
	node   *node               // hosts the replaced and the new replica
	old    multiraft.ReplicaID // the voter replaced
	new    multiraft.ReplicaID
	fut    *multiraft.Future // the change or removal in flight
	nextAt int               // step of the driver's next look
	start  int
}

// reconfigPoll is how often, in steps, a reconfiguration in progress
// looks at its group again.
const reconfigPoll = 5

// maybeStartReconfig starts replacing a random voter of a random group,
// if no reconfiguration is in progress.
func (s *simulation) maybeStartReconfig() {
	if s.reconf != nil || !s.chance(s.prof.reconfigPermille) {
		return
	}
	g := multiraft.GroupID(1 + s.rng.IntN(s.cfg.Groups))
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
	s.stats.Reconfigs++
	s.tracef("reconfig g%d: replace r%d on n%d by r%d", g, old.ReplicaID, old.NodeID, s.reconf.new)
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
	case !hasNew && xs != nil && xs.Replica != rc.new:
		// The removed replica lingers (it never applied its removal):
		// garbage-collect it before the node may host the new one.
		rc.fut = x.e.RemoveGroupFuture(rc.g)
	case !hasNew && xs == nil:
		if err := x.e.JoinGroup(rc.g, rc.new); err != nil {
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
		s.reconf = nil
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
