package sim

import (
	"errors"
	"fmt"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// Splits (shard backend only). A split divides a group g at one of its
// keys: g keeps [Start, key), a new group takes [key, End) with a replica
// beside each of g's, created by the shard state machine when it applies
// the split (multiraft.ApplyContext.CreateGroup), and both descriptors
// move to the next Version. Requests carry the Version they were routed
// with, so a request routed before the split is refused with
// EpochNotMatch or KeyNotInShard (it wrote nothing); the client then
// re-routes it with the simulator's table (s.owner), as a router would
// with the descriptors the error carries, and retries it. A read checks,
// after reading, that its replica still owns the key (shard.Store.Get
// does the same). The checks follow keys, not groups, so the history of
// a key continues across its move to the right-hand group.
//
// The split runs under every fault, and a partition may be aimed at it
// (reconfCutPermille). The driver proposes the split on g's leader until
// the leader's descriptor shows it applied, then registers the new group
// and waits until every node hosts an initialised replica of it. The
// driver creates none itself: a replica of g that skipped the split entry
// by installing a snapshot taken after it gets its right-hand replica from
// the engine, created empty by the first message of the new group's
// leader and filled by a snapshot (multiraft/create.go), and a replica of
// g that applies the split after the new group's leader reached its node
// finds that empty replica and initialises it (multiraft/layout.go).
//
// Splits and reconfigurations do not overlap: a split maps every replica
// of g to a replica of the new group, so g must have one voter per node.

// errWrongShard: the state machine refused a request routed with an
// outdated descriptor; it wrote nothing.
var errWrongShard = errors.New("sim: request routed to the wrong shard")

// errRestamp: the state machine refused a write whose revision was not
// above its shard's last (stamped before another write that committed
// first); the client retries it with a new revision, as the router does.
var errRestamp = errors.New("sim: write stamped with a stale revision")

// splitOp is the split in progress.
type splitOp struct {
	g, right multiraft.GroupID
	key      string
	repls    []shard.SplitReplica
	fut      *multiraft.Future
	nextAt   int
	start    int
	applied  bool // g's leader applied it; the new group is registered
}

// maxSplits bounds how many splits a run makes (each adds a group, and
// the run's cost grows with the groups).
func (s *simulation) maxSplits() int { return max(4, s.cfg.Groups/4) }

// maybeStartSplit starts splitting a random group at one of its keys, if
// no split or reconfiguration is in progress.
func (s *simulation) maybeStartSplit() {
	if s.split != nil || s.reconf != nil || !s.chance(s.prof.splitPermille) ||
		s.groupCount >= s.cfg.Groups+s.maxSplits() {
		return
	}
	g := multiraft.GroupID(1 + s.rng.IntN(s.groupCount))
	ks := s.groupKeys[g]
	if len(ks) < 2 {
		return
	}
	key := ks[1+s.rng.IntN(len(ks)-1)] // both sides keep a key
	sts := s.groupStatuses(g)
	li := leaderOf(sts)
	if li < 0 || sts[li].Members.Joint {
		return
	}
	d, ok := readDescriptor(s.nodes[li].db, g)
	if !ok || len(d.Replicas) != len(s.nodes) {
		return
	}
	right := multiraft.GroupID(s.groupCount + 1)
	sp := &splitOp{g: g, right: right, key: key, start: s.step}
	seen := make(map[multiraft.NodeID]bool)
	for k, r := range d.Replicas {
		if r.Learner || seen[r.NodeID] {
			return
		}
		seen[r.NodeID] = true
		nr := replicaID(right, uint64(k+1))
		sp.repls = append(sp.repls, shard.SplitReplica{Old: r.ReplicaID, New: nr})
	}
	s.split = sp
	s.stats.Splits++
	s.tracef("split g%d at %s into g%d", g, key, right)
	if s.chance(s.prof.reconfCutPermille) {
		s.reconfCutAt = s.step + 1 + s.rng.IntN(6*reconfigPoll)
	}
}

// driveSplit makes the next move of the split in progress.
func (s *simulation) driveSplit() {
	sp := s.split
	if sp == nil {
		return
	}
	if sp.fut != nil {
		if !isDone(sp.fut) {
			return
		}
		res, err := sp.fut.Result()
		if err == nil {
			if e, ok := res.(error); ok {
				err = e
			}
		}
		s.tracef("split g%d: proposal done: %v", sp.g, err)
		sp.fut = nil
		sp.nextAt = s.step + 1
	}
	if s.step < sp.nextAt {
		return
	}
	sp.nextAt = s.step + reconfigPoll
	if !sp.applied {
		sts := s.groupStatuses(sp.g)
		li := leaderOf(sts)
		if li < 0 {
			return
		}
		lead := s.nodes[li]
		d, ok := readDescriptor(lead.db, sp.g)
		if !ok {
			return
		}
		if !d.ContainsKey([]byte(sp.key)) {
			s.registerSplit(sp, d)
			return
		}
		c := shard.Command{
			Header:      shard.Header{Epoch: d.Epoch},
			Kind:        shard.KindSplit,
			Key:         []byte(sp.key),
			NewShard:    sp.right,
			NewReplicas: sp.repls,
		}
		sp.fut = lead.e.ProposeFuture(sp.g, c.AppendEncoded(nil))
		return
	}
	// Every node must host an initialised replica of the new group.
	missing := 0
	for _, n := range s.nodes {
		if !n.up() || !hostsInitialised(n.e, sp.right) {
			missing++
		}
	}
	if missing == 0 {
		s.tracef("split g%d: g%d on every node after %d steps", sp.g, sp.right, s.step-sp.start)
		s.split = nil
		s.reconfCutAt = 0
	}
}

// hostsInitialised reports whether e hosts a replica of g that has state
// (an empty one waiting for a snapshot has none).
func hostsInitialised(e *multiraft.Engine, g multiraft.GroupID) bool {
	for _, sum := range e.Summaries() {
		if sum.Group == g {
			return sum.Applied > 0
		}
	}
	return false
}

// registerSplit records that g's leader applied the split, whose left
// side is now d: the keys from the split key on belong to the new group.
func (s *simulation) registerSplit(sp *splitOp, d shard.Descriptor) {
	sp.applied = true
	s.groupCount++
	if int(sp.right) != s.groupCount {
		panic(fmt.Sprintf("sim: split registers group %d, expected %d", sp.right, s.groupCount))
	}
	s.version[sp.g] = d.Epoch.Version
	s.version[sp.right] = d.Epoch.Version
	var left, moved []string
	for _, k := range s.groupKeys[sp.g] {
		if k >= sp.key {
			moved = append(moved, k)
			s.owner[k] = sp.right
		} else {
			left = append(left, k)
		}
	}
	s.groupKeys[sp.g], s.groupKeys[sp.right] = left, moved
	s.nextReplica = append(s.nextReplica, uint64(len(sp.repls)))
	for _, c := range s.clients {
		c.leader = append(c.leader, c.leader[sp.g-1])
	}
	s.tracef("split g%d: applied after %d steps; g%d owns %v", sp.g, s.step-sp.start, sp.right, moved)
}
