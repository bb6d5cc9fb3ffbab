package router

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
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

// nodeQueryTimeout bounds each shardnode's answer when the default source
// asks the nodes for routes: a paused or partitioned node must not hold
// up the answers of the others.
const nodeQueryTimeout = 2 * time.Second

// placementCallTimeout bounds each placement address's answer: a follower
// forwards to the leader it knows, and while that leader hangs (paused,
// partitioned) the forwarded call would wait out the whole load; the
// next address may already know the new leader.
const placementCallTimeout = 3 * time.Second

// nodeQueryParallelism bounds the shardnodes asked at once.
const nodeQueryParallelism = 16

// placementSource is the default RouteSource: the Placement gRPC service,
// reached at any of a list of addresses, and the shardnodes when no
// placement address answers. It starts with the placement address that
// answered last and moves on to the next one when a call fails or takes
// longer than placementCallTimeout; any placement replica serves routes. When every placement address failed, it
// asks every shardnode it knows (Config.NodeAddresses and the nodes of
// every route the Client learned) for the routes of the shards they hold
// (KV.LocalRoutes), all at once, and merges their answers, the newest
// descriptor winning. When nothing could even be connected to, its error
// is an *unreachableError, which the Client does not retry.
type placementSource struct {
	addrs []string
	seeds []string
	book  *addrBook
	conns *connPool
	// next is the index of the placement address to try first.
	next atomic.Int64
}

func newPlacementSource(addrs, seeds []string, book *addrBook, conns *connPool) *placementSource {
	return &placementSource{addrs: addrs, seeds: seeds, book: book, conns: conns}
}

// unreachableError is a route load in which nothing answered: every
// placement address and every shardnode asked failed before the request
// left this process (the connection was refused or could not be set up),
// or there was none to ask. The Client gives up at once instead of
// retrying until its Timeout: nobody is there to wait for.
type unreachableError struct{ error }

func (e *unreachableError) Unwrap() error { return e.error }

// each calls f with a client of each placement address in turn, from the
// one that last answered, until f succeeds or ctx ends; it returns every
// failure, and whether any request may have reached a placement replica.
func (p *placementSource) each(ctx context.Context, f func(context.Context, pb.PlacementClient) error) (reached bool, err error) {
	first := int(p.next.Load())
	var errs []error
	for i := range p.addrs {
		idx := (first + i) % len(p.addrs)
		rec := &sendRecord{}
		conn, err := p.conns.get(p.addrs[idx])
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, placementCallTimeout)
			err = f(withSendRecord(actx, rec), pb.NewPlacementClient(conn))
			cancel()
		}
		if err == nil {
			p.next.Store(int64(idx))
			return true, nil
		}
		reached = reached || rec.maybeSent()
		errs = append(errs, fmt.Errorf("placement %s: %w", p.addrs[idx], err))
		if ctx.Err() != nil {
			break
		}
	}
	return reached, joinErrors(errs)
}

func (p *placementSource) GetRoute(ctx context.Context, key []byte, neighbours int) (*pb.Route, []*pb.Route, error) {
	var resp *pb.GetRouteResponse
	preached, perr := p.each(ctx, func(ctx context.Context, c pb.PlacementClient) error {
		var err error
		resp, err = c.GetRoute(ctx, &pb.GetRouteRequest{Key: key, Neighbours: uint32(max(neighbours, 0))})
		return err
	})
	if perr == nil && len(p.addrs) > 0 {
		return resp.GetRoute(), resp.GetNeighbours(), nil
	}
	routes, nodes, nreached, nerr := p.askNodes(ctx, &pb.ScanRoutesRequest{Start: key, Limit: uint32(max(neighbours, 0) + 1)})
	for i, rt := range routes {
		if newRoute(rt.GetShard(), 0, 0).contains(key) {
			return rt, slices.Delete(routes, i, i+1), nil
		}
	}
	return nil, nil, p.noRoute(fmt.Sprintf("key %s", keyfmt.Quote(key)), preached, perr, nodes, nreached, nerr)
}

func (p *placementSource) ScanRoutes(ctx context.Context, start, end []byte, limit int) ([]*pb.Route, error) {
	var resp *pb.ScanRoutesResponse
	preached, perr := p.each(ctx, func(ctx context.Context, c pb.PlacementClient) error {
		var err error
		resp, err = c.ScanRoutes(ctx, &pb.ScanRoutesRequest{Start: start, End: end, Limit: uint32(max(limit, 0))})
		return err
	})
	if perr == nil && len(p.addrs) > 0 {
		return resp.GetRoutes(), nil
	}
	routes, nodes, nreached, nerr := p.askNodes(ctx, &pb.ScanRoutesRequest{Start: start, End: end, Limit: uint32(max(limit, 0))})
	if len(routes) > 0 {
		if limit > 0 && len(routes) > limit {
			routes = routes[:limit]
		}
		return routes, nil
	}
	return nil, p.noRoute("the range", preached, perr, nodes, nreached, nerr)
}

