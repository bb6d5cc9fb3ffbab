package concurrency

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
)

// holding is one stretch under the lock, as its holder recorded it.
type holding struct {
	who   int
	rev   uint64
	enter bool
}

// fencedCounter is a resource behind a lock: a counter in the store, and
// the highest fencing revision it has been written with, below which it
// refuses writes.
type fencedCounter struct {
	c       *router.Client
	key     []byte
	highest atomic.Uint64
}

func (f *fencedCounter) increment(ctx context.Context, rev uint64) error {
	for {
		h := f.highest.Load()
		if rev < h {
			return fmt.Errorf("fencing revision %d below %d", rev, h)
		}
		if f.highest.CompareAndSwap(h, rev) {
			break
		}
	}
	v, _, err := f.c.Get(ctx, f.key)
	if err != nil {
		return err
	}
	n := 0
	if len(v) > 0 {
		if n, err = strconv.Atoi(string(v)); err != nil {
			return err
		}
	}
	return f.c.Put(ctx, f.key, []byte(strconv.Itoa(n+1)))
}

// TestMutexContention: N sessions, each with its own router, take one
// Mutex in turns and increment a counter in the store under it (read,
// then write). At most one holds it at any moment, each holder's fencing
// revision is above the previous one's, and no increment is lost.
func TestMutexContention(t *testing.T) {
	tf := newTestFleet(t)
	ctx := testutil.Context(t, 120*time.Second)
	const contenders, rounds = 5, 4
	counter := &fencedCounter{c: tf.client(), key: []byte("/counter")}

	var (
		holder  atomic.Uint64 // the revision of the current holder, 0: none
		mu      sync.Mutex
		history []holding
	)
	record := func(h holding) {
		mu.Lock()
		defer mu.Unlock()
		history = append(history, h)
	}
	errs := make(chan error, contenders)
	var wg sync.WaitGroup
	for who := range contenders {
		s := tf.session(ctx, tf.client(), 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				m := NewMutex(s, "/locks/counter")
				for range rounds {
					if err := m.Lock(ctx); err != nil {
						return err
					}
					rev := m.Revision()
					record(holding{who: who, rev: rev, enter: true})
					if prev := holder.Swap(rev); prev != 0 {
						return fmt.Errorf("contender %d entered with revision %d while revision %d held the lock", who, rev, prev)
					}
					if err := counter.increment(ctx, rev); err != nil {
						return err
					}
					if prev := holder.Swap(0); prev != rev {
						return fmt.Errorf("contender %d left with revision %d, found %d", who, rev, prev)
					}
					record(holding{who: who, rev: rev, enter: false})
					if err := m.Unlock(ctx); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(history) != 2*contenders*rounds {
		t.Fatalf("%d records, want %d", len(history), 2*contenders*rounds)
	}
	var last uint64
	for i := 0; i < len(history); i += 2 {
		in, out := history[i], history[i+1]
		if !in.enter || out.enter || in.who != out.who || in.rev != out.rev {
			t.Fatalf("records %d, %d overlap: %+v then %+v", i, i+1, in, out)
		}
		if in.rev <= last {
			t.Fatalf("record %d: fencing revision %d after %d", i, in.rev, last)
		}
		last = in.rev
	}
	v, _, err := counter.c.Get(ctx, counter.key)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(v); got != strconv.Itoa(contenders*rounds) {
		t.Fatalf("counter %s, want %d", got, contenders*rounds)
	}
}

// queueLen returns how many keys are queued under prefix.
func queueLen(ctx context.Context, c *router.Client, prefix string) (int, error) {
	pfx := queuePrefix(prefix)
	q, err := c.ScanAt(ctx, pfx, prefixEnd(pfx), 0, 0)
	return len(q.KVs), err
}

// waitQueued waits until n keys are queued under prefix.
func waitQueued(t *testing.T, ctx context.Context, c *router.Client, prefix string, n int) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		got, err := queueLen(ctx, c, prefix)
		if err == nil && got != n {
			err = fmt.Errorf("%d keys queued under %s, want %d", got, prefix, n)
		}
		return err
	})
}

func TestMutexTryLock(t *testing.T) {
	tf := newTestFleet(t)
	ctx := testutil.Context(t, 60*time.Second)
	c := tf.client()
	a := NewMutex(tf.session(ctx, c, 0), "/locks/try")
	b := NewMutex(tf.session(ctx, c, 0), "/locks/try")

	if err := b.Unlock(ctx); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("unlock of a mutex not held: %v", err)
	}
	if err := a.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.TryLock(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("try of a held mutex: %v", err)
	}
	if b.Revision() != 0 || b.Key() != nil {
		t.Fatalf("a refused TryLock holds revision %d, key %q", b.Revision(), b.Key())
	}
	// The refused contender left no key behind to hold up the queue.
	if n, err := queueLen(ctx, c, "/locks/try"); err != nil || n != 1 {
		t.Fatalf("queue after a refused try: %d keys, %v", n, err)
	}
	first := a.Revision()
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Revision() <= first {
		t.Fatalf("second holder's revision %d, not above the first's %d", b.Revision(), first)
	}
}

