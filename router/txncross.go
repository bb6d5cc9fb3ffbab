package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// A CompareTxn across shards
//
// Transact runs a CompareTxn whose keys are on several shards as a
// transaction across shards (Txn): it evaluates the compares at the
// transaction's start, runs the chosen branch against it (reads see the
// branch's earlier writes), and commits. Every key a compare read is
// locked at the commit too (Serializable), so the compares still hold
// when the writes apply: the CompareTxn is atomic as on one shard, with
// one exception stated in the package doc: a ranged compare or delete
// sees the keys of its range at the start, and a key created in the
// range by another client before the commit is not seen (no phantom
// protection). A conflict starts the whole CompareTxn again at a new
// start, which is safe because nothing of it was visible.
//
// Differences from one shard: puts that attach a lease are refused
// (ErrCrossShardTxn), and a read of a key the branch wrote shows the
// new value with the commit revision as its mod revision and no
// create revision or version.

// conflictAttempts bounds how often againOnConflict starts a
// transaction again.
const conflictAttempts = 16

// againOnConflict runs attempt, a whole transaction, until it ends other
// than with ErrConflict (an ambiguous end included), backing off between
// attempts, at most conflictAttempts times. Only for transactions that
// depend on nothing their caller read before: a Batch of blind writes, a
// CompareTxn whose compares run inside it.
func (c *Client) againOnConflict(ctx context.Context, attempt func() error) error {
	var err error
	for n := range conflictAttempts {
		if err = attempt(); !errors.Is(err, ErrConflict) || errors.Is(err, ErrAmbiguous) {
			return err
		}
		select {
		case <-time.After(backoffDelay(n, c.cfg.BackoffBase, c.cfg.BackoffMax, 0)):
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		}
	}
	return fmt.Errorf("%w: %w", ErrRetriesExhausted, err)
}

// transactAcrossShards runs t as a transaction across shards.
func (c *Client) transactAcrossShards(ctx context.Context, t CompareTxn) (TxnResult, error) {
	if err := t.refuseLeasesAcrossShards(); err != nil {
		return TxnResult{}, err
	}
	var res TxnResult
	err := c.againOnConflict(ctx, func() (err error) {
		res, err = c.transactOnce(ctx, &t)
		return err
	})
	if err != nil {
		return TxnResult{}, err
	}
	return res, nil
}

