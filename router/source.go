package router

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// RouteSource tells the Client where shards are: the placement service by
// default, or anything else (a static table, a test double) through
// Config.RouteSource. The Client calls it concurrently, only on cache
// misses and after errors that make a route suspect, and deduplicates
// concurrent lookups of one key or shard. It owns the routes it is
// returned and never modifies them; the source must not modify them either.
type RouteSource interface {
	// GetRoute returns the route of the shard containing key and up to
	// neighbours routes on each side of it (fewer is fine), for
	// prefetching. A route's leader fields may be zero when unknown;
	// addresses must cover the nodes of its replicas for the Client to
	// reach them.
	GetRoute(ctx context.Context, key []byte, neighbours int) (*pb.Route, []*pb.Route, error)
	// ScanRoutes returns, in key order, up to limit routes of the shards
	// intersecting [start, end) (an empty end is +inf).
	ScanRoutes(ctx context.Context, start, end []byte, limit int) ([]*pb.Route, error)
}

// placementSource is the default RouteSource: the Placement gRPC service,
// reached at any of a list of addresses. It starts with the address that
// answered last and moves on to the next one when a call fails; any
// placement replica serves routes.
type placementSource struct {
	addrs []string
	conns *connPool
	// next is the index of the address to try first.
	next atomic.Int64
}

func newPlacementSource(addrs []string, conns *connPool) *placementSource {
	return &placementSource{addrs: addrs, conns: conns}
}

// each calls f with a client of each address in turn, from the one that
// last answered, until f succeeds or ctx ends; it returns every failure.
func (p *placementSource) each(ctx context.Context, f func(pb.PlacementClient) error) error {
	first := int(p.next.Load())
	var errs []error
	for i := range p.addrs {
		idx := (first + i) % len(p.addrs)
		conn, err := p.conns.get(p.addrs[idx])
		if err == nil {
			err = f(pb.NewPlacementClient(conn))
		}
		if err == nil {
			p.next.Store(int64(idx))
			return nil
		}
		errs = append(errs, fmt.Errorf("placement %s: %w", p.addrs[idx], err))
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

func (p *placementSource) GetRoute(ctx context.Context, key []byte, neighbours int) (*pb.Route, []*pb.Route, error) {
	var resp *pb.GetRouteResponse
	err := p.each(ctx, func(c pb.PlacementClient) error {
		var err error
		resp, err = c.GetRoute(ctx, &pb.GetRouteRequest{Key: key, Neighbours: uint32(max(neighbours, 0))})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return resp.GetRoute(), resp.GetNeighbours(), nil
}

func (p *placementSource) ScanRoutes(ctx context.Context, start, end []byte, limit int) ([]*pb.Route, error) {
	var resp *pb.ScanRoutesResponse
	err := p.each(ctx, func(c pb.PlacementClient) error {
		var err error
		resp, err = c.ScanRoutes(ctx, &pb.ScanRoutesRequest{Start: start, End: end, Limit: uint32(max(limit, 0))})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetRoutes(), nil
}
