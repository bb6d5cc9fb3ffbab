package shard

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// TestWholeWritesBounds: a batch of events takes whole writes only, up to
// about n events and about maxBytes of keys and values, and at least the
// first write however large.
func TestWholeWritesBounds(t *testing.T) {
	ev := func(rev uint64, valueBytes int) Event {
		return Event{KV: KeyValue{Key: []byte("k"), ModRevision: rev, Value: bytes.Repeat([]byte("v"), valueBytes)}}
	}
	const mib = 1 << 20
	for _, tc := range []struct {
		name     string
		evs      []Event
		n, bytes int
		want     int
	}{
		{"all fit", []Event{ev(1, 1), ev(2, 1), ev(3, 1)}, 10, mib, 3},
		{"count bound", []Event{ev(1, 1), ev(2, 1), ev(3, 1)}, 2, mib, 2},
		{"count bound keeps a write whole", []Event{ev(1, 1), ev(2, 1), ev(2, 1), ev(3, 1)}, 2, mib, 3},
		{"byte bound", []Event{ev(1, mib), ev(2, mib), ev(3, mib), ev(4, mib), ev(5, mib)}, 1024, 2 * mib, 2},
		{"byte bound keeps a write whole", []Event{ev(1, mib), ev(2, mib), ev(2, mib), ev(3, mib)}, 1024, 2 * mib, 3},
		{"first write above the bound", []Event{ev(1, 3*mib), ev(1, mib), ev(2, 1)}, 1024, 2 * mib, 2},
		{"empty", nil, 10, mib, 0},
	} {
		if got := wholeWrites(tc.evs, tc.n, tc.bytes); got != tc.want {
			t.Errorf("%s: wholeWrites = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestWatchCatchUpInBatches: a watch from far back over more events than
// fit in one batch, with writes of several keys each, catches up batch by
// batch: every event once, in revision order, each write's events in one
// response, and no response much over a batch; catchUpCut, which finds
// each batch's end keeping only the smallest revisions, cuts where a cut
// over every event would.
func TestWatchCatchUpInBatches(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	first := putRev(t, ctx, s, "first", "x")
	const writes = 1200
	total := 1
	for i := range writes {
		var ops []Op
		for j := range 1 + i%3 { // writes of 1, 2 and 3 keys in turn
			ops = append(ops, Op{Key: fmt.Appendf(nil, "k%02d", (i+j*7)%50), Value: fmt.Appendf(nil, "v%d", i)})
		}
		if err := s.Batch(ctx, 1, Header{}, ops); err != nil {
			t.Fatal(err)
		}
		total += len(ops)
	}

	// catchUpCut against a cut over every event's revision, from several
	// starts.
	snap := n.db.NewSnapshot()
	defer snap.Close()
	lo, hi := keys.UserSpan(nil, nil)
	var revs []uint64
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		if _, rev, ok := keys.DecodeMVCCKey(it.Key()); ok && rev >= first {
			revs = append(revs, rev)
		}
	}
	it.Close()
	slices.Sort(revs)
	if len(revs) != total {
		t.Fatalf("%d versions stored, want %d", len(revs), total)
	}
	for _, start := range []int{0, len(revs) / 3, len(revs) - 1500, len(revs) - 500} {
		from := revs[start]
		for start > 0 && revs[start-1] == from {
			start--
		}
		want := uint64(keys.MaxRevision)
		for i := start + watchBatchEvents; i < len(revs); i++ {
			if revs[i] != revs[i-1] {
				want = revs[i-1]
				break
			}
		}
		got, err := catchUpCut(snap, lo, hi, from, keys.MaxRevision)
		if err != nil || got != want {
			t.Errorf("catchUpCut from %d = %d, %v; want %d", from, got, err, want)
		}
	}

	w := mustWatch(t, s, 1, Epoch{}, nil, nil, first, false)
	// One catch-up holds about a batch: it allocates per event it returns,
	// not per event since its start (2,401 here). Pebble built with the
	// race detector turns its invariant checks on, and one of them wraps
	// one iterator in ten, at random, in a wrapper that copies every key it
	// passes: about a quarter of catch-ups here then allocate per version
	// they scan. That only adds, so the fewest of 16 catch-ups is the one
	// that tells (all 16 wrapped: about once in 10^9 runs).
	var got int
	allocs := math.Inf(1)
	for range 16 {
		allocs = min(allocs, testing.AllocsPerRun(1, func() {
			evs, _, err := w.catchUp(first, keys.MaxRevision)
			if err != nil {
				t.Fatal(err)
			}
			got = len(evs)
		}))
	}
	if got < watchBatchEvents || allocs > float64(got+200) {
		t.Errorf("a catch-up of %d events made %.0f allocations, want about one per event returned", got, allocs)
	}

	seen, last := 0, uint64(0)
	responseOf := map[uint64]int{}
	for r := 0; seen < total; r++ {
		evs, _, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("after %d events: %v", seen, err)
		}
		if len(evs) > watchBatchEvents+2 {
			t.Fatalf("a response of %d events, over a batch (%d) and one write", len(evs), watchBatchEvents)
		}
		for _, ev := range evs {
			rev := ev.KV.ModRevision
			if rev < last {
				t.Fatalf("event at %d after one at %d", rev, last)
			}
			if q, ok := responseOf[rev]; ok && q != r {
				t.Fatalf("the events of the write at %d came in responses %d and %d", rev, q, r)
			}
			responseOf[rev], last = r, rev
		}
		seen += len(evs)
	}
	if seen != total {
		t.Fatalf("%d events, want %d", seen, total)
	}
}
