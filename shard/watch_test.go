package shard

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
)

// jumpOracle is a counter whose next timestamp a test can move ahead.
type jumpOracle struct{ last atomic.Uint64 }

func (o *jumpOracle) Next(_ context.Context, count int) (tso.Timestamp, error) {
	return tso.Timestamp(o.last.Add(uint64(count)) - uint64(count) + 1), nil
}

// loneShard opens a one-node store with shard 1 (loneDesc) led here.
func loneShard(t *testing.T, cfg Config, oracle Oracle) (*node, context.Context) {
	t.Helper()
	ctx := testCtx(t)
	store, err := NewStore(cfg, oracle)
	if err != nil {
		t.Fatal(err)
	}
	n := openNodeWithStore(t, newDB(t), store)
	if err := n.store.CreateShard(loneDesc(), 1); err != nil {
		t.Fatal(err)
	}
	n.campaign(ctx, 1)
	return n, ctx
}

// putRev puts key and returns the write's revision.
func putRev(t *testing.T, ctx context.Context, s *Store, key, value string) uint64 {
	t.Helper()
	res, err := s.Execute(ctx, 1, &Command{Kind: KindPut, Key: []byte(key), Value: []byte(value)})
	if err != nil {
		t.Fatal(err)
	}
	return res.Revision
}

func delRev(t *testing.T, ctx context.Context, s *Store, key string) uint64 {
	t.Helper()
	res, err := s.Execute(ctx, 1, &Command{Kind: KindDelete, Key: []byte(key)})
	if err != nil {
		t.Fatal(err)
	}
	return res.Revision
}

func TestReadAtRevision(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	r1 := putRev(t, ctx, s, "c", "1")
	r2 := putRev(t, ctx, s, "d", "1")
	r3 := putRev(t, ctx, s, "c", "2")
	r4 := delRev(t, ctx, s, "d")

	// The latest read says which revision it saw.
	kv, found, rev, err := s.StartGet(1, Epoch{}, []byte("c"), multiraft.ReadLinearizable).WaitKV(ctx)
	if err != nil || !found || string(kv.Value) != "2" || rev != r4 {
		t.Fatalf("latest get: %+v %v rev %d (want %d), %v", kv, found, rev, r4, err)
	}
	if kv.CreateRevision != r1 || kv.ModRevision != r3 || kv.Version != 2 {
		t.Fatalf("latest get revisions: %+v", kv)
	}
	for _, c := range []struct {
		rev   uint64
		key   string
		value string // "" = absent
	}{
		{r1 - 1, "c", ""}, {r1, "c", "1"}, {r2, "c", "1"}, {r3, "c", "2"},
		{r1, "d", ""}, {r2, "d", "1"}, {r3, "d", "1"}, {r4, "d", ""},
	} {
		kv, found, err := s.GetAt(ctx, 1, Epoch{}, []byte(c.key), c.rev)
		if err != nil || found != (c.value != "") || string(kv.Value) != c.value {
			t.Errorf("get %s at %d = %q %v, %v; want %q", c.key, c.rev, kv.Value, found, err, c.value)
		}
	}
	kvs, more, err := s.ScanAt(ctx, 1, Epoch{}, []byte("b"), []byte("m"), 0, r2)
	if err != nil || more || len(kvs) != 2 || string(kvs[0].Value) != "1" || string(kvs[1].Key) != "d" {
		t.Fatalf("scan at %d: %+v %v %v", r2, kvs, more, err)
	}
}

// TestPointReader reads through one PointReader the keys of reads whose
// barriers passed before its first read: each sees its key at the
// revision its barrier fixed, even where the reader's iterator, made
// later, holds a newer version.
func TestPointReader(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	rc := putRev(t, ctx, s, "c", "1")
	rd := putRev(t, ctx, s, "d", "1")
	start := func(key string) *PendingRead {
		p := s.StartGet(1, Epoch{}, []byte(key), multiraft.ReadLinearizable)
		if err := p.Barrier(ctx); err != nil {
			t.Fatalf("barrier of %s: %v", key, err)
		}
		return &p
	}
	pc := start("c")
	putRev(t, ctx, s, "c", "2") // after c's barrier, before the reader's iterator
	pd, pe := start("d"), start("e")

	var r PointReader
	defer r.Close()
	for _, c := range []struct {
		p     *PendingRead
		key   string
		value string // "" = absent
		mod   uint64
	}{{pc, "c", "1", rc}, {pd, "d", "1", rd}, {pe, "e", "", 0}, {pc, "c", "1", rc}} {
		kv, found, rev, err := c.p.Read(&r)
		if err != nil || found != (c.value != "") || string(kv.Value) != c.value || kv.ModRevision != c.mod {
			t.Errorf("read %s: %q %v mod %d, %v; want %q mod %d", c.key, kv.Value, found, kv.ModRevision, err, c.value, c.mod)
		}
		if rev != c.p.rev {
			t.Errorf("read %s saw revision %d, its barrier fixed %d", c.key, rev, c.p.rev)
		}
	}
	if pc.rev >= pd.rev {
		t.Errorf("c's barrier fixed %d, d's (after a write) %d", pc.rev, pd.rev)
	}
	if r.it == nil {
		t.Fatal("the reader made no iterator")
	}
	// The same read on an iterator of its own agrees.
	if kv, found, _, err := pd.Read(nil); err != nil || !found || string(kv.Value) != "1" {
		t.Errorf("read d alone: %q %v, %v", kv.Value, found, err)
	}
	if err := r.Close(); err != nil || r.it != nil {
		t.Errorf("close: %v", err)
	}
}

