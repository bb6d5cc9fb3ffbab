package router

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// Integration tests of CountAt and ScanKeysAt against real shardnodes
// (internal/fleet) with routes from the fake placement.

// TestIntegrationCountAndKeysOnlyAtOneRevision: while a writer keeps
// adding and deleting keys in every shard, CountAt at a revision equals
// the number of pairs ScanAt returns at it, across four shards, whether
// the nodes count in one page per shard or in pages of 7 keys; ScanKeysAt
// returns ScanAt's keys and revisions without values, with a limit too;
// CountAt with rev 0 names the revision it counted at, and a count at a
// revision is the same when asked again after more writes.
func TestIntegrationCountAndKeysOnlyAtOneRevision(t *testing.T) {
	c := newCluster(t, 3, 4)
	r := c.client(nil)
	ctx := testutil.Context(t, 120*time.Second)
	for i := 1; i <= 4; i++ {
		for j := range 30 {
			k := c.keyIn(i, fmt.Sprintf("base/%02d", j))
			if err := r.Put(ctx, k, bytes.Repeat([]byte{byte('a' + j%26)}, 100)); err != nil {
				t.Fatalf("put %q: %v", k, err)
			}
		}
	}

	// The writer puts a new key in shard after shard and deletes every
	// third key it put, until stopped.
	var written atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			k := c.keyIn(n%4+1, fmt.Sprintf("w/%05d", n))
			if err := r.Put(ctx, k, []byte("written")); err != nil {
				done <- fmt.Errorf("writer: put %q: %w", k, err)
				return
			}
			if n%3 == 2 {
				old := c.keyIn((n-2)%4+1, fmt.Sprintf("w/%05d", n-2))
				if err := r.Delete(ctx, old); err != nil {
					done <- fmt.Errorf("writer: delete %q: %w", old, err)
					return
				}
			}
			written.Add(1)
		}
	}()
	defer func() {
		close(stop)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	type counted struct {
		rev uint64
		n   int64
	}
	var seen []counted
	for round := range 4 {
		// Wait for the writer to change the data since the last round.
		before := written.Load()
		testutil.Eventually(t, 30*time.Second, func() error {
			if got := written.Load(); got < before+5 {
				return fmt.Errorf("round %d: the writer wrote %d keys since the last round, want 5", round, got-before)
			}
			return nil
		})
		rev, err := r.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		full, err := r.ScanAt(ctx, nil, nil, 0, rev)
		if err != nil {
			t.Fatal(err)
		}
		n, at, err := r.CountAt(ctx, nil, nil, rev)
		if err != nil || at != rev || n != int64(len(full.KVs)) {
			t.Fatalf("round %d: count at %d = %d at %d, %v; ScanAt read %d pairs", round, rev, n, at, err, len(full.KVs))
		}
		countPageSize = 7
		paged, at, err := r.CountAt(ctx, nil, nil, rev)
		countPageSize = 0
		if err != nil || at != rev || paged != n {
			t.Fatalf("round %d: count at %d in pages of 7 = %d at %d, %v; want %d", round, rev, paged, at, err, n)
		}
		// A span from the middle of shard 2 to the start of shard 4.
		lo, hi := c.keyIn(2, "base/15"), c.keyIn(4, "")
		var inSpan int64
		for _, kv := range full.KVs {
			if bytes.Compare(kv.Key, lo) >= 0 && bytes.Compare(kv.Key, hi) < 0 {
				inSpan++
			}
		}
		if sub, _, err := r.CountAt(ctx, lo, hi, rev); err != nil || sub != inSpan {
			t.Fatalf("round %d: count of [%q, %q) at %d = %d, %v; ScanAt holds %d", round, lo, hi, rev, sub, err, inSpan)
		}
		keys, err := r.ScanKeysAt(ctx, nil, nil, 0, rev)
		if err != nil || keys.Revision != rev || len(keys.KVs) != len(full.KVs) {
			t.Fatalf("round %d: keys only at %d: %d keys at %d, %v; ScanAt read %d", round, rev, len(keys.KVs), keys.Revision, err, len(full.KVs))
		}
		for i, kv := range keys.KVs {
			want := full.KVs[i]
			if kv.Value != nil || !bytes.Equal(kv.Key, want.Key) || kv.ModRevision != want.ModRevision ||
				kv.CreateRevision != want.CreateRevision || kv.Version != want.Version || kv.Lease != want.Lease {
				t.Fatalf("round %d: keys-only pair %d = %+v, want %q with its revisions and no value", round, i, kv, want.Key)
			}
		}
		limited, err := r.ScanKeysAt(ctx, nil, nil, 45, rev)
		if err != nil || len(limited.KVs) != 45 || !bytes.Equal(limited.KVs[44].Key, full.KVs[44].Key) {
			t.Fatalf("round %d: keys only with limit 45 at %d: %d keys, %v", round, rev, len(limited.KVs), err)
		}
		// rev 0: the count names the revision it read at.
		n0, at0, err := r.CountAt(ctx, nil, nil, 0)
		if err != nil || at0 < rev {
			t.Fatalf("round %d: count at the latest: %d at %d, %v; want a revision at or above %d", round, n0, at0, err, rev)
		}
		if again, err := r.ScanAt(ctx, nil, nil, 0, at0); err != nil || int64(len(again.KVs)) != n0 {
			t.Fatalf("round %d: count at the latest = %d at %d; ScanAt there read %d pairs, %v", round, n0, at0, len(again.KVs), err)
		}
		seen = append(seen, counted{rev, n})
	}
	// The writer adds two keys for each it deletes: the counts grew.
	if first, last := seen[0], seen[len(seen)-1]; last.n <= first.n {
		t.Fatalf("counts %+v: the writer's keys were not counted", seen)
	}
	// A read at a revision is final: every count is the same again.
	for _, s := range seen {
		if n, _, err := r.CountAt(ctx, nil, nil, s.rev); err != nil || n != s.n {
			t.Fatalf("count at %d again = %d, %v; was %d", s.rev, n, err, s.n)
		}
	}
}

