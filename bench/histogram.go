package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with 3
// significant digits: every recorded value is within 0.1% of the truth.
const (
	histLowestMicros  = 1
	histHighestMicros = int64(10 * time.Minute / time.Microsecond)
	histSigFigs       = 3
)

// NewHistogram returns an empty latency histogram in microseconds. A
// histogram is not safe for concurrent use: each client records into its
// own and they are merged at the end.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowestMicros, histHighestMicros, histSigFigs)
}

// RecordLatency records d into h, clamped into the histogram's range.
func RecordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	us = max(histLowestMicros, min(histHighestMicros, us))
	if err := h.RecordValue(us); err != nil {
		panic(err) // clamped above: out of range is impossible
	}
}

// Percentiles summarises a latency distribution.
type Percentiles struct {
	Count                    int64
	Mean                     time.Duration
	P50, P90, P99, P999, Max time.Duration
}

// Summarize returns the percentiles of h (zero for an empty h). The
// values are HDR's: the highest value equivalent, within the histogram's
// precision, to the one at each percentile.
func Summarize(h *hdrhistogram.Histogram) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  time.Duration(h.Mean() * float64(time.Microsecond)),
		P50:   us(h.ValueAtPercentile(50)),
		P90:   us(h.ValueAtPercentile(90)),
		P99:   us(h.ValueAtPercentile(99)),
		P999:  us(h.ValueAtPercentile(99.9)),
		Max:   us(h.Max()),
	}
}

// Millis converts d to fractional milliseconds, the unit of every report.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
