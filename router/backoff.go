package router

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoffDelay returns how long the n-th waiting retry (from 0) of a call
// waits: a random duration in [d/2, d] with d = min(max, base * 2^n)
// ("equal jitter": retries of many clients spread out, yet none retries
// almost at once), and at least floor.
func backoffDelay(n int, base, maxDelay, floor time.Duration) time.Duration {
	d := maxDelay
	if n < 32 && base<<n > 0 && base<<n < maxDelay {
		d = base << n
	}
	d = d/2 + rand.N(d/2+1)
	return max(d, floor)
}

// wait waits d, or until ctx ends (returning its error) or closed is
// closed (returning ErrClosed).
func wait(ctx context.Context, closed <-chan struct{}, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return ErrClosed
	}
}
