package router

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/placement/tso"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// fakePlacement is a tiny in-process Placement service for the integration
// tests: it serves GetRoute and ScanRoutes from the descriptors the test
// created, asking the nodes' Admin.FindLeader for each shard's leader. It
// can be made to lie: serve a follower as the leader (staleLeader), or keep
// serving descriptors that a split made stale (the test simply does not
// update them).
type fakePlacement struct {
	pb.UnimplementedPlacementServer
	addr string

	mu struct {
		sync.Mutex
		descs []*pb.Descriptor // sorted by start, disjoint
		f     *fleet.Fleet     // set once the fleet exists (newOracleCluster)
	}
	// staleLeader makes routes name a replica that does not lead.
	staleLeader atomic.Bool
	// stop stops serving, as a placement outage would.
	stop        func()
	gets, scans atomic.Int64
	// oracle, when set, serves GetTimestamps: nodes started with
	// --placement at this fake then share one oracle, as a fleet shares
	// placementd's (see newOracleCluster).
	oracle *tso.Oracle
}

// GetTimestamps serves the shared oracle's timestamps.
func (p *fakePlacement) GetTimestamps(ctx context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
	if p.oracle == nil || req.GetCount() == 0 {
		return nil, status.Error(codes.Unimplemented, "fake placement: no oracle")
	}
	first, err := p.oracle.Next(ctx, int(req.GetCount()))
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &pb.GetTimestampsResponse{First: uint64(first)}, nil
}

func newFakePlacement(t *testing.T, f *fleet.Fleet) *fakePlacement {
	return newFakePlacementWith(t, f, nil)
}

// newFakePlacementWith is newFakePlacement serving oracle's timestamps
// (nil: none). Its fields are set before it serves: the requests of the
// node processes come through the network, and the race detector would
// not see them ordered after a later write.
func newFakePlacementWith(t *testing.T, f *fleet.Fleet, oracle *tso.Oracle) *fakePlacement {
	t.Helper()
	p := &fakePlacement{oracle: oracle}
	p.mu.f = f
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = lis.Addr().String()
	srv := grpc.NewServer()
	pb.RegisterPlacementServer(srv, p)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	p.stop = srv.Stop
	return p
}

// setDescriptors replaces the table placement serves.
func (p *fakePlacement) setDescriptors(descs ...*pb.Descriptor) {
	sorted := slices.Clone(descs)
	slices.SortFunc(sorted, func(a, b *pb.Descriptor) int { return bytes.Compare(a.GetStart(), b.GetStart()) })
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.descs = sorted
}

func (p *fakePlacement) descriptors() []*pb.Descriptor {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.mu.descs)
}

