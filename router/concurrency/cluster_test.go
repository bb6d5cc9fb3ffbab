package concurrency

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// The tests run against one real shardnode holding two shards, [0x00,
// 0x80) for the locks' keys and [0x80, +inf) for the lease records
// (which start with 0xff), behind a fixed in-process placement.

// staticPlacement serves the routes of a fixed table of shards, asking
// the nodes' Admin.FindLeader for each shard's leader.
type staticPlacement struct {
	pb.UnimplementedPlacementServer
	f     *fleet.Fleet
	descs []*pb.Descriptor // sorted by start, disjoint, covering everything
}

func contains(d *pb.Descriptor, key []byte) bool {
	return bytes.Compare(key, d.GetStart()) >= 0 && (len(d.GetEnd()) == 0 || bytes.Compare(key, d.GetEnd()) < 0)
}

func (p *staticPlacement) route(ctx context.Context, d *pb.Descriptor) *pb.Route {
	rt := &pb.Route{Shard: proto.Clone(d).(*pb.Descriptor), Addresses: map[uint64]string{}}
	for _, r := range d.GetReplicas() {
		n := p.f.Nodes[r.GetNodeId()]
		rt.Addresses[r.GetNodeId()] = n.Addr
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := pb.NewAdminClient(n.Conn()).FindLeader(fctx, &pb.FindLeaderRequest{ShardId: d.GetShardId()})
		cancel()
		if err == nil && resp.GetLeaderNodeId() == r.GetNodeId() {
			rt.LeaderNodeId, rt.LeaderReplicaId = r.GetNodeId(), r.GetReplicaId()
		}
	}
	return rt
}

func (p *staticPlacement) GetRoute(ctx context.Context, req *pb.GetRouteRequest) (*pb.GetRouteResponse, error) {
	for _, d := range p.descs {
		if contains(d, req.GetKey()) {
			return &pb.GetRouteResponse{Route: p.route(ctx, d)}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no shard holds %q", req.GetKey())
}

func (p *staticPlacement) ScanRoutes(ctx context.Context, req *pb.ScanRoutesRequest) (*pb.ScanRoutesResponse, error) {
	resp := &pb.ScanRoutesResponse{}
	for _, d := range p.descs {
		startsBeforeEnd := len(req.GetEnd()) == 0 || bytes.Compare(d.GetStart(), req.GetEnd()) < 0
		endsAfterStart := len(d.GetEnd()) == 0 || bytes.Compare(d.GetEnd(), req.GetStart()) > 0
		if startsBeforeEnd && endsAfterStart {
			resp.Routes = append(resp.Routes, p.route(ctx, d))
		}
		if req.GetLimit() > 0 && len(resp.Routes) == int(req.GetLimit()) {
			break
		}
	}
	return resp, nil
}

// testFleet is one shardnode with two shards and a placement serving them.
type testFleet struct {
	t    *testing.T
	addr string // the placement's
}

// newTestFleet starts the shardnode, creates its shards and serves their
// routes until the test ends.
func newTestFleet(t *testing.T) *testFleet {
	t.Helper()
	const shards = 2
	f := fleet.New(t, 1)
	f.Start()
	p := &staticPlacement{f: f}
	for i := 1; i <= shards; i++ {
		d := testutil.ShardDesc(i, shards, []uint64{1})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := pb.NewAdminClient(f.Nodes[1].Conn()).CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: d})
		cancel()
		if err != nil {
			t.Fatalf("create shard %d: %v", i, err)
		}
		p.descs = append(p.descs, d)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterPlacementServer(srv, p)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	tf := &testFleet{t: t, addr: lis.Addr().String()}
	// Wait until both shards elected their leader: a grant goes through.
	c := tf.client()
	testutil.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.Put(ctx, []byte("/ready"), nil); err != nil {
			return err
		}
		g, err := c.Grant(ctx, 5)
		if err != nil {
			return err
		}
		_, err = c.Revoke(ctx, g.ID)
		return err
	})
	return tf
}

// client returns a router over the fleet, closed when the test ends.
func (tf *testFleet) client() *router.Client {
	tf.t.Helper()
	c, err := router.New(context.Background(), router.Config{PlacementAddresses: []string{tf.addr}})
	if err != nil {
		tf.t.Fatal(err)
	}
	tf.t.Cleanup(func() { c.Close() })
	return c
}

// session returns a session of c with a TTL of ttl, closed when the test
// ends.
func (tf *testFleet) session(ctx context.Context, c *router.Client, ttl time.Duration) *Session {
	tf.t.Helper()
	s, err := NewSession(ctx, c, SessionOptions{TTL: ttl})
	if err != nil {
		tf.t.Fatal(err)
	}
	tf.t.Cleanup(func() { _ = s.Close() })
	return s
}
