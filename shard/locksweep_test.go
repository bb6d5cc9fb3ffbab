package shard

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/flotilla-kv/flotilla/placement/tso"
)

// clockOracle hands out timestamps whose physical part is the test's
// clock (milliseconds), increasing.
type clockOracle struct {
	ms   atomic.Int64
	last atomic.Uint64
}

func (o *clockOracle) Next(_ context.Context, count int) (tso.Timestamp, error) {
	for {
		last := o.last.Load()
		first := max(last+1, uint64(tso.Compose(o.ms.Load(), 0)))
		if o.last.CompareAndSwap(last, first+uint64(count)-1) {
			return tso.Timestamp(first), nil
		}
	}
}

// TestSweepLocks: the listing returns the locks whose TTL ran out at the
// timestamp, as CheckTxn judges it (strictly past start + TTL), the
// oldest transactions first and up to the limit, never a live one; it
// counts every lock and names the oldest start; SweepLocks judges at a
// fresh timestamp, takes none when the shard has no lock, and forgets a
// lock once resolved.
func TestSweepLocks(t *testing.T) {
	o := &clockOracle{}
	o.ms.Store(100)
	n, ctx := loneShard(t, Config{}, o)
	s := n.store
	if sw, err := s.SweepLocks(ctx, 1, 0); err != nil || sw.Now != 0 || sw.Locks != 0 || len(sw.Expired) != 0 {
		t.Fatalf("a shard without locks: %+v, %v", sw, err)
	}
	prewrite := func(startMs int64, ttl uint64, ks ...string) uint64 {
		t.Helper()
		start := uint64(tso.Compose(startMs, 0))
		var muts []Mutation
		for _, k := range ks {
			muts = append(muts, putM(k, "v"))
		}
		if _, err := s.Execute(ctx, 1, &Command{Kind: KindPrewrite, Step: &TxnStep{Start: start, Primary: []byte(ks[0]), TTL: ttl, Mutations: muts}}); err != nil {
			t.Fatal(err)
		}
		return start
	}
	old := prewrite(10, 5, "e")          // expires after 15 ms
	mid := prewrite(12, 5, "c", "d")     // after 17 ms
	live := prewrite(11, 1_000_000, "f") // the oldest but one, and alive
	listed := func(sw LockSweep) []string {
		var out []string
		for _, l := range sw.Expired {
			out = append(out, string(l.Key))
		}
		return out
	}
	for _, tc := range []struct {
		nowMs int64
		limit int
		want  []string
	}{
		{15, 0, nil},                     // 10 + 5 is not past 15
		{16, 0, []string{"e"}},           // past it
		{18, 0, []string{"e", "c", "d"}}, // the oldest first, a transaction's locks in a row
		{18, 2, []string{"e", "c"}},
	} {
		sw, err := s.ExpiredLocks(1, uint64(tso.Compose(tc.nowMs, 0)), tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := listed(sw); !slices.Equal(got, tc.want) {
			t.Errorf("at %d ms, limit %d: expired %q, want %q", tc.nowMs, tc.limit, got, tc.want)
		}
		if sw.Locks != 4 || sw.OldestStart != old {
			t.Errorf("at %d ms: %d locks, oldest start %d; want 4, %d", tc.nowMs, sw.Locks, sw.OldestStart, old)
		}
		for _, l := range sw.Expired {
			if l.Start == live {
				t.Errorf("at %d ms: listed the live lock %+v", tc.nowMs, l)
			}
			if string(l.Key) == "d" && (l.Start != mid || string(l.Primary) != "c" || l.Prewrite == 0 || l.TTL != 5) {
				t.Errorf("lock of d: %+v", l)
			}
		}
	}

	// SweepLocks takes its timestamp from the oracle, at 50 ms.
	o.ms.Store(50)
	sw, err := s.SweepLocks(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tso.Physical(tso.Timestamp(sw.Now)) < 50 || !slices.Equal(listed(sw), []string{"e", "c", "d"}) || sw.OldestAgeMillis() < 40 {
		t.Fatalf("swept at 50 ms: %q at %d, oldest %d ms", listed(sw), sw.Now, sw.OldestAgeMillis())
	}
	// Resolved locks are gone from the next listing.
	if _, err := s.Execute(ctx, 1, &Command{Kind: KindRollbackTxn, Step: &TxnStep{Start: old, Primary: []byte("e"), Keys: keysOf("e")}}); err != nil {
		t.Fatal(err)
	}
	if sw, err = s.SweepLocks(ctx, 1, 0); err != nil || !slices.Equal(listed(sw), []string{"c", "d"}) || sw.Locks != 3 || sw.OldestStart != live {
		t.Fatalf("after e's rollback: %q, %d locks, oldest %d, %v", listed(sw), sw.Locks, sw.OldestStart, err)
	}
	if _, err := s.SweepLocks(ctx, 9, 0); !errors.Is(err, ErrShardNotFound) {
		t.Fatalf("an unknown shard: %v", err)
	}
}
