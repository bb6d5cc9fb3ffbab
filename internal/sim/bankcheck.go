package sim

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/shard"
)

// What the bank's checks hold transactions across shards to (see
// bank.go for the workload). The truth about what committed is the
// storage's: every bankSampleEvery steps the checks read every version
// of every account on every live replica (writes prune a key's history
// only past 200 ms of revisions, 200 steps, so no version is missed).
//
//  1. Every audit's total is the opening total, and each balance it read
//     is the account's newest stored version at or below its start
//     (snapshot isolation, and atomicity: no audit sees half a transfer).
//  2. After the run healed, every lock was resolved (by reads of every
//     account at a fresh revision, which resolve what they meet, crashed
//     coordinators' locks included), the total is the opening total, and
//     no replica of any shard holds a lock.
//  3. Each account's versions, in revision order: the first is its
//     opening deposit (a revision the deposit was stamped with, holding
//     bankOpening); every later one is at a revision some transfer
//     could commit at (bankTransfer.commitRevs: the one-phase command's,
//     the commit revision of two phases, or, for async commit whose
//     coordinator does not know it, the highest of two of its prewrite
//     revisions) that names the account, and differs from the previous
//     version by exactly that transfer's amount. So no version exists
//     without a transaction behind it, and no update is lost.
//  4. Each transfer's two writes are at one revision on both of its
//     accounts, or on neither: an acknowledged transfer (with async
//     commit: both prewrites applied, or its rollback at the primary
//     refused because a resolver recorded the commit), and one whose
//     coordinator stopped after its commit point, on both, at its commit
//     revision (rolled forward by the resolvers); one refused, abandoned
//     or whose coordinator stopped after its prewrites without async
//     commit, on neither; one whose commit point's answer was lost, or
//     whose async coordinator stopped during a prewrite, either way,
//     decided alike for both keys.
const (
	bankSampleEvery = 10
	// bankDrainSteps bounds the end's resolution of every lock.
	bankDrainSteps = 3000
)

// sampleBank reads every version of every account on every live node.
func (s *simulation) sampleBank() {
	st := s.bank
	lo, hi := keys.UserSpan([]byte("\xfeB"), []byte("\xfeC"))
	index := map[string]int{}
	for i := range bankAccounts {
		index[bankKey(i)] = i
	}
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
			a, ok := index[string(k)]
			if !ok {
				s.violation("bank: a version of %q at %d, not an account", k, rev)
				continue
			}
			if _, seen := st.versions[a][rev]; seen {
				continue
			}
			kv, found, err := shard.ReadAt(n.db, k, rev)
			must(err)
			if !found || kv.ModRevision != rev {
				s.violation("bank: %q deleted at %d on n%d", k, rev, n.id)
				continue
			}
			bal, err := strconv.Atoi(string(kv.Value))
			if err != nil {
				s.violation("bank: %q holds %q at %d on n%d", k, kv.Value, rev, n.id)
				continue
			}
			st.versions[a][rev] = bal
		}
		must(it.Close())
	}
}

// locksLeft lists the locks any live replica holds.
func (s *simulation) locksLeft() []string {
	var out []string
	for _, n := range s.nodes {
		if !n.up() || n.store == nil {
			continue
		}
		for _, d := range n.store.Descriptors() {
			lo, hi := keys.ShardSpan(uint64(d.ShardID), keys.ShardLock)
			it, err := n.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
			must(err)
			for it.First(); it.Valid(); it.Next() {
				out = append(out, fmt.Sprintf("n%d g%d %q", n.id, d.ShardID, it.Key()[len(lo):]))
			}
			must(it.Close())
		}
	}
	return out
}

// drainBank resolves every lock once the run healed: an actor reads
// every account at a fresh revision (resolving what it meets) until all
// reads succeed at one revision, then the run goes on until no replica
// holds a lock.
func (s *simulation) drainBank() {
	st := s.bank
	if st == nil || !st.opened {
		return
	}
	done := false
	s.actors.spawn(nil, "bank final", func() {
		defer func() { done = true }()
		for attempt := 0; attempt < 5; attempt++ {
			ctx, cancel := leaseRuntime{as: s.actors}.WithTimeout(context.Background(), 4*bankCallTimeout)
			rev := s.sm.(*shardBackend).nextRevision()
			var bals []int
			for i := range bankAccounts {
				bal, err := s.bankGet(ctx, bankKey(i), rev)
				if err != nil {
					s.tracef("bank: final read of %d at %d: %v", i, rev, err)
					break
				}
				bals = append(bals, bal)
			}
			cancel()
			if len(bals) == bankAccounts {
				st.final = bals
				return
			}
		}
	})
	for i := 0; i < bankDrainSteps; i++ {
		if done && i%bankSampleEvery == 0 && len(s.locksLeft()) == 0 {
			break
		}
		s.advance(false)
	}
	s.sampleBank()
}

