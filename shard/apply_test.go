package shard

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

func TestApplyWrites(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	h.mustOK(put(hdr(0, 0), "c", "1"))
	h.mustOK(put(hdr(0, 0), "d", "2"))
	h.mustOK(put(Header{Epoch: Epoch{ConfVer: 99, Version: 2}}, "e", "3")) // ConfVer is not compared
	h.mustOK(del(hdr(0, 0), "d"))
	h.mustOK(del(hdr(0, 0), "gone"))
	h.mustOK(Command{Kind: KindBatch, Ops: []Op{
		{Key: []byte("f"), Value: []byte("4")},
		{Key: []byte("c"), Delete: true},
		{Key: []byte("f"), Value: []byte("5")}, // later ops win
		{Key: []byte("b"), Value: []byte{}},    // empty value, first key of the range
	}})
	want := map[string]string{"b": "", "e": "3", "f": "5"}
	for _, k := range []string{"b", "c", "d", "e", "f"} {
		v, ok := h.get(k)
		if w, wok := want[k]; ok != wok || v != w {
			t.Errorf("%s = %q, %v; want %q, %v", k, v, ok, w, wok)
		}
	}
}

func TestApplyCompareAndSwap(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	tests := []struct {
		name     string
		cmd      Command
		want     Result
		wantVal  string
		wantGone bool
	}{
		{"absent-expected-absent", cas(hdr(0, 0), "k", nil, "v1"), Result{Succeeded: true}, "v1", false},
		{"absent-expected-but-present", cas(hdr(0, 0), "k", nil, "v2"), Result{Found: true, Value: []byte("v1")}, "v1", false},
		{"match", cas(hdr(0, 0), "k", strp("v1"), "v2"), Result{Succeeded: true}, "v2", false},
		{"mismatch", cas(hdr(0, 0), "k", strp("v1"), "v3"), Result{Found: true, Value: []byte("v2")}, "v2", false},
		{"empty-expected-is-not-absent", cas(hdr(0, 0), "j", strp(""), "x"), Result{}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := userData(t, h.db)
			got := h.mustOK(tc.cmd)
			if got.Succeeded != tc.want.Succeeded || got.Found != tc.want.Found || !bytes.Equal(got.Value, tc.want.Value) {
				t.Fatalf("result %+v, want %+v", got, tc.want)
			}
			v, ok := h.get(string(tc.cmd.Key))
			if ok == tc.wantGone || v != tc.wantVal {
				t.Fatalf("value %q, %v; want %q", v, ok, tc.wantVal)
			}
			if !got.Succeeded && userData(t, h.db) != before {
				t.Fatal("a failed CAS without a client ID wrote a version")
			}
			if got.Revision != h.rev || h.sm.lastRev != h.rev {
				t.Fatalf("result at revision %d, shard at %d; want both at %d", got.Revision, h.sm.lastRev, h.rev)
			}
		})
	}
}

// TestApplyCASSeesSameBatch applies two commands into one uncommitted batch:
// the second must read what the first wrote.
func TestApplyCASSeesSameBatch(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	b := h.db.NewIndexedBatch()
	defer b.Close()
	p := put(hdr(0, 0), "k", "in-batch")
	p.Revision = 1
	h.sm.Apply(h.ac(b), multiraft.Entry{Index: 11, Cmd: p.AppendEncoded(nil)})
	c := cas(hdr(0, 0), "k", strp("in-batch"), "swapped")
	c.Revision = 2
	res := h.sm.Apply(h.ac(b), multiraft.Entry{Index: 12, Cmd: c.AppendEncoded(nil)})
	if r, ok := res.(*Result); !ok || !r.Succeeded {
		t.Fatalf("CAS after a put in the same batch: %v", res)
	}
	if v, _ := get(t, b, "k"); v != "swapped" {
		t.Fatalf("k = %q", v)
	}
	h.sm.FinishApply(h.ac(b))
}

