package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/cpustat"
	"github.com/flotilla-kv/flotilla/internal/poll"
)

// Context returns a context that ends after d or when the test ends,
// whichever comes first.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// interval is how often Eventually asks: often enough for in-process
// conditions, rarely enough for ones that cost an RPC.
const interval = 10 * time.Millisecond

// Eventually calls cond every 10 ms until it returns nil, and fails the
// test with cond's last error if timeout passes first. Call it from the
// test's goroutine (it may call t.Fatalf).
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := poll.Until(context.Background(), timeout, interval, func(context.Context) error { return cond() }); err != nil {
		t.Fatalf("condition not met within %s: %v", timeout, err)
	}
}

// ProcessCPU returns the CPU time (user and system) this process has used
// so far, for benchmarks that report CPU per operation.
func ProcessCPU(tb testing.TB) time.Duration {
	tb.Helper()
	d := cpustat.Process()
	if d == 0 {
		tb.Fatal("the kernel does not report this process's CPU time")
	}
	return d
}
