package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
)

func TestTxnStepRoundTrip(t *testing.T) {
	steps := []Command{
		{Kind: KindPrewrite, Revision: 40, Step: &TxnStep{Start: 7, Primary: []byte("c"), TTL: 3000, Mutations: []Mutation{
			{Op: MutationPut, Key: []byte("c"), Value: []byte("v")}, {Op: MutationDelete, Key: []byte("d")}, {Op: MutationLock, Key: []byte("e")}}}},
		{Kind: KindCommitTxn, Step: &TxnStep{Start: 7, Primary: []byte("c"), Commit: 41, Keys: [][]byte{[]byte("c"), []byte("d")}}},
		{Kind: KindRollbackTxn, Step: &TxnStep{Start: 7, Primary: []byte("c"), Keys: [][]byte{[]byte("e")}}},
		{Kind: KindCheckTxn, Step: &TxnStep{Start: 7, Primary: []byte("c"), Now: 99}},
	}
	cfg := &Config{MaxBatchOps: 100, MaxKeyBytes: 100, MaxValueBytes: 100}
	for _, c := range steps {
		var got Command
		enc := c.AppendEncoded(nil)
		if err := DecodeCommand(enc, &got); err != nil {
			t.Fatalf("%s: %v", c.Kind, err)
		}
		if !reflect.DeepEqual(got.Step, c.Step) || got.Revision != c.Revision {
			t.Fatalf("%s: decoded %+v, want %+v", c.Kind, got.Step, c.Step)
		}
		if err := got.checkLimits(cfg); err != nil {
			t.Fatalf("%s: %v", c.Kind, err)
		}
		for n := range len(enc) {
			if err := DecodeCommand(enc[:n], &got); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("%s truncated to %d bytes: %v", c.Kind, n, err)
			}
		}
	}
	// Exactly-once headers, duplicate keys and missing fields are refused.
	bad := []Command{
		{Kind: KindPrewrite, Header: Header{ClientID: 1, Seq: 1}, Step: steps[0].Step},
		{Kind: KindPrewrite, Step: &TxnStep{Start: 7, Primary: []byte("c"), Mutations: []Mutation{{Op: MutationPut, Key: []byte("c")}, {Op: MutationLock, Key: []byte("c")}}}},
		{Kind: KindPrewrite, Step: &TxnStep{Primary: []byte("c"), Mutations: []Mutation{{Op: MutationPut, Key: []byte("c")}}}},
		{Kind: KindCommitTxn, Step: &TxnStep{Start: 7, Primary: []byte("c"), Commit: 7, Keys: [][]byte{[]byte("c")}}},
		{Kind: KindCheckTxn, Step: &TxnStep{Start: 7, Primary: []byte("c")}},
		{Kind: KindRollbackTxn},
		// A one-phase prewrite without a start read nothing, so it locks
		// nothing for reading.
		{Kind: KindPrewrite, Step: &TxnStep{Primary: []byte("c"), OnePhase: true, Mutations: []Mutation{{Op: MutationLock, Key: []byte("c")}}}},
	}
	for _, c := range bad {
		if err := c.checkLimits(cfg); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s %+v: %v, want ErrBadCommand", c.Kind, c.Step, err)
		}
	}
}

// txnShard is one shard on a one-node store, with helpers for the steps
// of a transaction.
type txnShard struct {
	t   *testing.T
	ctx context.Context
	s   *Store
}

func newTxnShard(t *testing.T) *txnShard {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	return &txnShard{t: t, ctx: ctx, s: n.store}
}

func (ts *txnShard) exec(kind CommandKind, step *TxnStep) (*Result, error) {
	return ts.s.Execute(ts.ctx, 1, &Command{Kind: kind, Step: step})
}

