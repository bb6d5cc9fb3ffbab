package sim

import (
	"fmt"
	"strings"

	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/shard"
)

// Reads at a revision (shard backend). Once a replica has resolved past a
// revision R, its data at R is final: every write at or below R applied
// there and none can commit any more. So every replica that owns a key
// and answers reads at R (resolved at or past R, compaction point at or
// below it) must read the same version of the key at R, whatever faults,
// snapshots, splits and moves it went through; and a watch session that
// listed the key at or below R and delivered every event up to R or
// beyond must hold that version too.
//
// At every sample, for readsAtKeys keys drawn at random (every key after
// the run), the check reads each replica's Pebble at R (shard.ReadAt,
// behind no barrier: the replica's own data), where R is the lowest
// resolved revision among the replicas that can answer at the highest
// one's compaction point (a replica far behind is left out), and again at
// a revision drawn between that compaction point and R.

// readsAtKeys is how many keys a sample reads at a revision.
const readsAtKeys = 16

// replicaView is one replica that owns a key, as the check sees it.
type replicaView struct {
	n       *node
	g       shard.ShardID
	last    uint64 // resolved revision
	compact uint64 // compaction point
}

// checkReadsAt compares reads at the same revision across the replicas
// of some keys (all of them if all).
func (s *simulation) checkReadsAt(all bool) {
	ws := s.watch
	if ws == nil {
		return
	}
	views := make(map[string][]replicaView)
	for _, n := range s.watchNodes() {
		for _, d := range n.store.Descriptors() {
			last, compact := storedRevision(n.db, d.ShardID), compactPoint(n.db, d.ShardID)
			for _, k := range s.keysIn(d.Start, d.End) {
				views[k] = append(views[k], replicaView{n, d.ShardID, last, compact})
			}
		}
	}
	ks := s.watchKeys()
	if !all && len(ks) > readsAtKeys {
		picked := make([]string, 0, readsAtKeys)
		for _, i := range ws.rng.Perm(len(ks))[:readsAtKeys] {
			picked = append(picked, ks[i])
		}
		ks = picked
	}
	for _, k := range ks {
		vs := views[k]
		var top, floor uint64
		for _, v := range vs {
			top, floor = max(top, v.last), max(floor, v.compact)
		}
		var keep []replicaView
		r := top
		for _, v := range vs {
			if v.last >= floor {
				keep = append(keep, v)
				r = min(r, v.last)
			}
		}
		if len(keep) == 0 || r == 0 {
			continue
		}
		s.compareReadsAt(k, keep, r)
		if r > floor {
			s.compareReadsAt(k, keep, floor+ws.rng.Uint64N(r-floor))
		}
	}
}

// compareReadsAt reads k at rev on every replica of vs and requires them
// to agree, and to agree with every session that covers rev.
func (s *simulation) compareReadsAt(k string, vs []replicaView, rev uint64) {
	type read struct {
		found bool
		kv    shard.KeyValue
	}
	reads := make([]read, len(vs))
	for i, v := range vs {
		at := rev
		if s.cfg.bug == bugReadAtStale && v.n.id == 3 {
			at -= min(at, uint64(tso.Compose(30, 0)))
		}
		kv, found, err := shard.ReadAt(v.n.db, []byte(k), at)
		must(err)
		reads[i] = read{found, kv}
		s.stats.ReadsAt++
	}
	for i := 1; i < len(reads); i++ {
		a, b := reads[0], reads[i]
		if a.found != b.found || a.found && !sameKV(a.kv, b.kv) {
			var desc []string
			for j, v := range vs {
				desc = append(desc, fmt.Sprintf("n%d g%d (resolved %d): %s", v.n.id, v.g, v.last, modelString(reads[j].found, reads[j].kv)))
			}
			s.violation("reads of %s at %d differ: %s", k, rev, strings.Join(desc, "; "))
			return
		}
	}
	got := reads[0]
	for _, ss := range s.watch.sessions {
		m := ss.models[k]
		if m == nil || ss.closed || ss.broken || rev < ss.base {
			continue
		}
		p := ss.pieceOf(k)
		if p == nil || rev > p.progress {
			continue
		}
		if live, kv := m.at(rev); live != got.found || live && !sameKV(kv, got.kv) {
			s.watchViolation(ss, p, "%s at %d: the watch's state is %s, n%d reads %s", k, rev, modelString(live, kv), vs[0].n.id, modelString(got.found, got.kv))
		}
	}
}
