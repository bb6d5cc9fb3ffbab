package shard

import (
	"bytes"
	"testing"
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
