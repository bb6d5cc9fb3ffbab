package placement

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/internal/serve"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

type nopTransport struct{}

func (nopTransport) Send([]multiraft.Message)                   {}
func (nopTransport) SendSnapshot(s *multiraft.OutgoingSnapshot) { s.Close() }

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(errors.New("pebble fatal: " + format))
}

// newTestPlacement starts a single-replica placement service in process,
// served over gRPC on loopback with the servers' options, and waits until
// it leads its catalogue.
func newTestPlacement(t *testing.T) (*Service, pb.PlacementClient) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	conns := &serve.ConnPool{}
	cat := &Catalogue{}
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := multiraft.Open(multiraft.Config{NodeID: 1, DB: db, Transport: nopTransport{}, NewStateMachine: cat.StateMachineFunc(),
		Logger: logger, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{ReplicaID: 1, Peers: map[multiraft.NodeID]string{1: addr}, Dial: conns.Dial, Logger: logger}, cat, engine)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(serve.ServerOptions()...)
	pb.RegisterPlacementServer(srv, svc)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		_ = engine.Close()
		conns.Close()
		_ = db.Close()
	})
	// The single voter campaigns in its first round.
	testutil.Eventually(t, 20*time.Second, func() error {
		if lead, _ := svc.leader(); !lead {
			return errors.New("the placement replica does not lead its catalogue")
		}
		return nil
	})
	return svc, pb.NewPlacementClient(conn)
}