func TestReadAtRevisionResolves(t *testing.T) {
	o := &jumpOracle{}
	n, ctx := loneShard(t, Config{}, o)
	s := n.store
	r1 := putRev(t, ctx, s, "c", "1")

	// A revision handed out but not reached by the shard: resolving it
	// decides the shard's state there.
	o.last.Add(10)
	at := o.last.Load()
	if kv, found, err := s.GetAt(ctx, 1, Epoch{}, []byte("c"), at); err != nil || !found || string(kv.Value) != "1" {
		t.Fatalf("get at %d: %+v %v %v", at, kv, found, err)
	}
	sm := s.mu.shards[1]
	if got := sm.Resolved(); got < at {
		t.Fatalf("resolved %d after a read at %d", got, at)
	}
	// A write stamped at or below the floor is refused when it applies.
	stale := &Command{Kind: KindPut, Key: []byte("c"), Value: []byte("x"), Revision: at}
	f := n.eng.ProposeFuture(1, stale.AppendEncoded(nil))
	if res, err := f.Wait(ctx); err != nil || !errors.Is(res.(error), ErrStaleRevision) {
		t.Fatalf("write below the floor: %v, %v", res, err)
	}
	// A revision nobody was handed yet is in the future.
	future := o.last.Load() + 1000
	var fe *FutureRevisionError
	if _, _, err := s.GetAt(ctx, 1, Epoch{}, []byte("c"), future); !errors.As(err, &fe) || fe.Current >= future {
		t.Fatalf("get at a future revision: %v", err)
	}
	if r1 >= at {
		t.Fatal("the oracle did not move")
	}
}

func TestReadAtRevisionCompacted(t *testing.T) {
	o := &jumpOracle{}
	n, ctx := loneShard(t, Config{HistoryRetention: time.Millisecond}, o)
	s := n.store
	span := uint64(1) << tso.LogicalBits
	r1 := putRev(t, ctx, s, "c", "1")
	o.last.Add(3 * span)
	putRev(t, ctx, s, "c", "2")
	// Nothing was pruned: a read at r1, however old, is still right.
	if kv, _, err := s.GetAt(ctx, 1, Epoch{}, []byte("c"), r1); err != nil || string(kv.Value) != "1" {
		t.Fatalf("get at %d before any prune: %+v %v", r1, kv, err)
	}
	// The key's 8th version prunes at its revision minus the retention,
	// and the shard's compaction point moves just above that horizon.
	var last uint64
	for i := 3; i <= pruneEvery; i++ {
		last = putRev(t, ctx, s, "c", fmt.Sprint(i))
	}
	point := last - span + 1
	var ce *CompactedError
	if _, _, err := s.GetAt(ctx, 1, Epoch{}, []byte("c"), r1); !errors.As(err, &ce) || ce.CompactRevision != point {
		t.Fatalf("get at %d after a prune at %d: %v", r1, last-span, err)
	}
	if kv, _, err := s.GetAt(ctx, 1, Epoch{}, []byte("c"), point); err != nil || string(kv.Value) != "1" {
		t.Fatalf("get at the compaction point: %+v %v", kv, err)
	}
	w := mustWatch(t, s, 1, Epoch{}, nil, nil, r1, false)
	if _, _, err := w.Next(ctx); !errors.As(err, &ce) {
		t.Fatalf("watch from a compacted revision: %v", err)
	}
}