// TestIntegrationCountFencesEndedLeases: a key whose lease ended is left
// out of CountAt and ScanKeysAt as it is out of ScanAt, at a revision
// after the lease ended and before its keys were deleted, when the nodes
// still store the keys; before the lease ended, they are counted.
func TestIntegrationCountFencesEndedLeases(t *testing.T) {
	c := newCluster(t, 1, 2)
	r := c.client(nil)
	ctx := testutil.Context(t, 60*time.Second)
	var l LeaseGrant
	testutil.Eventually(t, 20*time.Second, func() error {
		var err error
		l, err = r.Grant(ctx, 2)
		return err
	})
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	events := r.Watch(wctx, c.keyIn(1, ""), c.keyIn(2, ""))
	for _, k := range []string{"a", "c", "e"} {
		if _, err := r.PutLease(ctx, c.keyIn(1, "leased/"+k), []byte("l"), l.ID); err != nil {
			t.Fatal(err)
		}
	}
	var put uint64
	for _, k := range []string{"b", "d"} {
		w, err := r.PutRev(ctx, c.keyIn(1, "leased/"+k), []byte("plain"))
		if err != nil {
			t.Fatal(err)
		}
		put = w.Revision
	}
	span := func(rev uint64) (count int64, scanned, keys int) {
		t.Helper()
		lo, hi := c.keyIn(1, "leased/"), c.keyIn(1, "leased0")
		n, _, err := r.CountAt(ctx, lo, hi, rev)
		if err != nil {
			t.Fatalf("count at %d: %v", rev, err)
		}
		full, err := r.ScanAt(ctx, lo, hi, 0, rev)
		if err != nil {
			t.Fatalf("scan at %d: %v", rev, err)
		}
		ko, err := r.ScanKeysAt(ctx, lo, hi, 0, rev)
		if err != nil {
			t.Fatalf("keys-only scan at %d: %v", rev, err)
		}
		return n, len(full.KVs), len(ko.KVs)
	}
	if n, s, k := span(put); n != 5 || s != 5 || k != 5 {
		t.Fatalf("at %d, the lease alive: count %d, scan %d, keys %d; want 5", put, n, s, k)
	}
	// The lease lapses; its keys' deletes arrive as events.
	var deleted uint64
	deadline := time.After(20 * time.Second)
	for gone := 0; gone < 3; {
		select {
		case resp, ok := <-events:
			if !ok || resp.Err != nil {
				t.Fatalf("watch ended: %v", resp.Err)
			}
			for _, e := range resp.Events {
				if e.Type == EventDelete {
					gone++
					if deleted == 0 || e.KV.ModRevision < deleted {
						deleted = e.KV.ModRevision
					}
				}
			}
		case <-deadline:
			t.Fatal("the lapsed lease's keys were not deleted")
		}
	}
	before := deleted - 1
	alive, until, ended, err := r.LeaseStatus(ctx, l.ID, before)
	if err != nil {
		t.Fatal(err)
	}
	if alive {
		t.Fatalf("lease %d alive at %d, just before its keys' delete at %d (until %d): no revision to test the fence at", l.ID, before, deleted, until)
	}
	t.Logf("lease %d promised through %d, ended at %d, keys deleted at %d", l.ID, until, ended, deleted)
	if n, s, k := span(before); n != 2 || s != 2 || k != 2 {
		t.Fatalf("at %d, the lease ended but its keys stored: count %d, scan %d, keys %d; want the 2 unleased keys", before, n, s, k)
	}
}
