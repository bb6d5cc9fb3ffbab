package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// Integration tests of leases against a real shardnode: the lease records
// live in the last shard (the system span starts with 0xff), the keys in
// the first.

func TestIntegrationLeaseLifecycle(t *testing.T) {
	c := newCluster(t, 1, 2)
	r := c.client(nil)
	ctx := testutil.Context(t, 60*time.Second)

	var l LeaseGrant
	testutil.Eventually(t, 20*time.Second, func() error {
		var err error
		l, err = r.Grant(ctx, 60)
		return err
	})
	if l.ID == 0 || l.TTL != 60 {
		t.Fatalf("grant: %+v", l)
	}
	key := c.keyIn(1, "svc/a")
	if _, err := r.PutLease(ctx, key, []byte("up"), l.ID); err != nil {
		t.Fatal(err)
	}
	res, err := r.GetAt(ctx, key, 0)
	if err != nil || !res.Found || res.KV.Lease != l.ID {
		t.Fatalf("get of a leased key: %+v, %v", res, err)
	}
	ttl, err := r.TimeToLive(ctx, l.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 60 || ttl.TTL <= 0 || ttl.TTL > 60 || len(ttl.Keys) != 1 || !bytes.Equal(ttl.Keys[0], key) {
		t.Fatalf("time to live: %+v", ttl)
	}
	ids, err := r.Leases(ctx)
	if err != nil || len(ids) != 1 || ids[0] != l.ID {
		t.Fatalf("leases: %v, %v", ids, err)
	}
	// A scan of the whole user key space leaves the lease's own keys out.
	all, err := r.Scan(ctx, nil, nil, 0)
	if err != nil || len(all) != 1 {
		t.Fatalf("scan of everything: %d keys, %v", len(all), err)
	}
	if got, err := r.KeepAliveOnce(ctx, l.ID); err != nil || got != 60 {
		t.Fatalf("keepalive: %d, %v", got, err)
	}

	// A key re-attached to no lease survives the revoke.
	other := c.keyIn(1, "svc/b")
	if _, err := r.PutLease(ctx, other, []byte("x"), l.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, other, []byte("detached")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Revoke(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	if _, found, err := r.Get(ctx, key); err != nil || found {
		t.Fatalf("the revoked lease's key: found %v, %v", found, err)
	}
	if v, found, err := r.Get(ctx, other); err != nil || !found || string(v) != "detached" {
		t.Fatalf("the detached key: %q %v %v", v, found, err)
	}
	if _, err := r.KeepAliveOnce(ctx, l.ID); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keepalive of a revoked lease: %v", err)
	}
	if _, err := r.PutLease(ctx, key, []byte("again"), l.ID); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("put with a revoked lease: %v", err)
	}
	if ids, err := r.Leases(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("leases after the revoke: %v, %v", ids, err)
	}
}

// TestIntegrationLeaseExpiresUnlessKeptAlive: of two leases of the
// shortest TTL, the one kept alive keeps its key past several TTLs; the
// other's key is deleted, with a delete event, soon after its TTL.
func TestIntegrationLeaseExpiresUnlessKeptAlive(t *testing.T) {
	c := newCluster(t, 1, 2)
	r := c.client(nil)
	ctx := testutil.Context(t, 60*time.Second)

	var kept, lapsed LeaseGrant
	testutil.Eventually(t, 20*time.Second, func() error {
		var err error
		kept, err = r.Grant(ctx, 2)
		return err
	})
	lapsed, err := r.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	keptKey, lapsedKey := c.keyIn(1, "kept"), c.keyIn(1, "lapsed")
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	events := r.Watch(wctx, c.keyIn(1, ""), c.keyIn(2, ""))
	granted := time.Now()
	if _, err := r.PutLease(ctx, keptKey, []byte("k"), kept.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutLease(ctx, lapsedKey, []byte("l"), lapsed.ID); err != nil {
		t.Fatal(err)
	}
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	ch, err := r.KeepAlive(kctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ch {
		}
	}()

	testutil.Eventually(t, 10*time.Second, func() error {
		if _, found, err := r.Get(ctx, lapsedKey); err != nil || found {
			return fmt.Errorf("the lapsed lease's key: found %v, %v", found, err)
		}
		return nil
	})
	gone := time.Since(granted)
	if gone < 2*time.Second {
		t.Fatalf("the lapsed key went after %v, before its TTL", gone)
	}
	t.Logf("the lapsed lease's key read as absent %v after the grant (TTL 2s)", gone.Round(time.Millisecond))
	// The delete arrives as an event.
	deadline := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case resp, ok := <-events:
			if !ok || resp.Err != nil {
				t.Fatalf("watch ended: %v", resp.Err)
			}
			for _, e := range resp.Events {
				if e.Type == EventDelete && bytes.Equal(e.KV.Key, lapsedKey) {
					seen = true
				}
				if e.Type == EventDelete && bytes.Equal(e.KV.Key, keptKey) {
					t.Fatal("the kept lease's key was deleted")
				}
			}
		case <-deadline:
			t.Fatal("no delete event for the lapsed lease's key")
		}
	}
	// Three TTLs later the kept key is still there.
	time.Sleep(4 * time.Second)
	if _, found, err := r.Get(ctx, keptKey); err != nil || !found {
		t.Fatalf("the kept lease's key: found %v, %v", found, err)
	}
	if _, err := r.TimeToLive(ctx, lapsed.ID, false); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("ttl of the lapsed lease: %v", err)
	}
}

