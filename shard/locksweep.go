package shard

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/flotilla-kv/flotilla/placement/tso"
)

// Sweeping expired locks
//
// A lock is resolved by its coordinator at once, or by a reader or
// writer that meets it once its TTL ran out (percolator.go). A
// coordinator that dies leaves locks that nobody may meet for days on
// a cold key, and a lock that outlives its transaction's outcome record
// can never be resolved (gc.go). So every shard's leader sweeps its own
// locks: periodically, it lists those whose TTL ran out at a fresh
// timestamp (SweepLocks), judged exactly as the primary's CheckTxn
// judges the primary lock (TxnLock.Expired), and resolves each through
// its primary as a reader would (package router's SweepLocks): roll
// forward if the transaction committed, back otherwise. Listing reads
// the replica's in-memory lock table, the one reads check, and writes
// nothing; the resolution is ordinary KindCheckTxn, KindCommitTxn and
// KindRollbackTxn commands, so a sweep racing a reader, the coordinator
// or a sweep of the previous leader settles each lock once, the same
// way.
//
// The sweep bounds how long a lock outlives its TTL: the sweep interval,
// plus the time its resolution takes, plus the time the shard or its
// primary's shard goes without a leader. gc.go sets the records'
// retention far above that bound.

// LockSweep is what a listing of one shard's locks found.
type LockSweep struct {
	// Now is the timestamp the TTLs were judged at (0: the shard holds
	// no lock, and no timestamp was taken).
	Now uint64
	// Expired holds up to the caller's limit of the locks whose TTL ran
	// out at Now, the oldest transactions first. They are copies, owned
	// by the caller.
	Expired []TxnLock
	// Locks counts every lock of the shard, expired or not; OldestStart
	// is the lowest start among them (0: none).
	Locks       int
	OldestStart uint64
}

// OldestAgeMillis returns how long before Now, in milliseconds of the
// oracle's clock, the oldest lock's transaction started (0: no lock).
func (s *LockSweep) OldestAgeMillis() int64 {
	if s.OldestStart == 0 || s.Now == 0 {
		return 0
	}
	return max(0, tso.Physical(tso.Timestamp(s.Now))-tso.Physical(tso.Timestamp(s.OldestStart)))
}

// ExpiredLocks lists, from this node's replica of shard, up to limit
// locks (limit <= 0: all) whose TTL ran out at timestamp now, with the
// count and the oldest start of all its locks. It reads the replica's
// lock table as reads see it, without I/O, on any replica; what it
// lists may be resolved by the time the caller acts on it, which
// resolution tolerates. The simulator calls it with its own oracle's
// timestamps; a node calls SweepLocks. Safe for concurrent use.
func (s *Store) ExpiredLocks(shard ShardID, now uint64, limit int) (LockSweep, error) {
	_, sm, _, err := s.lookup(shard)
	if err != nil {
		return LockSweep{}, err
	}
	return sm.expiredLocks(now, limit), nil
}

// SweepLocks lists the expired locks of shard, which this node must lead
// (a follower refuses with *multiraft.NotLeaderError), as ExpiredLocks
// does at a fresh timestamp of the oracle: one from a call that started
// after SweepLocks was called, as a resolver's CheckTxn carries, so a
// lock listed expired is expired for the primary's shard too. A shard
// without locks (most) costs no oracle call. Safe for concurrent use.
func (s *Store) SweepLocks(ctx context.Context, shard ShardID, limit int) (LockSweep, error) {
	e, sm, _, err := s.lookup(shard)
	if err != nil {
		return LockSweep{}, err
	}
	if err := e.CheckLeader(shard); err != nil {
		return LockSweep{}, err
	}
	if v := sm.lockView.Load(); v == nil || len(v.locks) == 0 {
		return LockSweep{}, nil
	}
	now, err := s.Now(ctx)
	if err != nil {
		return LockSweep{}, fmt.Errorf("shard: a timestamp for sweeping the locks of shard %d: %w", shard, err)
	}
	return sm.expiredLocks(now, limit), nil
}

// expiredLocks is ExpiredLocks on sm's published lock table.
func (sm *StateMachine) expiredLocks(now uint64, limit int) LockSweep {
	sw := LockSweep{Now: now}
	v := sm.lockView.Load()
	if v == nil || len(v.locks) == 0 {
		return sw
	}
	sw.Locks = len(v.locks)
	var expired []*TxnLock
	for i := range v.locks {
		l := &v.locks[i]
		if sw.OldestStart == 0 || l.Start < sw.OldestStart {
			sw.OldestStart = l.Start
		}
		if l.Expired(now) {
			expired = append(expired, l)
		}
	}
	// The oldest first: they are the nearest to outliving their
	// transaction's record, and a transaction's locks stay together, so
	// the primary's outcome is asked for them in a row.
	slices.SortStableFunc(expired, func(a, b *TxnLock) int { return cmp.Compare(a.Start, b.Start) })
	if limit > 0 && len(expired) > limit {
		expired = expired[:limit]
	}
	sw.Expired = make([]TxnLock, len(expired))
	for i, l := range expired {
		sw.Expired[i] = cloneLock(l)
	}
	return sw
}