// TestApplyMetaReadSeesSameBatch checks that a meta read that misses the
// state machine's cache sees the metas written earlier in the same batch,
// after the round's meta iterator was made: the iterator is made at the
// first miss (k's put) and must be refreshed to see j's meta.
func TestApplyMetaReadSeesSameBatch(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	b := h.db.NewIndexedBatch()
	defer b.Close()
	ac := h.ac(b)
	for i, k := range []string{"k", "j"} {
		p := put(hdr(0, 0), k, "v")
		p.Revision = uint64(i + 1)
		if r, ok := h.sm.Apply(ac, multiraft.Entry{Index: uint64(11 + i), Cmd: p.AppendEncoded(nil)}).(*Result); !ok || !r.Succeeded {
			t.Fatalf("put %s: %v", k, r)
		}
	}
	if h.sm.metaIt == nil {
		t.Fatal("the first put's meta read made no iterator")
	}
	clear(h.sm.metas) // as if other keys had pushed j's meta out
	c := cas(hdr(0, 0), "j", strp("v"), "swapped")
	c.Revision = 3
	if r, ok := h.sm.Apply(ac, multiraft.Entry{Index: 13, Cmd: c.AppendEncoded(nil)}).(*Result); !ok || !r.Succeeded {
		t.Fatalf("CAS of a key put earlier in the batch, its meta not cached: %v", r)
	}
	h.sm.FinishApply(ac)
	if h.sm.metaIt != nil {
		t.Fatal("FinishApply left the meta iterator open")
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	kv, found, err := ReadAt(h.db, []byte("j"), 3)
	if err != nil || !found || string(kv.Value) != "swapped" || kv.Version != 2 || kv.CreateRevision != 2 {
		t.Fatalf("j at 3 = %+v, found %v, %v; want swapped, version 2, created at 2", kv, found, err)
	}
}

// TestApplyRefusals checks every refusal returns its error and writes
// nothing at all.
func TestApplyRefusals(t *testing.T) {
	big := strings.Repeat("x", 65)
	cfg := Config{MaxKeyBytes: 64, MaxValueBytes: 64, MaxBatchOps: 2}
	good := func(k string) Op { return Op{Key: []byte(k), Value: []byte("v")} }
	tests := []struct {
		name string
		raw  []byte
		cmd  Command
		want error
	}{
		{"garbage", []byte{1, 99, 0, 0, 0, 0}, Command{}, ErrBadCommand},
		{"bad-format", []byte{7}, Command{}, ErrBadCommand},
		{"trailing", append(encode(put(hdr(0, 0), "c", "v")), 0), Command{}, ErrBadCommand},
		{"below-range", nil, put(hdr(0, 0), "a", "v"), ErrKeyNotInShard},
		{"at-end", nil, put(hdr(0, 0), "m", "v"), ErrKeyNotInShard},
		{"delete-out-of-range", nil, del(hdr(0, 0), "z"), ErrKeyNotInShard},
		{"cas-out-of-range", nil, cas(hdr(0, 0), "z", nil, "v"), ErrKeyNotInShard},
		{"old-version", nil, put(Header{Epoch: Epoch{ConfVer: 3, Version: 1}}, "c", "v"), ErrEpochNotMatch},
		{"empty-key", nil, put(hdr(0, 0), "", "v"), ErrEmptyKey},
		{"key-too-large", nil, put(hdr(0, 0), "c"+big, "v"), ErrKeyTooLarge},
		{"value-too-large", nil, put(hdr(0, 0), "c", big), ErrValueTooLarge},
		{"cas-expected-too-large", nil, cas(hdr(0, 0), "c", strp(big), "v"), ErrValueTooLarge},
		{"batch-empty", nil, Command{Kind: KindBatch}, ErrBatchTooLarge},
		{"batch-too-many", nil, Command{Kind: KindBatch, Ops: []Op{good("c"), good("d"), good("e")}}, ErrBatchTooLarge},
		{"batch-one-out-of-range", nil, Command{Kind: KindBatch, Ops: []Op{good("c"), good("z")}}, ErrKeyNotInShard},
		{"batch-one-too-large", nil, Command{Kind: KindBatch, Ops: []Op{good("c"), {Key: []byte("d"), Value: []byte(big)}}}, ErrValueTooLarge},
		{"batch-wrong-epoch", nil, Command{Kind: KindBatch, Header: Header{Epoch: Epoch{Version: 3}}, Ops: []Op{good("c")}}, ErrEpochNotMatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, cfg, testDesc())
			h.mustOK(put(hdr(9, 1), "c", "before")) // a client record exists too
			before := dump(t, h.db)
			raw := tc.raw
			if raw == nil {
				raw = tc.cmd.AppendEncoded(nil)
			}
			res := h.applyRaw(raw)
			err, ok := res.(error)
			if !ok || !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", res, tc.want)
			}
			if after := dump(t, h.db); after != before {
				t.Fatalf("refused command wrote:\nbefore:\n%safter:\n%s", before, after)
			}
		})
	}
}

