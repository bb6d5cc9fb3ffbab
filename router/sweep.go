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
// in its own lock table (shard.Store.SweepLocks), one after the other,
// exactly as a reader that met each of them would: it asks the lock's
// primary for the transaction's outcome (rolling the transaction back
// there if its primary lock outlived its TTL or is missing) and then
// commits or removes the lock on whichever shard holds its key now. A
// lock that another resolver, its coordinator or an earlier sweep
// settled first is settled again harmlessly (the commands are
// idempotent), and counts as resolved.
//
// It goes through the locks until ctx ends and returns what it did, and
// the first error other than a pending transaction's (nil when every
// lock was resolved or pending). The caller bounds the work with the
// number of locks and with ctx. Safe for concurrent use.
func (c *Client) SweepLocks(ctx context.Context, locks []*pb.Locked) (SweepStats, error) {
	var st SweepStats
	var first error
	for _, l := range locks {
		if ctx.Err() != nil {
			if first == nil {
				first = ctx.Err()
			}
			st.Failed += len(locks) - st.Resolved - st.Pending - st.Failed
			break
		}
		err := c.resolveLock(ctx, l)
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
