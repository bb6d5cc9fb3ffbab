package rpc

import (
	"bytes"
	"cmp"
	"context"
	"slices"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// MaxLocalRoutes caps one LocalRoutes answer, and is the size of an answer
// that asks for no limit.
const MaxLocalRoutes = 1000

// LocalRoutes implements pb.KVServer: the routes of the shards this node
// holds an initialised replica of whose ranges intersect [start, end)
// (an empty end is +inf), in key order, at most limit (0, or above
// MaxLocalRoutes: MaxLocalRoutes). A route names no leader; its addresses
// are those of its replicas' nodes that the server's Resolver knows. It is
// what a router asks when placement does not answer: every node can speak
// for the shards it holds, and a descriptor it returns that is stale is
// refused, like any stale route, by the replicas it names.
func (s *KVServer) LocalRoutes(_ context.Context, req *pb.ScanRoutesRequest) (*pb.ScanRoutesResponse, error) {
	start, end := req.GetStart(), req.GetEnd()
	if err := checkSpan(start, end); err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if limit == 0 || limit > MaxLocalRoutes {
		limit = MaxLocalRoutes
	}
	descs := s.store.Descriptors()
	slices.SortFunc(descs, func(a, b shard.Descriptor) int {
		if c := bytes.Compare(a.Start, b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.ShardID, b.ShardID)
	})
	resp := &pb.ScanRoutesResponse{}
	addrs := map[uint64]string{} // resolved once per node
	for _, d := range descs {
		if len(resp.Routes) == limit {
			break
		}
		if !spansIntersect(start, end, d.Start, d.End) {
			continue
		}
		rt := &pb.Route{Shard: pbconv.DescriptorToProto(d), Addresses: map[uint64]string{}}
		for _, r := range d.Replicas {
			n := uint64(r.NodeID)
			a, seen := addrs[n]
			if !seen && s.errs.resolver != nil {
				a, _ = s.errs.resolver.Resolve(r.NodeID)
				addrs[n] = a
			}
			if a != "" {
				rt.Addresses[n] = a
			}
		}
		resp.Routes = append(resp.Routes, rt)
	}
	return resp, nil
}

// spansIntersect reports whether [start, end) and [lo, hi) share a key; an
// empty end or hi is +inf. An empty range [k, k) intersects nothing.
func spansIntersect(start, end, lo, hi []byte) bool {
	if len(end) != 0 && bytes.Compare(start, end) >= 0 {
		return false
	}
	return (len(hi) == 0 || bytes.Compare(start, hi) < 0) && (len(end) == 0 || bytes.Compare(lo, end) < 0)
}
