package lease

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// Bugs the simulator found (internal/sim, lease checks), replayed over
// the fakes.

// TestKeepAliveAcrossReloadIsNotNotFound: while a keepalive waits for its
// read barrier, the lessor drops the lease's home and loads it again (a
// new term, or a split changing the home's range, does so). The lease
// did not end: the keepalive must not answer ErrNotFound, which tells a
// client keeping a live lease alive that it ended (a router gives up on
// it). Fleet seed 2 of the simulator, before the fix: a split of the
// home under a keepalive. (Plant: answer ErrNotFound when the lease
// object changed.)
func TestKeepAliveAcrossReloadIsNotNotFound(t *testing.T) {
	w := newWorld()
	ls := newLessor(w, 2*time.Second)
	ls.Step()
	id := grant(t, ls, 10)
	w.mu.Lock()
	w.onBarrier = func() {
		w.mu.Lock()
		w.term++
		w.mu.Unlock()
		ls.Step() // drops the home, loads it afresh
	}
	w.mu.Unlock()
	ttl, err := ls.KeepAlive(context.Background(), 1, id)
	if err != nil || ttl != 10 {
		t.Fatalf("keepalive across a reload of the home: ttl %d, %v", ttl, err)
	}
	if !ls.Holds(id) {
		t.Fatalf("lease %d is not counted after the reload", id)
	}
}

// TestRevokeFailingPartWayIsFinished: a revoke writes the record ended,
// then a delete of an attached key fails. The lease must not stay
// ending for good (keys and record left until the home's leader
// changed, as before the fix: fleet seed 10): the loop ends it again,
// deleting the key and the record, and no keepalive revives it
// meanwhile. (Plant: drop the retryLater in Revoke.)
func TestRevokeFailingPartWayIsFinished(t *testing.T) {
	w := newWorld()
	ls := newLessor(w, 2*time.Second)
	ls.Step()
	id := grant(t, ls, 60)
	ctx := context.Background()
	until, err := ls.Attach(ctx, 1, id, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	w.putLeased(t, "k", id, until)
	w.mu.Lock()
	w.failDeletes = 1
	w.mu.Unlock()
	// The revoke waits for the promise made to the attach: let the
	// clock pass it while it waits.
	done := make(chan error, 1)
	go func() {
		_, _, err := ls.Revoke(ctx, 1, id)
		done <- err
	}()
	var revokeErr error
	testutil.Eventually(t, 10*time.Second, func() error {
		select {
		case revokeErr = <-done:
			return nil
		default:
			w.advance(100 * time.Millisecond)
			return fmt.Errorf("revoke still waiting")
		}
	})
	if revokeErr == nil {
		t.Fatal("the revoke succeeded although a delete failed")
	}
	if r, ok := w.record(t, id); !ok || !r.Ended {
		t.Fatalf("record after the failed revoke: %+v, %v; want ended", r, ok)
	}
	if _, err := ls.KeepAlive(ctx, 1, id); err == nil {
		t.Fatal("a keepalive revived a revoked lease")
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		w.advance(100 * time.Millisecond)
		ls.Step()
		if _, ok := w.record(t, id); ok {
			return fmt.Errorf("lease %d's record is still there", id)
		}
		if w.exists("k") {
			return fmt.Errorf("its key is still there")
		}
		return nil
	})
}
