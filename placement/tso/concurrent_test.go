package tso

import (
	"cmp"
	"flag"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("tso.seed", 0, "seed of TestConcurrentNext (0: from the time)")

type batch struct {
	first Timestamp
	count int
}

// TestConcurrentNext: many goroutines call Next at once while the clock
// jumps forwards and backwards and the window is renewed many times. No
// two batches overlap, each goroutine's batches increase, every batch is
// above every batch that had been returned before its call began (real
// time), and none reaches the limit persisted when it was returned.
func TestConcurrentNext(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -tso.seed=%d)", seed, seed)

	store := &memStore{}
	clock := newClock(t0)
	o := open(t, store, clock, 20)
	const workers, calls = 8, 2000
	var (
		wg       sync.WaitGroup
		returned atomic.Uint64 // the highest timestamp returned so far
		batches  [workers][]batch
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range calls {
				switch r := rng.IntN(100); {
				case r < 10:
					clock.ms.Add(int64(rng.IntN(5)))
				case r < 12:
					clock.ms.Add(-int64(rng.IntN(50))) // backwards
				}
				count := 1 + rng.IntN(64)
				if rng.IntN(50) == 0 {
					count = LogicalRange - rng.IntN(10)
				}
				before := Timestamp(returned.Load())
				first, err := o.Next(t.Context(), count)
				if err != nil {
					t.Errorf("Next(%d): %v", count, err)
					return
				}
				end := first + Timestamp(count)
				if durable := store.persisted(); end > durable {
					t.Errorf("Next(%d) = %v: handed out up to %v, at or above the persisted limit %v", count, first, end-1, durable)
				}
				if before != 0 && first <= before {
					t.Errorf("Next(%d) = %v, not above %v returned before the call began", count, first, before)
				}
				if int(Logical(first))+count > LogicalRange {
					t.Errorf("Next(%d) = %v crosses a millisecond", count, first)
				}
				for {
					cur := returned.Load()
					if uint64(end-1) <= cur || returned.CompareAndSwap(cur, uint64(end-1)) {
						break
					}
				}
				batches[w] = append(batches[w], batch{first, count})
			}
		}()
	}
	wg.Wait()
	var all []batch
	for w := range workers {
		for i := 1; i < len(batches[w]); i++ {
			prev, b := batches[w][i-1], batches[w][i]
			if b.first < prev.first+Timestamp(prev.count) {
				t.Fatalf("worker %d: batch %v+%d after %v+%d", w, b.first, b.count, prev.first, prev.count)
			}
		}
		all = append(all, batches[w]...)
	}
	slices.SortFunc(all, func(a, b batch) int { return cmp.Compare(a.first, b.first) })
	for i := 1; i < len(all); i++ {
		if prev := all[i-1]; all[i].first < prev.first+Timestamp(prev.count) {
			t.Fatalf("batches overlap: %v+%d and %v+%d", prev.first, prev.count, all[i].first, all[i].count)
		}
	}
	if len(all) != workers*calls {
		t.Fatalf("%d batches, want %d", len(all), workers*calls)
	}
	t.Logf("%d batches, %d Saves, last %v", len(all), store.saveCount(), all[len(all)-1].first)
}

// TestNextAllocatesNothing: the fast path allocates nothing.
func TestNextAllocatesNothing(t *testing.T) {
	store := &memStore{}
	o := open(t, store, newClock(t0), 3000)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := o.Next(t.Context(), 3); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Next allocates %.1f times per call", allocs)
	}
}