// mustWatch starts a watch of s (see Store.Watch), closed at the end of
// the test.
func mustWatch(t *testing.T, s *Store, shard ShardID, epoch Epoch, start, end []byte, from uint64, prevKV bool) *Watcher {
	t.Helper()
	w, _, err := s.Watch(shard, epoch, start, end, from, prevKV)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// syncWatcher makes w synced: Next finds nothing to catch up and waits,
// until a short deadline, so later writes go to w's queue.
func syncWatcher(t *testing.T, ctx context.Context, w *Watcher) {
	t.Helper()
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if evs, _, err := w.Next(short); len(evs) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("syncing the watcher: %d events, %v", len(evs), err)
	}
}

// collectEvents reads w until it returned want events, and checks their
// order and progress as it goes.
func collectEvents(t *testing.T, ctx context.Context, w *Watcher, want int) []Event {
	t.Helper()
	var got []Event
	var progress uint64
	for len(got) < want {
		evs, p, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("after %d events: %v", len(got), err)
		}
		if p < progress {
			t.Fatalf("progress went back from %d to %d", progress, p)
		}
		for _, ev := range evs {
			if ev.Revision() <= progress && progress != 0 {
				t.Fatalf("event at %d after progress %d", ev.Revision(), progress)
			}
			if ev.Revision() > p {
				t.Fatalf("event at %d beyond its response's progress %d", ev.Revision(), p)
			}
			if n := len(got); n > 0 && got[n-1].Revision() > ev.Revision() {
				t.Fatalf("event at %d after one at %d", ev.Revision(), got[n-1].Revision())
			}
			got = append(got, ev)
		}
		progress = p
	}
	return got
}

func describe(ev Event) string {
	s := fmt.Sprintf("put %s=%s@%d v%d", ev.KV.Key, ev.KV.Value, ev.KV.ModRevision, ev.KV.Version)
	if ev.Delete {
		s = fmt.Sprintf("del %s@%d", ev.KV.Key, ev.KV.ModRevision)
	}
	if ev.PrevKV != nil {
		s += fmt.Sprintf(" prev %s", ev.PrevKV.Value)
	}
	return s
}

