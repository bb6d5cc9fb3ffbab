package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/router"
)

// FlotillaDriver drives Flotilla through Conns router.Clients, the bench
// clients dealt round-robin to them. Each router has as many write lanes
// as the clients it serves, so lanes never cap the concurrency.
type FlotillaDriver struct {
	routers []*router.Client
	watches atomic.Uint64 // Watch calls, to deal watches to routers
}

// NewFlotillaDriver connects conns routers to the placement service at
// placement, for clients bench clients. batches is the routers'
// Config.BatchesPerNode (0: default; negative: no coalescing).
func NewFlotillaDriver(ctx context.Context, placement []string, conns, clients, batches int) (*FlotillaDriver, error) {
	if conns < 1 {
		return nil, fmt.Errorf("bench: conns must be positive, got %d", conns)
	}
	d := &FlotillaDriver{}
	lanes := max(router.DefaultWriteLanes, (clients+conns-1)/conns)
	for range conns {
		r, err := router.New(ctx, router.Config{PlacementAddresses: placement, WriteLanes: lanes, BatchesPerNode: batches})
		if err != nil {
			_ = d.Close()
			return nil, err
		}
		d.routers = append(d.routers, r)
	}
	return d, nil
}

// System returns "flotilla".
func (d *FlotillaDriver) System() string { return "flotilla" }

// Client returns the router of bench client i.
func (d *FlotillaDriver) Client(i int) KV { return flotillaKV{d.routers[i%len(d.routers)]} }

// Routers returns the driver's routers, for callers that need more than
// the KV interface (statistics, failover probes). The driver owns them.
func (d *FlotillaDriver) Routers() []*router.Client { return d.routers }

// ErrorKind names the router's sentinel errors first (the outcome the
// router gave up with), then the gRPC code of the last cause.
func (d *FlotillaDriver) ErrorKind(err error) string {
	for _, s := range []struct {
		err  error
		kind string
	}{
		{router.ErrConflict, "conflict"},
		{router.ErrAmbiguous, "ambiguous"},
		{router.ErrRetriesExhausted, "retries-exhausted"},
		{router.ErrNoRoute, "no-route"},
		{router.ErrClosed, "closed"},
	} {
		if errors.Is(err, s.err) {
			return s.kind
		}
	}
	if k := genericErrorKind(err); k != "" {
		return k
	}
	return "other"
}

// Close closes every router.
func (d *FlotillaDriver) Close() error {
	var errs []error
	for _, r := range d.routers {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

// Watch implements Watcher with router.Client.Watch, the watches dealt
// round-robin to the routers. It asks for progress notifications so that
// the first response, sent as soon as the watch's start revision is
// fixed, says the watch is established.
func (d *FlotillaDriver) Watch(ctx context.Context, start, end []byte, deliver func(key, value []byte)) (<-chan error, error) {
	r := d.routers[(d.watches.Add(1)-1)%uint64(len(d.routers))]
	ch := r.Watch(ctx, start, end, router.WithProgressNotify(time.Second))
	var first router.WatchResponse
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("bench: watch %q: channel closed before its first response", start)
		}
		first = resp
	case <-ctx.Done():
		for range ch { // the router closes it once the context ended
		}
		return nil, ctx.Err()
	}
	if first.Err != nil {
		for range ch {
		}
		return nil, first.Err
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		var err error
		for resp, ok := first, true; ok; resp, ok = <-ch {
			if resp.Err != nil {
				if ctx.Err() == nil {
					err = resp.Err
				}
				continue
			}
			for i := range resp.Events {
				if ev := &resp.Events[i]; ev.Type == router.EventPut {
					deliver(ev.KV.Key, ev.KV.Value)
				}
			}
		}
		if err != nil {
			done <- err
		}
	}()
	return done, nil
}

type flotillaKV struct{ r *router.Client }

func (k flotillaKV) Put(ctx context.Context, key, value []byte) error {
	return k.r.Put(ctx, key, value)
}

func (k flotillaKV) Get(ctx context.Context, key []byte) (bool, error) {
	_, found, err := k.r.Get(ctx, key)
	return found, err
}

func (k flotillaKV) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	kvs, err := k.r.Scan(ctx, start, nil, limit)
	return len(kvs), err
}

// Batch implements TxnKV with router.Client.Batch: one Raft command when
// the keys share a shard.
func (k flotillaKV) Batch(ctx context.Context, keys [][]byte, value []byte) error {
	ops := make([]router.Op, len(keys))
	for i, key := range keys {
		ops[i] = router.Op{Key: key, Value: value}
	}
	return k.r.Batch(ctx, ops)
}

// TxnPut implements TxnKV with a router transaction of blind puts.
func (k flotillaKV) TxnPut(ctx context.Context, keys [][]byte, value []byte) error {
	t, err := k.r.Txn(ctx)
	if err != nil {
		return err
	}
	return putAndCommit(ctx, t, keys, value)
}

// Transfer implements TxnKV with a router transaction: Get every key at
// the start, Put every key, Commit (router.ErrConflict if one was
// written since the start).
func (k flotillaKV) Transfer(ctx context.Context, keys [][]byte, value []byte) error {
	t, err := k.r.Txn(ctx)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if _, err := t.Get(ctx, key); err != nil {
			_ = t.Rollback(ctx) // nothing was written: only the buffer goes
			return err
		}
	}
	return putAndCommit(ctx, t, keys, value)
}

func putAndCommit(ctx context.Context, t *router.Txn, keys [][]byte, value []byte) error {
	for _, key := range keys {
		if err := t.Put(key, value); err != nil {
			_ = t.Rollback(ctx)
			return err
		}
	}
	_, err := t.Commit(ctx)
	return err
}
