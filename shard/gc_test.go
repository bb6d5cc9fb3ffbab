package shard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/placement/tso"
)

// ms is the oracle timestamp of n milliseconds, logical part 0.
func ms(n uint64) uint64 { return n << tso.LogicalBits }

// gcCmd is a KindGC naming keys and transactions.
func gcCmd(ks []string, txns ...TxnRef) Command {
	return Command{Kind: KindGC, GC: &GCStep{Keys: keysOf(ks...), Txns: txns}}
}

// storedKeyCount counts the keys of desc with a meta in r, as MidKey and
// StoredKeys count them.
func storedKeyCount(tb testing.TB, r pebble.Reader, desc *Descriptor) int {
	tb.Helper()
	n := 0
	if err := storedKeys(r, desc, func([]byte) bool { n++; return true }); err != nil {
		tb.Fatal(err)
	}
	return n
}

// scanAll renders every key that exists at rev in r, with its revisions.
func scanAll(tb testing.TB, r pebble.Reader, rev uint64) string {
	tb.Helper()
	var sb strings.Builder
	err := scanAt(r, nil, nil, rev, func(kv KeyValue) bool {
		fmt.Fprintf(&sb, "%s=%s c%d m%d v%d; ", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
		return true
	})
	if err != nil {
		tb.Fatal(err)
	}
	return sb.String()
}

func TestGCStepRoundTrip(t *testing.T) {
	in := gcCmd([]string{"c", "d"}, TxnRef{Primary: []byte("e"), Start: 7})
	in.Revision = 99
	var out Command
	if err := DecodeCommand(in.AppendEncoded(nil), &out); err != nil {
		t.Fatal(err)
	}
	if out.Kind != KindGC || out.Revision != 99 || !reflect.DeepEqual(out.GC, in.GC) {
		t.Fatalf("decoded %+v %+v", out, out.GC)
	}
	cfg := Config{MaxBatchOps: 2}.withDefaults()
	if err := in.checkLimits(&cfg); !errors.Is(err, ErrBatchTooLarge) {
		t.Fatalf("three candidates with a limit of 2: %v", err)
	}
	bad := gcCmd(nil, TxnRef{Primary: []byte("e")})
	if err := bad.checkLimits(&cfg); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("a transaction without a start: %v", err)
	}
	once := gcCmd([]string{"c"})
	once.Header.ClientID = 3
	if err := once.checkLimits(&cfg); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("an exactly-once gc: %v", err)
	}
}

// TestGCDeletedKeys: a collection deletes the meta and every version of
// a key deleted below the compaction point, and nothing else; reads at
// revisions at or above the compaction point see what they saw before,
// the stored-key count drops, and a later put creates the key anew.
func TestGCDeletedKeys(t *testing.T) {
	h := newHarness(t, Config{HistoryRetention: time.Hour}, testDesc())
	h.at(ms(1), put(hdr(0, 0), "c", "1"))
	h.at(ms(2), put(hdr(0, 0), "c", "2"))
	h.at(ms(3), del(hdr(0, 0), "c"))
	h.at(ms(4), put(hdr(0, 0), "d", "1"))
	h.at(ms(5), put(hdr(0, 0), "e", "1"))
	h.at(ms(20), del(hdr(0, 0), "e"))
	desc := testDesc()

	// Nothing is below a compaction point yet: nothing goes.
	if res := h.at(ms(30), gcCmd([]string{"c", "d", "e"})).(*Result); res.CollectedKeys+res.CollectedTxns != 0 {
		t.Fatalf("collected %d before any compaction", res.CollectedKeys+res.CollectedTxns)
	}
	h.mustOK(Command{Kind: KindCompact, Revision: ms(10)})
	reads := []uint64{ms(10), ms(15), ms(20), ms(40)}
	before := make([]string, len(reads))
	for i, r := range reads {
		before[i] = scanAll(t, h.db, r)
	}
	if n := storedKeyCount(t, h.db, &desc); n != 3 {
		t.Fatalf("%d stored keys before, want 3", n)
	}

	// c (deleted at 3 ms, below 10 ms) goes; d lives; e's tombstone (20
	// ms) is at or above the compaction point; x was never written.
	res := h.at(ms(40), gcCmd([]string{"c", "d", "e", "x"})).(*Result)
	if res.CollectedKeys != 1 || res.Revision != ms(40) {
		t.Fatalf("collected %d at %d, want 1 at %d", res.CollectedKeys, res.Revision, ms(40))
	}
	if d := userData(t, h.db); strings.Contains(d, `"c"`) {
		t.Fatalf("c is still stored:\n%s", d)
	}
	for i, r := range reads {
		if got := scanAll(t, h.db, r); got != before[i] {
			t.Errorf("scan at %d ms: %q, before the collection %q", r>>tso.LogicalBits, got, before[i])
		}
	}
	if n := storedKeyCount(t, h.db, &desc); n != 2 {
		t.Fatalf("%d stored keys after, want 2", n)
	}
	// Collecting again finds nothing; a restart agrees.
	h.reload()
	if res := h.at(ms(41), gcCmd([]string{"c"})).(*Result); res.CollectedKeys+res.CollectedTxns != 0 {
		t.Fatalf("collected c twice")
	}
	// A put creates c anew, as after its tombstone.
	h.at(ms(50), put(hdr(0, 0), "c", "new"))
	kv, found, err := ReadAt(h.db, []byte("c"), ms(50))
	if err != nil || !found || kv.Version != 1 || kv.CreateRevision != ms(50) {
		t.Fatalf("c re-created: %+v %v %v", kv, found, err)
	}
}

