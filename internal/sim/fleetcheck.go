package sim

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// The checks of a fleet run, besides those of every run (linearizability,
// lost writes, one leader per term, agreeing replicas, no panic):
//
//   - Placement never panics (a panic in any of its goroutines ends the
//     run as a violation) and never stops scheduling: the scheduling loop
//     of every live placement process comes back to its sleep at least
//     every schedulerStall.
//   - Every operator completes, fails or times out: no executor (an actor
//     placement names "execute <operator>") lives longer than
//     Config.OperatorTimeout plus operatorSlack.
//   - While no node is down (every process that joined is up, no
//     partition, no disk fault), no shard has fewer live voters (voters
//     whose node hosts them) than the replication factor, or no leader,
//     for longer than one operator's duration plus the time to notice
//     (underBound), sampled every sampleEvery steps.
//   - No operator removes a voter and so leaves its shard without a live
//     quorum (checked when a removal applies, admin.go).
//   - Once faults heal and load stops, placement converges: within
//     fleetConvergeSteps it starts no operator for quietSteps, Raft
//     settles, and then it starts none for holdSteps more (no
//     oscillation). Every replica a shard's descriptor names then exists
//     on its node, every shard has its replication factor of voters and
//     no learner.

const (
	// schedulerStall bounds the time between two rounds of a scheduling
	// loop: a round waits at most 5 s for the catalogue (bootstrap record,
	// each ID block) and retries a block only while it leads.
	schedulerStall = 20 * time.Second
	// operatorSlack is how long past its timeout an executor may take to
	// notice and end.
	operatorSlack = 2 * time.Second
	// underBound: one operator's duration plus heartbeats and rounds to
	// notice a shard short of voters and confirm its repair.
	underBound = operatorTimeout + 3*time.Second
	// Convergence after healing, in steps.
	fleetConvergeSteps = 6000
	quietSteps         = 120
	holdSteps          = 200
)

// fleetChecks is the state of the fleet checks.
type fleetChecks struct {
	// under: since when each shard has been short of live voters (or of
	// a leader) while no node was down; reported: shards already reported.
	under    map[multiraft.GroupID]int
	reported map[multiraft.GroupID]bool
	// stalled: actors already reported (stuck loops and executors).
	stalled map[*actor]bool
}

// fleetLiveness checks, every step, that every live scheduling loop comes
// back to its sleep and no executor outlives its timeout.
func (s *simulation) fleetLiveness() {
	fc := &s.fleet.checks
	if fc.stalled == nil {
		fc.stalled = map[*actor]bool{}
	}
	for _, n := range s.pnodes {
		a := n.runner
		if a == nil || a.done || fc.stalled[a] {
			continue
		}
		if last := max(a.start, a.woke); s.step-last > stepsOf(schedulerStall) {
			fc.stalled[a] = true
			s.violation("placement %s stopped scheduling: its loop has not come back since step %d", n.addr, last)
		}
	}
	limit := stepsOf(operatorTimeout + operatorSlack)
	for _, a := range s.actors.live {
		if a.done || fc.stalled[a] || !strings.HasPrefix(a.name, "execute ") || s.step-a.start <= limit {
			continue
		}
		fc.stalled[a] = true
		s.violation("operator neither completed, failed nor timed out %d steps after it started at step %d on %s: %s",
			s.step-a.start, a.start, addrOf(a.proc), strings.TrimPrefix(a.name, "execute "))
	}
}

// allUp reports whether no node is down: every process that joined is up,
// no partition is in place, no disk fault is armed.
func (s *simulation) allUp() bool {
	for _, n := range s.procs() {
		if n.joined && !n.up() {
			return false
		}
	}
	return s.partitionUntil == 0 && s.armedDisks() == 0
}

// replicaState describes a shard as its replicas show it: the membership
// of its leader (or, without one, of its most advanced replica), its live
// voters and whether it has a leader.
type replicaState struct {
	members  multiraft.Membership
	live     int // voters whose node hosts them
	voters   int
	learners int
	leader   bool
	missing  []string // members no node hosts: "r7 on n3"
}

func (s *simulation) shardState(sts []*multiraft.Status) (replicaState, bool) {
	ref := leaderOf(sts)
	var rs replicaState
	if ref >= 0 {
		rs.leader = true
	} else {
		for i, st := range sts {
			if st != nil && (ref < 0 || st.Applied > sts[ref].Applied) {
				ref = i
			}
		}
	}
	if ref < 0 || len(sts[ref].Members.Replicas) == 0 {
		return rs, false
	}
	rs.members = sts[ref].Members
	for _, r := range rs.members.Replicas {
		if r.Learner {
			rs.learners++
		} else {
			rs.voters++
		}
		var st *multiraft.Status
		if i := int(r.NodeID) - 1; i >= 0 && i < len(sts) {
			st = sts[i]
		}
		if st == nil || st.Replica != r.ReplicaID {
			rs.missing = append(rs.missing, fmt.Sprintf("r%d on n%d", r.ReplicaID, r.NodeID))
			continue
		}
		if !r.Learner {
			rs.live++
		}
	}
	return rs, true
}

