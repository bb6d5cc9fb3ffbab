package multiraft

import (
	"testing"
	"time"
)

func TestLatencyHistogramBuckets(t *testing.T) {
	var h LatencyHistogram
	for _, d := range []time.Duration{0, 50 * time.Microsecond, 51 * time.Microsecond, 3 * time.Millisecond, time.Minute} {
		h.Observe(d)
	}
	buckets, count, sum := h.Snapshot()
	if count != 5 {
		t.Fatalf("count %d, want 5", count)
	}
	if want := 50*time.Microsecond + 51*time.Microsecond + 3*time.Millisecond + time.Minute; sum != want {
		t.Fatalf("sum %s, want %s", sum, want)
	}
	// 0 and 50µs fall in the first bucket (bounds are inclusive), 51µs in
	// the second, 3ms in the one bounded by 5ms, a minute past the last.
	want := map[int]uint64{0: 2, 1: 1, 6: 1, len(HistogramBounds): 1}
	for i, n := range buckets {
		if n != want[i] {
			t.Fatalf("bucket %d (le %v) holds %d, want %d; all: %v", i, bucketBound(i), n, want[i], buckets)
		}
	}
}

func bucketBound(i int) any {
	if i < len(HistogramBounds) {
		return HistogramBounds[i]
	}
	return "+Inf"
}