// route builds the Route of d, asking its replicas who leads.
func (p *fakePlacement) route(ctx context.Context, d *pb.Descriptor) *pb.Route {
	p.mu.Lock()
	f := p.mu.f
	p.mu.Unlock()
	rt := &pb.Route{Shard: proto.Clone(d).(*pb.Descriptor), Addresses: map[uint64]string{}}
	for _, r := range d.GetReplicas() {
		if n := f.Nodes[r.GetNodeId()]; n != nil {
			rt.Addresses[r.GetNodeId()] = n.Addr
		}
	}
	var leader uint64
	for _, r := range d.GetReplicas() {
		n := f.Nodes[r.GetNodeId()]
		if n == nil || !n.Running() {
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := pb.NewAdminClient(n.Conn()).FindLeader(fctx, &pb.FindLeaderRequest{ShardId: d.GetShardId()})
		cancel()
		if err == nil && resp.GetLeaderNodeId() != 0 {
			leader = resp.GetLeaderNodeId()
			break
		}
	}
	if leader != 0 && p.staleLeader.Load() {
		for _, r := range d.GetReplicas() {
			if r.GetNodeId() != leader {
				leader = r.GetNodeId()
				break
			}
		}
	}
	for _, r := range d.GetReplicas() {
		if r.GetNodeId() == leader {
			rt.LeaderNodeId, rt.LeaderReplicaId = leader, r.GetReplicaId()
		}
	}
	return rt
}

func (p *fakePlacement) GetRoute(ctx context.Context, req *pb.GetRouteRequest) (*pb.GetRouteResponse, error) {
	p.gets.Add(1)
	descs := p.descriptors()
	for i, d := range descs {
		if !newRoute(d, 0, 0).contains(req.GetKey()) {
			continue
		}
		resp := &pb.GetRouteResponse{Route: p.route(ctx, d)}
		nb := int(req.GetNeighbours())
		for j := max(i-nb, 0); j < min(i+nb+1, len(descs)); j++ {
			if j != i {
				resp.Neighbours = append(resp.Neighbours, p.route(ctx, descs[j]))
			}
		}
		return resp, nil
	}
	return nil, status.Errorf(codes.NotFound, "no shard holds %q", req.GetKey())
}

func (p *fakePlacement) ScanRoutes(ctx context.Context, req *pb.ScanRoutesRequest) (*pb.ScanRoutesResponse, error) {
	p.scans.Add(1)
	resp := &pb.ScanRoutesResponse{}
	probe := newRoute(&pb.Descriptor{Start: req.GetStart(), End: req.GetEnd()}, 0, 0)
	for _, d := range p.descriptors() {
		if newRoute(d, 0, 0).overlaps(probe) {
			resp.Routes = append(resp.Routes, p.route(ctx, d))
		}
		if req.GetLimit() > 0 && len(resp.Routes) == int(req.GetLimit()) {
			break
		}
	}
	return resp, nil
}

// cluster is a fleet of real shardnodes with shards created through the
// Admin service, and a fake placement serving their routes.
type cluster struct {
	t      *testing.T
	f      *fleet.Fleet
	pl     *fakePlacement
	nodes  []uint64
	shards int
}

// newCluster starts n shardnodes and creates shards shards over the first
// byte of the key space (shard i of s owns [ (i-1)*256/s, i*256/s )), each
// with a replica on every node.
func newCluster(t *testing.T, n, shards int) *cluster {
	t.Helper()
	f := fleet.New(t, n)
	f.Start()
	return setUpCluster(t, f, newFakePlacement(t, f), n, shards)
}

// setUpCluster creates the cluster's shards on the started fleet f.
func setUpCluster(t *testing.T, f *fleet.Fleet, pl *fakePlacement, n, shards int) *cluster {
	t.Helper()
	c := &cluster{t: t, f: f, pl: pl, shards: shards}
	for id := 1; id <= n; id++ {
		c.nodes = append(c.nodes, uint64(id))
	}
	var descs []*pb.Descriptor
	for i := 1; i <= shards; i++ {
		d := testutil.ShardDesc(i, shards, c.nodes)
		descs = append(descs, d)
		for _, node := range c.nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.admin(node).CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: d})
			cancel()
			if err != nil {
				t.Fatalf("create shard %d on node %d: %v", i, node, err)
			}
		}
	}
	c.pl.setDescriptors(descs...)
	return c
}

// newOracleCluster is newCluster whose nodes take their revisions from
// one oracle, served by the fake placement, as a real fleet's nodes take
// them from placementd's: revisions are then unique and follow real time
// across nodes, which transactions across shards need (a node run
// without placement has an oracle of its own). The nodes also send the
// fake their heartbeats, which it refuses.
func newOracleCluster(t *testing.T, n, shards int) *cluster {
	t.Helper()
	pl := newFakePlacementWith(t, nil, tso.Local())
	f := fleet.New(t, n, "--placement", pl.addr)
	pl.mu.Lock()
	pl.mu.f = f
	pl.mu.Unlock()
	f.Start()
	return setUpCluster(t, f, pl, n, shards)
}

// keyIn returns a key owned by shard i of the cluster.
func (c *cluster) keyIn(i int, suffix string) []byte {
	return append([]byte{byte((i - 1) * 256 / c.shards), '/'}, suffix...)
}

func (c *cluster) admin(node uint64) pb.AdminClient { return pb.NewAdminClient(c.f.Nodes[node].Conn()) }

// client returns a router over the fake placement, closed at cleanup.
func (c *cluster) client(tweak func(*Config)) *Client {
	c.t.Helper()
	cfg := Config{PlacementAddresses: []string{c.pl.addr}}
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := New(context.Background(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { r.Close() })
	return r
}

// leader polls the running nodes until one reports leading shard, and
// returns its node and what it says of the shard.
func (c *cluster) leader(shard uint64) (uint64, *pb.FindLeaderResponse) {
	c.t.Helper()
	var node uint64
	var info *pb.FindLeaderResponse
	testutil.Eventually(c.t, 20*time.Second, func() error {
		for _, n := range c.nodes {
			if !c.f.Nodes[n].Running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			si, err := c.admin(n).GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: shard})
			if err == nil && si.GetIsLeader() {
				resp, err := c.admin(n).FindLeader(ctx, &pb.FindLeaderRequest{ShardId: shard})
				cancel()
				if err != nil {
					return err
				}
				node, info = n, resp
				return nil
			}
			cancel()
		}
		return fmt.Errorf("no leader of shard %d", shard)
	})
	return node, info
}