func TestWatchLiveAndHistory(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	live, start, err := s.Watch(1, Epoch{}, []byte("c"), []byte("e"), 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	r1 := putRev(t, ctx, s, "c", "1")
	r2 := putRev(t, ctx, s, "c", "2")
	r3 := putRev(t, ctx, s, "f", "outside the watch")
	if err := s.Batch(ctx, 1, Header{}, []Op{{Key: []byte("d"), Value: []byte("b")}, {Key: []byte("c"), Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if start != 1 || r1 < start {
		t.Fatalf("start %d, first write %d", start, r1)
	}
	want := []string{
		fmt.Sprintf("put c=1@%d v1", r1),
		fmt.Sprintf("put c=2@%d v2 prev 1", r2),
		fmt.Sprintf("del c@%d prev 2", r3+1), // one write's events in key order
		fmt.Sprintf("put d=b@%d v1", r3+1),
	}
	check := func(name string, got []Event) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d", name, len(got), len(want))
		}
		for i, ev := range got {
			if d := describe(ev); d != want[i] {
				t.Errorf("%s: event %d = %s, want %s", name, i, d, want[i])
			}
		}
	}
	check("live", collectEvents(t, ctx, live, len(want)))

	// A watch from the first revision reads the same from storage.
	past := mustWatch(t, s, 1, Epoch{}, []byte("c"), []byte("e"), r1, true)
	check("history", collectEvents(t, ctx, past, len(want)))
}

// TestWatchSlowWatcher overflows a watcher's queue: it falls back to
// storage and still sees every event once, in order.
func TestWatchSlowWatcher(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	w := mustWatch(t, s, 1, Epoch{}, nil, nil, 0, false)
	// Sync the watcher first (Next finds nothing to catch up and waits),
	// so that the writes below go to its queue.
	syncWatcher(t, ctx, w)
	const writes = watchQueueEvents + 500
	var revs []uint64
	for i := range writes {
		revs = append(revs, putRev(t, ctx, s, fmt.Sprintf("k%05d", i), "v"))
	}
	got := collectEvents(t, ctx, w, writes)
	for i, ev := range got {
		if ev.Revision() != revs[i] {
			t.Fatalf("event %d at %d, want %d", i, ev.Revision(), revs[i])
		}
	}
}

func TestWatchEndsAtSplit(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	w := mustWatch(t, s, 1, Epoch{}, nil, nil, 0, false)
	left := mustWatch(t, s, 1, Epoch{}, nil, []byte("g"), 0, false)
	r1 := putRev(t, ctx, s, "h", "1")
	collectEvents(t, ctx, w, 1)
	if _, _, err := s.Split(ctx, 1, Header{}, []byte("g"), 2, []SplitReplica{{Old: 1, New: 11}}); err != nil {
		t.Fatal(err)
	}
	_, p, err := w.Next(ctx)
	var enm *EpochNotMatchError
	if !errors.As(err, &enm) || p != r1 {
		t.Fatalf("watch across a split: progress %d (last write %d), %v", p, r1, err)
	}
	// The left half's watch goes on.
	r2 := putRev(t, ctx, s, "c", "1")
	if got := collectEvents(t, ctx, left, 1); got[0].Revision() != r2 {
		t.Fatalf("left watch after the split: %s", describe(got[0]))
	}
}

func TestWatchProgressByResolve(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	w, start, err := s.Watch(1, Epoch{}, []byte("c"), []byte("d"), 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if p := w.Progress(); p != start-1 {
		t.Fatalf("progress %d at start %d", p, start)
	}
	rev, err := s.Resolve(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The watcher catches up to the resolved revision with no event.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if evs, _, err := w.Next(short); len(evs) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("next with no event: %v, %v", evs, err)
	}
	if p := w.Progress(); p < rev {
		t.Fatalf("progress %d after resolving to %d", p, rev)
	}
}

func TestCompact(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	r1 := putRev(t, ctx, s, "c", "1")
	r2 := putRev(t, ctx, s, "c", "2")
	r3 := putRev(t, ctx, s, "c", "3")
	putRev(t, ctx, s, "d", "1")
	if got, err := s.Compact(ctx, 1, Epoch{}, r3); err != nil || got != r3 {
		t.Fatalf("compact to %d: %d, %v", r3, got, err)
	}
	var ce *CompactedError
	if _, _, err := s.GetAt(ctx, 1, Epoch{}, []byte("c"), r2); !errors.As(err, &ce) || ce.CompactRevision != r3 {
		t.Fatalf("get below the compaction: %v", err)
	}
	if kv, _, err := s.GetAt(ctx, 1, Epoch{}, []byte("c"), r3); err != nil || string(kv.Value) != "3" {
		t.Fatalf("get at the compaction: %+v %v", kv, err)
	}
	// Compacting lower changes nothing.
	if got, err := s.Compact(ctx, 1, Epoch{}, r1); err != nil || got != r3 {
		t.Fatalf("compact lower: %d, %v", got, err)
	}
	w := mustWatch(t, s, 1, Epoch{}, nil, nil, r2, false)
	if _, _, err := w.Next(ctx); !errors.As(err, &ce) {
		t.Fatalf("watch below the compaction: %v", err)
	}
	// The key's next prune (at its 8th version) deletes what no read at
	// the compaction point or later needs: the version at r1 goes; the
	// one at r2, the version before r3's, stays for a watch from r3.
	for i := 4; i <= pruneEvery; i++ {
		putRev(t, ctx, s, "c", fmt.Sprint(i))
	}
	if _, found, err := ReadAt(n.db, []byte("c"), r1); err != nil || found {
		t.Fatalf("version below the compaction after a prune: found %v, %v", found, err)
	}
	if kv, found, err := ReadAt(n.db, []byte("c"), r2); err != nil || !found || string(kv.Value) != "2" {
		t.Fatalf("the version before the compaction point: %+v %v %v", kv, found, err)
	}
	past := mustWatch(t, s, 1, Epoch{}, []byte("c"), []byte("d"), r3, true)
	if got := collectEvents(t, ctx, past, 1); got[0].PrevKV == nil || string(got[0].PrevKV.Value) != "2" {
		t.Fatalf("watch from the compaction point: %s", describe(got[0]))
	}
}

// TestWatchEndsBelowEventsItCannotComplete: a watcher asking for previous
// versions whose replica is removed after its events were queued cannot
// read them; it ends below them, so that a watch resumed from its
// progress reads them again (found by the simulator: fleet seeds 71, 115,
// 169).
func TestWatchEndsBelowEventsItCannotComplete(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	w := mustWatch(t, s, 1, Epoch{}, nil, nil, 0, true)
	syncWatcher(t, ctx, w)
	r1 := putRev(t, ctx, s, "c", "1")
	putRev(t, ctx, s, "c", "2")
	s.mu.RLock()
	sm := s.mu.shards[1]
	s.mu.RUnlock()
	s.unregister(sm) // as the replica's removal does
	_, p, err := w.Next(ctx)
	if !errors.Is(err, ErrShardNotFound) || p != r1-1 {
		t.Fatalf("next after the removal: progress %d (first event %d), %v", p, r1, err)
	}
	if got := w.Progress(); got != r1-1 {
		t.Fatalf("progress %d after the end, want %d", got, r1-1)
	}
}

// TestWatchFeedBornMidRound: a watch that starts between a write's Apply
// (which recorded no event: there was no feed) and its Committed may have
// synced below the write; the publication of that round sends it back to
// catching up from Pebble instead of moving it past the write (found by
// the chaos test: a resubscription that lost an acknowledged put).
func TestWatchFeedBornMidRound(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	b := h.db.NewIndexedBatch()
	defer b.Close()
	cmd := put(Header{}, "c", "1")
	cmd.Revision = 7
	if _, ok := h.sm.Apply(h.ac(b), multiraft.Entry{Index: 1, Term: 1, Cmd: cmd.AppendEncoded(nil)}).(*Result); !ok {
		t.Fatal("put refused")
	}
	// The watch starts now, synced at the revision published so far.
	f := &feed{shard: 1, watchers: map[*Watcher]struct{}{}}
	w := &Watcher{f: f, shard: 1, synced: true, next: h.sm.Resolved() + 1, notify: make(chan struct{}, 1)}
	f.watchers[w] = struct{}{}
	h.sm.feed.Store(f)
	h.sm.FinishApply(h.ac(b))
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	h.sm.Committed()
	f.mu.Lock()
	defer f.mu.Unlock()
	if w.synced || w.next > 7 {
		t.Fatalf("after the round: synced %v, next %d; the put at 7 was skipped", w.synced, w.next)
	}
	if f.published != 7 {
		t.Fatalf("published %d, want 7", f.published)
	}
}

// TestWatchProgressNeverGoesBack: a watch started above the revision at
// which its shard then splits (its replica lagged) ends at its start,
// not at the split's lower revision.
func TestWatchProgressNeverGoesBack(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	r1 := putRev(t, ctx, s, "c", "1")
	from := r1 + 100 // a start the shard has not reached
	w, start, err := s.Watch(1, Epoch{}, nil, nil, from, false)
	if err != nil || start != from {
		t.Fatalf("watch from %d: start %d, %v", from, start, err)
	}
	defer w.Close()
	syncWatcher(t, ctx, w)
	if _, _, err := s.Split(ctx, 1, Header{}, []byte("g"), 2, []SplitReplica{{Old: 1, New: 11}}); err != nil {
		t.Fatal(err)
	}
	_, p, err := w.Next(ctx)
	var enm *EpochNotMatchError
	if !errors.As(err, &enm) || p != from-1 {
		t.Fatalf("after the split: progress %d (start %d), %v", p, from, err)
	}
}

// TestWatchPrevGoneEndsTheWatch: an event queued for a watch that asked
// for previous versions, whose previous version is gone by the time Next
// reads it (a compaction rose above the event and a later write pruned
// the key's history), ends the watch below it with a *CompactedError, as
// a catch-up from its revision would, instead of arriving without its
// PrevKV. The simulator found the same loss through a split (fleet seed
// 2738): the range's new owner on the node installed a snapshot compacted
// past the queued event.
func TestWatchPrevGoneEndsTheWatch(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	putRev(t, ctx, s, "k", "1")
	w := mustWatch(t, s, 1, Epoch{}, nil, nil, 0, true)
	// A first write after the watch: the state machine's first round with
	// a feed sends its watchers to catch up; after it they are fed.
	putRev(t, ctx, s, "c", "1")
	collectEvents(t, ctx, w, 1)
	syncWatcher(t, ctx, w)
	r2 := putRev(t, ctx, s, "k", "2") // queued; its previous version is k=1
	r3 := putRev(t, ctx, s, "j", "x")
	if got, err := s.Compact(ctx, 1, Epoch{}, r3); err != nil || got != r3 {
		t.Fatalf("compact to %d: %d, %v", r3, got, err)
	}
	delRev(t, ctx, s, "k") // prunes k's versions below the compaction point's
	if _, found, err := getAt(n.db, []byte("k"), r2-1); err != nil || found {
		t.Fatalf("k before %d: found %v, %v; want it pruned", r2, found, err)
	}

	w.f.mu.Lock()
	queued := w.synced && len(w.queue) == 3
	w.f.mu.Unlock()
	if !queued {
		t.Fatal("the writes did not go to the synced watcher's queue")
	}
	evs, progress, err := w.Next(ctx)
	var ce *CompactedError
	if !errors.As(err, &ce) || ce.Revision != r2 || ce.CompactRevision != r3 {
		t.Fatalf("Next: %d events (%+v), %v; want a *CompactedError at %d, compacted to %d", len(evs), evs, err, r2, r3)
	}
	if progress != r2-1 {
		t.Fatalf("progress %d, want %d: the watch ends below the event it could not send whole", progress, r2-1)
	}
}
