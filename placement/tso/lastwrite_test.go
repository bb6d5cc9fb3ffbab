package tso

import (
	"errors"
	"sync"
	"testing"
)

// TestLastWriteTracksWrites: LastWrite answers the end of the last
// write span handed out, not the last timestamp: timestamps handed out
// by Next or beyond a batch's write span (Resolves, system records) do
// not move it.
func TestLastWriteTracksWrites(t *testing.T) {
	store := &memStore{}
	clock := newClock(t0)
	o := open(t, store, clock, 3000)
	lastWrite := func() Timestamp {
		t.Helper()
		l, err := o.LastWrite(t.Context())
		if err != nil {
			t.Fatalf("LastWrite: %v", err)
		}
		return l
	}
	loaded := lastWrite()
	first, l, err := o.NextWrites(t.Context(), 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	if l != first+2 || lastWrite() != first+2 {
		t.Fatalf("NextWrites(5, 3) = %v, %v; LastWrite %v: want the last write %v", first, l, lastWrite(), first+2)
	}
	if first <= loaded {
		t.Fatalf("NextWrites handed out %v, not above the LastWrite %v answered before", first, loaded)
	}
	// Timestamps that stamp no write leave it.
	if _, err := o.Next(t.Context(), 4); err != nil {
		t.Fatal(err)
	}
	if _, l, err := o.NextWrites(t.Context(), 2, 0); err != nil || l != first+2 {
		t.Fatalf("NextWrites(2, 0) answered last write %v, %v; want %v", l, err, first+2)
	}
	if got := lastWrite(); got != first+2 {
		t.Fatalf("after batches without writes LastWrite = %v, want %v", got, first+2)
	}
	clock.set(t0 + 7)
	first, l, err = o.NextWrites(t.Context(), 1, 1)
	if err != nil || l != first || lastWrite() != first {
		t.Fatalf("NextWrites(1, 1) = %v, %v, %v; LastWrite %v", first, l, err, lastWrite())
	}
	// What LastWrite answers is below everything handed out later.
	l = lastWrite()
	if next, err := o.Next(t.Context(), 1); err != nil || next <= l {
		t.Fatalf("Next after LastWrite %v = %v, %v; want above it", l, next, err)
	}
}

func TestNextWritesRejectsBadSpans(t *testing.T) {
	o := open(t, &memStore{}, newClock(t0), 3000)
	before, _ := o.LastWrite(t.Context())
	for _, c := range []struct{ count, span int }{{1, 2}, {3, -1}, {0, 0}, {LogicalRange + 1, 1}} {
		if _, _, err := o.NextWrites(t.Context(), c.count, c.span); !errors.Is(err, ErrBadCount) {
			t.Errorf("NextWrites(%d, %d): %v, want ErrBadCount", c.count, c.span, err)
		}
	}
	if after, _ := o.LastWrite(t.Context()); after != before {
		t.Errorf("refused calls moved LastWrite from %v to %v", before, after)
	}
}

// TestLastWriteAfterLeaderChange: a new Oracle on the same Store does not
// know the old one's last write; it answers the limit it loaded, which is
// at or above every timestamp the old one handed out (writes or not),
// until its own first write, which is above that limit.
func TestLastWriteAfterLeaderChange(t *testing.T) {
	store := &memStore{}
	clock := newClock(t0)
	old := open(t, store, clock, 3000)
	_, oldWrite, err := old.NextWrites(t.Context(), 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	oldTop, err := old.Next(t.Context(), 10) // handed out, no writes
	if err != nil {
		t.Fatal(err)
	}
	oldTop += 9
	limit := store.persisted()
	old.Close()
	if _, err := old.LastWrite(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("LastWrite of a closed Oracle: %v, want ErrClosed", err)
	}

	clock.set(t0 - 500) // the new leader's clock is behind
	o := open(t, store, clock, 3000)
	l, err := o.LastWrite(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if l != limit || l <= oldTop || l < oldWrite {
		t.Fatalf("new Oracle's LastWrite = %v; want the loaded limit %v, above %v handed out before", l, limit, oldTop)
	}
	// Batches without writes keep the high-water mark.
	if _, got, err := o.NextWrites(t.Context(), 2, 0); err != nil || got != limit {
		t.Fatalf("NextWrites(2, 0) on the new Oracle: last write %v, %v; want %v", got, err, limit)
	}
	first, got, err := o.NextWrites(t.Context(), 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if first <= limit || got != first {
		t.Fatalf("the new Oracle's first write: batch at %v, last write %v; want above %v and equal to the write", first, got, limit)
	}
}

// TestLastWriteConcurrent: under concurrent NextWrites, the last write
// only grows, and each LastWrite is at or above the write timestamps of
// every call that returned before it began.
func TestLastWriteConcurrent(t *testing.T) {
	store := &memStore{}
	o := open(t, store, newClock(t0), 3000)
	var (
		mu       sync.Mutex
		returned Timestamp // highest write timestamp of a call that returned
		wg       sync.WaitGroup
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seen Timestamp
			for i := range 500 {
				count := 1 + (g+i)%5
				span := (g * i) % (count + 1)
				if g == 0 {
					mu.Lock()
					floor := returned
					mu.Unlock()
					l, err := o.LastWrite(t.Context())
					if err != nil {
						t.Error(err)
						return
					}
					if l < floor || l < seen {
						t.Errorf("LastWrite %v, below %v recorded before it began or %v it answered before", l, floor, seen)
						return
					}
					seen = l
					continue
				}
				first, l, err := o.NextWrites(t.Context(), count, span)
				if err != nil {
					t.Error(err)
					return
				}
				if span > 0 {
					if l < first+Timestamp(span)-1 {
						t.Errorf("NextWrites(%d, %d) = %v, last write %v below its own write", count, span, first, l)
						return
					}
					mu.Lock()
					returned = max(returned, first+Timestamp(span)-1)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}

// TestLastWriteOnANewStore: an Oracle on a Store never saved to has no
// write to answer; it answers 1, never 0, below everything it hands out.
func TestLastWriteOnANewStore(t *testing.T) {
	o := open(t, &MemStore{}, newClock(t0), 3000)
	l, err := o.LastWrite(t.Context())
	if err != nil || l != 1 {
		t.Fatalf("LastWrite on a new Store = %v, %v; want 1", l, err)
	}
	if first, err := o.Next(t.Context(), 1); err != nil || first <= l {
		t.Fatalf("Next after it = %v, %v; want above %v", first, err, l)
	}
}
