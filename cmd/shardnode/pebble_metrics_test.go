package main

import (
	"fmt"
	"testing"
)

// TestProcessPebbleWALFsyncLatency scrapes a node's /metrics after writes:
// Pebble's WAL fsync histogram counts the fsyncs those writes made (each
// write is synced to the Raft log before it is acknowledged), in seconds.
func TestProcessPebbleWALFsyncLatency(t *testing.T) {
	h := newHarness(t, 1, 1)
	h.createShards(1, []uint64{1})
	before, err := h.metrics(1)
	if err != nil {
		t.Fatal(err)
	}
	const writes = 20
	for i := range writes {
		if err := h.put(1, keyFor(1, 1, fmt.Sprint(i)), "v", 1); err != nil {
			t.Fatal(err)
		}
	}
	after, err := h.metrics(1)
	if err != nil {
		t.Fatal(err)
	}
	const count, sum = "flotilla_pebble_wal_fsync_latency_seconds_count", "flotilla_pebble_wal_fsync_latency_seconds_sum"
	if got := after[count] - before[count]; got < writes {
		t.Errorf("%s grew by %v over %d acknowledged writes, want at least %d", count, got, writes, writes)
	}
	// A second of fsync per write would be a disk failing, not a unit
	// mistake; nanoseconds would show as millions of seconds.
	if s := after[sum] - before[sum]; s <= 0 || s > writes {
		t.Errorf("%s grew by %v s over %d writes, want between 0 and %d s", sum, s, writes, writes)
	}
	t.Logf("%v fsyncs, %.6f s", after[count], after[sum])
}
