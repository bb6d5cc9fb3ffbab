package etcdapi

import pb "go.etcd.io/etcd/api/v3/etcdserverpb"

// leaseServer serves etcd's Lease service.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *Server
}