func (t *CompareTxn) refuseLeasesAcrossShards() error {
	for _, ops := range [][]TxnOp{t.Then, t.Else} {
		for i := range ops {
			switch op := &ops[i]; {
			case op.Kind == TxnPut && op.Lease != 0:
				return fmt.Errorf("%w: a put attaching a lease in a transaction across shards", ErrCrossShardTxn)
			case op.Kind == TxnNested && op.Txn != nil:
				if err := op.Txn.refuseLeasesAcrossShards(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// transactOnce runs t once in a new Txn.
func (c *Client) transactOnce(ctx context.Context, t *CompareTxn) (TxnResult, error) {
	tx, err := c.Txn(ctx, Serializable())
	if err != nil {
		return TxnResult{}, err
	}
	res, err := tx.run(ctx, t)
	if err != nil {
		_ = tx.Rollback(ctx)
		return TxnResult{}, err
	}
	rev, err := tx.Commit(ctx)
	if err != nil {
		return TxnResult{}, err
	}
	res.setRevision(rev)
	return *res, nil
}

// run evaluates t's compares and runs its branch in tx.
func (tx *Txn) run(ctx context.Context, t *CompareTxn) (*TxnResult, error) {
	ok := true
	for i := range t.If {
		held, err := tx.compare(ctx, &t.If[i])
		if err != nil {
			return nil, err
		}
		ok = ok && held
	}
	branch := t.Then
	if !ok {
		branch = t.Else
	}
	res := &TxnResult{Succeeded: ok, Ops: make([]TxnOpResult, len(branch))}
	for i := range branch {
		op := &branch[i]
		out := &res.Ops[i]
		switch op.Kind {
		case TxnGet:
			kvs, err := tx.read(ctx, op.Key, op.End, op.Range)
			if err != nil {
				return nil, err
			}
			out.KVs = kvs
		case TxnPut:
			if op.PrevKV {
				kvs, err := tx.read(ctx, op.Key, nil, false)
				if err != nil {
					return nil, err
				}
				out.KVs = kvs
			}
			if err := tx.Put(op.Key, op.Value); err != nil {
				return nil, err
			}
		case TxnDelete:
			kvs, err := tx.read(ctx, op.Key, op.End, op.Range)
			if err != nil {
				return nil, err
			}
			for _, kv := range kvs {
				if err := tx.Delete(kv.Key); err != nil {
					return nil, err
				}
			}
			out.Deleted = int64(len(kvs))
			if op.PrevKV {
				out.KVs = kvs
			}
		case TxnNested:
			if op.Txn == nil {
				return nil, fmt.Errorf("router: a nested transaction without its transaction")
			}
			nested, err := tx.run(ctx, op.Txn)
			if err != nil {
				return nil, err
			}
			out.Txn = nested
		default:
			return nil, fmt.Errorf("router: transaction op of unknown kind %d", op.Kind)
		}
	}
	return res, nil
}

// read returns key (or the keys of [key, end) with ranged) as tx sees
// them.
func (tx *Txn) read(ctx context.Context, key, end []byte, ranged bool) ([]KeyValue, error) {
	if !ranged {
		got, err := tx.Get(ctx, key)
		if err != nil || !got.Found {
			return nil, err
		}
		return []KeyValue{got.KV}, nil
	}
	return tx.Scan(ctx, key, end, 0)
}

// compare evaluates cmp at tx's start, locking what it read at the
// commit (tx is Serializable).
func (tx *Txn) compare(ctx context.Context, cmp *Compare) (bool, error) {
	kvs, err := tx.read(ctx, cmp.Key, cmp.End, cmp.Range)
	if err != nil {
		return false, err
	}
	if cmp.Range {
		tx.mu.Lock()
		for _, kv := range kvs {
			tx.reads[string(kv.Key)] = struct{}{}
		}
		tx.mu.Unlock()
	}
	if len(kvs) == 0 {
		if cmp.Target == CompareValue {
			return false, nil // no value compare holds on an absent key
		}
		return compareKV(cmp, &KeyValue{}), nil
	}
	for i := range kvs {
		if !compareKV(cmp, &kvs[i]) {
			return false, nil
		}
	}
	return true, nil
}

// compareKV evaluates cmp on one key, as a shard does.
func compareKV(cmp *Compare, kv *KeyValue) bool {
	var r int
	switch cmp.Target {
	case CompareValue:
		r = bytes.Compare(kv.Value, cmp.Value)
	default:
		var n uint64
		switch cmp.Target {
		case CompareVersion:
			n = kv.Version
		case CompareCreateRevision:
			n = kv.CreateRevision
		case CompareModRevision:
			n = kv.ModRevision
		case CompareLease:
			n = kv.Lease
		}
		switch {
		case n < cmp.Number:
			r = -1
		case n > cmp.Number:
			r = 1
		}
	}
	switch cmp.Op {
	case CompareEqual:
		return r == 0
	case CompareNotEqual:
		return r != 0
	case CompareLess:
		return r < 0
	case CompareGreater:
		return r > 0
	}
	return false
}

// setRevision sets the revision of r and its nested results to rev, and
// the mod revision of the keys it read that the transaction wrote.
func (r *TxnResult) setRevision(rev uint64) {
	r.Revision = rev
	for i := range r.Ops {
		o := &r.Ops[i]
		for j := range o.KVs {
			if o.KVs[j].ModRevision == 0 {
				o.KVs[j].ModRevision = rev
			}
		}
		if o.Txn != nil {
			o.Txn.setRevision(rev)
		}
	}
}
