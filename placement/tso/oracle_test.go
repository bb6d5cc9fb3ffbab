package tso

import (
	"errors"
	"testing"
)

func TestNextRejectsBadCounts(t *testing.T) {
	store := &memStore{}
	o := open(t, store, newClock(t0), 3000)
	for _, count := range []int{0, -1, LogicalRange + 1, 1 << 40} {
		if ts, err := o.Next(t.Context(), count); !errors.Is(err, ErrBadCount) {
			t.Errorf("Next(%d) = %v, %v, want ErrBadCount", count, ts, err)
		}
	}
	// A whole millisecond is the largest batch.
	c := &checker{t: t, o: o, store: store}
	first := c.next(LogicalRange)
	if Logical(first) != 0 {
		t.Errorf("Next(LogicalRange) = %v, want logical 0", first)
	}
}

func TestNextFollowsTheClock(t *testing.T) {
	store := &memStore{}
	clock := newClock(t0)
	o := open(t, store, clock, 3000)
	c := &checker{t: t, o: o, store: store}
	if got, want := c.next(1), Compose(t0, 0); got != want {
		t.Errorf("first Next = %v, want %v", got, want)
	}
	if got, want := c.next(10), Compose(t0, 1); got != want {
		t.Errorf("second Next in the same ms = %v, want %v", got, want)
	}
	clock.set(t0 + 5)
	if got, want := c.next(3), Compose(t0+5, 0); got != want {
		t.Errorf("Next after the clock moved = %v, want %v", got, want)
	}
}

// TestClockGoesBackwards: the physical part stays where it was and the
// logical counter goes on, until the clock is ahead again.
func TestClockGoesBackwards(t *testing.T) {
	store := &memStore{}
	clock := newClock(t0)
	o := open(t, store, clock, 3000)
	c := &checker{t: t, o: o, store: store}
	c.next(5) // t0.0 .. t0.4
	clock.set(t0 - 10_000)
	for i := range 3 {
		got := c.next(2)
		if want := Compose(t0, uint32(5+2*i)); got != want {
			t.Fatalf("Next with the clock 10 s back = %v, want %v", got, want)
		}
	}
	clock.set(t0 + 1)
	if got, want := c.next(1), Compose(t0+1, 0); got != want {
		t.Errorf("Next with the clock ahead again = %v, want %v", got, want)
	}
}

// TestLogicalOverflow: a batch that does not fit in the millisecond's
// logical counter moves to the next millisecond, and a frozen clock
// pushes the physical part on without ever reaching the persisted limit.
func TestLogicalOverflow(t *testing.T) {
	store := &memStore{}
	clock := newClock(t0)
	o := open(t, store, clock, 30)
	c := &checker{t: t, o: o, store: store}
	c.next(LogicalRange - 1) // t0.0 .. t0.(R-2)
	if got, want := c.next(2), Compose(t0+1, 0); got != want {
		t.Errorf("Next(2) with one logical value left = %v, want %v", got, want)
	}
	if got, want := c.next(LogicalRange-2), Compose(t0+1, 2); got != want {
		t.Errorf("Next filling the ms = %v, want %v", got, want)
	}
	// The clock stays at t0 while whole milliseconds are handed out,
	// far past the first window (t0+30): every batch is checked against
	// the persisted limit.
	for i := range 100 {
		if got, want := c.next(LogicalRange), Compose(t0+2+int64(i), 0); got != want {
			t.Fatalf("batch %d = %v, want %v", i, got, want)
		}
	}
	if n := store.saveCount(); n < 4 {
		t.Errorf("%d Saves for 100 ms past a 30 ms window", n)
	}
}

// TestFailoverStartsAboveEverything: a new oracle on the same Store
// starts above everything the old one handed out, whatever its clock says.
func TestFailoverStartsAboveEverything(t *testing.T) {
	for _, tc := range []struct {
		name      string
		newClock  int64 // the new leader's clock, in ms
		wantAbove int64 // the new leader's first physical part is at least this
	}{
		{"clock 60s behind", t0 - 60_000, t0 + 3000},
		{"clock 1ms behind", t0 - 1, t0 + 3000},
		{"same clock", t0, t0 + 3000},
		{"clock 1s ahead", t0 + 1000, t0 + 3000},
		{"clock 10s ahead", t0 + 10_000, t0 + 10_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memStore{}
			clock := newClock(t0)
			old, err := Open(t.Context(), store, Config{Clock: clock})
			if err != nil {
				t.Fatal(err)
			}
			c := &checker{t: t, o: old, store: store}
			c.next(1)
			c.next(LogicalRange) // pushes the old physical part ahead of its clock
			c.next(100)
			// The old leader is deposed without closing (it crashed).
			newLeader, err := Open(t.Context(), store, Config{Clock: newClock(tc.newClock)})
			if err != nil {
				t.Fatal(err)
			}
			defer newLeader.Close()
			defer old.Close()
			c.o = newLeader
			first := c.next(1) // checks first > everything the old one handed out
			if Physical(first) < tc.wantAbove {
				t.Errorf("new leader's first = %v, want physical >= %d (the old limit)", first, tc.wantAbove)
			}
			c.next(1)
		})
	}
}

// TestRestartAfterLogicalOverflowPastTheClock: the old leader's last
// timestamps ran ahead of its clock (logical overflow); the new one with
// the same clock still starts above them.
func TestRestartAfterRunningAhead(t *testing.T) {
	store := &memStore{}
	clock := newClock(t0)
	old := open(t, store, clock, 30)
	c := &checker{t: t, o: old, store: store}
	for range 50 {
		c.next(LogicalRange) // physical runs to t0+49, clock at t0
	}
	old.Close()
	c.o = open(t, store, clock, 30)
	c.next(7)
}