// TestIntegrationLeaseHomeSplits: the home shard of two leases splits
// between their records. The lease whose record went to the new shard is
// kept alive there (its new leader loads it) and keeps its key; the one
// left behind lapses, and its key is deleted.
func TestIntegrationLeaseHomeSplits(t *testing.T) {
	c := newCluster(t, 1, 2)
	r := c.client(nil)
	ctx := testutil.Context(t, 90*time.Second)
	const lapsing, kept = 1 << 40, 1 << 41
	testutil.Eventually(t, 20*time.Second, func() error {
		_, err := r.GrantID(ctx, lapsing, 3)
		return err
	})
	if _, err := r.GrantID(ctx, kept, 3); err != nil {
		t.Fatal(err)
	}
	lapsingKey, keptKey := c.keyIn(1, "lapsing"), c.keyIn(1, "kept")
	if _, err := r.PutLease(ctx, lapsingKey, []byte("l"), lapsing); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutLease(ctx, keptKey, []byte("k"), kept); err != nil {
		t.Fatal(err)
	}
	put := time.Now()
	left, right := c.split(2, syskeys.LeaseRecordKey(kept), 3)
	t.Logf("split the home: %v | %v", left, right)

	kctx, stop := context.WithCancel(ctx)
	defer stop()
	ka, err := r.KeepAlive(kctx, kept)
	if err != nil {
		t.Fatal(err)
	}
	lost := make(chan struct{})
	go func() {
		for range ka {
		}
		close(lost)
	}()
	testutil.Eventually(t, 20*time.Second, func() error {
		if _, found, err := r.Get(ctx, lapsingKey); err != nil || found {
			return fmt.Errorf("the lapsing lease's key: found %v, %v", found, err)
		}
		return nil
	})
	t.Logf("the lapsing lease's key read as absent %v after its put (TTL 3s)", time.Since(put).Round(time.Millisecond))
	for time.Since(put) < 9*time.Second {
		select {
		case <-lost:
			t.Fatalf("the lease on the new shard was lost %v after the put", time.Since(put))
		case <-time.After(300 * time.Millisecond):
		}
	}
	if _, found, err := r.Get(ctx, keptKey); err != nil || !found {
		t.Fatalf("the kept lease's key: found %v, %v", found, err)
	}
	if _, err := r.TimeToLive(ctx, lapsing, false); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("ttl of the lapsed lease: %v", err)
	}
}