func TestApplyEpochNotMatchCarriesDescriptor(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	res := h.apply(put(Header{Epoch: Epoch{ConfVer: 3, Version: 7}}, "c", "v"))
	var enm *EpochNotMatchError
	if err, _ := res.(error); !errors.As(err, &enm) {
		t.Fatalf("got %v", res)
	}
	d := testDesc()
	if !enm.Current.Equal(&d) || enm.Requested.Version != 7 {
		t.Fatalf("error carries %s requested %s", &enm.Current, enm.Requested)
	}
}

func TestApplyEmptyEntryIsNoop(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	before := dump(t, h.db)
	if res := h.applyRaw(nil); res != nil {
		t.Fatalf("empty entry returned %v", res)
	}
	if dump(t, h.db) != before {
		t.Fatal("empty entry wrote")
	}
}

func TestApplyUninitialisedPanics(t *testing.T) {
	sm, err := NewStateMachine(Config{}, 1, 1, newDB(t))
	if err != nil {
		t.Fatal(err)
	}
	if sm.Initialized() {
		t.Fatal("state machine without descriptor is initialised")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("apply on an uninitialised shard did not panic")
		}
	}()
	c := put(hdr(0, 0), "c", "v")
	sm.Apply(&multiraft.ApplyContext{}, multiraft.Entry{Index: 1, Cmd: c.AppendEncoded(nil)})
}

