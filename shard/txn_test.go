package shard

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func sampleTxn() *Txn {
	return &Txn{
		Compares: []Compare{
			{Key: []byte("c"), Target: CompareValue, Op: CompareEqual, Value: []byte("1")},
			{Key: []byte("c"), End: []byte("e"), Ranged: true, Target: CompareMod, Op: CompareLess, Number: 1 << 50},
			{Key: []byte("d"), End: []byte("m"), Ranged: true, Target: CompareVersion, Op: CompareGreater},
		},
		Then: []TxnOp{
			{Kind: TxnPut, Key: []byte("c"), Value: []byte("2"), PrevKV: true},
			{Kind: TxnPut, Key: []byte("f"), Value: []byte{}, Lease: 7, LeaseUntil: 1 << 40},
			{Kind: TxnRange, Key: []byte("c"), End: []byte("g"), Ranged: true},
			{Kind: TxnDelete, Key: []byte("d"), End: []byte("e"), Ranged: true, PrevKV: true},
		},
		Else: []TxnOp{
			{Kind: TxnRange, Key: []byte("c")},
			{Kind: TxnNested, Txn: &Txn{
				Compares: []Compare{{Key: []byte("e"), Target: CompareLease, Op: CompareNotEqual, Number: 3}},
				Then:     []TxnOp{{Kind: TxnDelete, Key: []byte("e")}},
			}},
		},
	}
}

func TestTxnCommandRoundTrip(t *testing.T) {
	c := Command{Kind: KindTxn, Header: Header{ClientID: 3, Seq: 4}, Revision: 99, Txn: sampleTxn()}
	var got Command
	if err := DecodeCommand(c.AppendEncoded(nil), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalizeTxn(got.Txn), normalizeTxn(c.Txn)) || got.Revision != 99 || got.Header != c.Header {
		t.Fatalf("decoded %+v\nwant %+v", got.Txn, c.Txn)
	}
	if err := c.checkLimits(&Config{MaxBatchOps: 100, MaxKeyBytes: 100, MaxValueBytes: 100}); err != nil {
		t.Fatal(err)
	}
	// Every truncation fails to decode, and never panics.
	enc := c.AppendEncoded(nil)
	for n := range len(enc) {
		if err := DecodeCommand(enc[:n], &got); !errors.Is(err, ErrBadCommand) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
}

// normalizeTxn maps empty slices to nil, so decoded and built
// transactions compare equal.
func normalizeTxn(t *Txn) *Txn {
	if t == nil {
		return nil
	}
	nz := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	out := &Txn{}
	for _, c := range t.Compares {
		c.Key, c.End, c.Value = nz(c.Key), nz(c.End), nz(c.Value)
		out.Compares = append(out.Compares, c)
	}
	for _, branch := range []*[]TxnOp{&t.Then, &t.Else} {
		var ops []TxnOp
		for _, op := range *branch {
			op.Key, op.End, op.Value = nz(op.Key), nz(op.End), nz(op.Value)
			op.Txn = normalizeTxn(op.Txn)
			ops = append(ops, op)
		}
		if branch == &t.Then {
			out.Then = ops
		} else {
			out.Else = ops
		}
	}
	return out
}

func txnCmd(t *Txn) Command { return Command{Kind: KindTxn, Txn: t} }

// kvsString prints the keys and values of kvs.
func kvsString(kvs []KeyValue) string {
	var b strings.Builder
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%s=%s ", kv.Key, kv.Value)
	}
	return strings.TrimSpace(b.String())
}

