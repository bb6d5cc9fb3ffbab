package placement

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// forward is every Placement RPC's first step. On the leader it serves
// req with serve; on a follower it hands req to the leader through call,
// the same method of the leader's pb.PlacementClient (a method expression
// such as pb.PlacementClient.GetRoute), and returns the leader's answer
// as its own. It observes the leadership as it checks it (observeLeader).
// Without a known leader, or one it cannot reach, the answer is
// UNAVAILABLE: clients retry, on another replica if they know one.
func forward[Req, Resp any](s *Service, ctx context.Context, req Req,
	call func(pb.PlacementClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
	serve func(context.Context, Req) (Resp, error),
) (Resp, error) {
	lead, addr := s.observeLeader()
	if lead {
		return serve(ctx, req)
	}
	c, err := s.leaderClient(addr)
	if err != nil {
		var none Resp
		return none, err
	}
	return call(c, ctx, req)
}

// leaderClient returns a Placement client to the leader at addr, or an
// Unavailable error ("" means no leader is known).
func (s *Service) leaderClient(addr string) (pb.PlacementClient, error) {
	if addr == "" {
		return nil, status.Error(codes.Unavailable, "placement: no leader elected yet; retry")
	}
	c, err := s.cfg.Connect.Placement(addr)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "placement: reaching the leader at %s: %v", addr, err)
	}
	return c, nil
}
