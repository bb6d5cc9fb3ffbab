package telemetry

import (
	"testing"
	"time"
)

// TestLatencyWindow: Take answers the quantile of what was recorded since
// the last Take, within one bucket above, and empties the window.
func TestLatencyWindow(t *testing.T) {
	var w LatencyWindow
	if d, n := w.Take(0.99); d != 0 || n != 0 {
		t.Fatalf("empty window: %s over %d requests, want 0 over 0", d, n)
	}
	// 990 requests of 1ms and 10 of 100ms: the p99 is 1ms (the 990th of
	// 1000), the p99.9 100ms.
	for range 990 {
		w.Record(time.Millisecond)
	}
	for range 10 {
		w.Record(100 * time.Millisecond)
	}
	d, n := w.Take(0.99)
	if n != 1000 || d < time.Millisecond || float64(d) > 1.091*float64(time.Millisecond) {
		t.Errorf("p99 of 990×1ms and 10×100ms: %s over %d, want 1ms (at most 9%% above) over 1000", d, n)
	}
	if d, n := w.Take(0.99); d != 0 || n != 0 {
		t.Errorf("after Take: %s over %d, want an empty window", d, n)
	}
	for range 10 {
		w.Record(time.Millisecond)
	}
	w.Record(100 * time.Millisecond)
	if d, _ := w.Take(0.99); d < 100*time.Millisecond || float64(d) > 1.091*float64(100*time.Millisecond) {
		t.Errorf("p99 of 10×1ms and 1×100ms: %s, want 100ms", d)
	}
	// Out of range both ways: below 1µs is the first bucket, above the
	// last bucket's bound is the last.
	w.Record(0)
	if d, _ := w.Take(1); d != time.Microsecond {
		t.Errorf("a 0 latency reads %s, want 1µs", d)
	}
	w.Record(time.Hour)
	if d, _ := w.Take(1); d != windowBound(windowBuckets-1) {
		t.Errorf("an hour reads %s, want the last bound %s", d, windowBound(windowBuckets-1))
	}
}
