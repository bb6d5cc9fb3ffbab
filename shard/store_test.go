package shard

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// loneTransport serves a one-node cluster: there is nobody to talk to.
type loneTransport struct{}

func (loneTransport) Send([]multiraft.Message)                   {}
func (loneTransport) SendSnapshot(s *multiraft.OutgoingSnapshot) { s.Close() }

// node is one shardnode: a Store over a real engine with its own workers.
type node struct {
	tb    testing.TB
	db    *pebble.DB
	store *Store
	eng   *multiraft.Engine
}

func openNode(tb testing.TB, db *pebble.DB) *node {
	tb.Helper()
	return openNodeWith(tb, db, &counterOracle{})
}

// openNodeWith is openNode with the node's oracle.
func openNodeWith(tb testing.TB, db *pebble.DB, oracle Oracle) *node {
	tb.Helper()
	store, err := NewStore(Config{}, oracle)
	if err != nil {
		tb.Fatal(err)
	}
	return openNodeWithStore(tb, db, store)
}

// openNodeWithStore is openNode over a Store the caller made.
func openNodeWithStore(tb testing.TB, db *pebble.DB, store *Store) *node {
	tb.Helper()
	eng, err := multiraft.Open(multiraft.Config{
		NodeID:          1,
		DB:              db,
		Transport:       loneTransport{},
		NewStateMachine: store.StateMachineFunc(),
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		Workers:         2,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { eng.Close() })
	store.SetEngine(eng)
	return &node{tb: tb, db: db, store: store, eng: eng}
}

// ctx bounds every engine call of a test; nothing should take long.
func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// campaign makes this node's replica of shard its leader. The election
// takes a few engine rounds; each Status call waits for one, so the loop
// follows the engine's progress instead of sleeping.
func (n *node) campaign(ctx context.Context, shard ShardID) {
	n.tb.Helper()
	if _, err := n.eng.Campaign(shard).Wait(ctx); err != nil {
		n.tb.Fatal(err)
	}
	for {
		st, err := n.eng.Status(ctx, shard)
		if err != nil {
			n.tb.Fatal(err)
		}
		if st.IsLeader {
			return
		}
	}
}

func (n *node) applied(ctx context.Context, shard ShardID) uint64 {
	n.tb.Helper()
	st, err := n.eng.Status(ctx, shard)
	if err != nil {
		n.tb.Fatal(err)
	}
	return st.Applied
}

func loneDesc() Descriptor {
	return Descriptor{ShardID: 1, Start: []byte("b"), End: []byte("m"), Epoch: Epoch{ConfVer: 1, Version: 1},
		Replicas: []multiraft.Replica{{ReplicaID: 1, NodeID: 1}}}
}

func TestStoreNotReady(t *testing.T) {
	s, err := NewStore(Config{}, &counterOracle{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if err := s.Put(ctx, 1, Header{}, []byte("c"), nil); !errors.Is(err, ErrNotReady) {
		t.Fatalf("put before SetEngine: %v", err)
	}
	if _, _, err := s.Get(ctx, 1, Epoch{}, []byte("c"), multiraft.ReadStale); !errors.Is(err, ErrNotReady) {
		t.Fatalf("get before SetEngine: %v", err)
	}
	if _, err := NewStore(Config{MaxClients: -1}, &counterOracle{}); err == nil {
		t.Fatal("invalid config accepted")
	}
}

func TestStoreKV(t *testing.T) {
	ctx := testCtx(t)
	n := openNode(t, newDB(t))
	desc := loneDesc()
	if err := n.store.CreateShard(desc, 1); err != nil {
		t.Fatal(err)
	}
	n.campaign(ctx, 1)
	s, ep := n.store, desc.Epoch
	hd := func(seq uint64) Header { return Header{ClientID: 42, Seq: seq, Epoch: ep} }

	if err := s.Put(ctx, 1, hd(1), []byte("c"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []multiraft.ReadMode{multiraft.ReadLinearizable, multiraft.ReadLease, multiraft.ReadStale} {
		if v, ok, err := s.Get(ctx, 1, ep, []byte("c"), mode); err != nil || !ok || string(v) != "1" {
			t.Fatalf("get (%v) = %q, %v, %v", mode, v, ok, err)
		}
	}
	if _, ok, err := s.Get(ctx, 1, Epoch{}, []byte("d"), multiraft.ReadLinearizable); err != nil || ok {
		t.Fatalf("get of an absent key: %v, %v", ok, err)
	}
	res, err := s.CompareAndSwap(ctx, 1, hd(2), []byte("c"), []byte("1"), false, []byte("2"))
	if err != nil || !res.Succeeded {
		t.Fatalf("cas: %+v, %v", res, err)
	}
	// The same request again is deduplicated: it returns the first outcome.
	if res, err := s.CompareAndSwap(ctx, 1, hd(2), []byte("c"), []byte("1"), false, []byte("2")); err != nil || !res.Succeeded {
		t.Fatalf("retried cas: %+v, %v", res, err)
	}
	res, err = s.CompareAndSwap(ctx, 1, hd(3), []byte("c"), nil, true, []byte("3"))
	if err != nil || res.Succeeded || !res.Found || string(res.Value) != "2" {
		t.Fatalf("failing cas: %+v, %v", res, err)
	}
	if err := s.Put(ctx, 1, hd(2), []byte("c"), []byte("late")); !errors.Is(err, ErrStaleSequence) {
		t.Fatalf("stale sequence: %v", err)
	}
	if err := s.Batch(ctx, 1, hd(4), []Op{{Key: []byte("d"), Value: []byte("4")}, {Key: []byte("e"), Value: []byte("5")}, {Key: []byte("c"), Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, 1, hd(5), []byte("e")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"f", "g", "h"} {
		if err := s.Put(ctx, 1, Header{}, []byte(k), []byte(k)); err != nil {
			t.Fatal(err)
		}
	}

	kvs, more, _, err := s.Scan(ctx, 1, ep, []byte("b"), []byte("m"), 0, multiraft.ReadLinearizable)
	if err != nil || more || len(kvs) != 4 || string(kvs[0].Key) != "d" || string(kvs[3].Value) != "h" {
		t.Fatalf("scan: %+v, %v, %v", kvs, more, err)
	}
	kvs, more, _, err = s.Scan(ctx, 1, ep, []byte("d\x00"), []byte("m"), 2, multiraft.ReadLease)
	if err != nil || !more || len(kvs) != 2 || string(kvs[0].Key) != "f" || string(kvs[1].Key) != "g" {
		t.Fatalf("scan with limit: %+v, %v, %v", kvs, more, err)
	}
	kvs, more, _, err = s.Scan(ctx, 1, ep, []byte("g"), []byte("h\x00"), 2, multiraft.ReadStale)
	if err != nil || more || len(kvs) != 2 {
		t.Fatalf("scan ending at the limit: %+v, %v, %v", kvs, more, err)
	}
}

// TestStoreFailsFast checks refusals that need no log entry never reach it.
func TestStoreFailsFast(t *testing.T) {
	ctx := testCtx(t)
	n := openNode(t, newDB(t))
	desc := loneDesc()
	if err := n.store.CreateShard(desc, 1); err != nil {
		t.Fatal(err)
	}
	n.campaign(ctx, 1)
	s := n.store
	if err := s.Put(ctx, 1, Header{}, []byte("c"), nil); err != nil { // settles the log
		t.Fatal(err)
	}
	before := n.applied(ctx, 1)
	stale := Header{Epoch: Epoch{ConfVer: 1, Version: 0}}
	big := make([]byte, DefaultMaxValueBytes+1)
	checks := []struct {
		name string
		err  error
		want error
	}{
		{"out-of-range", s.Put(ctx, 1, Header{}, []byte("z"), nil), ErrKeyNotInShard},
		{"stale-epoch", s.Put(ctx, 1, stale, []byte("c"), nil), ErrEpochNotMatch},
		{"value-too-large", s.Put(ctx, 1, Header{}, []byte("c"), big), ErrValueTooLarge},
		{"empty-key", s.Delete(ctx, 1, Header{}, nil), ErrEmptyKey},
		{"unknown-shard", s.Put(ctx, 7, Header{}, []byte("c"), nil), ErrShardNotFound},
		{"bad-split", func() error {
			_, _, err := s.Split(ctx, 1, Header{}, []byte("b"), 2, []SplitReplica{{Old: 1, New: 11}})
			return err
		}(), ErrInvalidSplit},
		{"cas-absent-and-value", func() error {
			_, err := s.CompareAndSwap(ctx, 1, Header{}, []byte("c"), []byte("x"), true, nil)
			return err
		}(), ErrBadCommand},
		{"get-out-of-range", func() error {
			_, _, err := s.Get(ctx, 1, Epoch{}, []byte("a"), multiraft.ReadLinearizable)
			return err
		}(), ErrKeyNotInShard},
		{"get-stale-epoch", func() error {
			_, _, err := s.Get(ctx, 1, stale.Epoch, []byte("c"), multiraft.ReadLinearizable)
			return err
		}(), ErrEpochNotMatch},
		{"scan-to-infinity", func() error {
			_, _, _, err := s.Scan(ctx, 1, Epoch{}, []byte("c"), nil, 0, multiraft.ReadLinearizable)
			return err
		}(), ErrKeyNotInShard},
	}
	for _, c := range checks {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	if after := n.applied(ctx, 1); after != before {
		t.Fatalf("refusals reached the log: applied %d -> %d", before, after)
	}
}

func TestStoreSplitAndRestart(t *testing.T) {
	ctx := testCtx(t)
	db := newDB(t)
	n := openNode(t, db)
	desc := loneDesc()
	if err := n.store.CreateShard(desc, 1); err != nil {
		t.Fatal(err)
	}
	n.campaign(ctx, 1)
	s := n.store
	for _, k := range []string{"c", "h"} {
		if err := s.Put(ctx, 1, Header{ClientID: 5, Seq: uint64(k[0]), Epoch: desc.Epoch}, []byte(k), []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	// Asked before the split, and again with the same span after it (the
	// first case below): the split is seen, not the answer from before.
	if got := s.DescriptorsOverlapping([]byte("f"), []byte("h")); len(got) != 1 || !got[0].Equal(&desc) {
		t.Fatalf("descriptors overlapping [f, h) before the split: %v", got)
	}
	left, right, err := s.Split(ctx, 1, Header{Epoch: desc.Epoch}, []byte("g"), 2, []SplitReplica{{Old: 1, New: 11}})
	if err != nil {
		t.Fatal(err)
	}
	if string(left.End) != "g" || right.ShardID != 2 || string(right.Start) != "g" || left.Epoch.Version != 2 || right.Epoch != left.Epoch {
		t.Fatalf("split: %s | %s", &left, &right)
	}
	// The engine loads the new group after the round that applied the
	// split; a later write to the left side is applied after that round.
	if err := s.Put(ctx, 1, Header{}, []byte("c"), []byte("c2")); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Descriptor(2); err != nil || !d.Equal(&right) {
		t.Fatalf("right-hand descriptor %s, %v", &d, err)
	}
	n.campaign(ctx, 2)
	if err := s.Put(ctx, 2, Header{Epoch: right.Epoch}, []byte("i"), []byte("i")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, 2, right.Epoch, []byte("h"), multiraft.ReadLinearizable); err != nil || !ok || string(v) != "h" {
		t.Fatalf("data before the split on the right: %q, %v, %v", v, ok, err)
	}
	var enm *EpochNotMatchError
	if _, _, err := s.Get(ctx, 1, desc.Epoch, []byte("c"), multiraft.ReadLinearizable); !errors.As(err, &enm) || !enm.Current.Equal(&left) {
		t.Fatalf("get with the pre-split epoch: %v", err)
	}
	if ds := s.Descriptors(); len(ds) != 2 || !ds[0].Equal(&left) || !ds[1].Equal(&right) {
		t.Fatalf("descriptors: %v", ds)
	}
	for _, c := range []struct {
		start, end string
		want       []Descriptor
	}{
		{"f", "h", []Descriptor{left, right}},
		{"f", "h", []Descriptor{left, right}},
		{"", "", []Descriptor{left, right}},
		{"a", "c", []Descriptor{left}},
		{"", "b", nil}, // before the shards' start; an end is exclusive
		{"", "g", []Descriptor{left}},
		{"g", "", []Descriptor{right}},
		{"l", "", []Descriptor{right}},
		{"m", "", nil}, // past the shards' end
	} {
		got := s.DescriptorsOverlapping([]byte(c.start), []byte(c.end))
		if !slices.EqualFunc(got, c.want, func(a, b Descriptor) bool { return a.Equal(&b) }) {
			t.Fatalf("descriptors overlapping [%q, %q): %v; want %v", c.start, c.end, got, c.want)
		}
	}
	// A descriptor replaced in place counts as a change of the layout, so
	// that a cached answer is not reused past it.
	s.mu.RLock()
	sm := s.mu.shards[1]
	s.mu.RUnlock()
	gen := s.layout.Load()
	sm.setDescriptor(sm.descriptor())
	if s.layout.Load() == gen {
		t.Fatal("replacing a descriptor did not count as a change of the layout")
	}
	// A retry of a pre-split write, re-routed to the right-hand shard, is
	// recognised there.
	if err := s.Put(ctx, 2, Header{ClientID: 5, Seq: 'h', Epoch: right.Epoch}, []byte("h"), []byte("again")); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.Get(ctx, 2, Epoch{}, []byte("h"), multiraft.ReadLinearizable); string(v) != "h" {
		t.Fatalf("retried write applied twice: h = %q", v)
	}

	// An empty replica waiting for a snapshot serves nothing.
	if err := n.eng.JoinGroup(9, 99); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Descriptor(9); !errors.Is(err, ErrShardNotFound) {
		t.Fatalf("descriptor of an empty replica: %v", err)
	}
	if _, _, err := s.Get(ctx, 9, Epoch{}, []byte("c"), multiraft.ReadStale); !errors.Is(err, ErrShardNotFound) {
		t.Fatalf("get from an empty replica: %v", err)
	}

	// Restart: a new engine and Store over the same DB recover everything.
	n.eng.Close()
	n2 := openNode(t, db)
	n2.campaign(ctx, 1)
	n2.campaign(ctx, 2)
	if ds := n2.store.Descriptors(); len(ds) != 2 || !ds[0].Equal(&left) || !ds[1].Equal(&right) {
		t.Fatalf("descriptors after restart: %v", ds)
	}
	if v, _, err := n2.store.Get(ctx, 2, right.Epoch, []byte("i"), multiraft.ReadLinearizable); err != nil || string(v) != "i" {
		t.Fatalf("after restart: i = %q, %v", v, err)
	}

	// Removing a shard destroys its state machine and data.
	if err := n2.eng.RemoveGroup(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.store.Descriptor(2); !errors.Is(err, ErrShardNotFound) {
		t.Fatalf("descriptor of a removed shard: %v", err)
	}
	if _, ok := get(t, db, "i"); ok {
		t.Fatal("data of a removed shard survived")
	}
	if v, _ := get(t, db, "c"); v != "c2" {
		t.Fatal("removing the right-hand shard touched the left")
	}
}

// TestStoreRefusesOverlappingShard: a node never holds two replicas whose
// ranges overlap, not even by bootstrap.
func TestStoreRefusesOverlappingShard(t *testing.T) {
	n := openNode(t, newDB(t))
	left := Descriptor{ShardID: 1, End: []byte("m"), Epoch: Epoch{ConfVer: 1, Version: 1},
		Replicas: []multiraft.Replica{{ReplicaID: 1, NodeID: 1}}}
	if err := n.store.CreateShard(left, 1); err != nil {
		t.Fatal(err)
	}
	over := Descriptor{ShardID: 2, Start: []byte("l"), Epoch: Epoch{ConfVer: 1, Version: 1},
		Replicas: []multiraft.Replica{{ReplicaID: 2, NodeID: 1}}}
	if err := n.store.CreateShard(over, 2); !errors.Is(err, ErrRangeOverlap) {
		t.Fatalf("overlapping shard: %v", err)
	}
	if groups := n.eng.Groups(); len(groups) != 1 {
		t.Fatalf("groups after the refusal: %v", groups)
	}
	over.Start = []byte("m")
	if err := n.store.CreateShard(over, 2); err != nil {
		t.Fatalf("adjacent shard: %v", err)
	}
}

// TestMidKeyCountsDeletedKeys: a shard whose size is the history of
// deleted keys splits between them; the versions of one key cannot be
// split.
func TestMidKeyCountsDeletedKeys(t *testing.T) {
	ts := newTxnShard(t)
	if _, err := ts.s.MidKey(1); !errors.Is(err, ErrInvalidSplit) {
		t.Fatalf("empty shard: %v", err)
	}
	putRev(t, ts.ctx, ts.s, "c", "1")
	if _, err := ts.s.Execute(ts.ctx, 1, &Command{Kind: KindDelete, Key: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.MidKey(1); !errors.Is(err, ErrInvalidSplit) {
		t.Fatalf("one deleted key: %v", err)
	}
	for _, k := range []string{"d", "e", "f"} {
		putRev(t, ts.ctx, ts.s, k, "1")
		if _, err := ts.s.Execute(ts.ctx, 1, &Command{Kind: KindDelete, Key: []byte(k)}); err != nil {
			t.Fatal(err)
		}
	}
	mid, err := ts.s.MidKey(1)
	if err != nil || string(mid) != "e" {
		t.Fatalf("four deleted keys: mid %q, %v; want e", mid, err)
	}
}

// TestStoredKeysCountsKeysNotVersions: a key with a long history counts
// once, deleted keys count, and the count stops at its limit.
func TestStoredKeysCountsKeysNotVersions(t *testing.T) {
	ts := newTxnShard(t)
	count := func(limit int) int {
		t.Helper()
		n, err := ts.s.StoredKeys(1, limit)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(KeyCountLimit); n != 0 {
		t.Fatalf("empty shard: %d keys", n)
	}
	for i := range 50 {
		putRev(t, ts.ctx, ts.s, "balance", strconv.Itoa(i))
	}
	if n := count(KeyCountLimit); n != 1 {
		t.Fatalf("one key with 50 versions: %d keys, want 1", n)
	}
	putRev(t, ts.ctx, ts.s, "c", "1")
	delRev(t, ts.ctx, ts.s, "c")
	putRev(t, ts.ctx, ts.s, "d", "1")
	if n := count(KeyCountLimit); n != 3 {
		t.Fatalf("a live, a deleted and a long-lived key: %d keys, want 3", n)
	}
	if n := count(2); n != 2 {
		t.Fatalf("limit 2: counted %d", n)
	}
	if _, err := ts.s.StoredKeys(99, KeyCountLimit); err == nil {
		t.Fatal("StoredKeys of a shard this store does not have: no error")
	}
}
