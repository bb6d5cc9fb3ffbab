package router

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// Integration tests of revisions and Watch against real shardnodes
// (internal/fleet), routes from the fake placement.

// ackedOp is a write the router acknowledged, with its revision.
type ackedOp struct {
	key   string
	value string // "" for a delete
	del   bool
	rev   uint64
}

// stateAt is the key space after every op at or below rev.
func stateAt(ops []ackedOp, rev uint64) map[string]ackedOp {
	st := map[string]ackedOp{}
	for _, o := range ops { // sorted by revision
		if o.rev > rev {
			break
		}
		if o.del {
			delete(st, o.key)
		} else {
			st[o.key] = o
		}
	}
	return st
}

// TestIntegrationWatchSeesEveryWriteOnceInOrder: a watch of the whole key
// space over two shards, from now, with writers on both while one shard
// splits (placement is not told: the streams heal through EpochNotMatch),
// sees every acknowledged write exactly once, in revision order, with
// the right previous values; a second watch from the first one's start
// replays the same history; and reads at revisions agree with it.
//
// One node: without placementd each shardnode stamps writes from its own
// oracle, so only the shards of one node share one order of revisions.
func TestIntegrationWatchSeesEveryWriteOnceInOrder(t *testing.T) {
	c := newCluster(t, 1, 2)
	r := c.client(nil)
	ctx := testutil.Context(t, 90*time.Second)
	// Both shards have a leader and a write before the watch starts. (A
	// stream of a shard that never resolved a revision starts at 1; if it
	// fails before its progress moves, its resubscription from 1 can be
	// refused as compacted by the retention once writes begin.)
	for i := 1; i <= 2; i++ {
		c.leader(uint64(i))
		if err := r.Put(ctx, c.keyIn(i, "before"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	ch := r.Watch(wctx, nil, nil, WithPrevKV(), WithProgressNotify(50*time.Millisecond))
	first := <-ch
	if first.Err != nil || len(first.Events) != 0 {
		t.Fatalf("first response %+v", first)
	}
	startRev := first.ProgressRevision + 1
	t.Logf("watching from revision %d", startRev)

	var (
		mu    sync.Mutex
		acked []ackedOp
	)
	write := func(w, phase int) error {
		for j := range 30 {
			shard := 1 + (w+j)%2
			k := c.keyIn(shard, fmt.Sprintf("w%d-%02d", w, j%7))
			op := ackedOp{key: string(k)}
			var (
				res WriteResult
				err error
			)
			if j%5 == 4 {
				op.del = true
				res, err = r.DeleteRev(ctx, k)
			} else {
				op.value = fmt.Sprintf("p%d.%d.%d", phase, w, j)
				res, err = r.PutRev(ctx, k, []byte(op.value))
			}
			if err != nil {
				return fmt.Errorf("writer %d op %d: %w", w, j, err)
			}
			op.rev = res.Revision
			mu.Lock()
			acked = append(acked, op)
			mu.Unlock()
		}
		return nil
	}
	runWriters := func(phase int, during func()) {
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for w := range 4 {
			wg.Go(func() { errs[w] = write(w, phase) })
		}
		if during != nil {
			during()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	runWriters(1, nil)
	runWriters(2, func() {
		left, right := c.split(1, c.keyIn(1, "w2"), 3)
		t.Logf("split during the writes: %v | %v", left, right)
	})
	// Writes to [w2, \x80) now go to the new shard 3: the watch sees them
	// only if it followed the split.
	runWriters(3, nil)

	slices.SortFunc(acked, func(a, b ackedOp) int { return cmp.Compare(a.rev, b.rev) })
	// A delete of an absent key writes nothing: no event.
	var want []string
	var last uint64
	for i, o := range acked {
		if i > 0 && o.rev == acked[i-1].rev {
			t.Fatalf("two acknowledged writes at revision %d: %+v and %+v", o.rev, acked[i-1], o)
		}
		if o.rev < startRev {
			t.Fatalf("write at %d, before the watch's start %d", o.rev, startRev)
		}
		_, existed := stateAt(acked, o.rev-1)[o.key]
		if o.del && !existed {
			continue
		}
		want = append(want, fmt.Sprintf("%d %s %s", o.rev, o.key, o.value))
		last = o.rev
	}

	check := func(ch <-chan WatchResponse, name string) {
		t.Helper()
		var got []string
		var prevRev uint64
		for {
			resp, ok := <-ch
			if !ok || resp.Err != nil {
				t.Fatalf("%s: ended after %d events: %v", name, len(got), resp.Err)
			}
			for _, ev := range resp.Events {
				if ev.Revision() <= prevRev {
					t.Fatalf("%s: event at %d after one at %d", name, ev.Revision(), prevRev)
				}
				prevRev = ev.Revision()
				before, existed := stateAt(acked, ev.Revision()-1)[string(ev.KV.Key)]
				switch {
				case existed && (ev.PrevKV == nil || string(ev.PrevKV.Value) != before.value || ev.PrevKV.ModRevision != before.rev):
					t.Errorf("%s: event %d %q: prev %+v, want %q at %d", name, ev.Revision(), ev.KV.Key, ev.PrevKV, before.value, before.rev)
				case !existed && ev.PrevKV != nil:
					t.Errorf("%s: event %d %q: prev %+v for a new key", name, ev.Revision(), ev.KV.Key, ev.PrevKV)
				}
				v := string(ev.KV.Value)
				if ev.Type == EventDelete {
					v = ""
				}
				got = append(got, fmt.Sprintf("%d %s %s", ev.Revision(), ev.KV.Key, v))
			}
			if resp.ProgressRevision >= last {
				break
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: %d events, want %d:\ngot:\n%s\nwant:\n%s", name, len(got), len(want), strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	check(ch, "watch from now")
	// Resuming from the start replays the same history, across the
	// split shard.
	check(r.Watch(wctx, nil, nil, WithStartRevision(startRev), WithPrevKV()), "watch from its start")

	// Reads at revisions agree with the history.
	for _, rev := range []uint64{acked[len(acked)/4].rev, acked[len(acked)/2].rev, acked[len(acked)-1].rev} {
		st := stateAt(acked, rev)
		res, err := r.ScanAt(ctx, nil, nil, 0, rev)
		if err != nil {
			t.Fatalf("ScanAt %d: %v", rev, err)
		}
		var got, wantKVs []string
		for _, kv := range res.KVs {
			if strings.HasSuffix(string(kv.Key), "/before") {
				continue // written before the watch, not in acked
			}
			got = append(got, fmt.Sprintf("%q=%q@%d", kv.Key, kv.Value, kv.ModRevision))
		}
		for k, o := range st {
			wantKVs = append(wantKVs, fmt.Sprintf("%q=%q@%d", k, o.value, o.rev))
		}
		sort.Strings(wantKVs)
		if res.Revision != rev || strings.Join(got, " ") != strings.Join(wantKVs, " ") {
			t.Fatalf("ScanAt %d (saw %d):\n%s\nwant\n%s", rev, res.Revision, strings.Join(got, "\n"), strings.Join(wantKVs, "\n"))
		}
		for _, o := range acked[:8] {
			g, err := r.GetAt(ctx, []byte(o.key), rev)
			cur, found := st[o.key]
			if err != nil || g.Found != found || g.Revision != rev || (found && (string(g.KV.Value) != cur.value || g.KV.ModRevision != cur.rev)) {
				t.Fatalf("GetAt %q at %d: %+v %v, want found %v %+v", o.key, rev, g, err, found, cur)
			}
		}
	}
	// A snapshot of the latest state is at one revision, and a watch
	// from just after it starts there.
	snap, err := r.ScanAt(ctx, nil, nil, 0, 0)
	if err != nil || snap.Revision < last {
		t.Fatalf("ScanAt latest: revision %d (last write %d): %v", snap.Revision, last, err)
	}
	if len(snap.KVs) != len(stateAt(acked, snap.Revision))+2 {
		t.Fatalf("ScanAt latest: %d keys, want %d and the 2 written before the watch", len(snap.KVs), len(stateAt(acked, snap.Revision)))
	}
	many, err := r.GetMany(ctx, [][]byte{[]byte(acked[0].key), c.keyIn(2, "absent"), []byte(acked[len(acked)-1].key)})
	if err != nil || len(many) != 3 || many[1].Found || string(many[2].KV.Key) != acked[len(acked)-1].key {
		t.Fatalf("GetMany: %+v %v", many, err)
	}
}

// TestIntegrationWatchThroughLeaderKill: with placementd (one timestamp
// oracle for the fleet) and 4 shards on 3 nodes, a watch of the whole
// key space keeps delivering every write once and in revision order
// while the node leading a shard is killed: its streams end (a broken
// connection) and resubscribe at the new leaders from their progress.
func TestIntegrationWatchThroughLeaderKill(t *testing.T) {
	f := fleet.New(t, 3, "--heartbeat-interval", "250ms")
	f.AddPlacement(1, "--heartbeat-interval", "250ms", "--schedule-interval", "250ms", "--initial-shards", "4")
	f.StartPlacement()
	f.Start()
	r, err := New(context.Background(), Config{PlacementAddresses: []string{f.PlacementAddrs()}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := testutil.Context(t, 2*time.Minute)
	key := func(i int) []byte { return fmt.Appendf(nil, "%c/k%03d", byte(i*37), i) }
	testutil.Eventually(t, time.Minute, func() error {
		for i := range 8 {
			if err := r.Put(ctx, key(i), []byte("ready")); err != nil {
				return err
			}
		}
		return nil
	})
	if n := len(r.cache.routes()); n < 2 {
		t.Fatalf("%d shards cached, want several", n)
	}

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	ch := r.Watch(wctx, nil, nil, WithProgressNotify(50*time.Millisecond))
	first := <-ch
	if first.Err != nil {
		t.Fatal(first.Err)
	}

	type write struct {
		rev   uint64
		value string
	}
	var (
		mu    sync.Mutex
		acked []write
		maybe = map[string]bool{} // failed writes: may have applied
	)
	var stopWriting atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for j := 0; !stopWriting.Load(); j++ {
				v := fmt.Sprintf("w%d.%d", w, j)
				res, err := r.PutRev(ctx, key(w*50+j%50), []byte(v))
				mu.Lock()
				if err != nil {
					maybe[v] = true
				} else {
					acked = append(acked, write{res.Revision, v})
				}
				mu.Unlock()
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := count(); n < 100 {
			return fmt.Errorf("%d writes", n)
		}
		return nil
	})
	// The writers keep the route's leader fresh; under load an election
	// or a timed-out attempt can leave it unknown for a moment.
	var rt *route
	testutil.Eventually(t, 30*time.Second, func() error {
		if rt, _ = r.cache.lookup(key(0)); rt == nil || rt.leaderNode == 0 {
			return fmt.Errorf("no cached leader for the first key")
		}
		return nil
	})
	victim := uint64(rt.leaderNode)
	before := count()
	f.Nodes[victim].Kill()
	t.Logf("killed node %d, the leader of shard %d, after %d writes", victim, rt.id(), before)
	testutil.Eventually(t, 60*time.Second, func() error {
		if n := count(); n < before+300 {
			return fmt.Errorf("%d writes since the kill", n-before)
		}
		return nil
	})
	stopWriting.Store(true)
	wg.Wait()

	slices.SortFunc(acked, func(a, b write) int { return cmp.Compare(a.rev, b.rev) })
	last := acked[len(acked)-1].rev
	seen := map[string]uint64{}
	var prev uint64
	for done := false; !done; {
		var resp WatchResponse
		select {
		case resp = <-ch:
		case <-ctx.Done():
			t.Fatalf("watch stalled: %d of %d writes seen, at %d of %d", len(seen), len(acked), prev, last)
		}
		if resp.Err != nil {
			t.Fatalf("watch ended: %v", resp.Err)
		}
		for _, ev := range resp.Events {
			if ev.Revision() <= prev {
				t.Fatalf("event at %d after one at %d", ev.Revision(), prev)
			}
			prev = ev.Revision()
			v := string(ev.KV.Value)
			if _, dup := seen[v]; dup {
				t.Fatalf("write %s delivered twice", v)
			}
			seen[v] = ev.Revision()
		}
		done = resp.ProgressRevision >= last
	}
	for _, w := range acked {
		if got, ok := seen[w.value]; !ok || got != w.rev {
			t.Fatalf("acknowledged write %s at %d: delivered at %d (%v)", w.value, w.rev, got, ok)
		}
		delete(seen, w.value)
	}
	for v := range seen {
		if !maybe[v] {
			t.Fatalf("event for %s, which no write made", v)
		}
	}
	t.Logf("%d acknowledged writes, each delivered once in order; %d failed writes, %d of them applied; retries %v",
		len(acked), len(maybe), len(seen), r.Stats().Retries)
}