func TestApplyMembership(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	apply := func(m multiraft.Membership) {
		b := h.db.NewIndexedBatch()
		defer b.Close()
		h.sm.ApplyMembership(h.ac(b), 20, m)
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	td := testDesc()
	same := td.Membership()
	same.Joint = true
	apply(same)
	if d, _ := h.sm.Descriptor(); d.Epoch.ConfVer != 3 {
		t.Fatalf("unchanged replicas bumped ConfVer to %d", d.Epoch.ConfVer)
	}
	// Out of order on purpose: the descriptor keeps replicas sorted.
	m := multiraft.Membership{Replicas: []multiraft.Replica{{ReplicaID: 4, NodeID: 4}, {ReplicaID: 1, NodeID: 1}, {ReplicaID: 2, NodeID: 2}}}
	apply(m)
	d, _ := h.sm.Descriptor()
	if d.Epoch != (Epoch{ConfVer: 4, Version: 2}) || len(d.Replicas) != 3 || d.Replicas[2].ReplicaID != 4 {
		t.Fatalf("after membership change: %s", &d)
	}
	h.reload()
	if d2, _ := h.sm.Descriptor(); !d2.Equal(&d) {
		t.Fatalf("stored descriptor %s, in memory %s", &d2, &d)
	}

	// An uninitialised replica ignores memberships.
	sm, err := NewStateMachine(Config{}, 5, 1, h.db)
	if err != nil {
		t.Fatal(err)
	}
	b := h.db.NewIndexedBatch()
	defer b.Close()
	sm.ApplyMembership(h.ac(b), 1, m)
	if !b.Empty() || sm.Initialized() {
		t.Fatal("uninitialised state machine took a membership")
	}
}

func splitCmd(h Header, key string, newShard ShardID, pairs ...SplitReplica) Command {
	return Command{Kind: KindSplit, Header: h, Key: []byte(key), NewShard: newShard, NewReplicas: pairs}
}

var mapping = []SplitReplica{{Old: 1, New: 11}, {Old: 2, New: 12}, {Old: 3, New: 13}}

func TestApplySplit(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	h.mustOK(put(hdr(0, 0), "c", "left"))
	h.mustOK(put(hdr(0, 0), "h", "right"))
	h.mustOK(put(hdr(7, 1), "d", "client 7")) // a client record to carry over
	res := h.mustOK(splitCmd(Header{ClientID: 8, Seq: 1, Epoch: testDesc().Epoch}, "g", 2, mapping[2], mapping[0], mapping[1]))

	wantLeft := testDesc()
	wantLeft.End, wantLeft.Epoch.Version = []byte("g"), 3
	wantRight := Descriptor{ShardID: 2, Start: []byte("g"), End: []byte("m"), Epoch: wantLeft.Epoch,
		Replicas: []multiraft.Replica{{ReplicaID: 11, NodeID: 1}, {ReplicaID: 12, NodeID: 2}, {ReplicaID: 13, NodeID: 3, Learner: true}}}
	if !res.Left.Equal(&wantLeft) || !res.Right.Equal(&wantRight) {
		t.Fatalf("split result %s | %s", res.Left, res.Right)
	}
	if d, _ := h.sm.Descriptor(); !d.Equal(&wantLeft) {
		t.Fatalf("in-memory descriptor %s", &d)
	}
	if len(h.creates) != 1 || h.creates[0].group != 2 || h.creates[0].replica != 11 ||
		!equalReplicas(h.creates[0].members.Replicas, wantRight.Replicas) {
		t.Fatalf("CreateGroup calls %+v", h.creates)
	}
	// The left side now refuses the right side's keys, and old epochs.
	if err, _ := h.apply(put(hdr(0, 0), "h", "x")).(error); !errors.Is(err, ErrKeyNotInShard) {
		t.Fatalf("put to the right half on the left: %v", err)
	}
	if err, _ := h.apply(put(Header{Epoch: testDesc().Epoch}, "c", "x")).(error); !errors.Is(err, ErrEpochNotMatch) {
		t.Fatalf("put with the pre-split epoch: %v", err)
	}
	// A retry of the split returns its first result.
	again := h.mustOK(splitCmd(Header{ClientID: 8, Seq: 1, Epoch: testDesc().Epoch}, "g", 2, mapping...))
	if !again.Left.Equal(&wantLeft) || !again.Right.Equal(&wantRight) {
		t.Fatalf("retried split returned %s | %s", again.Left, again.Right)
	}

	// The right-hand shard loads from what the split wrote: descriptor and
	// client table (exactly-once across the split), user data in place.
	right, err := NewStateMachine(Config{}, 2, 11, h.db)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := right.Descriptor(); !ok || !d.Equal(&wantRight) {
		t.Fatalf("right-hand descriptor %s", &d)
	}
	b := h.db.NewIndexedBatch()
	defer b.Close()
	ac := &multiraft.ApplyContext{Batch: b, Group: 2, Replica: 11}
	retry := put(Header{ClientID: 7, Seq: 1}, "h", "would overwrite")
	if r, ok := right.Apply(ac, multiraft.Entry{Index: 11, Cmd: retry.AppendEncoded(nil)}).(*Result); !ok || !r.Succeeded || !b.Empty() {
		t.Fatalf("retry of a pre-split write on the right-hand shard: %v, batch empty %v", r, b.Empty())
	}
	if v, _ := get(t, h.db, "h"); v != "right" {
		t.Fatalf("h = %q", v)
	}
}

func equalReplicas(a, b []multiraft.Replica) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestApplySplitNonMember(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	h.replica = 99 // applies entries after its own removal
	h.mustOK(put(hdr(0, 0), "c", "left"))
	h.mustOK(put(hdr(0, 0), "h", "right"))
	h.mustOK(splitCmd(hdr(0, 0), "g", 2, mapping...))
	if len(h.creates) != 0 {
		t.Fatalf("non-member created %+v", h.creates)
	}
	if _, ok := h.get("h"); ok {
		t.Fatal("non-member kept the right-hand data")
	}
	if v, _ := h.get("c"); v != "left" {
		t.Fatal("non-member lost left-hand data")
	}
	if _, closer, err := h.db.Get(keys.ShardKey(2, keys.ShardDescriptor)); err == nil {
		closer.Close()
		t.Fatal("non-member wrote the right-hand descriptor")
	}
}

func TestApplySplitRefusals(t *testing.T) {
	ep := testDesc().Epoch
	tests := []struct {
		name string
		cmd  Command
		want error
	}{
		{"at-start", splitCmd(hdr(0, 0), "b", 2, mapping...), ErrInvalidSplit},
		{"below-start", splitCmd(hdr(0, 0), "a", 2, mapping...), ErrInvalidSplit},
		{"at-end", splitCmd(hdr(0, 0), "m", 2, mapping...), ErrInvalidSplit},
		{"zero-shard", splitCmd(hdr(0, 0), "g", 0, mapping...), ErrInvalidSplit},
		{"own-shard", splitCmd(hdr(0, 0), "g", 1, mapping...), ErrInvalidSplit},
		{"no-mapping", splitCmd(hdr(0, 0), "g", 2), ErrInvalidSplit},
		{"missing-replica", splitCmd(hdr(0, 0), "g", 2, mapping[:2]...), ErrInvalidSplit},
		{"unknown-replica", splitCmd(hdr(0, 0), "g", 2, mapping[0], mapping[1], SplitReplica{Old: 4, New: 14}), ErrInvalidSplit},
		{"duplicate-new", splitCmd(hdr(0, 0), "g", 2, mapping[0], mapping[1], SplitReplica{Old: 3, New: 12}), ErrInvalidSplit},
		{"duplicate-old", splitCmd(hdr(0, 0), "g", 2, mapping[0], mapping[1], SplitReplica{Old: 2, New: 13}), ErrInvalidSplit},
		{"new-id-in-use", splitCmd(hdr(0, 0), "g", 2, mapping[0], mapping[1], SplitReplica{Old: 3, New: 2}), ErrInvalidSplit},
		{"zero-new-id", splitCmd(hdr(0, 0), "g", 2, mapping[0], mapping[1], SplitReplica{Old: 3, New: 0}), ErrInvalidSplit},
		{"stale-confver", splitCmd(Header{Epoch: Epoch{ConfVer: ep.ConfVer - 1, Version: ep.Version}}, "g", 2, mapping...), ErrEpochNotMatch},
		{"stale-version", splitCmd(Header{Epoch: Epoch{ConfVer: ep.ConfVer, Version: ep.Version - 1}}, "g", 2, mapping...), ErrEpochNotMatch},
		{"empty-key", splitCmd(hdr(0, 0), "", 2, mapping...), ErrEmptyKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{}, testDesc())
			h.mustOK(put(hdr(9, 1), "h", "v"))
			before := dump(t, h.db)
			res := h.apply(tc.cmd)
			if err, _ := res.(error); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", res, tc.want)
			}
			if dump(t, h.db) != before || len(h.creates) != 0 {
				t.Fatal("refused split wrote or created a group")
			}
			if d, _ := h.sm.Descriptor(); d.Epoch != ep {
				t.Fatalf("refused split changed the descriptor to %s", &d)
			}
		})
	}
}

