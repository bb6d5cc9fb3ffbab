package telemetry

import (
	"math"
	"sync/atomic"
	"time"
)

// LatencyWindow counts request latencies in logarithmic buckets until the
// next Take, which answers a percentile of the latencies recorded since
// the previous Take and starts a new window. A shardnode's heartbeat takes
// one window per heartbeat interval, so placement's p99 is the interval's,
// not an average since start (the exporter's histograms are cumulative).
//
// Buckets are 2^(1/8) wide (about 9%), from 1µs to about 16 minutes; a
// percentile is answered as its bucket's upper bound, so it may read up to
// 9% high, never low. Record is lock-free and safe for concurrent use;
// Take is meant for one caller at a time (latencies recorded while it runs
// land in either window). The zero value is ready to use.
type LatencyWindow struct {
	buckets [windowBuckets]atomic.Uint64
}

const (
	// windowPerOctave buckets per doubling.
	windowPerOctave = 8
	// windowBuckets covers 1µs·2^(i/8) for i below it: up to 2^30 µs.
	windowBuckets = 30*windowPerOctave + 1
)

// windowBucket returns the bucket of d: the first whose upper bound is at
// or above d.
func windowBucket(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	i := int(math.Ceil(math.Log2(us) * windowPerOctave))
	return min(i, windowBuckets-1)
}

// windowBound is bucket i's upper bound.
func windowBound(i int) time.Duration {
	return time.Duration(math.Exp2(float64(i)/windowPerOctave) * float64(time.Microsecond))
}

// Record counts one request that took d.
func (w *LatencyWindow) Record(d time.Duration) { w.buckets[windowBucket(d)].Add(1) }

// Take returns the q-quantile (0 < q <= 1) of the latencies recorded since
// the last Take, and how many there were, and empties the window. With
// none recorded it returns 0, 0.
func (w *LatencyWindow) Take(q float64) (time.Duration, uint64) {
	var counts [windowBuckets]uint64
	var total uint64
	for i := range w.buckets {
		counts[i] = w.buckets[i].Swap(0)
		total += counts[i]
	}
	if total == 0 {
		return 0, 0
	}
	// The rank of the quantile, 1-based: the smallest latency with at
	// least q of the requests at or below it.
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank && c > 0 {
			return windowBound(i), total
		}
	}
	return windowBound(windowBuckets - 1), total
}
