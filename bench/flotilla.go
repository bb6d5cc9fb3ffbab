package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/flotilla-kv/flotilla/router"
)

// FlotillaDriver drives Flotilla through Conns router.Clients, the bench
// clients dealt round-robin to them. Each router has as many write lanes
// as the clients it serves, so lanes never cap the concurrency.
type FlotillaDriver struct {
	routers []*router.Client
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
