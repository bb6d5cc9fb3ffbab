package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
)

func TestAsyncCommitStepRoundTrip(t *testing.T) {
	steps := []Command{
		{Kind: KindPrewrite, Revision: 40, Step: &TxnStep{Start: 7, Primary: []byte("c"), TTL: 3000, Async: true,
			Mutations: []Mutation{putM("c", "v"), {Op: MutationLock, Key: []byte("e")}}, Secondaries: keysOf("e", "x", "y")}},
		{Kind: KindPrewrite, Revision: 41, Step: &TxnStep{Start: 7, Primary: []byte("c"), TTL: 3000, Async: true,
			Mutations: []Mutation{putM("x", "v")}}},
		{Kind: KindCheckTxn, Step: &TxnStep{Start: 7, Primary: []byte("c"), Keys: keysOf("e", "x")}},
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
		// A check of secondaries cut after its timestamp decodes as a
		// check of the primary without one, which is refused.
		for n := range len(enc) {
			err := DecodeCommand(enc[:n], &got)
			if err == nil {
				err = got.checkLimits(cfg)
			}
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("%s truncated to %d bytes: %+v, %v", c.Kind, n, got.Step, err)
			}
		}
	}
	bad := []*TxnStep{
		// Secondaries without async, or on a prewrite without the primary.
		{Start: 7, Primary: []byte("c"), Mutations: []Mutation{putM("c", "v")}, Secondaries: keysOf("x")},
		{Start: 7, Primary: []byte("c"), Async: true, Mutations: []Mutation{putM("x", "v")}, Secondaries: keysOf("y")},
		// The primary among its secondaries; async in one phase.
		{Start: 7, Primary: []byte("c"), Async: true, Mutations: []Mutation{putM("c", "v")}, Secondaries: keysOf("x", "c")},
		{Start: 7, Primary: []byte("c"), Async: true, OnePhase: true, Mutations: []Mutation{putM("c", "v")}},
	}
	for _, s := range bad {
		if err := (&Command{Kind: KindPrewrite, Step: s}).checkLimits(cfg); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%+v: %v, want ErrBadCommand", s, err)
		}
	}
	if err := (&Command{Kind: KindCheckTxn, Step: &TxnStep{Start: 7, Primary: []byte("c"), Keys: keysOf("c")}}).checkLimits(cfg); !errors.Is(err, ErrBadCommand) {
		t.Errorf("a check of the primary as a secondary: %v", err)
	}
	many := &TxnStep{Start: 7, Primary: []byte("c"), Async: true, Mutations: []Mutation{putM("c", "v")}}
	for i := range cfg.MaxBatchOps + 1 {
		many.Secondaries = append(many.Secondaries, fmt.Appendf(nil, "k%d", i))
	}
	if err := (&Command{Kind: KindPrewrite, Step: many}).checkLimits(cfg); !errors.Is(err, ErrBatchTooLarge) {
		t.Errorf("%d secondaries: %v, want ErrBatchTooLarge", len(many.Secondaries), err)
	}
	// The primary lock keeps its secondaries; an older lock record (no
	// flags) still decodes.
	l := TxnLock{Key: []byte("c"), Start: 7, Primary: []byte("c"), Prewrite: 9, TTL: 5, Op: MutationPut, Value: []byte("v"),
		Async: true, Secondaries: keysOf("e", "x")}
	got, err := decodeLockRecord(l.Key, appendLockRecord(nil, &l))
	if err != nil || !reflect.DeepEqual(got, l) {
		t.Fatalf("lock record: %+v, %v", got, err)
	}
	plain := l
	plain.Async, plain.Secondaries = false, nil
	if got, err := decodeLockRecord(l.Key, appendLockRecord(nil, &plain)); err != nil || !reflect.DeepEqual(got, plain) {
		t.Fatalf("lock record without async: %+v, %v", got, err)
	}
}

