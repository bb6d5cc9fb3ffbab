package sim

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// connector is the placement.Connector of one placement process: its
// clients call the nodes' Admin services (admin.go) and the other
// placement replicas over the simulated RPC network (rpc.go).
type connector struct {
	s    *simulation
	from *node
}

var _ placement.Connector = connector{}

// Admin implements placement.Connector.
func (c connector) Admin(_ multiraft.NodeID, addr string) (pb.AdminClient, error) {
	to := c.s.procByAddr(addr)
	if to == nil {
		return nil, fmt.Errorf("sim: no process at %q", addr)
	}
	if c.s.cfg.bug == bugPlacementPanics && c.s.step > 300 {
		panic("sim: planted panic in a placement goroutine")
	}
	return adminClient{s: c.s, from: c.from, to: to}, nil
}

// Placement implements placement.Connector.
func (c connector) Placement(addr string) (pb.PlacementClient, error) {
	to := c.s.procByAddr(addr)
	if to == nil || to.pl == nil {
		return nil, fmt.Errorf("sim: no placement process at %q", addr)
	}
	return placementClient{s: c.s, from: c.from, to: to}, nil
}

// procByAddr returns the process with address addr, or nil.
func (s *simulation) procByAddr(addr string) *node {
	for _, n := range s.procs() {
		if n.addr == addr {
			return n
		}
	}
	return nil
}

// adminClient is a pb.AdminClient of one node's Admin service. The
// methods placement does not call are left to the nil embedded
// interface: calling one panics.
type adminClient struct {
	pb.AdminClient
	s        *simulation
	from, to *node
}

// CreateReplica implements pb.AdminClient.
func (c adminClient) CreateReplica(ctx context.Context, req *pb.CreateReplicaRequest, _ ...grpc.CallOption) (*pb.CreateReplicaResponse, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Admin.CreateReplica", req, c.to.adminCreateReplica)
}

// RemoveReplica implements pb.AdminClient.
func (c adminClient) RemoveReplica(ctx context.Context, req *pb.RemoveReplicaRequest, _ ...grpc.CallOption) (*pb.RemoveReplicaResponse, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Admin.RemoveReplica", req, c.to.adminRemoveReplica)
}

// ChangeReplicas implements pb.AdminClient.
func (c adminClient) ChangeReplicas(ctx context.Context, req *pb.ChangeReplicasRequest, _ ...grpc.CallOption) (*pb.ChangeReplicasResponse, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Admin.ChangeReplicas", req, c.to.adminChangeReplicas)
}

// AddReplica implements pb.AdminClient.
func (c adminClient) AddReplica(ctx context.Context, req *pb.AddReplicaRequest, _ ...grpc.CallOption) (*pb.AddReplicaResponse, error) {
	if c.s.cfg.bug == bugAdminHangs {
		// The answer never comes, and the client ignores its context.
		c.s.actors.park(func() bool { return false })
	}
	return unary(ctx, c.s.rpc, c.from, c.to, "Admin.AddReplica", req, c.to.adminAddReplica)
}

// GetShardInfo implements pb.AdminClient.
func (c adminClient) GetShardInfo(ctx context.Context, req *pb.ShardInfoRequest, _ ...grpc.CallOption) (*pb.ShardInfo, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Admin.GetShardInfo", req, c.to.adminGetShardInfo)
}

// FindLeader implements pb.AdminClient.
func (c adminClient) FindLeader(ctx context.Context, req *pb.FindLeaderRequest, _ ...grpc.CallOption) (*pb.FindLeaderResponse, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Admin.FindLeader", req, c.to.adminFindLeader)
}

// TransferLeader implements pb.AdminClient.
func (c adminClient) TransferLeader(ctx context.Context, req *pb.TransferLeaderRequest, _ ...grpc.CallOption) (*pb.TransferLeaderResponse, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Admin.TransferLeader", req, c.to.adminTransferLeader)
}

// Split implements pb.AdminClient.
func (c adminClient) Split(ctx context.Context, req *pb.SplitRequest, _ ...grpc.CallOption) (*pb.SplitResponse, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Admin.Split", req, c.to.adminSplit)
}

// placementClient is a pb.PlacementClient of one placement process: the
// real placement.Service serves each call, as an actor of that process.
// Methods not listed are left to the nil embedded interface.
type placementClient struct {
	pb.PlacementClient
	s        *simulation
	from, to *node
}

// svc returns the service of the process the call reached.
func (c placementClient) svc() *placement.Service { return c.to.pl.svc }

// RegisterNode implements pb.PlacementClient.
func (c placementClient) RegisterNode(ctx context.Context, req *pb.RegisterNodeRequest, _ ...grpc.CallOption) (*pb.RegisterNodeResponse, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Placement.RegisterNode", req, func(ctx context.Context, req *pb.RegisterNodeRequest) (*pb.RegisterNodeResponse, error) {
		return c.svc().RegisterNode(ctx, req)
	})
}

// Heartbeat implements pb.PlacementClient.
func (c placementClient) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest, _ ...grpc.CallOption) (*pb.HeartbeatResponse, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Placement.Heartbeat", req, func(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
		return c.svc().Heartbeat(ctx, req)
	})
}

// DrainNode implements pb.PlacementClient.
func (c placementClient) DrainNode(ctx context.Context, req *pb.DrainNodeRequest, _ ...grpc.CallOption) (*pb.DrainNodeResponse, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Placement.DrainNode", req, func(ctx context.Context, req *pb.DrainNodeRequest) (*pb.DrainNodeResponse, error) {
		return c.svc().DrainNode(ctx, req)
	})
}

// GetRoute implements pb.PlacementClient.
func (c placementClient) GetRoute(ctx context.Context, req *pb.GetRouteRequest, _ ...grpc.CallOption) (*pb.GetRouteResponse, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Placement.GetRoute", req, func(ctx context.Context, req *pb.GetRouteRequest) (*pb.GetRouteResponse, error) {
		return c.svc().GetRoute(ctx, req)
	})
}

// GetClusterStatus implements pb.PlacementClient.
func (c placementClient) GetClusterStatus(ctx context.Context, req *pb.ClusterStatusRequest, _ ...grpc.CallOption) (*pb.ClusterStatus, error) {
	return unary(ctx, c.s.rpc, c.from, c.to, "Placement.GetClusterStatus", req, func(ctx context.Context, req *pb.ClusterStatusRequest) (*pb.ClusterStatus, error) {
		return c.svc().GetClusterStatus(ctx, req)
	})
}
