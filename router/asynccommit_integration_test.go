package router

import (
	"errors"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestAsyncCommitAnsweredBeforeTheCommit: Commit answers once every
// prewrite applied, before anything records the outcome; the client then
// goes away, and a reader rolls the transaction forward at the revision
// Commit returned, once the primary's TTL ran out.
func TestAsyncCommitAnsweredBeforeTheCommit(t *testing.T) {
	c := newOracleCluster(t, 3, 4)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	ks := [][]byte{c.keyIn(1, "a"), c.keyIn(2, "b"), c.keyIn(4, "c")}
	for _, k := range ks {
		if err := r.Put(ctx, k, []byte("0")); err != nil {
			t.Fatal(err)
		}
	}
	ttl := 500 * time.Millisecond
	tx, err := r.Txn(ctx, WithLockTTL(ttl), func(o *txnOptions) { o.goneAfterAnswer = true })
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		if err := tx.Put(k, []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	rev, err := tx.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Answered, and nothing recorded: the primary is still locked.
	if resp, err := r.checkTxn(ctx, mustStart(t, tx), ks[0]); err != nil || resp.GetStatus() != pb.CheckTxnResponse_PENDING {
		t.Fatalf("the primary after the answer: %v, %v", resp, err)
	}
	got, err := r.GetAt(ctx, ks[2], 0)
	if err != nil || string(got.KV.Value) != "1" || got.KV.ModRevision != rev {
		t.Fatalf("read of a secondary: %+v, %v (commit %d)", got.KV, err, rev)
	}
	if waited := time.Since(began); waited < ttl/2 {
		t.Fatalf("the reader decided a live transaction after %v (TTL %v)", waited, ttl)
	}
	resp, err := r.checkTxn(ctx, mustStart(t, tx), ks[0])
	if err != nil || resp.GetStatus() != pb.CheckTxnResponse_COMMITTED || resp.GetCommit() != rev {
		t.Fatalf("the primary after the reader: %v, %v (commit %d)", resp, err, rev)
	}
	for _, k := range ks {
		got, err := r.GetAt(ctx, k, 0)
		if err != nil || string(got.KV.Value) != "1" || got.KV.ModRevision != rev {
			t.Fatalf("%q after the roll forward: %+v, %v (commit %d)", k, got.KV, err, rev)
		}
	}
}

// TestAsyncCommitGoneMidPrewrite: a client that prewrote some keys and
// went away is rolled back by the first reader after the TTL, which
// leaves a marker on the key that was never prewritten: the prewrite
// that arrives late is refused, and the transaction never commits.
func TestAsyncCommitGoneMidPrewrite(t *testing.T) {
	c := newOracleCluster(t, 3, 4)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	a, b, d := c.keyIn(1, "a"), c.keyIn(2, "b"), c.keyIn(3, "d")
	for _, k := range [][]byte{a, b, d} {
		if err := r.Put(ctx, k, []byte("0")); err != nil {
			t.Fatal(err)
		}
	}
	start, err := r.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ttl := 500 * time.Millisecond
	m := &txnMeta{start: start, primary: a, ttl: ttl, async: true, secondaries: [][]byte{b, d}}
	put := func(k []byte) []*pb.Mutation {
		return []*pb.Mutation{{Op: pb.Mutation_PUT, Key: k, Value: []byte("1")}}
	}
	began := time.Now()
	for _, k := range [][]byte{a, b} {
		if _, err := r.prewriteGroup(ctx, m, put(k)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.GetAt(ctx, b, 0)
	if err != nil || string(got.KV.Value) != "0" {
		t.Fatalf("read past a transaction gone mid-prewrite: %+v, %v", got.KV, err)
	}
	if waited := time.Since(began); waited < ttl/2 {
		t.Fatalf("the reader decided a live transaction after %v (TTL %v)", waited, ttl)
	}
	if resp, err := r.checkTxn(ctx, start, a); err != nil || resp.GetStatus() != pb.CheckTxnResponse_ROLLED_BACK {
		t.Fatalf("the primary after the reader: %v, %v", resp, err)
	}
	if _, err := r.prewriteGroup(ctx, m, put(d)); !errors.Is(err, ErrConflict) {
		t.Fatalf("late prewrite of the unlocked secondary: %v, want ErrConflict", err)
	}
	for _, k := range [][]byte{a, b, d} {
		if got, err := r.GetAt(ctx, k, 0); err != nil || string(got.KV.Value) != "0" {
			t.Fatalf("%q after the rollback: %+v, %v", k, got.KV, err)
		}
	}
}

// TestAsyncCommitFailedPrewriteMeetsARollForward: a coordinator whose
// prewrite answer it took for a failure (here: it never looked) decides
// by recording the rollback at the primary; when a reader rolled the
// transaction forward first, it learns the commit instead of reporting a
// conflict for a transaction that committed.
func TestAsyncCommitFailedPrewriteMeetsARollForward(t *testing.T) {
	c := newOracleCluster(t, 3, 4)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	a, b := c.keyIn(1, "a"), c.keyIn(4, "b")
	start, err := r.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := &txnMeta{start: start, primary: a, ttl: 300 * time.Millisecond, async: true, secondaries: [][]byte{b}}
	muts := []*pb.Mutation{{Op: pb.Mutation_PUT, Key: a, Value: []byte("1")}, {Op: pb.Mutation_PUT, Key: b, Value: []byte("1")}}
	commit := uint64(0)
	for _, mu := range muts {
		rev, err := r.prewriteGroup(ctx, m, []*pb.Mutation{mu})
		if err != nil {
			t.Fatal(err)
		}
		commit = max(commit, rev)
	}
	if got, err := r.GetAt(ctx, b, 0); err != nil || got.KV.ModRevision != commit {
		t.Fatalf("read after every prewrite: %+v, %v (commit %d)", got.KV, err, commit)
	}
	rev, rest, err := r.abortAsync(m, muts, errors.New("a lost answer"))
	if err != nil || rev != commit || rest == nil {
		t.Fatalf("abort after a roll forward: %d, %v, want the commit at %d", rev, err, commit)
	}
	rest()
	if got, err := r.GetAt(ctx, a, 0); err != nil || got.KV.ModRevision != commit {
		t.Fatalf("primary: %+v, %v (commit %d)", got.KV, err, commit)
	}
}

// TestAsyncCommitConflictRollsBack: a transaction one of whose prewrites
// meets a conflict returns ErrConflict with its rollback recorded at the
// primary, and its other locks go without waiting for a TTL.
func TestAsyncCommitConflictRollsBack(t *testing.T) {
	c := newOracleCluster(t, 3, 4)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	a, b := c.keyIn(1, "a"), c.keyIn(3, "b")
	tx, err := r.Txn(ctx, WithLockTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// The read takes the start; b is written after it.
	if _, err := tx.Get(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, b, []byte("after the start")); err != nil {
		t.Fatal(err)
	}
	for _, k := range [][]byte{a, b} {
		if err := tx.Put(k, []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Commit(ctx); !errors.Is(err, ErrConflict) || errors.Is(err, ErrAmbiguous) {
		t.Fatalf("commit over a conflict: %v", err)
	}
	if resp, err := r.checkTxn(ctx, mustStart(t, tx), a); err != nil || resp.GetStatus() != pb.CheckTxnResponse_ROLLED_BACK {
		t.Fatalf("the primary after the conflict: %v, %v", resp, err)
	}
	// The lock on a (TTL a minute) is gone by the background rollback.
	testutil.Eventually(t, 10*time.Second, func() error {
		rctx, cancel := r.callContext(ctx)
		defer cancel()
		_, err := r.GetAt(rctx, a, 0)
		return err
	})
}
