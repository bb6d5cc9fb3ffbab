package lease

import (
	"context"
	"time"
)

// Runtime is how a Lessor runs: the goroutines it starts and every wait
// that is not a call into its Store, Engine, Fleet or Oracle (the loop's
// interval, the end's wait for the oracle, a keepalive's wait for a
// checkpoint in flight). The default runs real goroutines on the wall
// clock. The deterministic simulator (internal/sim) supplies one that
// runs them in lock-step with its virtual clock, together with a Store,
// Engine, Fleet and Oracle that wait through it too.
//
// Go may be called from any goroutine of the Lessor; the Runtime must be
// safe for that.
type Runtime interface {
	// Go runs f on a new goroutine; name says what it is, for
	// diagnostics.
	Go(name string, f func())
	// Sleep returns after d, or with ctx's error once ctx ends.
	Sleep(ctx context.Context, d time.Duration) error
	// WithTimeout is context.WithTimeout on the Runtime's clock.
	WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc)
	// WaitClosed returns once ch is closed, or with ctx's error once ctx
	// ends.
	WaitClosed(ctx context.Context, ch <-chan struct{}) error
}

// goRuntime is the default Runtime: goroutines and the wall clock.
type goRuntime struct{}

func (goRuntime) Go(_ string, f func()) { go f() }

func (goRuntime) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (goRuntime) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

func (goRuntime) WaitClosed(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