// checkBank runs the four checks.
func (s *simulation) checkBank() {
	st := s.bank
	if st == nil {
		return
	}
	if !st.opened {
		// No account was ever opened (a fleet whose placement created no
		// shard in time): nothing ran.
		s.tracef("bank: never opened")
		return
	}
	// The async-commit counts, which the run's Stats do not carry.
	s.tracef("bank: async commit: %d transfers committed, %d rolled back by their coordinator; resolvers decided %d forward, %d back",
		st.stats.asyncCommitted, st.stats.asyncRolledBack, st.stats.asyncDecidedForward, st.stats.asyncDecidedBack)
	total := bankAccounts * bankOpening
	sum := func(bs []int) int {
		t := 0
		for _, b := range bs {
			t += b
		}
		return t
	}
	// 1. Audits.
	for _, a := range st.audits {
		if got := sum(a.balances); got != total {
			s.violation("bank: audit at %d (client %d) totals %d, not %d: %v", a.start, a.client, got, total, a.balances)
			continue
		}
		for i, b := range a.balances {
			if v, rev, ok := bankVersionAt(st.versions[i], a.start); !ok || v != b {
				s.violation("bank: audit at %d read %d in account %d; the stored version at or below it holds %d (at %d, found %v)", a.start, b, i, v, rev, ok)
			}
		}
	}
	// 2. The end.
	if st.final == nil {
		s.violation("bank: the final reads never succeeded")
	} else if got := sum(st.final); got != total {
		s.violation("bank: the final total is %d, not %d: %v", got, total, st.final)
	}
	if left := s.locksLeft(); len(left) > 0 {
		s.violation("bank: locks left at the end: %v", left)
	}
	// 3. Each account's history.
	byRev := map[uint64]*bankTransfer{}
	for _, t := range st.transfers {
		for _, r := range t.commitRevs() {
			byRev[r] = t
		}
	}
	for a := range bankAccounts {
		revs := revsOfInts(st.versions[a])
		if len(revs) == 0 {
			s.violation("bank: account %d has no version", a)
			continue
		}
		if r := revs[0]; !st.initRevs[r] || st.versions[a][r] != bankOpening {
			s.violation("bank: account %d's first version is %d at %d, not its opening deposit", a, st.versions[a][r], r)
		}
		for j := 1; j < len(revs); j++ {
			r, prev := revs[j], st.versions[a][revs[j-1]]
			t := byRev[r]
			switch {
			case t == nil:
				s.violation("bank: account %d has a version (%d) at %d that no transfer committed at", a, st.versions[a][r], r)
			case t.delta(a) == 0:
				s.violation("bank: account %d has a version at %d, the revision of transfer %d (%d -> %d)", a, r, t.id, t.from, t.to)
			case st.versions[a][r]-prev != t.delta(a):
				s.violation("bank: account %d went from %d to %d at %d, but transfer %d (%d -> %d, %s) moved %d (read %d, %d at %d)",
					a, prev, st.versions[a][r], r, t.id, t.from, t.to, t.outcome, t.amount, t.readFrom, t.readTo, t.start)
			}
		}
	}
	// 4. Each transfer: both writes or neither.
	for _, t := range st.transfers {
		revs := t.commitRevs()
		applied := func(a int) (uint64, bool) {
			for _, r := range revs {
				if _, ok := st.versions[a][r]; ok {
					return r, true
				}
			}
			return 0, false
		}
		rf, af := applied(t.from)
		rt, at := applied(t.to)
		switch {
		case af != at || af && rf != rt:
			s.violation("bank: transfer %d (%d -> %d, %s) wrote account %d (%v, at %d) and account %d (%v, at %d)",
				t.id, t.from, t.to, t.outcome, t.from, af, rf, t.to, at, rt)
		case !af && (t.outcome == txCommitted || t.outcome == txCrashCommitted):
			s.violation("bank: transfer %d (%d -> %d, %s at %d) is in no account's history", t.id, t.from, t.to, t.outcome, t.commit)
		case af && (t.outcome == txConflict || t.outcome == txAbandoned || t.outcome == txCrashPrewritten):
			s.violation("bank: transfer %d (%d -> %d, %s) applied at %d", t.id, t.from, t.to, t.outcome, rf)
		case af && !t.onePhase && (t.outcome == txCommitted || t.outcome == txCrashCommitted) && rf != t.commit:
			s.violation("bank: transfer %d (%d -> %d, %s at %d) applied at %d", t.id, t.from, t.to, t.outcome, t.commit, rf)
		}
	}
}

// bankVersionAt returns the newest version of m at or below rev.
func bankVersionAt(m map[uint64]int, rev uint64) (int, uint64, bool) {
	var best uint64
	for r := range m {
		if r <= rev && r > best {
			best = r
		}
	}
	v, ok := m[best]
	return v, best, ok
}

// revsOfInts returns m's revisions in order.
func revsOfInts(m map[uint64]int) []uint64 {
	out := make([]uint64, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}