func TestApplyTxn(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	h.mustOK(put(hdr(0, 0), "c", "1"))
	created := h.rev
	h.mustOK(put(hdr(0, 0), "d", "x"))
	h.mustOK(put(hdr(0, 0), "d2", "y"))

	// Every compare holds: Then runs, and its range sees its own put.
	res := h.mustOK(txnCmd(sampleTxn()))
	if !res.Succeeded || res.Txn == nil || !res.Txn.Succeeded || len(res.Txn.Ops) != 4 {
		t.Fatalf("result %+v", res)
	}
	ops := res.Txn.Ops
	if got := kvsString(ops[0].KVs); got != "c=1" {
		t.Errorf("put's prev kv %q, want c=1", got)
	}
	if got := kvsString(ops[2].KVs); got != "c=2 d=x d2=y f=" {
		t.Errorf("range %q", got)
	}
	if ops[2].KVs[0].CreateRevision != created || ops[2].KVs[0].ModRevision != h.rev || ops[2].KVs[0].Version != 2 {
		t.Errorf("c read as %+v, want created at %d, modified at %d, version 2", ops[2].KVs[0], created, h.rev)
	}
	if ops[3].Deleted != 2 || kvsString(ops[3].KVs) != "d=x d2=y" {
		t.Errorf("delete: %d deleted, prev %q", ops[3].Deleted, kvsString(ops[3].KVs))
	}
	for k, want := range map[string]string{"c": "2", "f": "", "d": "", "d2": ""} {
		v, ok := h.get(k)
		if ok != (k == "c" || k == "f") || v != want {
			t.Errorf("%s = %q, %v after the txn", k, v, ok)
		}
	}

	// The value compare fails now: Else runs, nested txn included.
	h.mustOK(put(hdr(0, 0), "e", "z"))
	before := h.rev
	res = h.mustOK(txnCmd(sampleTxn()))
	if res.Succeeded || res.Txn.Succeeded || len(res.Txn.Ops) != 2 {
		t.Fatalf("result %+v", res.Txn)
	}
	if got := kvsString(res.Txn.Ops[0].KVs); got != "c=2" {
		t.Errorf("else range %q", got)
	}
	if n := res.Txn.Ops[1].Txn; n == nil || !n.Succeeded || n.Ops[0].Deleted != 1 {
		t.Errorf("nested result %+v", n)
	}
	if _, ok := h.get("e"); ok {
		t.Error("nested delete did not delete e")
	}
	if res.Revision != before+1 || h.sm.lastRev != res.Revision {
		t.Errorf("txn at %d, shard at %d, want %d", res.Revision, h.sm.lastRev, before+1)
	}
}

func TestApplyTxnCompares(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	h.mustOK(put(hdr(0, 0), "c", "m"))
	h.mustOK(put(hdr(0, 0), "c", "n"))
	mod := h.rev
	cases := []struct {
		cmp  Compare
		want bool
	}{
		{Compare{Key: []byte("c"), Target: CompareValue, Op: CompareEqual, Value: []byte("n")}, true},
		{Compare{Key: []byte("c"), Target: CompareValue, Op: CompareLess, Value: []byte("o")}, true},
		{Compare{Key: []byte("c"), Target: CompareValue, Op: CompareGreater, Value: []byte("o")}, false},
		{Compare{Key: []byte("c"), Target: CompareVersion, Op: CompareEqual, Number: 2}, true},
		{Compare{Key: []byte("c"), Target: CompareMod, Op: CompareEqual, Number: mod}, true},
		{Compare{Key: []byte("c"), Target: CompareCreate, Op: CompareLess, Number: mod}, true},
		{Compare{Key: []byte("c"), Target: CompareLease, Op: CompareEqual}, true},
		// An absent key: version and revisions 0, and no value compare holds.
		{Compare{Key: []byte("k"), Target: CompareCreate, Op: CompareEqual}, true},
		{Compare{Key: []byte("k"), Target: CompareVersion, Op: CompareGreater}, false},
		{Compare{Key: []byte("k"), Target: CompareValue, Op: CompareNotEqual, Value: []byte("a")}, false},
		// A range: every key must satisfy it.
		{Compare{Key: []byte("b"), End: []byte("d"), Ranged: true, Target: CompareVersion, Op: CompareEqual, Number: 2}, true},
		{Compare{Key: []byte("b"), End: []byte("m"), Ranged: true, Target: CompareVersion, Op: CompareGreater, Number: 2}, false},
	}
	for i, tc := range cases {
		res := h.mustOK(txnCmd(&Txn{Compares: []Compare{tc.cmp}}))
		if res.Succeeded != tc.want {
			t.Errorf("case %d (%+v): succeeded %v, want %v", i, tc.cmp, res.Succeeded, tc.want)
		}
	}
}