// TestGCConflictBelowCompaction: a prewrite whose start is below the
// compaction point cannot tell a collected key from one never written,
// and conflicts; one above it prewrites.
func TestGCConflictBelowCompaction(t *testing.T) {
	h := newHarness(t, Config{HistoryRetention: time.Hour}, testDesc())
	h.at(ms(1), put(hdr(0, 0), "c", "1"))
	h.at(ms(2), del(hdr(0, 0), "c"))
	h.mustOK(Command{Kind: KindCompact, Revision: ms(10)})
	h.at(ms(11), gcCmd([]string{"c"}))
	pre := func(start, at uint64) any {
		return h.at(at, Command{Kind: KindPrewrite, Step: &TxnStep{Start: start, Primary: []byte("c"), TTL: 1000, Mutations: []Mutation{putM("c", "v")}}})
	}
	var ce *ConflictError
	if err, _ := pre(ms(1)+1, ms(12)).(error); !errors.As(err, &ce) || ce.Revision != ms(10) {
		t.Fatalf("prewrite from 1 ms of a collected key: %v", err)
	}
	if res, ok := pre(ms(10), ms(13)).(*Result); !ok || res.Revision != ms(13) {
		t.Fatalf("prewrite from the compaction point: %v", res)
	}
}

// TestGCTxnRecords: an outcome record goes only once its transaction is
// past the retention and no lock on the shard started at or before it;
// afterwards the forgotten transaction can neither prewrite, nor be
// checked, committed or rolled back into a guessed outcome.
func TestGCTxnRecords(t *testing.T) {
	h := newHarness(t, Config{TxnRecordRetention: 100 * time.Millisecond}, testDesc())
	step := func(start uint64, primary string) *TxnStep {
		return &TxnStep{Start: start, Primary: []byte(primary), TTL: 10, Mutations: []Mutation{putM(primary, "v")}}
	}
	// open: a lock that stays, started first.
	h.at(ms(2), Command{Kind: KindPrewrite, Step: step(ms(1), "f")})
	// t1 commits, t2 is rolled back by a resolver, t3 commits late.
	t1 := TxnRef{Primary: []byte("c"), Start: ms(3)}
	h.at(ms(4), Command{Kind: KindPrewrite, Step: step(t1.Start, "c")})
	h.mustOK(Command{Kind: KindCommitTxn, Step: &TxnStep{Start: t1.Start, Primary: t1.Primary, Commit: ms(4), Keys: keysOf("c")}})
	t2 := TxnRef{Primary: []byte("d"), Start: ms(5)}
	h.mustOK(Command{Kind: KindCheckTxn, Step: &TxnStep{Start: t2.Start, Primary: t2.Primary, Now: ms(6)}})
	t3 := TxnRef{Primary: []byte("e"), Start: ms(150)}
	h.at(ms(151), Command{Kind: KindPrewrite, Step: step(t3.Start, "e")})
	h.mustOK(Command{Kind: KindCommitTxn, Step: &TxnStep{Start: t3.Start, Primary: t3.Primary, Commit: ms(151), Keys: keysOf("e")}})
	all := []TxnRef{t1, t2, t3, {Primary: []byte("g"), Start: ms(1)}}

	// Past the retention for t1 and t2, but the open lock started
	// before them: they might be resolved against, and stay.
	if res := h.at(ms(200), gcCmd(nil, all...)).(*Result); res.CollectedKeys+res.CollectedTxns != 0 {
		t.Fatalf("collected %d records while an older lock is open", res.CollectedKeys+res.CollectedTxns)
	}
	h.mustOK(Command{Kind: KindRollbackTxn, Step: &TxnStep{Start: ms(1), Primary: []byte("f"), Keys: keysOf("f")}})
	// Now t1 and t2 go; t3 (150 ms + 100 ms is not yet past 210 ms)
	// stays, and so does the open one's rollback, decided at 151 ms (the
	// shard's resolved revision then) although its transaction started
	// at 1 ms.
	f := TxnRef{Primary: []byte("f"), Start: ms(1)}
	if res := h.at(ms(210), gcCmd(nil, append(all, f)...)).(*Result); res.CollectedTxns != 2 {
		t.Fatalf("collected %d records, want 2", res.CollectedTxns)
	}
	b := h.db.NewIndexedBatch()
	for _, ref := range []TxnRef{t1, t2} {
		if _, _, ok := h.sm.txnRecord(b, ref.Primary, ref.Start); ok {
			t.Errorf("the record of %q@%d stayed", ref.Primary, ref.Start)
		}
	}
	if st, rev, ok := h.sm.txnRecord(b, t3.Primary, t3.Start); !ok || st != TxnCommitted || rev != ms(151) {
		t.Errorf("the record of t3: %v %d %v", st, rev, ok)
	}
	if st, _, ok := h.sm.txnRecord(b, f.Primary, f.Start); !ok || st != TxnRolledBack {
		t.Errorf("the record of the late rollback: %v %v", st, ok)
	}
	b.Close()

	// The forgotten t1: no guess, and no write.
	before := dump(t, h.db)
	for name, c := range map[string]Command{
		"check":    {Kind: KindCheckTxn, Step: &TxnStep{Start: t1.Start, Primary: t1.Primary, Now: ms(211)}},
		"commit":   {Kind: KindCommitTxn, Step: &TxnStep{Start: t1.Start, Primary: t1.Primary, Commit: ms(4), Keys: keysOf("c")}},
		"rollback": {Kind: KindRollbackTxn, Step: &TxnStep{Start: t1.Start, Primary: t1.Primary, Keys: keysOf("c")}},
	} {
		if err, _ := h.apply(c).(error); !errors.Is(err, ErrTxnForgotten) {
			t.Errorf("%s of a forgotten transaction: %v", name, err)
		}
	}
	if err, _ := h.at(ms(220), Command{Kind: KindPrewrite, Step: step(t1.Start, "c")}).(error); !errors.Is(err, ErrTxnAborted) {
		t.Errorf("prewrite of a forgotten transaction: %v", err)
	}
	if after := dump(t, h.db); after != before {
		t.Errorf("refused steps wrote:\n%s\nwant\n%s", after, before)
	}
	// A forgotten transaction whose primary lock is here is undecided,
	// not ambiguous: it is checked (and rolled back once expired) as
	// before.
	h.at(ms(230), Command{Kind: KindPrewrite, Step: step(ms(200), "h")})
	res := h.mustOK(Command{Kind: KindCheckTxn, Step: &TxnStep{Start: ms(200), Primary: []byte("h"), Now: ms(400)}})
	if res.Status != TxnRolledBack {
		t.Fatalf("check of an expired, forgotten transaction with its lock: %v", res.Status)
	}
}

