package router

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestCoalescedLargeValues: many concurrent requests carrying values near
// the largest a shard accepts (1 MiB) go to one node, where the coalescer
// would batch them into one Multi far above a message's limit (16 MiB for
// a request, 64 MiB for an answer). Each request is valid alone, so each
// must succeed, over framed connections and over gRPC.
func TestCoalescedLargeValues(t *testing.T) {
	c := newCluster(t, 3, 1)
	ctx := testutil.Context(t, 120*time.Second)
	for _, via := range []string{"framed", "grpc"} {
		t.Run(via, func(t *testing.T) {
			r := c.client(func(cfg *Config) { cfg.DisableFramedKV = via == "grpc" })
			const writers = 40
			value := func(w int) []byte {
				return bytes.Repeat([]byte{byte('a' + w%26)}, 1<<20-64)
			}
			run := func(op string, f func(w int) error) {
				var wg sync.WaitGroup
				errs := make(chan error, writers)
				for w := range writers {
					wg.Go(func() {
						if err := f(w); err != nil {
							errs <- fmt.Errorf("%s %d: %w", op, w, err)
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
			}
			run("put", func(w int) error {
				return r.Put(ctx, c.keyIn(1, fmt.Sprint(via, w)), value(w))
			})
			run("get", func(w int) error {
				v, found, err := r.Get(ctx, c.keyIn(1, fmt.Sprint(via, w)))
				if err == nil && (!found || !bytes.Equal(v, value(w))) {
					err = fmt.Errorf("read %d bytes (found %v), want the %d written", len(v), found, len(value(w)))
				}
				return err
			})
		})
	}
}

// TestWatchCatchUpOfLargeValues: a watch from a revision before many
// writes of large values catches up through them: the node's catch-up
// batch must stay within a message the router accepts.
func TestWatchCatchUpOfLargeValues(t *testing.T) {
	c := newCluster(t, 1, 1)
	ctx := testutil.Context(t, 120*time.Second)
	r := c.client(nil)
	const writes = 80
	value := bytes.Repeat([]byte("v"), 1<<20-64)
	var first uint64
	for i := range writes {
		res, err := r.PutRev(ctx, c.keyIn(1, fmt.Sprint("big", i%4)), value)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = res.Revision
		}
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	got := 0
	for resp := range r.Watch(wctx, nil, nil, WithStartRevision(first)) {
		if resp.Err != nil {
			t.Fatalf("after %d events: %v", got, resp.Err)
		}
		for _, ev := range resp.Events {
			if len(ev.KV.Value) != len(value) {
				t.Fatalf("event %d: a value of %d bytes, want %d", got, len(ev.KV.Value), len(value))
			}
			got++
		}
		if got >= writes {
			break
		}
	}
	if got != writes {
		t.Fatalf("%d events, want %d", got, writes)
	}
}

// TestScanOfLargeValues: a scan over many large values returns them all,
// the node's pages staying within a message the router accepts, and so
// does a GetMany of them.
func TestScanOfLargeValues(t *testing.T) {
	c := newCluster(t, 1, 1)
	ctx := testutil.Context(t, 120*time.Second)
	r := c.client(nil)
	const n = 80
	value := bytes.Repeat([]byte("s"), 1<<20-64)
	for i := range n {
		if err := r.Put(ctx, c.keyIn(1, fmt.Sprintf("scan%03d", i)), value); err != nil {
			t.Fatal(err)
		}
	}
	kvs, err := r.Scan(ctx, c.keyIn(1, "scan"), c.keyIn(1, "scao"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != n {
		t.Fatalf("%d pairs, want %d", len(kvs), n)
	}
	for i, kv := range kvs {
		if want := c.keyIn(1, fmt.Sprintf("scan%03d", i)); !bytes.Equal(kv.Key, want) || len(kv.Value) != len(value) {
			t.Fatalf("pair %d: %q with %d bytes, want %q with %d", i, kv.Key, len(kv.Value), want, len(value))
		}
	}
	// The same values read at once: the Gets queued behind the first make
	// one Multi whose answer is above the router's limit, and go again
	// one by one.
	var ks [][]byte
	for _, kv := range kvs {
		ks = append(ks, kv.Key)
	}
	res, err := r.GetMany(ctx, ks)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range res {
		if !g.Found || len(g.KV.Value) != len(value) {
			t.Fatalf("GetMany %d: found %v, %d bytes; want %d", i, g.Found, len(g.KV.Value), len(value))
		}
	}
}
