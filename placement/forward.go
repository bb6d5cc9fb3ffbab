package placement

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// client returns a Placement client to the leader, or an Unavailable error.
func (s *Service) leaderClient() (pb.PlacementClient, error) {
	_, addr := s.leader()
	if addr == "" {
		return nil, status.Error(codes.Unavailable, "placement: no leader elected yet; retry")
	}
	c, err := s.cfg.Connect.Placement(addr)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "placement: reaching the leader at %s: %v", addr, err)
	}
	return c, nil
}
