package router

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestLargeValues: many requests carrying values near the largest a shard
// accepts (1 MiB), each valid alone, all succeed together against a real
// node, although together they are far above a message's limits (16 MiB
// for a request, 64 MiB for an answer):
//   - concurrent puts to one node, which the coalescer would batch into
//     one Multi of tens of MiB (over framed connections and over gRPC; its
//     byte bound keeps the batches small, and a batch refused as too
//     large would go again one by one: either alone passes this part);
//   - a scan over them, whose page of 1,000 pairs would be one answer;
//   - a GetMany of them, whose Gets queue behind the first into one Multi
//     whose answer is too large, and go again one by one;
//   - a watch from before them, whose catch-up batch of 1,024 events
//     would be one message.
func TestLargeValues(t *testing.T) {
	c := newCluster(t, 1, 1)
	ctx := testutil.Context(t, 120*time.Second)
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 1<<20-64) }
	key := func(i int) []byte { return c.keyIn(1, fmt.Sprintf("big%03d", i)) }

	r := c.client(nil)
	viaGRPC := c.client(func(cfg *Config) { cfg.DisableFramedKV = true })
	const n = 80
	revs := make([]uint64, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			kv := r
			if i%4 == 0 {
				kv = viaGRPC
			}
			res, err := kv.PutRev(ctx, key(i), value(i))
			if err != nil {
				errs <- fmt.Errorf("put %d: %w", i, err)
				return
			}
			revs[i] = res.Revision
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if st := viaGRPC.Stats(); st.FramedRPCs != 0 || st.RPCs == 0 {
		t.Fatalf("the gRPC client sent %d of %d calls framed", st.FramedRPCs, st.RPCs)
	}

	check := func(what string, i int, k, v []byte) {
		t.Helper()
		if !bytes.Equal(k, key(i)) || !bytes.Equal(v, value(i)) {
			t.Fatalf("%s %d: %q with %d bytes, want %q with its %d", what, i, k, len(v), key(i), len(value(i)))
		}
	}
	kvs, err := r.Scan(ctx, key(0), key(n), 0)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if len(kvs) != n {
		t.Fatalf("scan: %d pairs, want %d", len(kvs), n)
	}
	for i, kv := range kvs {
		check("scan", i, kv.Key, kv.Value)
	}

	var ks [][]byte
	for i := range n {
		ks = append(ks, key(i))
	}
	got, err := r.GetMany(ctx, ks)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	for i, g := range got {
		check("GetMany", i, g.KV.Key, g.KV.Value)
	}

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	seen := map[string]bool{}
	for resp := range r.Watch(wctx, key(0), key(n), WithStartRevision(slices.Min(revs))) {
		if resp.Err != nil {
			t.Fatalf("watch, after %d events: %v", len(seen), resp.Err)
		}
		for _, ev := range resp.Events {
			i := slices.IndexFunc(ks, func(k []byte) bool { return bytes.Equal(k, ev.KV.Key) })
			if i < 0 || seen[string(ev.KV.Key)] {
				t.Fatalf("watch: event of %q: unknown or twice", ev.KV.Key)
			}
			check("watch", i, ev.KV.Key, ev.KV.Value)
			seen[string(ev.KV.Key)] = true
		}
		if len(seen) == n {
			break
		}
	}
}
