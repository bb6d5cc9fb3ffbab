package tso

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// t0 is the fake clock's usual start, in ms since the epoch.
const t0 = 1_800_000_000_000

// fakeClock is a Clock the test moves by hand.
type fakeClock struct{ ms atomic.Int64 }

func newClock(ms int64) *fakeClock {
	c := &fakeClock{}
	c.ms.Store(ms)
	return c
}

func (c *fakeClock) Now() time.Time { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) set(ms int64)   { c.ms.Store(ms) }

// memStore is a Store in memory, the referee of the tests: durable is
// raised only when a Save succeeds, before it returns, so a timestamp
// handed out at or above durable was handed out unpersisted.
type memStore struct {
	mu      sync.Mutex
	durable Timestamp
	saves   []Timestamp // every Save call, in order
	// gate, if set, holds each Save until the test sends it the Save's
	// outcome (nil to succeed) or the Save's ctx ends.
	gate chan error
	// fail, if set, fails every Save that is not gated.
	fail error
	// called, if set, receives the limit of every Save as it starts.
	called chan Timestamp
	loads  int
}

func (s *memStore) Load(ctx context.Context) (Timestamp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads++
	return s.durable, nil
}

func (s *memStore) Save(ctx context.Context, limit Timestamp) error {
	s.mu.Lock()
	s.saves = append(s.saves, limit)
	gate, fail, called := s.gate, s.fail, s.called
	s.mu.Unlock()
	if called != nil {
		called <- limit
	}
	err := fail
	if gate != nil {
		select {
		case err = <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.durable = max(s.durable, limit)
	s.mu.Unlock()
	return nil
}

func (s *memStore) persisted() Timestamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable
}

func (s *memStore) saveCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.saves)
}

func (s *memStore) setGate(gate chan error, called chan Timestamp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate, s.called = gate, called
}

func (s *memStore) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

// open opens an Oracle on store and clock with a window of windowMs and
// closes it when the test ends.
func open(t *testing.T, store Store, clock Clock, windowMs int64) *Oracle {
	t.Helper()
	o, err := Open(context.Background(), store, Config{Window: time.Duration(windowMs) * time.Millisecond, Clock: clock})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// checker calls Next and checks each answer against everything the test
// saw handed out before and against what the store has persisted.
type checker struct {
	t     *testing.T
	o     *Oracle
	store *memStore
	last  Timestamp // highest timestamp handed out so far
}

func (c *checker) next(count int) Timestamp {
	c.t.Helper()
	first, err := c.o.Next(context.Background(), count)
	if err != nil {
		c.t.Fatalf("Next(%d) after %v: %v", count, c.last, err)
	}
	c.check(first, count)
	return first
}

func (c *checker) check(first Timestamp, count int) {
	c.t.Helper()
	end := first + Timestamp(count)
	if durable := c.store.persisted(); end > durable {
		c.t.Fatalf("Next(%d) = %v: handed out up to %v, at or above the persisted limit %v", count, first, end-1, durable)
	}
	if first <= c.last {
		c.t.Fatalf("Next(%d) = %v, not above %v handed out before", count, first, c.last)
	}
	if int(Logical(first))+count > LogicalRange {
		c.t.Fatalf("Next(%d) = %v: the batch crosses into the next millisecond", count, first)
	}
	c.last = end - 1
}

// isSaving reports whether a Save runs.
func (o *Oracle) isSaving() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mu.saving != nil
}
