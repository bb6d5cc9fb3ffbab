package multiraft

import (
	"context"
	"sync"
	"time"
)

// A Future is the outcome of an asynchronous engine call: a proposal, a
// read barrier, a membership change, a snapshot receipt. It is resolved
// exactly once, by the worker that owns the group; any goroutine may wait.
type Future struct {
	once   sync.Once
	done   chan struct{}
	result any
	err    error
	// proposed is when the proposal this future waits for was made
	// (zero for other futures), for the commit latency.
	proposed time.Time
}

func newFuture() *Future { return &Future{done: make(chan struct{})} }

func failedFuture(err error) *Future {
	f := newFuture()
	f.resolve(nil, err)
	return f
}

func (f *Future) resolve(result any, err error) {
	f.once.Do(func() {
		f.result, f.err = result, err
		close(f.done)
	})
}

// Done is closed once the future is resolved.
func (f *Future) Done() <-chan struct{} { return f.done }

// Result returns the outcome. Valid once Done is closed; before that it
// returns (nil, nil) and must not be relied on.
func (f *Future) Result() (any, error) {
	select {
	case <-f.done:
		return f.result, f.err
	default:
		return nil, nil
	}
}

// Wait blocks until the future resolves or ctx ends. When ctx ends first
// the operation may still complete: for a proposal the error then means
// "unknown outcome", as ErrAmbiguous does.
func (f *Future) Wait(ctx context.Context) (any, error) {
	select {
	case <-f.done:
		return f.result, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
