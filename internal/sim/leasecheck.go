package sim

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/shard"
)

// What the lease checks hold the leases to (lease/doc.go, "Bounds" and
// "Ending, and the read fence"), from the clients' records
// (leaseclient.go) and the storage. The truth about ends and deletes is
// the storage's: every leaseSampleEvery steps the checks read every
// version of every leased key and lease record on every live replica
// (writes prune a key's history only past 200 ms of revisions, 200
// steps, so no version is missed): the revision E at which a lease's
// record was written ended, and every put and delete of a leased key
// with its revision and lease.
//
//  1. A key is never readable after its lease's deadline plus the bound
//     lease/doc.go states. The deadline is at most the TTL after the
//     lease's last restart (the return of its grant or of any keepalive
//     attempt, answered or not), on the slowest clock allowed (rate
//     950/1000). The bound: the lessor's interval, plus, per change of
//     the node serving the home (leading it, counting the lease, and
//     reaching a majority) or of the term it leads the home in (the same
//     node elected again, after a crash or a lost majority: its lessor
//     loads the home's leases afresh, as a new node's would), the
//     lease's checkpoint interval, plus every
//     step no node served it, plus leaseSlack per change and once more
//     for the end's own writes; all at the slowest rate. The end's
//     revision E must be stamped by then, no read called after then may
//     return a key attached to the lease, and none called once the
//     oracle had handed out E (the fence is exact: a read that began
//     after the end was decided never sees the key). An end a revoke
//     began is exempt from the fence (lease/doc.go: a revoke waits for
//     the promises made to attaches, not to reads, so a read between its
//     E and a key's delete may see the key; a revoke that fails part way
//     leaves its deletes to the lessor's loop): no read called after a
//     revoke returned success may return a key attached to the lease.
//  2. A lease kept alive in time never ends: while each keepalive is
//     answered success and returns before the TTL after the previous
//     restart's call, on the fastest clock allowed (1050/1000), less the
//     lessor's interval, the lease's end E must not be stamped, no
//     keepalive may be told it does not exist, and a read of a key the
//     lease holds (its client's last acknowledged put of it attached it
//     to the lease, and nothing since could have changed it) that
//     returned meanwhile must find it (the fence judges the lease at a
//     fresh timestamp, taken any time before the read returns).
//  3. Every expired key gets its delete exactly once: every delete of a
//     leased key (a tombstone) removes a version attached to a lease
//     that had ended (E at or below the delete's revision), so no delete
//     hits a key re-attached since, and no key is deleted twice; and once
//     the run drained, no key is still attached to an ended lease.
//  4. Revoke removes every attached key: when a revoke returns success,
//     every key whose version at the lease's end E was attached to it has
//     a newer version (its delete, or a later put) at or below the
//     oracle's value at the return.
const (
	leaseSampleEvery = 10
	// leaseSlack: the steps an end's writes and a new leader's load may
	// take beyond the bound's terms (an election timeout is 20 to 40
	// steps; a write under loss and delay a few more).
	leaseSlack = 60
	// leaseDrainSteps bounds the wait, after convergence, for every lease
	// to end and its keys to go.
	leaseDrainSteps = 3000
)

// sampledVersion is one version of a leased key or lease record.
type sampledVersion struct {
	live  bool
	lease uint64
	ended bool // a lease record written ended
}

// sampleLeases reads every version of the leased keys and lease records
// on every live node.
func (s *simulation) sampleLeases() {
	st := s.leases
	lo, hi := keys.UserSpan(leaseKeysStart, nil)
	for _, n := range s.nodes {
		if !n.up() || n.store == nil {
			continue
		}
		it, err := n.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		must(err)
		for it.First(); it.Valid(); it.Next() {
			k, rev, ok := keys.DecodeMVCCKey(it.Key())
			if !ok {
				continue
			}
			m := st.versions[string(k)]
			if m == nil {
				m = map[uint64]sampledVersion{}
				st.versions[string(k)] = m
			}
			if _, seen := m[rev]; seen {
				continue
			}
			kv, found, err := shard.ReadAt(n.db, k, rev)
			must(err)
			v := sampledVersion{live: found && kv.ModRevision == rev, lease: kv.Lease}
			if !v.live {
				v.lease = 0
			}
			if id, ok := syskeys.LeaseFromRecordKey(k); ok && v.live {
				r, err := syskeys.DecodeLeaseRecord(kv.Value)
				if err != nil {
					s.violation("lease: record of %d at %d on n%d: %v", id, rev, n.id, err)
				} else if r.Ended {
					v.ended = true
					if e := st.ended[id]; e == 0 || rev < e {
						st.ended[id] = rev
					}
				}
			}
			m[rev] = v
		}
		must(it.Close())
	}
}

