package router

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// warmRoutes is how many routes New asks for to warm the cache.
const warmRoutes = 1024

// Client routes key-value requests to the leaders of the shards owning
// their keys, retrying as the cluster changes. Safe for concurrent use by
// any number of goroutines; make one per process and share it.
type Client struct {
	cfg    Config
	source RouteSource
	cache  *routeCache
	addrs  *addrBook
	conns  *connPool
	lanes  *lanePool
	// flights deduplicates concurrent route loads of one key or shard.
	flights singleflight.Group
	stats   counters

	// base bounds route loads, which outlive the call that started them;
	// Close cancels it.
	base   context.Context
	cancel context.CancelFunc
	// closing is closed by Close; closed is set first.
	closing chan struct{}
	closed  atomic.Bool
	// closeStarted is set by the first Close, which then waits for the
	// background work before it sets closed.
	closeStarted atomic.Bool
	// background is the work that goes on after a call answered
	// (asynccommit.go).
	background background
	// metrics is the registration of Config.MeterProvider's instruments,
	// nil without one.
	metrics metric.Registration
}

// New returns a Client configured by cfg (see Config for defaults). It
// validates cfg, draws the write lanes' ClientIDs, and warms the route
// cache with one ScanRoutes call bounded by ctx (and Config.Timeout when
// ctx has no deadline); a failing warm-up is not an error, since every
// request loads what it misses. New does not wait for any connection.
// The caller must Close the Client.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	lanes, err := newLanePool(cfg.WriteLanes)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		cache:   newRouteCache(cfg.RouteCacheSize),
		addrs:   newAddrBook(),
		lanes:   lanes,
		closing: make(chan struct{}),
	}
	opts := defaultDialOptions()
	if cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(cfg.Dialer))
	}
	c.conns = newConnPool(append(opts, cfg.DialOptions...), cfg.BatchesPerNode, cfg.MaxBatchOps, &c.stats)
	if !cfg.DisableFramedKV {
		c.conns.framing(cfg.FramedTLS, cfg.Dialer)
	}
	c.base, c.cancel = context.WithCancel(context.Background())
	c.source = cfg.RouteSource
	if c.source == nil {
		c.source = newPlacementSource(cfg.PlacementAddresses, cfg.NodeAddresses, c.addrs, c.conns)
	}
	if cfg.MeterProvider != nil {
		if c.metrics, err = RegisterMetrics(cfg.MeterProvider.Meter(MeterName), c.Stats); err != nil {
			c.cancel()
			c.conns.close()
			return nil, fmt.Errorf("router: metrics: %w", err)
		}
	}
	wctx, cancel := c.callContext(ctx)
	defer cancel()
	c.prefetchSpan(wctx, nil, nil, min(cfg.RouteCacheSize, warmRoutes))
	return c, nil
}

// Close waits for the work the Client goes on with after answering a
// call (the commit of a transaction's locks across shards, which its
// Commit did not wait for) for at most Config.Timeout, then closes every
// connection of the Client and makes calls in flight and later calls
// fail with ErrClosed (a write in flight, also with ErrAmbiguous).
// Background work still running then is canceled: its locks are left to
// the readers that meet them after their TTL. Calls made while Close
// waits are served. It does not close Config.RouteSource. Close is
// idempotent and safe to call concurrently with other calls; a second
// Close returns at once.
func (c *Client) Close() error {
	if !c.closeStarted.CompareAndSwap(false, true) {
		return nil
	}
	wctx, cancel := c.callContext(context.Background())
	c.background.wait(wctx)
	cancel()
	c.closed.Store(true)
	close(c.closing)
	c.cancel()
	if c.metrics != nil {
		c.metrics.Unregister()
	}
	return c.conns.close()
}