// noRoute is the error of a load that neither placement nor the nodes
// answered, naming every address asked.
func (p *placementSource) noRoute(what string, preached bool, perr error, nodes []string, nreached bool, nerr error) error {
	placement := "no placement address is given"
	if len(p.addrs) > 0 {
		placement = fmt.Sprintf("placement (%s) did not answer", strings.Join(p.addrs, ", "))
	}
	shardnodes := "no shardnode address is known to ask instead (Config.NodeAddresses)"
	if len(nodes) > 0 {
		shardnodes = fmt.Sprintf("no shardnode asked (%s) holds it", strings.Join(nodes, ", "))
	}
	err := fmt.Errorf("%w for %s: %s, and %s", ErrNoRoute, what, placement, shardnodes)
	if cause := joinErrors([]error{perr, nerr}); cause != nil {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	if !preached && !nreached {
		return &unreachableError{err}
	}
	return err
}

// nodeAddresses returns the shardnode addresses to ask: Config.NodeAddresses,
// then every address the Client learned, without duplicates.
func (p *placementSource) nodeAddresses() []string {
	out := slices.Clone(p.seeds)
	for _, a := range p.book.addresses() {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// askNodes sends req to every known shardnode at once (at most
// nodeQueryParallelism in flight, each bounded by nodeQueryTimeout) and
// merges the routes they answer (mergeRoutes). It returns the addresses
// asked, whether any request may have reached a node, and every failure.
func (p *placementSource) askNodes(ctx context.Context, req *pb.ScanRoutesRequest) (routes []*pb.Route, asked []string, reached bool, err error) {
	asked = p.nodeAddresses()
	var (
		mu   sync.Mutex
		all  []*pb.Route
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, nodeQueryParallelism)
	)
	for _, addr := range asked {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				return
			}
			qctx, cancel := context.WithTimeout(ctx, nodeQueryTimeout)
			defer cancel()
			rec := &sendRecord{}
			var resp *pb.ScanRoutesResponse
			conn, err := p.conns.get(addr)
			if err == nil {
				resp, err = pb.NewKVClient(conn).LocalRoutes(withSendRecord(qctx, rec), req)
			}
			mu.Lock()
			defer mu.Unlock()
			reached = reached || rec.maybeSent()
			if err != nil {
				errs = append(errs, fmt.Errorf("shardnode %s: %w", addr, err))
				return
			}
			for _, rt := range resp.GetRoutes() {
				if validateRoute(rt, nil) == nil {
					all = append(all, rt)
				}
			}
		})
	}
	wg.Wait()
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return mergeRoutes(all), asked, reached, joinErrors(errs)
}

// mergeRoutes combines routes from several nodes into disjoint routes in
// key order. Between routes of one shard, or of overlapping ranges, the
// newer wins (route.supersedes: the higher epoch version, then, within a
// shard, the higher conf version), as in the route cache; a node that
// lags, or holds a replica that was removed, is outvoted by one that
// does not. Each route gets the addresses any answer gave for its nodes.
// The input is not modified.
func mergeRoutes(in []*pb.Route) []*pb.Route {
	cands := make([]*route, 0, len(in))
	addrs := map[uint64]string{}
	for _, rt := range in {
		cands = append(cands, newRoute(rt.GetShard(), 0, 0))
		for n, a := range rt.GetAddresses() {
			if a != "" {
				addrs[n] = a
			}
		}
	}
	// Newest first; ties in a deterministic order.
	slices.SortStableFunc(cands, func(a, b *route) int {
		return cmp.Or(-cmp.Compare(a.version(), b.version()), -cmp.Compare(a.confVer(), b.confVer()),
			cmp.Compare(a.id(), b.id()), bytes.Compare(a.start(), b.start()))
	})
	var kept []*route
	for _, c := range cands {
		if !slices.ContainsFunc(kept, func(k *route) bool { return k.id() == c.id() || k.overlaps(c) }) {
			kept = append(kept, c)
		}
	}
	slices.SortFunc(kept, func(a, b *route) int { return bytes.Compare(a.start(), b.start()) })
	out := make([]*pb.Route, len(kept))
	for i, k := range kept {
		rt := &pb.Route{Shard: k.desc, Addresses: map[uint64]string{}}
		for _, rep := range k.desc.GetReplicas() {
			if a, ok := addrs[rep.GetNodeId()]; ok {
				rt.Addresses[rep.GetNodeId()] = a
			}
		}
		out[i] = rt
	}
	return out
}

// joinErrors joins the non-nil errors on one line ("a; b"), each still
// reachable through errors.Is and errors.As; nil if there are none.
func joinErrors(errs []error) error {
	errs = slices.DeleteFunc(slices.Clone(errs), func(e error) bool { return e == nil })
	if len(errs) == 0 {
		return nil
	}
	return errorList(errs)
}

// errorList is a one-line errors.Join.
type errorList []error

func (l errorList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

func (l errorList) Unwrap() []error { return l }
