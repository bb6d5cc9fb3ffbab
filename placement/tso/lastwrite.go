package tso

import (
	"context"
	"fmt"
)

// NextWrites is Next for a batch whose first writeSpan timestamps
// include every one the caller gives to a write, the last of them
// included (writeSpan 0: none goes to a write): it hands out count
// timestamps as Next does and, in the same step, records
// first+writeSpan-1 as the last write's timestamp. It returns the first
// timestamp and the last write's timestamp after recording (LastWrite's
// answer at that moment). A caller that cannot tell which of its
// timestamps go to writes passes writeSpan = count, which is always
// safe (see the package doc, "The last write").
//
// Errors: those of Next, and ErrBadCount for a writeSpan outside [0,
// count]. On an error it hands out and records nothing.
func (o *Oracle) NextWrites(ctx context.Context, count, writeSpan int) (first, lastWrite Timestamp, err error) {
	if count < 1 || count > LogicalRange {
		return 0, 0, fmt.Errorf("%w: %d (want 1 to %d)", ErrBadCount, count, LogicalRange)
	}
	if writeSpan < 0 || writeSpan > count {
		return 0, 0, fmt.Errorf("%w: write span %d of a batch of %d", ErrBadCount, writeSpan, count)
	}
	return o.next(ctx, count, writeSpan)
}

// LastWrite returns the last write's timestamp: the highest timestamp
// NextWrites recorded for a write on this Oracle, or, while it has
// recorded none, the limit loaded at Open, which is at or above every
// timestamp any earlier Oracle on the Store handed out (1 on a Store
// never saved to: never 0, which callers read as "the latest"). Either way it
// is at or above every timestamp recorded for a write by a call that
// returned before this one began, on this Oracle or an earlier one, and
// below every timestamp handed out after it returns. It hands out
// nothing, never waits and never does I/O: ctx is unused, there so that
// the method has the shape of a remote oracle's (shard.WriteOracle).
//
// Errors: ErrClosed after Close, or the error wrapping ErrSaveFailed
// once a Save failed (a new Oracle answers instead).
func (o *Oracle) LastWrite(context.Context) (Timestamp, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.mu.err; err != nil {
		return 0, err
	}
	return o.mu.lastWrite, nil
}
