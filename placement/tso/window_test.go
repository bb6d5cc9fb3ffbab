package tso

import (
	"context"
	"errors"
	"testing"
	"time"
)

// waitHook makes o signal on the returned channel whenever a Next call
// starts to wait for a Save.
func waitHook(o *Oracle) <-chan struct{} {
	waiting := make(chan struct{}, 16)
	o.testHookWait = func() { waiting <- struct{}{} }
	return waiting
}

type result struct {
	first Timestamp
	err   error
}

func goNext(o *Oracle, ctx context.Context, count int) <-chan result {
	res := make(chan result, 1)
	go func() {
		first, err := o.Next(ctx, count)
		res <- result{first, err}
	}()
	return res
}

// TestExhaustedWindowWaitsForSave: with the window spent, Next waits
// until the Save of the next window has returned, then goes on above the
// old limit.
func TestExhaustedWindowWaitsForSave(t *testing.T) {
	store := &memStore{}
	clock := newClock(t0)
	o := open(t, store, clock, 30) // limit t0+30
	waiting := waitHook(o)
	c := &checker{t: t, o: o, store: store}
	c.next(1)
	o.saveDone.Wait() // no Save runs yet (a whole window is left)

	gate, called := make(chan error), make(chan Timestamp, 4)
	store.setGate(gate, called)
	clock.set(t0 + 30) // the clock reaches the limit
	res := goNext(o, t.Context(), 5)
	select {
	case <-waiting:
	case r := <-res:
		t.Fatalf("Next = %v, %v before the window's Save returned", r.first, r.err)
	}
	if got, want := <-called, Compose(t0+60, 0); got != want {
		t.Errorf("Save(%v), want the clock plus the window %v", got, want)
	}
	gate <- nil
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	c.check(r.first, 5)
	if want := Compose(t0+30, 0); r.first != want {
		t.Errorf("Next after the Save = %v, want %v", r.first, want)
	}
}

// TestRenewsInBackground: once less than a third of the window is left,
// Next starts a Save and returns without waiting; while that Save runs,
// Next goes on below the old limit; once it has returned, Next passes the
// old limit without waiting.
func TestRenewsInBackground(t *testing.T) {
	store := &memStore{}
	clock := newClock(t0)
	o := open(t, store, clock, 30) // limit t0+30
	o.testHookWait = func() { t.Error("Next waited for a Save") }
	c := &checker{t: t, o: o, store: store}
	gate, called := make(chan error), make(chan Timestamp, 4)
	store.setGate(gate, called)

	clock.set(t0 + 20) // 10 ms left: not less than a third
	c.next(1)
	if o.isSaving() {
		t.Fatal("Save started with a third of the window left")
	}
	clock.set(t0 + 21) // 9 ms left
	c.next(1)
	if !o.isSaving() {
		t.Fatal("no Save started with less than a third of the window left")
	}
	if got, want := <-called, Compose(t0+51, 0); got != want {
		t.Errorf("Save(%v), want %v", got, want)
	}
	clock.set(t0 + 29)
	c.next(100) // below the old limit: no wait, no second Save
	gate <- nil
	o.saveDone.Wait()
	clock.set(t0 + 40) // past the old limit
	c.next(100)
	if n := store.saveCount(); n != 2 {
		t.Errorf("%d Saves, want 2 (Open's and the renewal)", n)
	}
}