// asyncPrewrite prewrites ms for the async transaction (start, primary),
// listing secondaries if ms holds the primary.
func (ts *txnShard) asyncPrewrite(start uint64, primary string, secondaries [][]byte, ms ...Mutation) (uint64, error) {
	step := &TxnStep{Start: start, Primary: []byte(primary), TTL: 1000, Async: true, Mutations: ms}
	for _, m := range ms {
		if string(m.Key) == primary {
			step.Secondaries = secondaries
		}
	}
	res, err := ts.exec(KindPrewrite, step)
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

func (ts *txnShard) checkSecondaries(start uint64, primary string, ks ...string) *Result {
	ts.t.Helper()
	res, err := ts.exec(KindCheckTxn, &TxnStep{Start: start, Primary: []byte(primary), Keys: keysOf(ks...)})
	if err != nil {
		ts.t.Fatalf("check of %q: %v", ks, err)
	}
	return res
}

// TestAsyncCommitCheckSecondaries: an expired async primary decides
// nothing by itself; a check of secondaries that finds them all locked
// answers the highest prewrite revision, and one that finds a key
// unlocked leaves a marker that refuses the key's late prewrite forever.
// The primary's record, written once, settles a check that raced a
// commit.
func TestAsyncCommitCheckSecondaries(t *testing.T) {
	ts := newTxnShard(t)
	start := ts.now()
	second := keysOf("d", "h")
	pc, err := ts.asyncPrewrite(start, "c", second, putM("c", "1"))
	if err != nil {
		t.Fatal(err)
	}
	pd, err := ts.asyncPrewrite(start, "c", second, putM("d", "1"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := ts.exec(KindCheckTxn, &TxnStep{Start: start, Primary: []byte("c"), Now: ts.now()})
	if err != nil || res.Status != TxnPending {
		t.Fatalf("check of a live transaction: %+v, %v", res, err)
	}
	late := uint64(tso.Compose(tso.Physical(tso.Timestamp(start))+1001, 0))
	for range 2 {
		res, err = ts.exec(KindCheckTxn, &TxnStep{Start: start, Primary: []byte("c"), Now: late})
		if err != nil || res.Status != TxnSecondaries || res.Revision != pc {
			t.Fatalf("check past the TTL: %+v, %v (primary prewritten at %d)", res, err, pc)
		}
	}
	if l, ok, err := ts.s.TxnLock(1, []byte("c")); err != nil || !ok || !l.Async || !reflect.DeepEqual(l.Secondaries, second) {
		t.Fatalf("the expired primary lock: %+v %v %v", l, ok, err)
	}
	if res := ts.checkSecondaries(start, "c", "d"); res.Status != TxnCommitted || res.Revision != pd {
		t.Fatalf("check of the locked d: %+v, want committed at %d", res, pd)
	}
	// h was never prewritten: rolled back, and h is marked.
	for range 2 {
		if res := ts.checkSecondaries(start, "c", "d", "h"); res.Status != TxnRolledBack {
			t.Fatalf("check of d and the unlocked h: %+v", res)
		}
	}
	if _, err := ts.asyncPrewrite(start, "c", second, putM("h", "1")); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("late prewrite of the marked h: %v", err)
	}
	if _, ok, _ := ts.s.TxnLock(1, []byte("h")); ok {
		t.Fatal("the refused prewrite left a lock on h")
	}
	if _, err := ts.exec(KindRollbackTxn, &TxnStep{Start: start, Primary: []byte("c"), Keys: keysOf("c", "d")}); err != nil {
		t.Fatal(err)
	}
	res, err = ts.exec(KindCheckTxn, &TxnStep{Start: start, Primary: []byte("c"), Now: late})
	if err != nil || res.Status != TxnRolledBack {
		t.Fatalf("check after the rollback: %+v, %v", res, err)
	}

	// All locked: committed at the highest prewrite, as the client
	// computed it; a check that comes after a secondary's commit finds it
	// unlocked, but the record refuses the rollback that would follow.
	start = ts.now()
	revs := map[string]uint64{}
	for _, k := range []string{"c", "d", "h"} {
		if revs[k], err = ts.asyncPrewrite(start, "c", second, putM(k, "2")); err != nil {
			t.Fatal(err)
		}
	}
	commit := max(revs["c"], revs["d"], revs["h"])
	if res := ts.checkSecondaries(start, "c", "d", "h"); res.Status != TxnCommitted || max(res.Revision, revs["c"]) != commit {
		t.Fatalf("check of all locked: %+v, want committed at %d", res, commit)
	}
	for _, keys := range [][]string{{"c"}, {"d", "h"}} {
		if _, err := ts.exec(KindCommitTxn, &TxnStep{Start: start, Primary: []byte("c"), Commit: commit, Keys: keysOf(keys...)}); err != nil {
			t.Fatal(err)
		}
	}
	if res := ts.checkSecondaries(start, "c", "d", "h"); res.Status != TxnRolledBack {
		t.Fatalf("check after the commit: %+v", res)
	}
	if _, err := ts.exec(KindRollbackTxn, &TxnStep{Start: start, Primary: []byte("c"), Keys: keysOf("c")}); !errors.Is(err, ErrTxnCommitted) {
		t.Fatalf("rollback of a committed transaction: %v", err)
	}
	for _, k := range []string{"c", "d", "h"} {
		if got, err := ts.get(k, ts.now()); err != nil || got != fmt.Sprintf("2@%d", commit) {
			t.Fatalf("%s = %s, %v; want 2@%d", k, got, err, commit)
		}
	}
}

// TestAsyncCommitReplicasAgree: prewrites, checks of secondaries with
// their markers, and a refused late prewrite leave the same state on
// every replica; a split carries a marker to the right-hand shard, where
// the late prewrite is still refused, and an image carries the async
// primary lock.
func TestAsyncCommitReplicasAgree(t *testing.T) {
	c := newCluster(t, 3)
	desc := Descriptor{ShardID: 1, Epoch: Epoch{ConfVer: 1, Version: 1}, Replicas: []multiraft.Replica{
		{ReplicaID: 1, NodeID: 1}, {ReplicaID: 2, NodeID: 2}, {ReplicaID: 3, NodeID: 3},
	}}
	for _, r := range desc.Replicas {
		if err := c.stores[r.NodeID].CreateShard(desc, r.ReplicaID); err != nil {
			t.Fatal(err)
		}
	}
	c.elect(1, 1)
	start, _ := c.oracle.Next(context.Background(), 1)
	second := keysOf("d", "x")
	prewrite := func(shard ShardID, key string) error {
		step := &TxnStep{Start: uint64(start), Primary: []byte("c"), TTL: 1000, Async: true, Mutations: []Mutation{putM(key, "1")}}
		if key == "c" {
			step.Secondaries = second
		}
		rev, _ := c.oracle.Next(context.Background(), 1)
		res, err := c.wait(c.engines[1].ProposeFuture(shard, (&Command{Kind: KindPrewrite, Revision: uint64(rev), Step: step}).AppendEncoded(nil)))
		if err != nil {
			return err
		}
		if err, ok := res.(error); ok {
			return err
		}
		return nil
	}
	for _, k := range []string{"c", "d"} {
		if err := prewrite(1, k); err != nil {
			t.Fatal(err)
		}
	}
	if res := c.propose(1, 1, Command{Kind: KindCheckTxn, Step: &TxnStep{Start: uint64(start), Primary: []byte("c"), Keys: second}}); res.Status != TxnRolledBack {
		t.Fatalf("check with x unlocked: %+v", res)
	}
	if err := prewrite(1, "x"); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("late prewrite of x: %v", err)
	}
	c.sameEverywhere(1, 1, 2, 3)
	for n := multiraft.NodeID(1); n <= 3; n++ {
		sm := c.stores[n].mu.shards[1]
		b := c.dbs[n].NewIndexedBatch()
		st, _, ok := sm.txnRecord(b, []byte("x"), uint64(start))
		b.Close()
		if !ok || st != TxnRolledBack {
			t.Fatalf("n%d: x's marker: %v %v", n, st, ok)
		}
		if l := sm.locks["c"]; !l.Async || !reflect.DeepEqual(l.Secondaries, second) {
			t.Fatalf("n%d: primary lock %+v", n, l)
		}
	}

	// The marker moves with x; the late prewrite is refused there too.
	r := c.propose(1, 1, splitCmd(Header{Epoch: desc.Epoch}, "w", 2,
		SplitReplica{Old: 1, New: 11}, SplitReplica{Old: 2, New: 12}, SplitReplica{Old: 3, New: 13}))
	c.sameEverywhere(1, 1, 2, 3)
	c.sameEverywhere(2, 1, 2, 3)
	c.elect(1, 2)
	if err := prewrite(2, "x"); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("late prewrite of x after the split (right %s): %v", r.Right, err)
	}

	// An image of the left shard carries the async primary lock.
	sm := c.stores[1].mu.shards[1]
	var img bytes.Buffer
	if err := sm.Snapshot(c.dbs[1], &img); err != nil {
		t.Fatal(err)
	}
	db, b, err := restoreInto(t, Config{}, img.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	restored, err := NewStateMachine(Config{}, 1, 2, db)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(restored.locks, sm.locks) || !restored.locks["c"].Async {
		t.Fatalf("restored locks %+v, want %+v", restored.locks, sm.locks)
	}
}

// TestAsyncCommitMarkersCollected: a rollback marker is an outcome
// record to collection (gc.go): it stays while its transaction is within
// the retention, or a lock on the shard started at or before it, and
// goes after; a late prewrite of its key is refused either way.
func TestAsyncCommitMarkersCollected(t *testing.T) {
	h := newHarness(t, Config{TxnRecordRetention: 100 * time.Millisecond}, testDesc())
	start := ms(1)
	pre := func(key string) *TxnStep {
		return &TxnStep{Start: start, Primary: []byte("c"), TTL: 10, Async: true, Mutations: []Mutation{putM(key, "v")}}
	}
	h.at(ms(2), Command{Kind: KindPrewrite, Step: pre("d")})
	if res := h.mustOK(Command{Kind: KindCheckTxn, Step: &TxnStep{Start: start, Primary: []byte("c"), Keys: keysOf("d", "e")}}); res.Status != TxnRolledBack {
		t.Fatalf("check with e unlocked: %+v", res)
	}
	marker := TxnRef{Primary: []byte("e"), Start: start}
	if res := h.at(ms(200), gcCmd(nil, marker)).(*Result); res.CollectedTxns != 0 {
		t.Fatal("collected a marker while a lock of its transaction is open")
	}
	h.mustOK(Command{Kind: KindRollbackTxn, Step: &TxnStep{Start: start, Primary: []byte("c"), Keys: keysOf("d")}})
	if err, _ := h.at(ms(201), Command{Kind: KindPrewrite, Step: pre("e")}).(error); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("late prewrite of the marked e: %v", err)
	}
	if res := h.at(ms(210), gcCmd(nil, marker)).(*Result); res.CollectedTxns != 1 {
		t.Fatalf("collected %d markers, want 1", res.CollectedTxns)
	}
	b := h.db.NewIndexedBatch()
	defer b.Close()
	if _, _, ok := h.sm.txnRecord(b, marker.Primary, marker.Start); ok {
		t.Fatal("the marker stayed")
	}
	if err, _ := h.at(ms(220), Command{Kind: KindPrewrite, Step: pre("e")}).(error); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("late prewrite of e after the marker went: %v", err)
	}
}
