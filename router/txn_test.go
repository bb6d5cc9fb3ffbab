package router

import (
	"errors"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestTransact runs compare-then-else transactions on a real fleet: both
// branches, reads of their own writes, exactly what a retry cannot
// change, refusal across shards, and a transaction whose keys a split
// separates.
func TestTransact(t *testing.T) {
	c := newOracleCluster(t, 3, 2)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	a, b := c.keyIn(1, "a"), c.keyIn(1, "b")
	if err := r.Put(ctx, a, []byte("1")); err != nil {
		t.Fatal(err)
	}
	created, err := r.GetAt(ctx, a, 0)
	if err != nil {
		t.Fatal(err)
	}
	casA := func(want, to string) CompareTxn {
		return CompareTxn{
			If:   []Compare{{Key: a, Target: CompareValue, Op: CompareEqual, Value: []byte(want)}},
			Then: []TxnOp{{Kind: TxnPut, Key: a, Value: []byte(to), PrevKV: true}, {Kind: TxnPut, Key: b, Value: []byte(to)}, {Kind: TxnGet, Key: a, End: c.keyIn(1, "c"), Range: true}},
			Else: []TxnOp{{Kind: TxnGet, Key: a}},
		}
	}
	res, err := r.Transact(ctx, casA("1", "2"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Succeeded || len(res.Ops) != 3 || string(res.Ops[0].KVs[0].Value) != "1" || len(res.Ops[2].KVs) != 2 {
		t.Fatalf("then: %+v", res)
	}
	for _, kv := range res.Ops[2].KVs {
		if string(kv.Value) != "2" || kv.ModRevision != res.Revision {
			t.Fatalf("range read %+v, want value 2 at %d", kv, res.Revision)
		}
	}
	if got := res.Ops[2].KVs[0]; got.CreateRevision != created.KV.CreateRevision || got.Version != 2 {
		t.Fatalf("a read as %+v, created at %d", got, created.KV.CreateRevision)
	}
	res, err = r.Transact(ctx, casA("1", "3"))
	if err != nil || res.Succeeded || len(res.Ops) != 1 || string(res.Ops[0].KVs[0].Value) != "2" {
		t.Fatalf("else: %+v %v", res, err)
	}
	// A mod-revision compare, as Kubernetes guards its updates.
	res, err = r.Transact(ctx, CompareTxn{
		If:   []Compare{{Key: a, Target: CompareModRevision, Op: CompareEqual, Number: res.Ops[0].KVs[0].ModRevision}},
		Then: []TxnOp{{Kind: TxnDelete, Key: a, End: c.keyIn(1, "c"), Range: true, PrevKV: true}},
	})
	if err != nil || !res.Succeeded || res.Ops[0].Deleted != 2 || len(res.Ops[0].KVs) != 2 {
		t.Fatalf("delete range: %+v %v", res, err)
	}
	if _, found, err := r.Get(ctx, b); err != nil || found {
		t.Fatalf("b after the delete: %v %v", found, err)
	}

	// Across shards: a transaction across shards, at one revision. Its
	// compares hold at its start; a failed one takes Else.
	x1, x2 := c.keyIn(1, "x"), c.keyIn(2, "x")
	res, err = r.Transact(ctx, CompareTxn{
		If:   []Compare{{Key: x2, Target: CompareVersion, Op: CompareEqual, Number: 0}},
		Then: []TxnOp{{Kind: TxnPut, Key: x1, Value: []byte("v")}, {Kind: TxnPut, Key: x2, Value: []byte("v")}, {Kind: TxnGet, Key: x1, End: c.keyIn(2, "y"), Range: true}},
	})
	if err != nil || !res.Succeeded || len(res.Ops[2].KVs) != 2 || res.Ops[2].KVs[1].ModRevision != res.Revision {
		t.Fatalf("cross-shard txn: %+v %v", res, err)
	}
	for _, k := range [][]byte{x1, x2} {
		if got, err := r.GetAt(ctx, k, res.Revision); err != nil || string(got.KV.Value) != "v" || got.KV.ModRevision != res.Revision {
			t.Fatalf("%q after the cross-shard txn: %+v %v", k, got.KV, err)
		}
	}
	res, err = r.Transact(ctx, CompareTxn{
		If:   []Compare{{Key: x2, Target: CompareVersion, Op: CompareEqual, Number: 0}},
		Then: []TxnOp{{Kind: TxnDelete, Key: x1}},
		Else: []TxnOp{{Kind: TxnDelete, Key: x1, End: c.keyIn(2, "y"), Range: true, PrevKV: true}},
	})
	if err != nil || res.Succeeded || res.Ops[0].Deleted != 2 {
		t.Fatalf("cross-shard txn taking else: %+v %v", res, err)
	}
	if _, found, err := r.Get(ctx, x2); err != nil || found {
		t.Fatalf("%q after the else branch deleted it: %v %v", x2, found, err)
	}
	_, err = r.Transact(ctx, CompareTxn{Then: []TxnOp{{Kind: TxnPut, Key: x1, Value: []byte("v"), Lease: 7}, {Kind: TxnPut, Key: x2, Value: []byte("v")}}})
	if !errors.Is(err, ErrCrossShardTxn) && !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("a leased put across shards: %v", err)
	}

	// A split between two keys the router still routes together: the
	// shard refuses the stale epoch, the router learns the split, and the
	// transaction runs across the two shards.
	p, q := c.keyIn(1, "p"), c.keyIn(1, "q")
	if _, err := r.Transact(ctx, CompareTxn{Then: []TxnOp{{Kind: TxnPut, Key: p, Value: []byte("1")}, {Kind: TxnPut, Key: q, Value: []byte("1")}}}); err != nil {
		t.Fatal(err)
	}
	c.split(1, q, 9)
	res, err = r.Transact(ctx, CompareTxn{Then: []TxnOp{{Kind: TxnPut, Key: p, Value: []byte("2")}, {Kind: TxnPut, Key: q, Value: []byte("2")}}})
	if err != nil {
		t.Fatalf("txn across a split: %v", err)
	}
	for _, k := range [][]byte{p, q} {
		if got, err := r.GetAt(ctx, k, res.Revision); err != nil || string(got.KV.Value) != "2" || got.KV.ModRevision != res.Revision {
			t.Fatalf("%q = %+v %v after a txn across the split", k, got.KV, err)
		}
	}
}

// TestDeleteRange deletes a range across shards and returns what it
// deleted; the system span is left alone.
func TestDeleteRange(t *testing.T) {
	c := newCluster(t, 3, 3)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	var want []string
	for i := 1; i <= 3; i++ {
		for _, s := range []string{"a", "b"} {
			k := c.keyIn(i, s)
			if err := r.Put(ctx, k, []byte("v")); err != nil {
				t.Fatal(err)
			}
			want = append(want, string(k))
		}
	}
	// From shard 1's "b" to shard 3's "b" (excluded).
	res, err := r.DeleteRange(ctx, c.keyIn(1, "b"), c.keyIn(3, "b"), true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range res.PrevKVs {
		got = append(got, string(kv.Key))
	}
	if res.Deleted != 4 || len(got) != 4 || got[0] != want[1] || got[3] != want[4] || res.Revision == 0 {
		t.Fatalf("deleted %d %q at %d; want %q", res.Deleted, got, res.Revision, want[1:5])
	}
	kvs, err := r.Scan(ctx, nil, nil, 0)
	if err != nil || len(kvs) != 2 || string(kvs[0].Key) != want[0] || string(kvs[1].Key) != want[5] {
		t.Fatalf("left %v %v", kvs, err)
	}
	// Everything, without the previous values.
	res, err = r.DeleteRange(ctx, nil, nil, false)
	if err != nil || res.Deleted != 2 || res.PrevKVs != nil {
		t.Fatalf("delete all: %+v %v", res, err)
	}
}

// TestScanAtLatestAcrossShards: a snapshot read of the latest state across
// shards sees every write acknowledged before it, although the first
// shard it reads last wrote long before (its own resolved revision is
// older than the other shard's write).
func TestScanAtLatestAcrossShards(t *testing.T) {
	c := newCluster(t, 3, 2)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	k1, k2 := c.keyIn(1, "k"), c.keyIn(2, "k")
	if err := r.Put(ctx, k1, []byte("1")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		w, err := r.PutRev(ctx, k2, []byte{byte('a' + i)})
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.ScanAt(ctx, nil, nil, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.KVs) != 2 || res.KVs[1].ModRevision != w.Revision || res.Revision < w.Revision {
			t.Fatalf("scan at %d after a write at %d: %+v", res.Revision, w.Revision, res.KVs)
		}
		now, err := r.Now(ctx)
		if err != nil || now <= w.Revision {
			t.Fatalf("now %d %v after a write at %d", now, err, w.Revision)
		}
	}
}

// TestWatchMultiKeyWrite: every event of a write of several keys is
// delivered, live and replayed from history (the events share the
// write's revision).
func TestWatchMultiKeyWrite(t *testing.T) {
	c := newCluster(t, 3, 1)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	live := r.Watch(ctx, []byte("m/"), []byte("m0"))
	ops := []Op{{Key: []byte("m/1"), Value: []byte("a")}, {Key: []byte("m/2"), Value: []byte("b")}, {Key: []byte("m/3"), Value: []byte("c")}}
	w, err := r.BatchRev(ctx, ops)
	if err != nil {
		t.Fatal(err)
	}
	collect := func(ch <-chan WatchResponse, n int) []Event {
		t.Helper()
		var evs []Event
		for len(evs) < n {
			select {
			case resp, ok := <-ch:
				if !ok || resp.Err != nil {
					t.Fatalf("watch ended: %v", resp.Err)
				}
				evs = append(evs, resp.Events...)
			case <-ctx.Done():
				t.Fatalf("%d events of %d", len(evs), n)
			}
		}
		return evs
	}
	for name, ch := range map[string]<-chan WatchResponse{"live": live, "replayed": r.Watch(ctx, []byte("m/"), []byte("m0"), WithStartRevision(w.Revision))} {
		evs := collect(ch, len(ops))
		for i, ev := range evs {
			if string(ev.KV.Key) != string(ops[i].Key) || ev.Revision() != w.Revision {
				t.Fatalf("%s: event %d: %q at %d; want %q at %d", name, i, ev.KV.Key, ev.Revision(), ops[i].Key, w.Revision)
			}
		}
	}
}