// TestSaveFailureHandsOutNothing: a failed Save fails the waiting Next
// and every later one, even with some of the old window left, and
// nothing at or above the persisted limit is handed out.
func TestSaveFailureHandsOutNothing(t *testing.T) {
	errLost := errors.New("not leader")
	t.Run("waiting", func(t *testing.T) {
		store := &memStore{}
		clock := newClock(t0)
		o := open(t, store, clock, 30)
		c := &checker{t: t, o: o, store: store}
		c.next(1)
		store.setFail(errLost)
		clock.set(t0 + 100) // window spent
		first, err := o.Next(t.Context(), 1)
		if !errors.Is(err, ErrSaveFailed) || !errors.Is(err, errLost) {
			t.Fatalf("Next = %v, %v, want ErrSaveFailed wrapping the Store's error", first, err)
		}
		store.setFail(nil)
		if first, err := o.Next(t.Context(), 1); !errors.Is(err, ErrSaveFailed) {
			t.Fatalf("Next after the failure = %v, %v, want ErrSaveFailed", first, err)
		}
	})
	t.Run("in the background", func(t *testing.T) {
		store := &memStore{}
		clock := newClock(t0)
		o := open(t, store, clock, 30)
		c := &checker{t: t, o: o, store: store}
		store.setFail(errLost)
		clock.set(t0 + 25) // 5 ms left: renewal starts and fails
		c.next(1)
		o.saveDone.Wait()
		clock.set(t0 + 26) // still inside the saved window
		if first, err := o.Next(t.Context(), 1); !errors.Is(err, ErrSaveFailed) || !errors.Is(err, errLost) {
			t.Fatalf("Next after a failed renewal = %v, %v, want ErrSaveFailed", first, err)
		}
	})
	t.Run("frozen clock", func(t *testing.T) {
		// The limit is reached by logical overflow, not by the clock.
		store := &memStore{}
		o := open(t, store, newClock(t0), 30)
		c := &checker{t: t, o: o, store: store}
		store.setFail(errLost)
		for {
			first, err := o.Next(t.Context(), LogicalRange)
			if err != nil {
				if !errors.Is(err, errLost) {
					t.Fatalf("Next: %v", err)
				}
				break
			}
			c.check(first, LogicalRange)
		}
		if Physical(c.last) >= t0+30 {
			t.Errorf("handed out %v with the limit at t0+30", c.last)
		}
	})
	t.Run("open", func(t *testing.T) {
		store := &memStore{fail: errLost}
		if o, err := Open(t.Context(), store, Config{}); !errors.Is(err, ErrSaveFailed) || !errors.Is(err, errLost) {
			t.Fatalf("Open = %v, %v, want ErrSaveFailed", o, err)
		}
	})
}

// TestCloseFailsWaiters: Close fails a Next waiting for a Save, cancels
// the Save, waits for it, and fails every later Next.
func TestCloseFailsWaiters(t *testing.T) {
	store := &memStore{}
	clock := newClock(t0)
	// The Save's own timeout is far off: only Close can end it.
	o, err := Open(t.Context(), store, Config{Window: 30 * time.Millisecond, Clock: clock, SaveTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	waiting := waitHook(o)
	gate := make(chan error) // never sent to: the Save ends by its ctx
	store.setGate(gate, nil)
	clock.set(t0 + 30)
	res := goNext(o, t.Context(), 1)
	<-waiting
	closed := make(chan error, 1)
	go func() { closed <- o.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // a bound on a failure, not a wait for success
		t.Fatal("Close did not end the Save in flight")
	}
	if o.isSaving() {
		t.Error("Close returned with a Save running")
	}
	if r := <-res; !errors.Is(r.err, ErrClosed) {
		t.Errorf("waiting Next = %v, %v, want ErrClosed", r.first, r.err)
	}
	if first, err := o.Next(t.Context(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close = %v, %v, want ErrClosed", first, err)
	}
	if err := o.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestWaiterLeavesWithItsContext: a Next waiting for a Save returns when
// its own ctx ends; the Save goes on and later calls use it.
func TestWaiterLeavesWithItsContext(t *testing.T) {
	store := &memStore{}
	clock := newClock(t0)
	o := open(t, store, clock, 30)
	waiting := waitHook(o)
	gate := make(chan error)
	store.setGate(gate, nil)
	clock.set(t0 + 30)
	ctx, cancel := context.WithCancel(t.Context())
	res := goNext(o, ctx, 1)
	<-waiting
	cancel()
	if r := <-res; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Next = %v, %v, want context.Canceled", r.first, r.err)
	}
	gate <- nil
	o.saveDone.Wait()
	c := &checker{t: t, o: o, store: store}
	c.next(1)
}
