package router

import (
	"context"
	"errors"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// SweepStats counts what one SweepLocks call did with its locks.
type SweepStats struct {
	// Resolved counts the locks settled: committed at their
	// transaction's commit revision, or removed because it rolled back.
	Resolved int
	// Pending counts the locks whose transaction may still commit (its
	// primary's shard says it is running): they are left for a later
	// sweep.
	Pending int
	// Failed counts the locks whose resolution failed (the primary's
	// outcome forgotten, a shard without a leader until the deadline,
	// ...): they stay, and a later sweep tries again.
	Failed int
}

// SweepLocks resolves locks, expired locks that a shard's leader found
// in its own lock table (shard.Store.SweepLocks), exactly as a reader
// that met each of them would: it asks the lock's primary for the
// transaction's outcome (rolling the transaction back there if its
// primary lock outlived its TTL or is missing, or deciding an async
// commit by its secondaries) and then commits or removes the lock on
// whichever shard holds its key now. The primary is asked once per
// transaction: the locks of one transaction (a crashed client leaves one
// on each key it prewrote) share its answer. A lock that another
// resolver, its coordinator or an earlier sweep settled first is settled
// again harmlessly (the commands are idempotent), and counts as
// resolved.
//
// It goes through the locks until ctx ends and returns what it did, and
// the first error other than a pending transaction's (nil when every
// lock was resolved or pending). The caller bounds the work with the
// number of locks and with ctx. Safe for concurrent use.
func (c *Client) SweepLocks(ctx context.Context, locks []*pb.Locked) (SweepStats, error) {
	var st SweepStats
	var first error
	outcomes := make(map[sweptTxn]sweptOutcome)
	for _, l := range locks {
		if ctx.Err() != nil {
			if first == nil {
				first = ctx.Err()
			}
			st.Failed += len(locks) - st.Resolved - st.Pending - st.Failed
			break
		}
		id := sweptTxn{start: l.GetStart(), primary: string(l.GetPrimary())}
		o, ok := outcomes[id]
		if !ok {
			o.status, o.commit, o.err = c.txnOutcome(ctx, l.GetStart(), l.GetPrimary())
			outcomes[id] = o
		}
		err := o.err
		if err == nil {
			err = c.settleLock(ctx, l, o.status, o.commit)
		}
		switch {
		case err == nil:
			st.Resolved++
		case errors.Is(err, errLockPending):
			st.Pending++
		default:
			st.Failed++
			if first == nil {
				first = err
			}
		}
	}
	return st, first
}

// sweptTxn names a transaction within one SweepLocks call.
type sweptTxn struct {
	start   uint64
	primary string
}

// sweptOutcome is what the primary answered for a sweptTxn: an outcome,
// or the error that asking it met (the transaction's other locks fail
// the same way in this sweep, and a later sweep asks again).
type sweptOutcome struct {
	status pb.CheckTxnResponse_Status
	commit uint64
	err    error
}
