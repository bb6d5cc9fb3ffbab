package rpc

import (
	"context"
	"sync"
	"time"
)

// byteLimiter is a token bucket of bytes per second shared by all snapshot
// transfers of a node. A nil or zero-rate limiter never waits.
type byteLimiter struct {
	rate float64 // bytes per second
	mu   struct {
		sync.Mutex
		tokens float64
		last   time.Time
	}
}

func newByteLimiter(bytesPerSec int64) *byteLimiter {
	if bytesPerSec <= 0 {
		return nil
	}
	l := &byteLimiter{rate: float64(bytesPerSec)}
	l.mu.tokens = l.rate // allow one second's burst
	l.mu.last = time.Now()
	return l
}

// wait blocks until n bytes may be sent.
func (l *byteLimiter) wait(ctx context.Context, n int) error {
	if l == nil || n == 0 {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	l.mu.tokens = min(l.rate, l.mu.tokens+now.Sub(l.mu.last).Seconds()*l.rate)
	l.mu.last = now
	l.mu.tokens -= float64(n)
	deficit := -l.mu.tokens
	l.mu.Unlock()
	if deficit <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(deficit / l.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