func (ts *txnShard) prewrite(start uint64, primary string, ms ...Mutation) (uint64, error) {
	res, err := ts.exec(KindPrewrite, &TxnStep{Start: start, Primary: []byte(primary), TTL: 1000, Mutations: ms})
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

func (ts *txnShard) now() uint64 {
	rev, err := ts.s.Now(ts.ctx)
	if err != nil {
		ts.t.Fatal(err)
	}
	return rev
}

func (ts *txnShard) get(key string, rev uint64) (string, error) {
	kv, found, err := ts.s.GetAt(ts.ctx, 1, Epoch{}, []byte(key), rev)
	if err != nil {
		return "", err
	}
	if !found {
		return "<absent>", nil
	}
	return fmt.Sprintf("%s@%d", kv.Value, kv.ModRevision), nil
}

func putM(k, v string) Mutation { return Mutation{Op: MutationPut, Key: []byte(k), Value: []byte(v)} }

func keysOf(ks ...string) [][]byte {
	out := make([][]byte, len(ks))
	for i, k := range ks {
		out[i] = []byte(k)
	}
	return out
}

// TestTxnPrewriteCommit runs one transaction through its steps: the
// locks refuse other writers and hold back readers at or above the
// prewrite, the commit writes every key at the commit revision, and
// retried steps change nothing.
func TestTxnPrewriteCommit(t *testing.T) {
	ts := newTxnShard(t)
	before := putRev(t, ts.ctx, ts.s, "d", "old")
	start := ts.now()
	p, err := ts.prewrite(start, "c", putM("c", "1"), Mutation{Op: MutationDelete, Key: []byte("d")}, Mutation{Op: MutationLock, Key: []byte("e")})
	if err != nil {
		t.Fatal(err)
	}
	if p <= start {
		t.Fatalf("prewrite at %d, start %d", p, start)
	}
	// A retried prewrite keeps its locks and answers the same revision.
	if again, err := ts.prewrite(start, "c", putM("c", "1")); err != nil || again != p {
		t.Fatalf("retried prewrite: %d, %v; want %d", again, err, p)
	}
	// Another writer is refused with the lock.
	_, err = ts.s.Execute(ts.ctx, 1, &Command{Kind: KindPut, Key: []byte("e"), Value: []byte("x")})
	var le *LockedError
	if !errors.As(err, &le) || string(le.Lock.Key) != "e" || le.Lock.Start != start || string(le.Lock.Primary) != "c" {
		t.Fatalf("put of a locked key: %v", err)
	}
	// Another transaction is refused too, and writes nothing.
	if _, err := ts.prewrite(ts.now(), "f", putM("f", "x"), putM("d", "x")); !errors.Is(err, ErrLocked) {
		t.Fatalf("prewrite over a lock: %v", err)
	}
	// Reads below the prewrite see the old state; at or above, the lock.
	if got, err := ts.get("d", p-1); err != nil || got != fmt.Sprintf("old@%d", before) {
		t.Fatalf("read below the lock: %s, %v", got, err)
	}
	latest := ts.now()
	if _, err := ts.get("d", latest); !errors.Is(err, ErrLocked) {
		t.Fatalf("read above the lock: %v", err)
	}
	if got, err := ts.get("f", latest); err != nil || got != "<absent>" {
		t.Fatalf("read of an unlocked key: %s, %v", got, err)
	}
	if _, _, _, err := ts.s.Scan(ts.ctx, 1, Epoch{}, []byte("b"), []byte("m"), 0, multiraft.ReadLinearizable); !errors.Is(err, ErrLocked) {
		t.Fatalf("latest scan over a lock: %v", err)
	}

	commit := ts.now() // as another shard's prewrite revision would be
	if _, err := ts.exec(KindCommitTxn, &TxnStep{Start: start, Primary: []byte("c"), Commit: p - 1, Keys: keysOf("c")}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("commit below the prewrite: %v", err)
	}
	for range 2 { // the second is a retry
		if _, err := ts.exec(KindCommitTxn, &TxnStep{Start: start, Primary: []byte("c"), Commit: commit, Keys: keysOf("c", "d", "e")}); err != nil {
			t.Fatal(err)
		}
	}
	for key, want := range map[string]string{"c": fmt.Sprintf("1@%d", commit), "d": "<absent>", "e": "<absent>"} {
		if got, err := ts.get(key, commit); err != nil || got != want {
			t.Errorf("%s at the commit: %s, %v; want %s", key, got, err, want)
		}
	}
	if got, err := ts.get("c", commit-1); err != nil || got != "<absent>" {
		t.Errorf("c below the commit: %s, %v", got, err)
	}
	res, err := ts.exec(KindCheckTxn, &TxnStep{Start: start, Primary: []byte("c"), Now: ts.now()})
	if err != nil || res.Status != TxnCommitted || res.Revision != commit {
		t.Fatalf("check: %+v, %v", res, err)
	}
	if _, err := ts.exec(KindRollbackTxn, &TxnStep{Start: start, Primary: []byte("c"), Keys: keysOf("c")}); !errors.Is(err, ErrTxnCommitted) {
		t.Fatalf("rollback of a committed transaction: %v", err)
	}
	// The shard's writes continue above the commit.
	if r := putRev(t, ts.ctx, ts.s, "e", "after"); r <= commit {
		t.Fatalf("a write after the commit at %d got %d", commit, r)
	}
}

// TestTxnConflict: a key written after the start fails the prewrite,
// which writes nothing.
func TestTxnConflict(t *testing.T) {
	ts := newTxnShard(t)
	start := ts.now()
	w := putRev(t, ts.ctx, ts.s, "d", "later")
	_, err := ts.prewrite(start, "c", putM("c", "1"), putM("d", "2"))
	var ce *ConflictError
	if !errors.As(err, &ce) || string(ce.Key) != "d" || ce.Revision != w {
		t.Fatalf("prewrite after a later write: %v", err)
	}
	if r := putRev(t, ts.ctx, ts.s, "c", "free"); r == 0 {
		t.Fatal("c stayed locked")
	}
}

// TestTxnBlindOnePhase: a one-phase prewrite without a start (a
// transaction that read nothing) writes over a key written since any
// start, at its own revision, as a Batch would; but it is refused, writing
// nothing, on a key another transaction locks.
func TestTxnBlindOnePhase(t *testing.T) {
	ts := newTxnShard(t)
	putRev(t, ts.ctx, ts.s, "d", "earlier")
	res, err := ts.exec(KindPrewrite, &TxnStep{Primary: []byte("c"), OnePhase: true, Mutations: []Mutation{putM("c", "1"), putM("d", "1")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"c", "d"} {
		if got, err := ts.get(k, res.Revision); err != nil || got != fmt.Sprintf("1@%d", res.Revision) {
			t.Fatalf("%s after a blind one-phase commit at %d: %s, %v", k, res.Revision, got, err)
		}
	}
	start := ts.now()
	if _, err := ts.prewrite(start, "d", putM("d", "2")); err != nil {
		t.Fatal(err)
	}
	_, err = ts.exec(KindPrewrite, &TxnStep{Primary: []byte("c"), OnePhase: true, Mutations: []Mutation{putM("c", "3"), putM("d", "3")}})
	var le *LockedError
	if !errors.As(err, &le) || string(le.Lock.Key) != "d" || le.Lock.Start != start {
		t.Fatalf("blind one-phase commit over a lock: %v, want the lock of %d on d", err, start)
	}
	if got, err := ts.get("c", ts.now()); err != nil || got != fmt.Sprintf("1@%d", res.Revision) {
		t.Fatalf("c after the refused commit: %s, %v", got, err)
	}
}

// TestTxnCheckRollsBack: a pending primary answers pending until its TTL
// runs out, then is rolled back; a primary never prewritten is recorded
// rolled back, so a late prewrite cannot bring it back.
func TestTxnCheckRollsBack(t *testing.T) {
	ts := newTxnShard(t)
	start := ts.now()
	if _, err := ts.prewrite(start, "c", putM("c", "1")); err != nil {
		t.Fatal(err)
	}
	res, err := ts.exec(KindCheckTxn, &TxnStep{Start: start, Primary: []byte("c"), Now: ts.now()})
	if err != nil || res.Status != TxnPending {
		t.Fatalf("check of a live transaction: %+v, %v", res, err)
	}
	late := uint64(tso.Compose(tso.Physical(tso.Timestamp(start))+1001, 0))
	for range 2 {
		res, err = ts.exec(KindCheckTxn, &TxnStep{Start: start, Primary: []byte("c"), Now: late})
		if err != nil || res.Status != TxnRolledBack {
			t.Fatalf("check past the TTL: %+v, %v", res, err)
		}
	}
	if _, err := ts.exec(KindCommitTxn, &TxnStep{Start: start, Primary: []byte("c"), Commit: late, Keys: keysOf("c")}); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("commit after the rollback: %v", err)
	}
	if got, err := ts.get("c", ts.now()); err != nil || got != "<absent>" {
		t.Fatalf("c after the rollback: %s, %v", got, err)
	}

	// A transaction whose primary never arrived.
	lost := ts.now()
	res, err = ts.exec(KindCheckTxn, &TxnStep{Start: lost, Primary: []byte("g"), Now: ts.now()})
	if err != nil || res.Status != TxnRolledBack {
		t.Fatalf("check of a missing primary: %+v, %v", res, err)
	}
	if _, err := ts.prewrite(lost, "g", putM("g", "1")); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("late prewrite of a rolled-back primary: %v", err)
	}
}

// TestTxnWatchHoldsBackAboveLocks: a write stamped after a prewrite is
// published only once the lock is gone, after the commit's events at a
// lower revision, so the watch stays in revision order.
func TestTxnWatchHoldsBackAboveLocks(t *testing.T) {
	ts := newTxnShard(t)
	w := mustWatch(t, ts.s, 1, Epoch{}, []byte("b"), []byte("m"), 0, false)
	syncWatcher(t, ts.ctx, w)
	start := ts.now()
	p, err := ts.prewrite(start, "c", putM("c", "1"))
	if err != nil {
		t.Fatal(err)
	}
	commit := ts.now() // another shard's prewrite revision, say
	after := putRev(t, ts.ctx, ts.s, "f", "x")
	if got := w.Resolved(); got >= p {
		t.Fatalf("the watch promised %d with a lock prewritten at %d", got, p)
	}
	// The commit lands below the write that applied before it.
	if commit >= after {
		t.Fatalf("test needs the commit (%d) below the later write (%d)", commit, after)
	}
	if _, err := ts.exec(KindCommitTxn, &TxnStep{Start: start, Primary: []byte("c"), Commit: commit, Keys: keysOf("c")}); err != nil {
		t.Fatal(err)
	}
	got := collectEvents(t, ts.ctx, w, 2) // checks the order
	if got[0].Revision() != commit || got[1].Revision() != after {
		t.Fatalf("events at %d and %d, want %d then %d", got[0].Revision(), got[1].Revision(), commit, after)
	}
	// A watch reading history agrees.
	past := mustWatch(t, ts.s, 1, Epoch{}, []byte("b"), []byte("m"), start, false)
	if h := collectEvents(t, ts.ctx, past, 2); h[0].Revision() != commit || h[1].Revision() != after {
		t.Fatalf("history: %s, %s", describe(h[0]), describe(h[1]))
	}
}

// TestTxnLocksSurviveSplitAndRestart: locks and outcomes go to the
// right-hand shard with their keys, and are reloaded after a restart.
func TestTxnLocksSurviveSplitAndRestart(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	start := uint64(5)
	h.rev = 9
	pre := Command{Kind: KindPrewrite, Step: &TxnStep{Start: start, Primary: []byte("h"), TTL: 1000,
		Mutations: []Mutation{putM("c", "1"), putM("h", "2")}}}
	prewritten := h.mustOK(pre).Revision
	h.sm.Committed()
	// A second, rolled-back transaction leaves an outcome under "j".
	h.mustOK(Command{Kind: KindCheckTxn, Step: &TxnStep{Start: 6, Primary: []byte("j"), Now: 100}})
	split := Command{Kind: KindSplit, Key: []byte("g"), NewShard: 2, NewReplicas: []SplitReplica{{Old: 1, New: 11}, {Old: 2, New: 12}, {Old: 3, New: 13}}}
	h.mustOK(split)
	h.sm.Committed()
	if l := h.sm.lockView.Load().find([]byte("b"), nil, false, 1<<60); l == nil || string(l.Key) != "c" || len(h.sm.locks) != 1 {
		t.Fatalf("left locks after the split: %v", h.sm.locks)
	}
	right, err := NewStateMachine(h.cfg, 2, 11, h.db)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := right.locks["h"]; !ok || l.Start != start || string(l.Value) != "2" || len(right.locks) != 1 {
		t.Fatalf("right locks: %v", right.locks)
	}
	if right.Published() >= prewritten {
		t.Fatalf("right published %d, at or above its lock's prewrite at %d", right.Published(), prewritten)
	}
	b := h.db.NewIndexedBatch()
	defer b.Close()
	if st, _, ok := right.txnRecord(b, []byte("j"), 6); !ok || st != TxnRolledBack {
		t.Fatalf("the outcome under j did not move: %v %v", st, ok)
	}
	if _, _, ok := h.sm.txnRecord(b, []byte("j"), 6); ok {
		t.Fatal("the outcome under j stayed on the left")
	}
	h.reload()
	if _, ok := h.sm.locks["c"]; !ok || len(h.sm.locks) != 1 {
		t.Fatalf("locks after a restart: %v", h.sm.locks)
	}
}

// TestTxnLocksInSnapshot: an image carries the shard's locks and
// outcomes, and the restored replica holds them back as the source did.
func TestTxnLocksInSnapshot(t *testing.T) {
	for _, chunk := range []int64{1, 0} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			cfg := Config{SnapshotChunkBytes: chunk}
			h := newHarness(t, cfg, testDesc())
			h.rev = 9
			h.mustOK(put(Header{}, "d", "0"))
			prewritten := h.mustOK(Command{Kind: KindPrewrite, Step: &TxnStep{Start: h.rev, Primary: []byte("c"), TTL: 1000,
				Mutations: []Mutation{putM("c", "1"), {Op: MutationDelete, Key: []byte("d")}}}}).Revision
			h.mustOK(Command{Kind: KindCheckTxn, Step: &TxnStep{Start: 6, Primary: []byte("j"), Now: 100}})
			h.sm.Committed()
			var img bytes.Buffer
			if err := h.sm.Snapshot(h.db, &img); err != nil {
				t.Fatal(err)
			}
			db, b, err := restoreInto(t, cfg, img.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(pebble.Sync); err != nil {
				t.Fatal(err)
			}
			sm, err := NewStateMachine(cfg, 1, 2, db)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sm.locks, h.sm.locks) || len(sm.locks) != 2 {
				t.Fatalf("restored locks %v, want %v", sm.locks, h.sm.locks)
			}
			if sm.Published() != h.sm.Published() || sm.Published() >= prewritten {
				t.Fatalf("restored published %d, source %d (prewrite at %d)", sm.Published(), h.sm.Published(), prewritten)
			}
			rb := db.NewIndexedBatch()
			defer rb.Close()
			if st, _, ok := sm.txnRecord(rb, []byte("j"), 6); !ok || st != TxnRolledBack {
				t.Fatalf("restored outcome: %v %v", st, ok)
			}
		})
	}
}
