package chaos

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/router"
)

// Tests of the harness's own pieces, without a fleet.

func TestCycleKeysSpreadOverShards(t *testing.T) {
	keys := cycleKeys(3, 16)
	// The initial shards split the first key byte into equal ranges.
	perShard := map[int]int{}
	seen := map[string]bool{}
	for _, k := range keys {
		perShard[int(k[0])*initialShards/256]++
		if seen[k] {
			t.Fatalf("duplicate key %q", k)
		}
		seen[k] = true
	}
	for s := range initialShards {
		if perShard[s] == 0 {
			t.Fatalf("no key in initial shard %d: %v", s, perShard)
		}
	}
	if cycleKeys(4, 16)[0] == keys[0] {
		t.Fatal("cycles share keys")
	}
}

func TestClassify(t *testing.T) {
	other := errors.New("boom")
	for _, tc := range []struct {
		kind OpKind
		err  error
		want Outcome
	}{
		{OpGet, nil, OK},
		{OpGet, fmt.Errorf("x: %w", context.DeadlineExceeded), Failed},
		{OpPut, fmt.Errorf("x: %w: %w", router.ErrAmbiguous, other), Unknown},
		{OpCAS, fmt.Errorf("x: %w", context.DeadlineExceeded), Unknown},
		{OpPut, fmt.Errorf("x: %w: %w", router.ErrRetriesExhausted, other), Failed},
		{OpCAS, nil, OK},
	} {
		if got := classify(tc.kind, tc.err); got != tc.want {
			t.Errorf("classify(%v, %v) = %v, want %v", tc.kind, tc.err, got, tc.want)
		}
	}
}

func TestAvailability(t *testing.T) {
	s := int64(time.Second)
	ops := []Op{
		put(0, "a", "1", 1*s-1, 1*s, OK),
		put(0, "a", "2", 2*s, 5*s, OK), // a: 4 s without a write
		put(1, "b", "3", 2*s, 2*s+1, OK),
		put(1, "b", "4", 3*s, 3*s+1, Unknown), // an error
		put(1, "b", "5", 4*s, 4*s+1, OK),
		put(2, "a", "6", 5*s, 6*s, OK),
		// Pinned clients do not count.
		{Client: 3, Kind: OpGet, Key: "a", Call: 2 * s, Return: 3 * s, Outcome: Failed, Node: 2},
	}
	gap, errs := availability(ops, []string{"a", "b"}, 1*s, 6*s)
	if gap != 4*time.Second || errs != 1 {
		t.Fatalf("availability = %v, %d errors; want 4s, 1", gap, errs)
	}
}