// trackLeases notes, for every lease that may still live, which node
// serves its home this step.
func (s *simulation) trackLeases() {
	st := s.leases
	for _, l := range st.leases {
		if !l.maybe || st.ended[l.id] != 0 {
			continue
		}
		srv, home, term := s.leaseServer(l.id)
		switch {
		case srv == nil:
			l.unserved++
		case !l.tracked:
		case home.ShardID != l.home.ShardID || !bytes.Equal(home.Start, l.home.Start) || !bytes.Equal(home.End, l.home.End):
			// A split of the home (even one that left the record on the
			// same shard: its leader loads its leases afresh, from their
			// checkpoints).
			l.changes++
			l.homeMoves++
		case srv != l.server || term != l.term:
			// Another node, or the same one leading in a new term (back
			// from a crash or a lost majority): either way a lessor loaded
			// the home's leases afresh, from their checkpoints.
			l.changes++
		}
		if srv != nil {
			l.server, l.term, l.home, l.tracked = srv, term, home, true
		}
	}
}

// leaseServer returns the node that leads lease id's home, counts its
// time and reaches a majority of the home's replicas, if one does, the
// home's descriptor there and the term it leads the home in.
func (s *simulation) leaseServer(id uint64) (*node, shard.Descriptor, uint64) {
	key := syskeys.LeaseRecordKey(id)
	for _, n := range s.nodes {
		if !n.up() || n.leases == nil || !n.leases.ls.Holds(id) {
			continue
		}
		for _, d := range n.store.Descriptors() {
			if !d.ContainsKey(key) || n.e.CheckLeader(d.ShardID) != nil {
				continue
			}
			reach := 0
			for _, r := range d.Replicas {
				o := s.endpoint(r.NodeID)
				if o == n || o.up() && !s.net.isBlocked(n.id, o.id) && !s.net.isBlocked(o.id, n.id) {
					reach++
				}
			}
			if reach*2 > len(d.Replicas) {
				sum, _ := n.e.Summary(multiraft.GroupID(d.ShardID))
				return n, d, sum.Term
			}
		}
	}
	return nil, shard.Descriptor{}, 0
}

// drainLeases lets the healed cluster run until every lease granted
// (or maybe granted) ended and no leased key is attached to an ended
// lease, or leaseDrainSteps pass.
func (s *simulation) drainLeases() {
	st := s.leases
	if st == nil {
		return
	}
	for i := 0; i < leaseDrainSteps; i++ {
		if i%leaseSampleEvery == 0 && s.leasesSettled() {
			st.drained = true
			return
		}
		s.advance(false)
	}
	s.sampleLeases()
	st.drained = s.leasesSettled()
}

// leasesSettled reports whether every lease whose record exists has
// ended and every leased key's newest version is free of ended leases.
func (s *simulation) leasesSettled() bool {
	st := s.leases
	for _, l := range st.leases {
		if s.leaseExists(l) && st.ended[l.id] == 0 {
			return false
		}
	}
	for k, m := range st.versions {
		if _, ok := syskeys.LeaseFromRecordKey([]byte(k)); ok {
			if v, _ := newest(m); v.live {
				return false // a record not yet deleted
			}
			continue
		}
		if v, _ := newest(m); v.live && v.lease != 0 && st.ended[v.lease] != 0 {
			return false
		}
	}
	return true
}

// leaseExists reports whether lease l was granted: its grant was
// answered success, or the samples found its record.
func (s *simulation) leaseExists(l *simLease) bool {
	return l.granted || len(s.leases.versions[string(syskeys.LeaseRecordKey(l.id))]) > 0
}

// newest returns the newest version of m and its revision.
func newest(m map[uint64]sampledVersion) (sampledVersion, uint64) {
	var top uint64
	for r := range m {
		top = max(top, r)
	}
	return m[top], top
}