// checkUnderReplicated runs at every sample of a fleet run.
func (s *simulation) checkUnderReplicated(sts map[multiraft.GroupID][]*multiraft.Status) {
	fc := &s.fleet.checks
	if fc.under == nil {
		fc.under, fc.reported = map[multiraft.GroupID]int{}, map[multiraft.GroupID]bool{}
	}
	if !s.allUp() {
		clear(fc.under)
		return
	}
	rf := s.fleet.prof.rf
	for _, g := range sortedGroups(sts) {
		rs, ok := s.shardState(sts[g])
		short := ok && (!rs.leader || rs.live < rf)
		if !short {
			delete(fc.under, g)
			continue
		}
		since, seen := fc.under[g]
		if !seen {
			fc.under[g] = s.step
			continue
		}
		if s.step-since > stepsOf(underBound) && !fc.reported[g] {
			fc.reported[g] = true
			what := fmt.Sprintf("%d live voters of %d", rs.live, rf)
			if !rs.leader {
				what = "no leader"
			}
			if len(rs.missing) > 0 {
				what += "; no node hosts " + strings.Join(rs.missing, ", ")
			}
			s.violation("shard %d has had %s since step %d with no node down (members %v)", g, what, since, rs.members.Replicas)
		}
	}
}

// checkRemovalQuorum checks a membership change that applied on a shard
// whose membership was before: a removal must not leave the shard
// without a live quorum if it had one.
func (s *simulation) checkRemovalQuorum(g multiraft.GroupID, before multiraft.Membership, changes []multiraft.ReplicaChange) {
	removed := map[multiraft.ReplicaID]bool{}
	for _, c := range changes {
		if c.Op == multiraft.RemoveReplica {
			removed[c.Replica.ReplicaID] = true
		}
	}
	if len(removed) == 0 {
		return
	}
	count := func(skip map[multiraft.ReplicaID]bool) (voters, live int) {
		for _, r := range before.Replicas {
			if r.Learner || skip[r.ReplicaID] {
				continue
			}
			voters++
			if s.hosts(r) {
				live++
			}
		}
		return voters, live
	}
	v0, l0 := count(nil)
	v1, l1 := count(removed)
	if l0 > v0/2 && l1 <= v1/2 {
		s.violation("shard %d: removing %v left %d live voters of %d (had %d of %d): no live quorum",
			g, sortedIDs(removed), l1, v1, l0, v0)
	}
}

// hosts reports whether r's node is up and hosts r.
func (s *simulation) hosts(r multiraft.Replica) bool {
	if int(r.NodeID) < 1 || int(r.NodeID) > len(s.nodes) {
		return false
	}
	n := s.nodes[r.NodeID-1]
	if !n.up() {
		return false
	}
	for _, g := range n.e.Summaries() {
		if g.Replica == r.ReplicaID {
			return true
		}
	}
	return false
}

// checkFleetSettled runs once the healed fleet converged: every replica a
// descriptor names exists on its node, every shard has its replication
// factor of voters and no learner.
func (s *simulation) checkFleetSettled(sts map[multiraft.GroupID][]*multiraft.Status) {
	rf := s.fleet.prof.rf
	for _, g := range sortedGroups(sts) {
		rs, ok := s.shardState(sts[g])
		if !ok || !rs.leader {
			continue // a leftover replica (its shard is elsewhere); converge checked leaders
		}
		if len(rs.missing) > 0 {
			s.violation("after healing, shard %d names %s, which no node hosts (members %v)", g, strings.Join(rs.missing, ", "), rs.members.Replicas)
		}
		if rs.voters < rf || rs.learners > 0 {
			s.violation("after healing, shard %d has %d voters and %d learners (replication factor %d): %v", g, rs.voters, rs.learners, rf, rs.members.Replicas)
		}
	}
}

// fleetSettled explains why a group has not converged in a fleet run, or
// returns "": it has one leader, and every member's replica exists, is in
// the leader's term and applied the leader's whole log. Replicas that are
// not members (left on a node after their removal) are not waited for.
func fleetSettled(sts []*multiraft.Status) string {
	li := leaderOf(sts)
	if li < 0 {
		for _, st := range sts {
			if st != nil && st.Applied > 0 {
				return "no leader"
			}
		}
		return "" // only empty replicas, waiting for a snapshot that will not come
	}
	lead := sts[li]
	for _, r := range lead.Members.Replicas {
		i := int(r.NodeID) - 1
		if i < 0 || i >= len(sts) || sts[i] == nil || sts[i].Replica != r.ReplicaID {
			return fmt.Sprintf("r%d on n%d missing", r.ReplicaID, r.NodeID)
		}
		st := sts[i]
		if st.Term != lead.Term || st.Applied != lead.LastIndex || st.Commit != lead.LastIndex || st.LastIndex != lead.LastIndex {
			return fmt.Sprintf("r%d term %d applied %d commit %d last %d; leader r%d term %d last %d",
				st.Replica, st.Term, st.Applied, st.Commit, st.LastIndex, lead.Replica, lead.Term, lead.LastIndex)
		}
	}
	return ""
}

