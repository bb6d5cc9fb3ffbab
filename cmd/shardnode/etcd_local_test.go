package main

import (
	"testing"

	"github.com/flotilla-kv/flotilla/shard"
)

// TestCoversResolved checks the etcd API's test of whether this node's
// replicas may serve a read at a revision: every shard of the span must
// have a replica here, contiguous, each resolved past the revision.
func TestCoversResolved(t *testing.T) {
	// Replicas here of (-inf, "b"), ["b", "d") and ["f", +inf); none of
	// ["d", "f").
	descs := []shard.Descriptor{
		{ShardID: 1, End: []byte("b")},
		{ShardID: 2, Start: []byte("b"), End: []byte("d")},
		{ShardID: 4, Start: []byte("f")},
	}
	resolved := map[shard.ShardID]uint64{1: 100, 2: 50, 4: 100}
	lost := map[shard.ShardID]bool{}
	resolvedOf := func(d *shard.Descriptor) (uint64, bool) {
		if lost[d.ShardID] {
			return 0, false
		}
		return resolved[d.ShardID], true
	}
	for _, tc := range []struct {
		name       string
		start, end string
		point      bool
		rev        uint64
		lose       shard.ShardID
		want       bool
	}{
		{name: "key in the first shard", start: "a", point: true, rev: 100, want: true},
		{name: "key at the minimum", start: "", point: true, rev: 100, want: true},
		{name: "key in a shard not resolved that far", start: "c", point: true, rev: 60, want: false},
		{name: "key in a shard resolved that far", start: "c", point: true, rev: 50, want: true},
		{name: "key at a shard's start", start: "b", point: true, rev: 50, want: true},
		{name: "key with no replica here", start: "e", point: true, rev: 1, want: false},
		{name: "key in the last shard", start: "zz", point: true, rev: 100, want: true},
		{name: "range within one shard", start: "a", end: "ab", rev: 100, want: true},
		{name: "range across two shards", start: "a", end: "c", rev: 50, want: true},
		{name: "range across two shards, one behind", start: "a", end: "c", rev: 60, want: false},
		{name: "range ending at a shard's end", start: "a", end: "d", rev: 50, want: true},
		{name: "range into the gap", start: "c", end: "e", rev: 1, want: false},
		{name: "range from the gap", start: "e", end: "g", rev: 1, want: false},
		{name: "range within the last shard", start: "f", end: "z", rev: 100, want: true},
		{name: "replica changed since listed", start: "a", point: true, rev: 1, lose: 1, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clear(lost)
			if tc.lose != 0 {
				lost[tc.lose] = true
			}
			var end []byte
			if !tc.point {
				end = []byte(tc.end)
			}
			if got := coversResolved(descs, []byte(tc.start), end, tc.rev, resolvedOf); got != tc.want {
				t.Fatalf("coversResolved(%q, %q, %d) = %v; want %v", tc.start, tc.end, tc.rev, got, tc.want)
			}
		})
	}
	if coversResolved(nil, []byte("a"), nil, 1, resolvedOf) {
		t.Fatal("no replicas: covered")
	}
}
