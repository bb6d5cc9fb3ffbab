package multiraft

import (
	"sync/atomic"
	"time"
)

// HistogramBounds are the upper bounds of a LatencyHistogram's buckets,
// from 50µs to 10s, each about 2.5x the previous: the range between an
// in-memory round and a stalled disk.
var HistogramBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// LatencyHistogram counts durations in the buckets of HistogramBounds
// (and one more for longer ones), lock-free: Observe is a few atomic adds,
// cheap enough for every proposal. Safe for concurrent use.
type LatencyHistogram struct {
	counts [len(HistogramBounds) + 1]atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
}

// Observe counts d.
func (h *LatencyHistogram) Observe(d time.Duration) {
	i := 0
	for i < len(HistogramBounds) && d > HistogramBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(uint64(max(d, 0)))
}

// Snapshot returns the count of each bucket (not cumulative; the last is
// beyond the largest bound), the total count and the sum. The fields are
// read one by one while observations go on, so they may disagree by the
// observations made meanwhile.
func (h *LatencyHistogram) Snapshot() (buckets [len(HistogramBounds) + 1]uint64, count uint64, sum time.Duration) {
	for i := range h.counts {
		buckets[i] = h.counts[i].Load()
		count += buckets[i]
	}
	return buckets, count, time.Duration(h.sum.Load())
}
