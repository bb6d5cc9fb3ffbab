package etcdapi

import pb "go.etcd.io/etcd/api/v3/etcdserverpb"

// clusterServer serves etcd's Cluster service.
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}
