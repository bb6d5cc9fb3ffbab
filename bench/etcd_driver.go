package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdDriver drives etcd through Conns clientv3.Clients (each one gRPC
// connection balanced over every endpoint), the bench clients dealt
// round-robin to them. Reads are linearizable (clientv3's default), as
// Flotilla's are.
type EtcdDriver struct {
	clients []*clientv3.Client
	watches atomic.Uint64 // Watch calls, to deal watches to clients
}

// NewEtcdDriver connects conns clients to endpoints.
func NewEtcdDriver(ctx context.Context, endpoints []string, conns int) (*EtcdDriver, error) {
	if conns < 1 {
		return nil, fmt.Errorf("bench: conns must be positive, got %d", conns)
	}
	d := &EtcdDriver{}
	for range conns {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   endpoints,
			DialTimeout: 10 * time.Second,
			Context:     ctx,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			_ = d.Close()
			return nil, err
		}
		d.clients = append(d.clients, c)
	}
	return d, nil
}

// System returns "etcd".
func (d *EtcdDriver) System() string { return "etcd" }

// Client returns the clientv3 client of bench client i.
func (d *EtcdDriver) Client(i int) KV { return etcdKV{d.clients[i%len(d.clients)]} }

// ErrorKind names etcd's server errors by their message without the
// "etcdserver: " prefix ("request timed out", "too many requests"), then
// context errors and gRPC codes.
func (d *EtcdDriver) ErrorKind(err error) string {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return "etcd:" + strings.ReplaceAll(strings.TrimPrefix(ee.Error(), "etcdserver: "), " ", "-")
	}
	if k := genericErrorKind(err); k != "" {
		return k
	}
	return "other"
}

// Close closes every client.
func (d *EtcdDriver) Close() error {
	var errs []error
	for _, c := range d.clients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Watch implements Watcher with a clientv3 range watch (WithRange, or
// WithFromKey for a nil end), the watches dealt round-robin to the
// clients; the created notification says it is established.
func (d *EtcdDriver) Watch(ctx context.Context, start, end []byte, deliver func(key, value []byte)) (<-chan error, error) {
	c := d.clients[(d.watches.Add(1)-1)%uint64(len(d.clients))]
	rangeOpt := clientv3.WithFromKey()
	if end != nil {
		rangeOpt = clientv3.WithRange(string(end))
	}
	wctx, cancel := context.WithCancel(ctx)
	ch := c.Watch(wctx, string(start), rangeOpt, clientv3.WithCreatedNotify())
	fail := func(err error) (<-chan error, error) {
		cancel()
		for range ch { // clientv3 closes it once the context ended
		}
		return nil, err
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return fail(fmt.Errorf("bench: etcd watch %q: channel closed before it was created: %w", start, ctx.Err()))
		}
		if err := resp.Err(); err != nil {
			return fail(err)
		}
		if !resp.Created {
			return fail(fmt.Errorf("bench: etcd watch %q: first response is not the created notification", start))
		}
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		defer cancel()
		var err error
		for resp := range ch {
			if rerr := resp.Err(); rerr != nil && ctx.Err() == nil && err == nil {
				err = rerr
			}
			for _, ev := range resp.Events {
				if ev.Type == mvccpb.PUT {
					deliver(ev.Kv.Key, ev.Kv.Value)
				}
			}
		}
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("the watch channel closed")
			}
			err = fmt.Errorf("bench: etcd watch %q ended before the run: %w", start, err)
		}
		if err != nil {
			done <- err
		}
	}()
	return done, nil
}

type etcdKV struct{ c *clientv3.Client }

func (k etcdKV) Put(ctx context.Context, key, value []byte) error {
	_, err := k.c.Put(ctx, string(key), string(value))
	return err
}

func (k etcdKV) Get(ctx context.Context, key []byte) (bool, error) {
	resp, err := k.c.Get(ctx, string(key))
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) > 0, nil
}

func (k etcdKV) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	resp, err := k.c.Get(ctx, string(start), clientv3.WithFromKey(), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return 0, err
	}
	return len(resp.Kvs), nil
}