func TestApplyTxnRefusals(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	cases := []struct {
		name string
		txn  *Txn
		want error
	}{
		{"put twice", &Txn{Then: []TxnOp{{Kind: TxnPut, Key: []byte("c")}, {Kind: TxnPut, Key: []byte("c")}}}, ErrBadCommand},
		{"put in a deleted range", &Txn{Else: []TxnOp{{Kind: TxnDelete, Key: []byte("c"), End: []byte("f"), Ranged: true}, {Kind: TxnPut, Key: []byte("d")}}}, ErrBadCommand},
		{"nested put of a key put around it", &Txn{Then: []TxnOp{{Kind: TxnPut, Key: []byte("c")}, {Kind: TxnNested, Txn: &Txn{Else: []TxnOp{{Kind: TxnPut, Key: []byte("c")}}}}}}, ErrBadCommand},
		{"key outside the shard", &Txn{Then: []TxnOp{{Kind: TxnRange, Key: []byte("z")}}}, ErrKeyNotInShard},
		{"range past the shard", &Txn{Compares: []Compare{{Key: []byte("c"), Ranged: true, Target: CompareVersion, Op: CompareEqual}}}, ErrKeyNotInShard},
		{"lease promise passed", &Txn{Else: []TxnOp{{Kind: TxnPut, Key: []byte("c"), Lease: 5, LeaseUntil: 1}}}, ErrLeasePromise},
		{"unknown compare", &Txn{Compares: []Compare{{Key: []byte("c")}}}, ErrBadCommand},
	}
	for _, tc := range cases {
		before := userData(t, h.db)
		h.rev = max(h.rev, 10)
		err, _ := h.apply(txnCmd(tc.txn)).(error)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if userData(t, h.db) != before {
			t.Errorf("%s: a refused txn wrote", tc.name)
		}
	}
	// Deletes may overlap, and a nested branch may put what its sibling
	// branch puts: only one of them runs.
	ok := &Txn{Then: []TxnOp{
		{Kind: TxnDelete, Key: []byte("c"), End: []byte("f"), Ranged: true},
		{Kind: TxnDelete, Key: []byte("d")},
		{Kind: TxnNested, Txn: &Txn{Then: []TxnOp{{Kind: TxnPut, Key: []byte("k")}}, Else: []TxnOp{{Kind: TxnPut, Key: []byte("k")}}}},
	}}
	h.mustOK(txnCmd(ok))
}

// TestApplyTxnExactlyOnce: a retried txn (same client and sequence) gets
// the first outcome, reads included, and writes nothing more.
func TestApplyTxnExactlyOnce(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	h.mustOK(put(hdr(0, 0), "c", "1"))
	cmd := txnCmd(&Txn{
		Compares: []Compare{{Key: []byte("c"), Target: CompareValue, Op: CompareEqual, Value: []byte("1")}},
		Then:     []TxnOp{{Kind: TxnPut, Key: []byte("c"), Value: []byte("2"), PrevKV: true}, {Kind: TxnRange, Key: []byte("b"), End: []byte("m"), Ranged: true}},
	})
	cmd.Header = hdr(9, 1)
	first := h.mustOK(cmd)
	data := userData(t, h.db)
	again := h.mustOK(cmd)
	if !reflect.DeepEqual(first, again) {
		t.Fatalf("retry got %+v\nfirst %+v", again.Txn, first.Txn)
	}
	if userData(t, h.db) != data {
		t.Fatal("the retry wrote")
	}
	if !first.Succeeded || kvsString(first.Txn.Ops[1].KVs) != "c=2" {
		t.Fatalf("first %+v", first.Txn)
	}
}