// TestGCAcrossSplit: a collection on either side of a split collects
// only what its shard holds; the other side collects the rest.
func TestGCAcrossSplit(t *testing.T) {
	h := newHarness(t, Config{HistoryRetention: time.Hour, TxnRecordRetention: 10 * time.Millisecond}, testDesc())
	h.at(ms(1), put(hdr(0, 0), "c", "1"))
	h.at(ms(2), del(hdr(0, 0), "c"))
	h.at(ms(3), put(hdr(0, 0), "k", "1"))
	h.at(ms(4), del(hdr(0, 0), "k"))
	h.mustOK(Command{Kind: KindCheckTxn, Step: &TxnStep{Start: ms(1), Primary: []byte("c"), Now: ms(5)}})
	h.mustOK(Command{Kind: KindCheckTxn, Step: &TxnStep{Start: ms(1), Primary: []byte("k"), Now: ms(5)}})
	h.mustOK(Command{Kind: KindCompact, Revision: ms(10)})
	h.mustOK(splitCmd(hdr(0, 0), "h", 2, mapping...))
	right, err := NewStateMachine(h.cfg, 2, 11, h.db)
	if err != nil {
		t.Fatal(err)
	}
	refs := []TxnRef{{Primary: []byte("c"), Start: ms(1)}, {Primary: []byte("k"), Start: ms(1)}}
	if res := h.at(ms(50), gcCmd([]string{"c", "k"}, refs...)).(*Result); res.CollectedKeys != 1 || res.CollectedTxns != 1 {
		t.Fatalf("the left collected %d keys and %d records, want c and its record", res.CollectedKeys, res.CollectedTxns)
	}
	rd, _ := right.Descriptor()
	if n := storedKeyCount(t, h.db, &rd); n != 1 {
		t.Fatalf("the right-hand shard stores %d keys, want k", n)
	}
	h.sm, h.shard, h.replica = right, 2, 11
	if res := h.at(ms(60), gcCmd([]string{"c", "k"}, refs...)).(*Result); res.CollectedKeys != 1 || res.CollectedTxns != 1 {
		t.Fatalf("the right collected %d keys and %d records, want k and its record", res.CollectedKeys, res.CollectedTxns)
	}
	if n := storedKeyCount(t, h.db, &rd); n != 0 {
		t.Fatalf("the right-hand shard stores %d keys after its collection", n)
	}
}