// TestSplitOpenEndedShard splits a shard that extends to +inf.
func TestSplitOpenEndedShard(t *testing.T) {
	d := testDesc()
	d.Start, d.End = nil, nil
	h := newHarness(t, Config{}, d)
	res := h.mustOK(splitCmd(hdr(0, 0), "k", 2, mapping...))
	if len(res.Left.Start) != 0 || string(res.Left.End) != "k" || string(res.Right.Start) != "k" || len(res.Right.End) != 0 {
		t.Fatalf("split of (-inf, +inf): %s | %s", res.Left, res.Right)
	}
}

func TestDestroy(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	h.mustOK(put(hdr(4, 1), "c", "v"))
	// Neighbouring data and state of another shard survive.
	if err := h.db.Set(keys.MVCCKey([]byte("z"), 1), []byte("other"), nil); err != nil {
		t.Fatal(err)
	}
	if err := h.db.Set(keys.ShardClientKey(2, 4), []byte("other"), nil); err != nil {
		t.Fatal(err)
	}
	b := h.db.NewBatch()
	h.sm.Destroy(b)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%x=%x\n%x=%x\n", keys.ShardClientKey(2, 4), "other", keys.MVCCKey([]byte("z"), 1), "other")
	if got := dump(t, h.db); got != want {
		t.Fatalf("after destroy:\n%swant:\n%s", got, want)
	}
	if !h.sm.destroyed.Load() {
		t.Fatal("not marked destroyed")
	}
}
