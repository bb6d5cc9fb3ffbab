package etcdapi

import pb "go.etcd.io/etcd/api/v3/etcdserverpb"

// kvServer serves etcd's KV service.
type kvServer struct {
	pb.UnimplementedKVServer
	s *Server
}
