package etcdapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clusterServer serves etcd's Cluster service: MemberList. MemberAdd,
// MemberRemove, MemberUpdate and MemberPromote answer Unimplemented
// (etcd's generated stubs, which name the RPC): shardnodes join and
// leave the fleet through placement, not through the etcd API.
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}

// MemberList answers with the members serving the API (Config.Members,
// or this member alone), in ID order; a member's ID is its shardnode's
// node ID. None is a learner. The linearizable flag changes nothing: the
// list is what the member knows when asked. When Config.Members fails,
// the call fails (Unavailable) rather than answer with a partial list
// clientv3 would take as the whole cluster.
func (c *clusterServer) MemberList(ctx context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	ms, err := c.s.members(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "etcdapi: listing members: %v", err)
	}
	rev, _ := c.s.freshRevision(ctx)
	resp := &pb.MemberListResponse{Header: c.s.header(rev), Members: make([]*pb.Member, len(ms))}
	for i, m := range ms {
		resp.Members[i] = &pb.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs}
	}
	return resp, nil
}
