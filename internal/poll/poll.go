// Package poll waits for a condition by asking it again and again, with a
// deadline: the one loop behind every wait of the local fleet launcher
// (internal/launch), the bench suite and the tests (internal/testutil).
//
// It owns the loop only; what is asked (an HTTP probe, a gRPC listing, a
// counter) is the caller's. Use it where nothing can notify the waiter:
// a child process becoming ready, placement placing shards. Where the
// waited-for thing can signal (a channel, a future), wait on that instead.
//
//	err := poll.Until(ctx, 30*time.Second, 50*time.Millisecond, func(ctx context.Context) error {
//		return probe(ctx) // nil once the condition holds; otherwise why not
//	})
package poll

import (
	"context"
	"fmt"
	"time"
)

// Until calls cond at once, then every interval, until it returns nil,
// ctx ends or timeout passes (timeout <= 0: only ctx bounds the wait).
// cond gets the bounded context. Until returns nil once cond does;
// otherwise cond's last error wrapped together with the context's, so
// errors.Is(err, context.DeadlineExceeded) tells a timeout, and the
// message says what was still missing.
//
// Until is safe for concurrent use; cond runs on the caller's goroutine.
func Until(ctx context.Context, timeout, interval time.Duration, cond func(context.Context) error) error {
	if interval <= 0 {
		panic(fmt.Sprintf("poll: interval %s is not positive", interval))
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if timeout > 0 {
				return fmt.Errorf("%w (after %s: %w)", err, timeout, ctx.Err())
			}
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-t.C:
		}
	}
}
