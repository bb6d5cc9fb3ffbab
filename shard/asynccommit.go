package shard

import (
	"bytes"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Async commit: the checks of secondaries and the rollback markers. The
// argument is in percolator.go, under "Async commit".

// checkSecondaries checks the async-commit fields of a prewrite whose
// mutated keys are muts.
func (t *TxnStep) checkSecondaries(cfg *Config, muts map[string]struct{}) error {
	if !t.Async {
		if len(t.Secondaries) > 0 {
			return fmt.Errorf("%w: secondaries on a prewrite without async commit", ErrBadCommand)
		}
		return nil
	}
	if t.OnePhase {
		return fmt.Errorf("%w: a one-phase prewrite with async commit", ErrBadCommand)
	}
	if len(t.Secondaries) == 0 {
		return nil
	}
	if _, ok := muts[string(t.Primary)]; !ok {
		return fmt.Errorf("%w: secondaries on a prewrite that does not lock the primary", ErrBadCommand)
	}
	return checkSecondaryKeys(cfg, t.Primary, t.Secondaries)
}

// checkSecondaryKeys checks a list of secondaries: within the batch
// limit (which bounds a primary lock's size), valid keys, none the
// primary.
func checkSecondaryKeys(cfg *Config, primary []byte, keys [][]byte) error {
	if len(keys) > cfg.MaxBatchOps {
		return fmt.Errorf("%w: %d secondaries, limit %d", ErrBatchTooLarge, len(keys), cfg.MaxBatchOps)
	}
	for _, k := range keys {
		if err := checkKey(cfg, k); err != nil {
			return err
		}
		if bytes.Equal(k, primary) {
			return fmt.Errorf("%w: the primary %q listed among its secondaries", ErrBadCommand, k)
		}
	}
	return nil
}

// checkRollbackMarkers refuses an async prewrite t if one of its keys
// other than the primary (whose outcome record applyPrewrite checks)
// holds the transaction's rollback marker: a check of secondaries found
// the key unlocked and decided that the transaction can never commit.
func (sm *StateMachine) checkRollbackMarkers(b *pebble.Batch, t *TxnStep) error {
	for i := range t.Mutations {
		key := t.Mutations[i].Key
		if bytes.Equal(key, t.Primary) {
			continue
		}
		if _, _, ok := sm.txnRecord(b, key, t.Start); ok {
			return fmt.Errorf("%w: transaction %d (primary %q): key %q was found unlocked by a resolver", ErrTxnAborted, t.Start, t.Primary, key)
		}
	}
	return nil
}

// applyCheckSecondaries answers whether every key of t holds the lock of
// t's transaction: TxnCommitted with the highest of their prewrite
// revisions if so, else TxnRolledBack. Each key without that lock gets a
// rollback marker (an outcome record under the key itself, rolled back)
// unless it has one, so that no prewrite of it applies later: the answer
// TxnRolledBack stays true. A key without the lock may also have been
// committed or rolled back already; the caller learns which from the
// primary's record, which was written first.
func (sm *StateMachine) applyCheckSecondaries(b *pebble.Batch, t *TxnStep) *Result {
	top, all := uint64(0), true
	for _, key := range t.Keys {
		if l, ok := sm.locks[string(key)]; ok && l.Start == t.Start {
			top = max(top, l.Prewrite)
			continue
		}
		all = false
		if _, _, ok := sm.txnRecord(b, key, t.Start); !ok {
			sm.setTxnRecord(b, key, t.Start, TxnRolledBack, 0, t.Now)
		}
	}
	if !all {
		return &Result{Succeeded: true, Status: TxnRolledBack}
	}
	return &Result{Succeeded: true, Status: TxnCommitted, Revision: top}
}

// TxnLock returns the lock on key in shard as this replica's readers see
// it (the locks published with its resolved revision), if there is one.
// A lock is never changed while it exists, only removed, so what it
// returns is the lock's content, or nothing. Safe for concurrent use;
// the lock returned is the caller's.
func (s *Store) TxnLock(shard ShardID, key []byte) (TxnLock, bool, error) {
	_, sm, _, err := s.lookup(shard)
	if err != nil {
		return TxnLock{}, false, err
	}
	l := sm.lockView.Load().find(key, nil, true, math.MaxUint64)
	if l == nil {
		return TxnLock{}, false, nil
	}
	return cloneLock(l), true, nil
}