// TestMutexHolderSessionEnds: a holder whose session is closed (its lease
// revoked) loses the lock without unlocking, and the waiter behind it gets
// it, with a higher fencing revision.
func TestMutexHolderSessionEnds(t *testing.T) {
	tf := newTestFleet(t)
	ctx := testutil.Context(t, 60*time.Second)
	c := tf.client()
	holderSession := tf.session(ctx, c, 0)
	holder := NewMutex(holderSession, "/locks/lost")
	waiter := NewMutex(tf.session(ctx, tf.client(), 0), "/locks/lost")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	locked := make(chan error, 1)
	go func() { locked <- waiter.Lock(ctx) }()
	waitQueued(t, ctx, c, "/locks/lost", 2)
	select {
	case err := <-locked:
		t.Fatalf("the waiter took a held lock: %v", err)
	default:
	}
	if err := holderSession.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-holderSession.Done():
	default:
		t.Fatal("Done is open after Close")
	}
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	if waiter.Revision() <= holder.Revision() {
		t.Fatalf("the waiter's fencing revision %d is not above the lost holder's %d", waiter.Revision(), holder.Revision())
	}
	// The lost holder's Unlock finds its key gone, and succeeds.
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waiter.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestMutexWaiterGivesUp: a waiter whose context ends, or whose own session
// ends, leaves the queue, and the lock goes on to the next.
func TestMutexWaiterGivesUp(t *testing.T) {
	tf := newTestFleet(t)
	ctx := testutil.Context(t, 60*time.Second)
	c := tf.client()
	holder := NewMutex(tf.session(ctx, c, 0), "/locks/wait")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}

	wctx, cancel := context.WithCancel(ctx)
	impatient := NewMutex(tf.session(ctx, c, 0), "/locks/wait")
	cancelled := make(chan error, 1)
	go func() { cancelled <- impatient.Lock(wctx) }()
	waitQueued(t, ctx, c, "/locks/wait", 2)
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("lock with a cancelled context: %v", err)
	}
	waitQueued(t, ctx, c, "/locks/wait", 1)

	expiring := tf.session(ctx, c, 0)
	doomed := NewMutex(expiring, "/locks/wait")
	expired := make(chan error, 1)
	go func() { expired <- doomed.Lock(ctx) }()
	waitQueued(t, ctx, c, "/locks/wait", 2)
	if err := expiring.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-expired; !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("lock whose session closed: %v", err)
	}
	waitQueued(t, ctx, c, "/locks/wait", 1)

	next := NewMutex(tf.session(ctx, c, 0), "/locks/wait")
	locked := make(chan error, 1)
	go func() { locked <- next.Lock(ctx) }()
	waitQueued(t, ctx, c, "/locks/wait", 2)
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
}

// TestMutexHolderLeaseExpires: a holder that stops keeping its lease alive
// (as a crashed or cut-off one would) loses the lock once the lease
// expires, and the waiter gets it with a higher fencing revision.
func TestMutexHolderLeaseExpires(t *testing.T) {
	tf := newTestFleet(t)
	ctx := testutil.Context(t, 60*time.Second)
	c := tf.client()
	stopped := tf.session(ctx, c, time.Second) // raised to the fleet's minimum
	holder := NewMutex(stopped, "/locks/expire")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	waiter := NewMutex(tf.session(ctx, c, 0), "/locks/expire")
	locked := make(chan error, 1)
	go func() { locked <- waiter.Lock(ctx) }()
	waitQueued(t, ctx, c, "/locks/expire", 2)
	stopped.Orphan()
	orphaned := time.Now()
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	t.Logf("the lock passed %s after the holder's keepalives stopped (TTL %s)", time.Since(orphaned).Round(time.Millisecond), stopped.TTL())
	if waiter.Revision() <= holder.Revision() {
		t.Fatalf("the waiter's fencing revision %d is not above the expired holder's %d", waiter.Revision(), holder.Revision())
	}
	if _, err := c.KeepAliveOnce(ctx, stopped.Lease()); !errors.Is(err, router.ErrLeaseNotFound) {
		t.Fatalf("keepalive of the expired lease: %v", err)
	}
}
