package sim

import (
	"context"
	"fmt"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// The lock sweeper (shard/locksweep.go), as a shardnode runs it
// (cmd/shardnode/locksweep.go): every lockSweepEvery steps, each live
// node lists, for every shard it leads, the locks whose TTL ran out at
// a fresh revision of the run's oracle (shard.Store.ExpiredLocks, at
// most lockSweepBudget, the oldest first), and an actor resolves each
// through its primary exactly as a bank reader that met it would
// (bankResolve: KindCheckTxn on the primary, then KindCommitTxn or
// KindRollbackTxn of the key), under the run's faults. A lock already
// being swept is not listed again until its actor is done.
//
// So the bank's locks are settled within their TTL plus the sweep's
// period and its resolution, or, while the shard or its primary's shard
// has no leader, the time until one is elected; outcome records are
// collected (historygc.go) once TxnRecordRetention, far above that, has
// passed, in engine and fleet runs alike, and the bank's checks see
// every lock resolved (bankcheck.go: "locks left" is a violation, and a
// lock that outlived its record would be one).
const (
	lockSweepEvery  = 20
	lockSweepBudget = 8
)

// lockSweep is the sweeper's state across the run.
type lockSweep struct {
	// sweeping holds the locks an actor is resolving.
	sweeping map[sweptLock]bool
	// listed counts the expired locks handed to actors; swept those the
	// listing node no longer held afterwards.
	listed, swept int
}

type sweptLock struct {
	key   string
	start uint64
}

// sweepLocks runs one round of the sweeper on every live node with a
// shard store, in runs with the bank (the run's only transactions
// across shards).
func (s *simulation) sweepLocks() {
	b, ok := s.sm.(*shardBackend)
	if !ok || s.bank == nil || s.actors == nil {
		return
	}
	ls := &s.lockSweep
	if ls.sweeping == nil {
		ls.sweeping = make(map[sweptLock]bool)
	}
	for _, n := range s.nodes {
		if !n.up() || n.store == nil {
			continue
		}
		for _, g := range n.e.Summaries() {
			if !g.Leading {
				continue
			}
			sw, err := n.store.ExpiredLocks(g.Group, b.nextRevision(), lockSweepBudget)
			if err != nil {
				continue
			}
			for _, l := range sw.Expired {
				k := sweptLock{string(l.Key), l.Start}
				if ls.sweeping[k] {
					continue
				}
				ls.sweeping[k] = true
				ls.listed++
				s.tracef("lock sweep: g%d on n%d: %q of %d (primary %q)", g.Group, n.id, l.Key, l.Start, l.Primary)
				s.actors.spawn(nil, fmt.Sprintf("lock sweep %q@%d", l.Key, l.Start), func() {
					defer delete(ls.sweeping, k)
					ctx, cancel := leaseRuntime{as: s.actors}.WithTimeout(context.Background(), bankCallTimeout)
					defer cancel()
					s.bankResolve(ctx, &l)
					if held, known := s.holdsLock(n, g.Group, k); known && !held {
						ls.swept++
					}
				})
			}
		}
	}
}

// holdsLock reports whether n still holds lock k on shard g, if it can
// tell (n is up and still has the shard).
func (s *simulation) holdsLock(n *node, g multiraft.GroupID, k sweptLock) (held, known bool) {
	if !n.up() || n.store == nil {
		return false, false
	}
	// Every lock has expired at the largest timestamp.
	sw, err := n.store.ExpiredLocks(g, ^uint64(0)>>1, 0)
	if err != nil {
		return false, false
	}
	for _, l := range sw.Expired {
		if string(l.Key) == k.key && l.Start == k.start {
			return true, true
		}
	}
	return false, true
}