// revsOf returns m's revisions in order.
func revsOf(m map[uint64]sampledVersion) []uint64 {
	out := make([]uint64, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// slowSteps is d steps of a clock at the slowest rate allowed, in steps.
func slowSteps(d int) int {
	return (d*nominalRate + nominalRate - maxSkewPermille - 1) / (nominalRate - maxSkewPermille)
}

// fastSteps is d steps of a clock at the fastest rate allowed, in steps.
func fastSteps(d int) int {
	return d * nominalRate / (nominalRate + maxSkewPermille)
}

// stepOf is the step at which the oracle handed out rev.
func stepOf(rev uint64) int { return int(tso.Physical(tso.Timestamp(rev))) }

// checkLeases runs the four checks.
func (s *simulation) checkLeases() {
	st := s.leases
	if st == nil {
		return
	}
	if !st.drained {
		s.violation("lease: the leases did not all end within %d steps of the healed run: %s", leaseDrainSteps, s.leasesLeft())
	}
	for _, l := range st.leases {
		s.checkLeaseBound(l)
		s.checkKeptAlive(l)
		s.checkRevoke(l)
	}
	s.checkDeletes()
}

// leasesLeft describes the leases and keys the drain waited for.
func (s *simulation) leasesLeft() string {
	st := s.leases
	var out []string
	for _, l := range st.leases {
		if s.leaseExists(l) && st.ended[l.id] == 0 {
			out = append(out, fmt.Sprintf("lease %d not ended", l.id))
		}
	}
	for _, k := range sortedKeys(st.versions) {
		if id, ok := syskeys.LeaseFromRecordKey([]byte(k)); ok {
			if v, r := newest(st.versions[k]); v.live {
				out = append(out, fmt.Sprintf("lease %d's record not deleted (ended=%v at %d)", id, v.ended, r))
			}
			continue
		}
		if v, r := newest(st.versions[k]); v.live && v.lease != 0 && st.ended[v.lease] != 0 {
			out = append(out, fmt.Sprintf("%q attached to lease %d (ended at %d) at %d", k, v.lease, st.ended[v.lease], r))
		}
	}
	if len(out) > 8 {
		out = append(out[:8], fmt.Sprintf("and %d more", len(out)-8))
	}
	return strings.Join(out, "; ")
}

// lastRestart is the last step at which l's TTL may have restarted.
func (l *simLease) lastRestart() int {
	t := l.grantRet
	for _, k := range l.kas {
		t = max(t, k.ret)
	}
	return t
}

// boundSteps is check 1's bound past l's deadline, in steps. A change
// of the node serving the home, or of the home (a split), counts as a
// change of leader.
func (l *simLease) boundSteps() int {
	cp := max(leaseStepsOf(leaseCheckpoint), l.ttlSteps()/4)
	return slowSteps(leaseStepsOf(leaseInterval)) + l.changes*(slowSteps(cp)+leaseSlack) + l.unserved + leaseSlack
}

// slackSteps is the part of boundSteps that is slack (leaseSlack per
// change and once).
func (l *simLease) slackSteps() int { return (l.changes + 1) * leaseSlack }

// revokeBegan reports whether a revoke of l may have begun its end, E:
// one was called by E's step and did not find the lease already ending
// (an expiry's end, to which the fence applies).
func (l *simLease) revokeBegan(e uint64) bool {
	for _, k := range l.revokes {
		if k.call <= stepOf(e) && !k.notFound {
			return true
		}
	}
	return false
}

// checkLeaseBound is check 1 for lease l.
func (s *simulation) checkLeaseBound(l *simLease) {
	st := s.leases
	e := st.ended[l.id]
	latest := l.lastRestart() + slowSteps(l.ttlSteps()) + l.boundSteps()
	if e != 0 && l.revokedRev == 0 && len(l.revokes) == 0 {
		// How far past the bound's terms other than the slack the end
		// came (Stats.LeaseEndSlack).
		st.stats.slack = max(st.stats.slack, stepOf(e)-(latest-l.slackSteps()))
	}
	if e != 0 && stepOf(e) > latest && l.revokedRev == 0 {
		s.violation("lease: readable after deadline plus bound: lease %d (ttl %d steps, last restart at step %d, %d home changes, %d steps unserved) ended at step %d (revision %d), after step %d",
			l.id, l.ttlSteps(), l.lastRestart(), l.changes, l.unserved, stepOf(e), e, latest)
		return
	}
	for _, r := range st.reads {
		if !r.found || r.kv.Lease != l.id {
			continue
		}
		switch {
		case l.revokedRev == 0 && r.call > latest:
			s.violation("lease: readable after deadline plus bound: c%d read %q attached to lease %d at step %d, after step %d (ttl %d steps, last restart at %d)",
				r.client, r.key, l.id, r.call, latest, l.ttlSteps(), l.lastRestart())
			return
		case l.revokedRev != 0 && r.call > l.revokedAt:
			s.violation("lease: readable after its revoke: c%d read %q attached to lease %d at step %d, after the revoke returned at step %d",
				r.client, r.key, l.id, r.call, l.revokedAt)
			return
		case e != 0 && r.callRev >= e && !l.revokeBegan(e):
			s.violation("lease: readable after its end: c%d read %q attached to lease %d, called at step %d once the oracle had reached %d, and the lease ended at %d",
				r.client, r.key, l.id, r.call, r.callRev, e)
			return
		}
	}
}

// checkKeptAlive is check 2 for lease l.
func (s *simulation) checkKeptAlive(l *simLease) {
	st := s.leases
	if !l.granted || l.mode != leaseKeep {
		return
	}
	ttl := fastSteps(l.ttlSteps()) - slowSteps(leaseStepsOf(leaseInterval)) - 1
	lastCall := l.grantCall
	keptUntil := lastCall + ttl
	for _, k := range l.kas {
		if k.ret > lastCall+ttl {
			break
		}
		if k.notFound {
			s.violation("lease: kept alive in time but ended: lease %d's keepalive at step %d (previous restart called at %d, ttl %d steps) was told it does not exist",
				l.id, k.call, lastCall, l.ttlSteps())
			return
		}
		if !k.ok {
			break
		}
		lastCall = k.call
		keptUntil = lastCall + ttl
	}
	if e := st.ended[l.id]; e != 0 && stepOf(e) < keptUntil {
		s.violation("lease: kept alive in time but ended: lease %d (ttl %d steps, kept alive in time until step %d) ended at step %d (revision %d)",
			l.id, l.ttlSteps(), keptUntil, stepOf(e), e)
		return
	}
	for _, r := range st.reads {
		// The fence judges the lease with a fresh timestamp, taken at
		// any time up to the read's return: only a read that returned
		// while the lease was kept alive must find the key.
		if r.client != l.client || r.found || r.ret >= keptUntil || r.call < l.grantRet {
			continue
		}
		var last *leasePut
		clean := true
		for i := range st.puts {
			p := &st.puts[i]
			if p.key != r.key || p.call > r.ret {
				continue
			}
			if p.ret >= r.call || !p.acked {
				clean = false // concurrent or ambiguous: its outcome is unknown
			}
			if p.acked && p.ret < r.call && (last == nil || p.ret > last.ret) {
				last = p
			}
		}
		if clean && last != nil && last.lease == l.id {
			s.violation("lease: kept alive in time but its key read as absent: c%d read %q at step %d, last put with lease %d at revision %d (kept alive in time until step %d)",
				r.client, r.key, r.call, l.id, last.rev, keptUntil)
			return
		}
	}
}

// versionAt returns the newest version of m at or below rev.
func versionAt(m map[uint64]sampledVersion, rev uint64) (sampledVersion, uint64, bool) {
	var best uint64
	found := false
	for r := range m {
		if r <= rev && (!found || r > best) {
			best, found = r, true
		}
	}
	return m[best], best, found
}

// checkRevoke is check 4 for lease l.
func (s *simulation) checkRevoke(l *simLease) {
	st := s.leases
	e := st.ended[l.id]
	if l.revokedRev == 0 {
		return
	}
	if e == 0 || e > l.revokedRev {
		s.violation("lease: revoke of lease %d returned at step %d (oracle at %d), but its record ended at %d", l.id, l.revokedAt, l.revokedRev, e)
		return
	}
	for _, k := range slices.Sorted(slices.Values(l.keys)) {
		m := st.versions[k]
		v, _, ok := versionAt(m, e)
		if !ok || !v.live || v.lease != l.id {
			continue
		}
		after, r, _ := versionAt(m, l.revokedRev)
		if r < e || after.live && after.lease == l.id {
			s.violation("lease: revoke of lease %d returned at step %d (oracle at %d) with %q still attached (ended at %d)", l.id, l.revokedAt, l.revokedRev, k, e)
			return
		}
	}
}

// checkDeletes is check 3.
func (s *simulation) checkDeletes() {
	st := s.leases
	for _, k := range sortedKeys(st.versions) {
		if _, ok := syskeys.LeaseFromRecordKey([]byte(k)); ok || !strings.HasPrefix(k, string(leaseKeysStart)+"L") {
			continue
		}
		m := st.versions[k]
		var prev sampledVersion
		var prevRev uint64
		for _, r := range revsOf(m) {
			v := m[r]
			if !v.live {
				st.stats.deletes++
				switch e := st.ended[prev.lease]; {
				case prevRev == 0:
				case !prev.live:
					s.violation("lease: deleted twice: %q deleted at %d, already deleted at %d", k, r, prevRev)
				case prev.lease == 0:
					s.violation("lease: deleted while attached to no lease: %q deleted at %d (put at %d without a lease)", k, r, prevRev)
				case e == 0 || e > r:
					s.violation("lease: deleted while its lease was alive: %q deleted at %d, attached to lease %d at %d, which ended at %d",
						k, r, prev.lease, prevRev, e)
				}
			}
			prev, prevRev = v, r
		}
		if st.drained && prev.live && prev.lease != 0 && st.ended[prev.lease] != 0 {
			s.violation("lease: never deleted: %q attached to lease %d at %d, which ended at %d", k, prev.lease, prevRev, st.ended[prev.lease])
		}
	}
}