// Stats returns a snapshot of the Client's counters. Safe for concurrent
// use; the counters keep moving while it reads them.
func (c *Client) Stats() Stats {
	s := Stats{
		CacheHits:       c.stats.cacheHits.Load(),
		CacheMisses:     c.stats.cacheMisses.Load(),
		RouteLoads:      c.stats.routeLoads.Load(),
		RouteLoadErrors: c.stats.routeLoadErrors.Load(),
		CacheEvictions:  c.cache.evictions.Load(),
		CachedRoutes:    c.cache.len(),
		Ambiguous:       c.stats.ambiguous.Load(),
		Requests:        c.stats.requests.Load(),
		RPCs:            c.stats.rpcs.Load(),
		FramedRPCs:      c.stats.framedRPCs.Load(),
		FramedFallbacks: c.stats.framedFallbacks.Load(),
	}
	for i := range s.Retries {
		s.Retries[i] = c.stats.retries[i].Load()
	}
	return s
}

// callContext bounds ctx by Config.Timeout when it has no deadline.
func (c *Client) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.cfg.Timeout < 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// locate returns the route of the shard containing key, from the cache or
// loaded from the RouteSource. stale, when set, is the route a failed
// attempt used and the retry loop invalidated: concurrent reloads of that
// shard share one load.
func (c *Client) locate(ctx context.Context, key []byte, stale *route) (*route, error) {
	if r, ok := c.cache.lookup(key); ok {
		c.stats.cacheHits.Add(1)
		return r, nil
	}
	c.stats.cacheMisses.Add(1)
	if stale != nil && stale.contains(key) {
		r, err := c.load(ctx, fmt.Sprintf("s%d.%d", stale.id(), stale.version()), key)
		if err != nil || r.contains(key) {
			return r, err
		}
		// The shared load was for another key of the old shard, which has
		// split since: look this key up on its own.
	}
	return c.load(ctx, "k"+string(key), key)
}

// load asks the RouteSource for the route of key and its neighbours and
// caches them, deduplicating concurrent loads under flight. The load runs
// on its own context (Config.Timeout, cancelled by Close), so one caller
// giving up does not fail the others sharing it; each caller waits only as
// long as its own ctx allows.
func (c *Client) load(ctx context.Context, flight string, key []byte) (*route, error) {
	ch := c.flights.DoChan(flight, func() (any, error) {
		// A load that ended after our miss may have brought the route.
		if r, ok := c.cache.lookup(key); ok {
			return r, nil
		}
		lctx, cancel := c.callContext(c.base)
		defer cancel()
		c.stats.routeLoads.Add(1)
		rt, neighbours, err := c.source.GetRoute(lctx, key, max(c.cfg.PrefetchNeighbours, 0))
		if err == nil {
			err = validateRoute(rt, key)
		}
		if err != nil {
			c.stats.routeLoadErrors.Add(1)
			if errors.Is(err, ErrNoRoute) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: key %s: %w", ErrNoRoute, keyfmt.Quote(key), err)
		}
		// Neighbours first, so the route asked for ends up the most
		// recently used.
		for _, n := range neighbours {
			if validateRoute(n, nil) == nil {
				c.learn(n)
			}
		}
		return c.learn(rt), nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*route), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// learn records a route from the RouteSource: its addresses, and the
// route in the cache (unless the cache holds something newer). It returns
// the route, cached or not, so the caller can use it for one attempt: a
// stale one heals through EpochNotMatch.
func (c *Client) learn(rt *pb.Route) *route {
	c.addrs.setAll(rt.GetAddresses())
	r := newRoute(rt.GetShard(), rt.GetLeaderReplicaId(), nodeID(rt.GetLeaderNodeId()))
	c.cache.insert(r)
	return r
}

// prefetchSpan loads up to limit routes of [start, end) with one
// ScanRoutes, best effort: errors only count in Stats.
func (c *Client) prefetchSpan(ctx context.Context, start, end []byte, limit int) {
	c.stats.routeLoads.Add(1)
	routes, err := c.source.ScanRoutes(ctx, start, end, limit)
	if err != nil {
		c.stats.routeLoadErrors.Add(1)
		return
	}
	for _, rt := range routes {
		if validateRoute(rt, nil) == nil {
			c.learn(rt)
		}
	}
}
