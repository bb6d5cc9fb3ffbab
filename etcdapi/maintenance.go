package etcdapi

import pb "go.etcd.io/etcd/api/v3/etcdserverpb"

// maintenanceServer serves etcd's Maintenance service.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}