// TestGCThenSnapshot: the image of a shard after a collection restores
// to exactly the collected state.
func TestGCThenSnapshot(t *testing.T) {
	h := newHarness(t, Config{HistoryRetention: time.Hour}, testDesc())
	for i := range 20 {
		k := fmt.Sprintf("c%02d", i)
		h.at(ms(uint64(2*i+1)), put(hdr(0, 0), k, "v"))
		if i%2 == 0 {
			h.at(ms(uint64(2*i+2)), del(hdr(0, 0), k))
		}
	}
	h.mustOK(Command{Kind: KindCompact, Revision: ms(30)})
	plan, err := PlanGC(h.db, h.cfg, h.sm.descriptor(), GCCursor{}, ms(100), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Deleted at 2, 6, ..., 26 ms; the one deleted at 30 ms stays.
	if len(plan.Step.Keys) != 7 || !plan.Wrapped {
		t.Fatalf("plan: %d keys (want the 7 deleted below 30 ms), wrapped %v", len(plan.Step.Keys), plan.Wrapped)
	}
	if res := h.at(ms(100), Command{Kind: KindGC, GC: &plan.Step}).(*Result); res.CollectedKeys != 7 {
		t.Fatalf("collected %d", res.CollectedKeys)
	}
	var buf bytes.Buffer
	snap := h.db.NewSnapshot()
	if err := h.sm.Snapshot(snap, &buf); err != nil {
		t.Fatal(err)
	}
	snap.Close()
	db, b, err := restoreInto(t, h.cfg, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	d := testDesc()
	if got, want := shardState(t, db, &d), shardState(t, h.db, &d); got != want {
		t.Fatalf("restored:\n%s\nsource:\n%s", got, want)
	}
	if n := storedKeyCount(t, db, &d); n != 13 {
		t.Fatalf("restored %d stored keys, want 13", n)
	}
}

// TestPlanGCResumes: a plan examines at most its budget, and the next
// resumes after it, until one wraps around; together they propose every
// candidate once.
func TestPlanGCResumes(t *testing.T) {
	h := newHarness(t, Config{HistoryRetention: time.Hour, TxnRecordRetention: time.Millisecond}, testDesc())
	for i := range 10 {
		k := fmt.Sprintf("c%02d", i)
		h.at(ms(uint64(2*i+1)), put(hdr(0, 0), k, "v"))
		h.at(ms(uint64(2*i+2)), del(hdr(0, 0), k))
		h.mustOK(Command{Kind: KindCheckTxn, Step: &TxnStep{Start: ms(uint64(2*i + 1)), Primary: []byte(k), Now: ms(50)}})
	}
	h.mustOK(Command{Kind: KindCompact, Revision: ms(100)})
	var cur GCCursor
	var gotKeys []string
	txns := 0
	for pass := 0; ; pass++ {
		p, err := PlanGC(h.db, h.cfg, h.sm.descriptor(), cur, ms(200), 3)
		if err != nil {
			t.Fatal(err)
		}
		if p.Keys > 3 || p.Txns > 3 {
			t.Fatalf("pass %d examined %d keys and %d records, budget 3", pass, p.Keys, p.Txns)
		}
		for _, k := range p.Step.Keys {
			gotKeys = append(gotKeys, string(k))
		}
		txns += len(p.Step.Txns)
		cur = p.Next
		if cur.Key == nil && cur.Txn == nil {
			break
		}
		if pass > 10 {
			t.Fatal("no end after 10 passes")
		}
	}
	if len(gotKeys) != 10 || txns != 10 {
		t.Fatalf("proposed keys %v and %d records, want each of 10 once", gotKeys, txns)
	}
	// Keys come in order, each once.
	for i, k := range gotKeys {
		if k != fmt.Sprintf("c%02d", i) {
			t.Fatalf("keys %v", gotKeys)
		}
	}
}

// TestCollectGarbageStore runs passes through a Store with a small
// budget: they resume until they wrap around; deleted keys below the
// compaction point disappear from Get, Scan, StoredKeys and MidKey;
// reads at revisions the shard still serves, and a watch from the
// compaction point, see exactly what they saw before.
func TestCollectGarbageStore(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	for _, k := range []string{"c", "d", "e", "f", "g", "h"} {
		putRev(t, ctx, s, k, "1")
	}
	putRev(t, ctx, s, "c", "2")
	delRev(t, ctx, s, "c")
	delRev(t, ctx, s, "e")
	delRev(t, ctx, s, "g")
	compacted := putRev(t, ctx, s, "d", "2")
	delRev(t, ctx, s, "h") // above the compaction point: stays
	last := putRev(t, ctx, s, "f", "2")
	if _, err := s.Compact(ctx, 1, Epoch{}, compacted); err != nil {
		t.Fatal(err)
	}
	type view struct {
		scans  []string
		events string
		keys   int
	}
	look := func() view {
		var v view
		for rev := compacted; rev <= last; rev++ {
			kvs, _, err := s.ScanAt(ctx, 1, Epoch{}, []byte("b"), []byte("m"), 0, rev)
			if err != nil {
				t.Fatal(err)
			}
			v.scans = append(v.scans, fmt.Sprint(kvs))
		}
		w := mustWatch(t, s, 1, Epoch{}, []byte("b"), []byte("m"), compacted, true)
		var sb strings.Builder
		for _, ev := range collectEvents(t, ctx, w, 3) {
			sb.WriteString(describe(ev) + "; ")
		}
		v.events = sb.String()
		var err error
		if v.keys, err = s.StoredKeys(1, 100); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := look()
	if before.keys != 6 {
		t.Fatalf("%d stored keys before, want 6", before.keys)
	}
	collected, passes := 0, 0
	for {
		st, err := s.CollectGarbage(ctx, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		if st.Keys > 2 {
			t.Fatalf("a pass of budget 2 examined %d keys", st.Keys)
		}
		collected += st.CollectedKeys
		passes++
		if st.Wrapped {
			break
		}
	}
	if collected != 3 || passes != 3 {
		t.Fatalf("collected %d keys in %d passes, want c, e, g in 3 (6 keys, 2 a pass)", collected, passes)
	}
	after := look()
	if !reflect.DeepEqual(after.scans, before.scans) || after.events != before.events {
		t.Fatalf("after the collection:\n%v\n%s\nbefore:\n%v\n%s", after.scans, after.events, before.scans, before.events)
	}
	if after.keys != 3 {
		t.Fatalf("%d stored keys after, want d, f and h", after.keys)
	}
	if _, found, err := s.Get(ctx, 1, Epoch{}, []byte("c"), 0); err != nil || found {
		t.Fatalf("c after its collection: %v %v", found, err)
	}
	if mid, err := s.MidKey(1); err != nil || string(mid) != "f" {
		t.Fatalf("MidKey over d, f, h: %q %v", mid, err)
	}
	if _, err := s.CollectGarbage(ctx, 9, 0); !errors.Is(err, ErrShardNotFound) {
		t.Fatalf("a pass over an unknown shard: %v", err)
	}
}

// TestGCRecordRetention: the zero Config collects a record once
// DefaultTxnRecordRetention passed since its start and its decision (the
// commit, at 4 ms), not before; a
// negative retention never collects one, however old, and a retried
// step still finds it.
func TestGCRecordRetention(t *testing.T) {
	day := uint64(24 * time.Hour / time.Millisecond)
	hour := uint64(DefaultTxnRecordRetention / time.Millisecond)
	for _, tc := range []struct {
		name      string
		retention time.Duration
		// at is when the collection is proposed; want the records it
		// collects.
		at   uint64
		want int
	}{
		{"default, just within", 0, 4 + hour, 0},
		{"default, past", 0, 4 + hour + 1, 1},
		{"forever", -1, 30 * day, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{TxnRecordRetention: tc.retention}, testDesc())
			t1 := TxnRef{Primary: []byte("c"), Start: ms(3)}
			h.at(ms(4), Command{Kind: KindPrewrite, Step: &TxnStep{Start: t1.Start, Primary: t1.Primary, TTL: 10, Mutations: []Mutation{putM("c", "v")}}})
			h.mustOK(Command{Kind: KindCommitTxn, Step: &TxnStep{Start: t1.Start, Primary: t1.Primary, Commit: ms(4), Keys: keysOf("c")}})
			if res := h.at(ms(tc.at), gcCmd(nil, t1)).(*Result); res.CollectedTxns != tc.want {
				t.Fatalf("collected %d records at %d ms, want %d", res.CollectedTxns, tc.at, tc.want)
			}
			if tc.want > 0 {
				return
			}
			b := h.db.NewIndexedBatch()
			defer b.Close()
			if st, _, ok := h.sm.txnRecord(b, t1.Primary, t1.Start); !ok || st != TxnCommitted {
				t.Fatalf("the record kept: %v %v", st, ok)
			}
			// A retried commit still finds its outcome.
			if res := h.mustOK(Command{Kind: KindCommitTxn, Step: &TxnStep{Start: t1.Start, Primary: t1.Primary, Commit: ms(4), Keys: keysOf("c")}}); !res.Succeeded {
				t.Fatalf("the retried commit: %+v", res)
			}
		})
	}
}

// TestPruneStopsBelowTheOldestLock: pruning by retention never raises
// the compaction point past the start of a transaction holding a lock
// on the shard; once its lock is gone, pruning passes it.
func TestPruneStopsBelowTheOldestLock(t *testing.T) {
	h := newHarness(t, Config{HistoryRetention: 10 * time.Millisecond}, testDesc())
	h.at(ms(1), put(hdr(0, 0), "k", "0"))
	start := ms(2)
	prewrite := &TxnStep{Start: start, Primary: []byte("c"), TTL: 1000, Mutations: []Mutation{putM("c", "x")}}
	if err, failed := h.at(ms(3), Command{Kind: KindPrewrite, Step: prewrite}).(error); failed {
		t.Fatalf("prewrite: %v", err)
	}
	if len(h.sm.locks) != 1 {
		t.Fatalf("%d locks after the prewrite, want 1", len(h.sm.locks))
	}
	write := func(from, n int) {
		for i := from; i < from+n; i++ {
			h.at(ms(uint64(100+10*i)), put(hdr(0, 0), "k", fmt.Sprint(i)))
		}
	}
	write(1, 2*pruneEvery)
	if h.sm.compactRev == 0 || h.sm.compactRev > start {
		t.Fatalf("with a lock started at %d the compaction point is %d, want in (0, %d]", start, h.sm.compactRev, start)
	}
	h.mustOK(Command{Kind: KindRollbackTxn, Step: &TxnStep{Start: start, Primary: []byte("c"), Keys: keysOf("c")}})
	write(1+2*pruneEvery, 2*pruneEvery)
	if h.sm.compactRev <= start {
		t.Fatalf("after the lock's rollback the compaction point is %d, still at or below its start %d", h.sm.compactRev, start)
	}
}

// TestGCRecordRetainedFromItsDecision: a transaction's lock outlives the
// retention past its start (its shards went without a leader, say), and
// a resolver decides the transaction then. The record it writes must stay
// for the retention from that decision: the transaction's other locks,
// on other shards and as late, are resolved against it (a record
// collected at once left a committed transaction's secondary locked for
// good: engine seed 548 of the simulator). A record written before the
// decision was kept still goes by its start.
func TestGCRecordRetainedFromItsDecision(t *testing.T) {
	h := newHarness(t, Config{TxnRecordRetention: 100 * time.Millisecond}, testDesc())
	late := TxnRef{Primary: []byte("c"), Start: ms(1)}
	h.at(ms(2), Command{Kind: KindPrewrite, Step: &TxnStep{Start: late.Start, Primary: late.Primary, TTL: 10, Mutations: []Mutation{putM("c", "v")}}})
	// Decided at 300 ms, far past the retention from its start.
	res := h.mustOK(Command{Kind: KindCheckTxn, Step: &TxnStep{Start: late.Start, Primary: late.Primary, Now: ms(300)}})
	if res.Status != TxnRolledBack {
		t.Fatalf("check of an expired transaction: %v", res.Status)
	}
	// A record written without its decision's time, as before it was
	// kept: status and commit revision only.
	old := TxnRef{Primary: []byte("d"), Start: ms(5)}
	b := h.db.NewBatch()
	mustWrite(b.Set(txnRecordKey(h.sm.shard, old.Primary, old.Start), binary.AppendUvarint([]byte{byte(TxnCommitted)}, ms(6)), nil))
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	kept := func(ref TxnRef) bool {
		b := h.db.NewIndexedBatch()
		defer b.Close()
		_, _, ok := h.sm.txnRecord(b, ref.Primary, ref.Start)
		return ok
	}
	if res := h.at(ms(350), gcCmd(nil, late, old)).(*Result); res.CollectedTxns != 1 || !kept(late) || kept(old) {
		t.Fatalf("at 350 ms: collected %d records, the late decision's kept %v, the old record's %v; want 1, the late one kept",
			res.CollectedTxns, kept(late), kept(old))
	}
	if err, _ := h.apply(Command{Kind: KindCheckTxn, Step: &TxnStep{Start: late.Start, Primary: late.Primary, Now: ms(360)}}).(error); err != nil {
		t.Fatalf("a resolver's check after the decision: %v", err)
	}
	if res := h.at(ms(401), gcCmd(nil, late)).(*Result); res.CollectedTxns != 1 || kept(late) {
		t.Fatalf("at 401 ms, past the retention from the decision: collected %d", res.CollectedTxns)
	}
}
