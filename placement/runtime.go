package placement

import (
	"context"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// Runtime runs the scheduler's background work: the goroutines it starts
// (executors, stray removals), the time they wait, their timeouts, and the
// catalogue proposals they wait for. Config.Runtime nil means goroutines on
// the wall clock. Every point where the service's own goroutines block goes
// through the Runtime or through a Connector's client, so the
// deterministic simulator (internal/sim) can supply a Runtime that runs
// them one at a time on its virtual clock and a seed decides every
// interleaving. Implementations are safe for concurrent use.
type Runtime interface {
	// Go runs f on a new goroutine; name says what it does (for traces).
	Go(name string, f func())
	// Sleep waits until d has passed, or until ctx ends and then returns
	// ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
	// WithTimeout is context.WithTimeout on the runtime's clock.
	WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc)
	// Wait waits until f resolves or ctx ends, and returns what
	// f.Wait(ctx) returns.
	Wait(ctx context.Context, f *multiraft.Future) (any, error)
}

// wallRuntime is the Runtime of a placementd: goroutines and timers.
type wallRuntime struct{}

func (wallRuntime) Go(_ string, f func()) { go f() }

func (wallRuntime) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (wallRuntime) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

func (wallRuntime) Wait(ctx context.Context, f *multiraft.Future) (any, error) { return f.Wait(ctx) }
