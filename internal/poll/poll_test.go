package poll

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	err := Until(context.Background(), 10*time.Second, time.Millisecond, func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Until = %v after %d calls, want nil after 3", err, calls)
	}
}

func TestUntilTimeoutKeepsTheLastError(t *testing.T) {
	missing := errors.New("2 of 3 ready")
	err := Until(context.Background(), 30*time.Millisecond, 5*time.Millisecond, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("cond's context has no deadline")
		}
		return missing
	})
	if !errors.Is(err, missing) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Until = %v, want both the last error and DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "after 30ms") {
		t.Errorf("error %q does not say how long it waited", err)
	}
}

func TestUntilStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Until(ctx, 0, time.Hour, func(context.Context) error { return errors.New("never") })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Until = %v, want Canceled", err)
	}
}
