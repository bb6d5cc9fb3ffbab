package router

import (
	"context"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestCloseFinishesBackgroundCommits: a client commits a transaction
// across shards (async commit: Commit answers before the commit is
// recorded) and Closes at once, as a command-line tool does before it
// exits. Close waits for the background commit, so the outcome is
// recorded and no lock is left: a new client reads every key at once,
// where a lock left behind would hold it off for the minute-long TTL.
func TestCloseFinishesBackgroundCommits(t *testing.T) {
	c := newOracleCluster(t, 3, 4)
	ctx := testutil.Context(t, time.Minute)
	ks := [][]byte{c.keyIn(1, "a"), c.keyIn(2, "b"), c.keyIn(4, "c")}
	w, err := New(context.Background(), Config{PlacementAddresses: []string{c.pl.addr}})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := w.Txn(ctx, WithLockTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		if err := tx.Put(k, []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
	rev, err := tx.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	r := c.client(nil)
	if resp, err := r.checkTxn(ctx, mustStart(t, tx), ks[0]); err != nil || resp.GetStatus() != pb.CheckTxnResponse_COMMITTED || resp.GetCommit() != rev {
		t.Fatalf("the primary after Close: %v, %v (commit %d)", resp, err, rev)
	}
	for _, k := range ks {
		// A read that met a live lock would wait for it far beyond this.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := r.GetAt(rctx, k, 0)
		cancel()
		if err != nil || string(got.KV.Value) != "1" || got.KV.ModRevision != rev {
			t.Fatalf("%q after Close: %+v, %v (commit %d)", k, got.KV, err, rev)
		}
	}
}