// TestPlacementBadInput sends invalid requests to every RPC of the
// Placement service: each gets the documented code and a message naming
// the problem, and neither the catalogue (nodes) nor the routes change.
func TestPlacementBadInput(t *testing.T) {
	_, c := newTestPlacement(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg, err := c.RegisterNode(ctx, &pb.RegisterNodeRequest{Address: "127.0.0.1:7100"})
	if err != nil {
		t.Fatal(err)
	}
	node := reg.GetNodeId()
	good := &pb.Descriptor{ShardId: 1, Epoch: &pb.Epoch{ConfVer: 1, Version: 1}, Replicas: []*pb.Replica{{ReplicaId: 101, NodeId: node}}}
	if _, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{NodeId: node, Replicas: []*pb.ReplicaReport{
		{ShardId: 1, ReplicaId: 101, Leader: true, Shard: good, Applied: 10}}}); err != nil {
		t.Fatal(err)
	}
	snapshot := func() (*pb.ListNodesResponse, *pb.ListShardsResponse) {
		t.Helper()
		nodes, err := c.ListNodes(ctx, &pb.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		shards, err := c.ListShards(ctx, &pb.ListShardsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.GetNodes() {
			n.LastHeartbeatMsAgo = 0 // moves with time
		}
		return nodes, shards
	}
	nodesBefore, shardsBefore := snapshot()
	if len(shardsBefore.GetShards()) != 1 {
		t.Fatalf("the reported shard is not listed: %v", shardsBefore)
	}
	report := func(id uint64, start, end string, replica, onNode uint64) *pb.Descriptor {
		return &pb.Descriptor{ShardId: id, Start: []byte(start), End: []byte(end), Epoch: &pb.Epoch{ConfVer: 1, Version: 1},
			Replicas: []*pb.Replica{{ReplicaId: replica, NodeId: onNode}}}
	}
	// heartbeat sends a valid report of a new shard 2, then bad.
	heartbeat := func(bad *pb.ReplicaReport) error {
		_, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{NodeId: node, Replicas: []*pb.ReplicaReport{
			{ShardId: 2, ReplicaId: 201, Leader: true, Shard: report(2, "zz", "", 201, node)}, bad}})
		return err
	}

	cases := []struct {
		name string
		call func() error
		code codes.Code
		want string
	}{
		{"RegisterNode without address", func() error {
			_, err := c.RegisterNode(ctx, &pb.RegisterNodeRequest{NodeId: 5})
			return err
		}, codes.InvalidArgument, "address"},
		{"Heartbeat of an unregistered node", func() error {
			_, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{NodeId: 99})
			return err
		}, codes.NotFound, "node 99 is not registered"},
		{"Heartbeat without node_id", func() error {
			_, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{})
			return err
		}, codes.NotFound, "node 0 is not registered"},
		// A heartbeat with an invalid report is refused whole: the valid
		// report of shard 2 next to the invalid one is not applied either
		// (the shards are compared below).
		{"Heartbeat of shard 0 (the repro)", func() error {
			return heartbeat(&pb.ReplicaReport{ShardId: 0, Leader: true, Shard: &pb.Descriptor{ShardId: 0,
				Epoch: &pb.Epoch{ConfVer: 1, Version: 1}, Replicas: []*pb.Replica{{ReplicaId: 1, NodeId: node}}}})
		}, codes.InvalidArgument, "replicas[1].shard.shard_id: required"},
		{"Heartbeat naming shard 0 beside a descriptor", func() error {
			return heartbeat(&pb.ReplicaReport{ShardId: 0, ReplicaId: 301, Leader: true, Shard: report(3, "m", "", 301, node)})
		}, codes.InvalidArgument, "replicas[1].shard_id: required"},
		{"Heartbeat with a descriptor of another shard", func() error {
			return heartbeat(&pb.ReplicaReport{ShardId: 4, ReplicaId: 301, Leader: true, Shard: report(3, "m", "", 301, node)})
		}, codes.InvalidArgument, "replicas[1].shard.shard_id: 3 is not the report's shard_id 4"},
		{"Heartbeat with an inverted range", func() error {
			return heartbeat(&pb.ReplicaReport{ShardId: 3, ReplicaId: 301, Leader: true, Shard: report(3, "m", "c", 301, node)})
		}, codes.InvalidArgument, "replicas[1].shard.end"},
		{"Heartbeat with an empty range", func() error {
			return heartbeat(&pb.ReplicaReport{ShardId: 3, ReplicaId: 301, Leader: true, Shard: report(3, "m", "m", 301, node)})
		}, codes.InvalidArgument, "replicas[1].shard.end"},
		{"Heartbeat with no replicas", func() error {
			d := report(3, "m", "", 301, node)
			d.Replicas = nil
			return heartbeat(&pb.ReplicaReport{ShardId: 3, ReplicaId: 301, Leader: true, Shard: d})
		}, codes.InvalidArgument, "replicas[1].shard.replicas: required"},
		{"Heartbeat with replica ID 0", func() error {
			return heartbeat(&pb.ReplicaReport{ShardId: 3, ReplicaId: 301, Leader: true, Shard: report(3, "m", "", 0, node)})
		}, codes.InvalidArgument, "replicas[1].shard.replicas[0].replica_id: required"},
		{"Heartbeat with a replica on node 0", func() error {
			return heartbeat(&pb.ReplicaReport{ShardId: 3, ReplicaId: 301, Leader: true, Shard: report(3, "m", "", 301, 0)})
		}, codes.InvalidArgument, "replicas[1].shard.replicas[0].node_id: required"},
		{"Heartbeat with a duplicate replica", func() error {
			d := report(3, "m", "", 301, node)
			d.Replicas = append(d.Replicas, d.Replicas[0])
			return heartbeat(&pb.ReplicaReport{ShardId: 3, ReplicaId: 301, Leader: true, Shard: d})
		}, codes.InvalidArgument, "replicas[1].shard.replicas[1].replica_id: 301 appears twice"},
		{"Heartbeat with a replica ID raft reserves", func() error {
			return heartbeat(&pb.ReplicaReport{ShardId: 3, ReplicaId: math.MaxUint64, Leader: true, Shard: report(3, "m", "", math.MaxUint64, node)})
		}, codes.InvalidArgument, "replicas[1].replica_id: 18446744073709551615 is reserved by raft"},
		{"Heartbeat of a leader without descriptor", func() error {
			return heartbeat(&pb.ReplicaReport{ShardId: 3, ReplicaId: 301, Leader: true})
		}, codes.InvalidArgument, "replicas[1].shard: required"},
		{"Heartbeat of a follower without replica_id", func() error {
			return heartbeat(&pb.ReplicaReport{ShardId: 3})
		}, codes.InvalidArgument, "replicas[1].replica_id: required"},
		{"ScanRoutes with start after end", func() error {
			_, err := c.ScanRoutes(ctx, &pb.ScanRoutesRequest{Start: []byte("m"), End: []byte("c")})
			return err
		}, codes.InvalidArgument, "end"},
		{"DrainNode without node_id", func() error {
			_, err := c.DrainNode(ctx, &pb.DrainNodeRequest{Drain: true})
			return err
		}, codes.InvalidArgument, "node_id"},
		{"DrainNode of an unregistered node", func() error {
			_, err := c.DrainNode(ctx, &pb.DrainNodeRequest{NodeId: 99, Drain: true})
			return err
		}, codes.NotFound, "node 99 is not registered"},
	}
	for _, tc := range cases {
		err := tc.call()
		st := status.Convert(err)
		if st.Code() != tc.code || !strings.Contains(strings.ToLower(st.Message()), tc.want) {
			t.Errorf("%s: got %v %q, want %v naming %q", tc.name, st.Code(), st.Message(), tc.code, tc.want)
		}
	}

	// The reads take no input that can be invalid: out-of-range values are
	// clamped, never an error.
	if r, err := c.GetRoute(ctx, &pb.GetRouteRequest{Key: []byte{0xff, 0xff}, Neighbours: 1 << 30}); err != nil || r.GetRoute().GetShard().GetShardId() != 1 {
		t.Errorf("GetRoute with a huge neighbour count: %v, %v", r, err)
	}
	if r, err := c.ScanRoutes(ctx, &pb.ScanRoutesRequest{Start: []byte("a"), End: []byte("z"), Limit: 1 << 31}); err != nil || len(r.GetRoutes()) != 1 {
		t.Errorf("ScanRoutes with a huge limit: %v, %v; want the one route", r, err)
	}
	if r, err := c.ScanRoutes(ctx, &pb.ScanRoutesRequest{Start: []byte("m"), End: []byte("m")}); err != nil || len(r.GetRoutes()) != 0 {
		t.Errorf("ScanRoutes of the empty range [m, m): %v, %v; want no route", r, err)
	}
	if r, err := c.ListShards(ctx, &pb.ListShardsRequest{NodeId: 99}); err != nil || len(r.GetShards()) != 0 {
		t.Errorf("ListShards of an unknown node: %v, %v; want none", r, err)
	}
	if _, err := c.GetClusterStatus(ctx, &pb.ClusterStatusRequest{}); err != nil {
		t.Errorf("GetClusterStatus: %v", err)
	}

	nodesAfter, shardsAfter := snapshot()
	if !proto.Equal(nodesBefore, nodesAfter) {
		t.Errorf("refused requests changed the nodes:\n%v\n%v", nodesBefore, nodesAfter)
	}
	if !proto.Equal(shardsBefore, shardsAfter) {
		t.Errorf("refused requests changed the shards:\n%v\n%v", shardsBefore, shardsAfter)
	}
}