// convergeFleet runs the healed fleet until placement has started no
// operator for quietSteps and every group settled, then holdSteps more,
// in which placement must start none. It reports whether the fleet
// converged.
func (s *simulation) convergeFleet() bool {
	start := s.step
	lastStarted, _, _, _ := s.operators()
	quietSince := s.step
	why := ""
	for s.step-start < fleetConvergeSteps {
		s.advance(false)
		if started, _, _, _ := s.operators(); started != lastStarted || s.executing() > 0 {
			lastStarted, quietSince = started, s.step
		}
		if s.step%8 != 0 {
			continue
		}
		switch {
		case s.clientsBusy():
			why = "a client request is still outstanding"
			continue
		case s.step-quietSince < quietSteps:
			why = fmt.Sprintf("placement still starting operators (last at step %d)", quietSince)
			continue
		}
		sts := s.statuses()
		var lagging []string
		for _, g := range sortedGroups(sts) {
			if w := fleetSettled(sts[g]); w != "" {
				lagging = append(lagging, fmt.Sprintf("g%d: %s", g, w))
			}
		}
		if len(lagging) > 0 {
			why = strings.Join(lagging[:min(5, len(lagging))], "; ")
			continue
		}
		s.stats.ConvergeSteps = s.step - start
		s.hold(lastStarted)
		sts = s.statuses()
		for _, g := range sortedGroups(sts) {
			s.compareReplicas(g, sts[g])
			if li := leaderOf(sts[g]); li >= 0 {
				s.settledTerms[g] = sts[g][li].Term
			}
		}
		s.checkFleetSettled(sts)
		return true
	}
	_, _, _, byKind := s.operators()
	s.violation("fleet did not converge within %d steps after healing: %s (operators: %s)", fleetConvergeSteps, why, kindsString(byKind))
	return false
}

// hold runs holdSteps more steps of the converged fleet and requires that
// placement start no operator meanwhile. Elections after healing (doc.go,
// engine bug 4) move leaderships, which leader balance may then move
// back: a window whose only operators are at most that many leadership
// transfers is run again (three times at most) rather than reported.
// So is a window with splits, as long as none fails: the lessors keep
// writing during the hold (checkpoints rewrite lease records, and an
// ended lease's record is deleted), so a shard may grow past the split
// size, and splitting it is placement's job. A split its leader refuses
// (one key, which no split divides) is the churn this check is for: a
// failed split in any window is reported, also in a window with nothing
// new started.
func (s *simulation) hold(started uint64) {
	for again := 0; ; again++ {
		_, _, _, before := s.operators()
		terms := map[multiraft.GroupID]uint64{}
		for g, st := range s.statuses() {
			if li := leaderOf(st); li >= 0 {
				terms[g] = st[li].Term
			}
		}
		for range holdSteps {
			s.advance(false)
		}
		now, _, _, after := s.operators()
		splitFailed := after["split"].Failed - before["split"].Failed
		if now == started && splitFailed == 0 {
			return
		}
		// A group elected in the window counts, and so does every group a
		// split created meanwhile (its term is not in terms), whose new
		// leader leader balance may move as well.
		moved := 0
		for g, st := range s.statuses() {
			if li := leaderOf(st); li >= 0 && st[li].Term != terms[g] {
				moved++
			}
		}
		transfers := after["balance-leader"].Started - before["balance-leader"].Started
		splits := after["split"].Started - before["split"].Started
		if transfers+splits == now-started && int(transfers) <= moved && splitFailed == 0 && again < 3 {
			s.tracef("hold: %d leadership transfers after %d elections, %d splits; holding again", transfers, moved, splits)
			started = now
			continue
		}
		var window []string
		for _, k := range slices.Sorted(maps.Keys(after)) {
			if d := after[k].Started - before[k].Started; d > 0 {
				window = append(window, fmt.Sprintf("%s=%d", k, d))
			}
		}
		if splitFailed > 0 {
			window = append(window, fmt.Sprintf("failed splits=%d", splitFailed))
		}
		s.violation("placement did not stay converged: %d operators started in the %d steps after it settled (%s; %d groups elected meanwhile); operators: %s",
			now-started, holdSteps, strings.Join(window, " "), moved, kindsString(after))
		return
	}
}

// executing counts the executors running.
func (s *simulation) executing() int {
	n := 0
	for _, a := range s.actors.live {
		if !a.done && strings.HasPrefix(a.name, "execute ") {
			n++
		}
	}
	return n
}

// kindsString formats operator counts by kind: "repair=3/1 split=5/0"
// (started/failed).
func kindsString(m map[string]placementCounts) string {
	kinds := make([]string, 0, len(m))
	for k := range m {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	var b strings.Builder
	for _, k := range kinds {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d/%d", k, m[k].Started, m[k].Failed)
	}
	return b.String()
}

func sortedGroups[V any](m map[multiraft.GroupID]V) []multiraft.GroupID {
	out := make([]multiraft.GroupID, 0, len(m))
	for g := range m {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

func sortedIDs(m map[multiraft.ReplicaID]bool) []multiraft.ReplicaID {
	out := make([]multiraft.ReplicaID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
