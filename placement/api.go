package placement

import (
	"bytes"
	"context"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// RegisterNode implements pb.PlacementServer.
func (s *Service) RegisterNode(ctx context.Context, req *pb.RegisterNodeRequest) (*pb.RegisterNodeResponse, error) {
	if lead, _ := s.leader(); !lead {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.RegisterNode(ctx, req)
	}
	if req.GetAddress() == "" {
		return nil, status.Error(codes.InvalidArgument, "address: required")
	}
	n := &NodeRecord{
		ID: multiraft.NodeID(req.GetNodeId()), Address: req.GetAddress(), CapacityBytes: req.GetCapacityBytes(),
		Zone: req.GetLabels().GetZone(), Rack: req.GetLabels().GetRack(), Extra: req.GetLabels().GetExtra(),
	}
	res, err := s.propose(ctx, command{Op: "register", Node: n})
	if err != nil {
		return nil, err
	}
	s.cfg.Logger.Info("node registered", "node", res, "address", n.Address, "zone", n.Zone)
	return &pb.RegisterNodeResponse{NodeId: res.(uint64)}, nil
}

// Heartbeat implements pb.PlacementServer.
func (s *Service) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	if lead, _ := s.leader(); !lead {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.Heartbeat(ctx, req)
	}
	cat := s.cat.Load()
	if _, ok := cat.Node(multiraft.NodeID(req.GetNodeId())); !ok {
		return nil, status.Errorf(codes.NotFound, "placement: node %d is not registered", req.GetNodeId())
	}
	if err := checkHeartbeat(req); err != nil {
		return nil, err
	}
	if err := s.raiseCounters(ctx, req); err != nil {
		return nil, err
	}
	s.view.heartbeat(req, s.cfg.Now())
	resp := &pb.HeartbeatResponse{Addresses: map[uint64]string{}}
	for _, n := range cat.Nodes() {
		resp.Addresses[uint64(n.ID)] = n.Address
	}
	return resp, nil
}

// addresses returns every registered node's address.
func (s *Service) addresses() map[multiraft.NodeID]string {
	m := map[multiraft.NodeID]string{}
	for _, n := range s.cat.Load().Nodes() {
		m[n.ID] = n.Address
	}
	return m
}

func (s *Service) routeOf(st *shardState, addrs map[multiraft.NodeID]string) *pb.Route {
	r := &pb.Route{Shard: pbconv.DescriptorToProto(st.desc), LeaderReplicaId: uint64(st.leader), LeaderNodeId: uint64(st.leaderNode), Addresses: map[uint64]string{}}
	for _, rep := range st.desc.Replicas {
		r.Addresses[uint64(rep.NodeID)] = addrs[rep.NodeID]
	}
	return r
}

// maxNeighbours caps the routes prefetched with GetRoute.
const maxNeighbours = 8

// GetRoute implements pb.PlacementServer.
func (s *Service) GetRoute(ctx context.Context, req *pb.GetRouteRequest) (*pb.GetRouteResponse, error) {
	if lead, _ := s.leader(); !lead {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.GetRoute(ctx, req)
	}
	addrs := s.addresses()
	s.view.mu.Lock()
	defer s.view.mu.Unlock()
	sorted := s.view.sortedLocked()
	i := routeIndex(sorted, req.GetKey())
	if i < 0 {
		return nil, status.Errorf(codes.Unavailable, "placement: no shard known for key %q yet (bootstrapping, or heartbeats pending); retry", req.GetKey())
	}
	resp := &pb.GetRouteResponse{Route: s.routeOf(sorted[i], addrs)}
	n := min(int(req.GetNeighbours()), maxNeighbours)
	for j := max(0, i-n); j < min(len(sorted), i+n+1); j++ {
		if j != i {
			resp.Neighbours = append(resp.Neighbours, s.routeOf(sorted[j], addrs))
		}
	}
	return resp, nil
}

// maxScanRoutes caps one ScanRoutes answer.
const maxScanRoutes = 1000

// ScanRoutes implements pb.PlacementServer.
func (s *Service) ScanRoutes(ctx context.Context, req *pb.ScanRoutesRequest) (*pb.ScanRoutesResponse, error) {
	if lead, _ := s.leader(); !lead {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.ScanRoutes(ctx, req)
	}
	if end := req.GetEnd(); len(end) > 0 {
		switch c := bytes.Compare(req.GetStart(), end); {
		case c > 0:
			return nil, status.Errorf(codes.InvalidArgument, "end: %q sorts before start %q", end, req.GetStart())
		case c == 0:
			return &pb.ScanRoutesResponse{}, nil // the empty range [start, start)
		}
	}
	limit := int(req.GetLimit())
	if limit == 0 || limit > maxScanRoutes {
		limit = maxScanRoutes
	}
	addrs := s.addresses()
	s.view.mu.Lock()
	defer s.view.mu.Unlock()
	sorted := s.view.sortedLocked()
	i := routeIndex(sorted, req.GetStart())
	if i < 0 {
		i = 0
	}
	resp := &pb.ScanRoutesResponse{}
	for ; i < len(sorted) && len(resp.Routes) < limit; i++ {
		d := sorted[i].desc
		if len(req.GetEnd()) > 0 && string(d.Start) >= string(req.GetEnd()) {
			break
		}
		if len(d.End) > 0 && string(d.End) <= string(req.GetStart()) {
			continue
		}
		resp.Routes = append(resp.Routes, s.routeOf(sorted[i], addrs))
	}
	return resp, nil
}

// nodeStatus builds the API view of a node at now.
func (s *Service) nodeStatus(n NodeRecord, now time.Time) *pb.Node {
	out := &pb.Node{
		NodeId: uint64(n.ID), Address: n.Address, CapacityBytes: n.CapacityBytes,
		Labels: &pb.NodeLabels{Zone: n.Zone, Rack: n.Rack, Extra: n.Extra}, State: pb.NodeState_NODE_STATE_DOWN,
	}
	if st := s.view.nodes[n.ID]; st != nil {
		ago := now.Sub(st.lastBeat)
		out.LastHeartbeatMsAgo = uint64(ago.Milliseconds())
		if ago < s.downThreshold() {
			out.State = pb.NodeState_NODE_STATE_UP
		}
		out.Replicas, out.Leaders, out.UsedBytes, out.Load = uint32(len(st.replicas)), uint32(st.leaders), st.usedBytes, st.load
	}
	if n.Draining {
		out.State = pb.NodeState_NODE_STATE_DRAINING
	}
	return out
}

// downThreshold is how long a node may stay silent before it is shown as
// down: a few missed heartbeats. (Its replicas are replaced only after
// DownAfter.)
func (s *Service) downThreshold() time.Duration { return 3 * s.cfg.HeartbeatInterval }

// ListNodes implements pb.PlacementServer.
func (s *Service) ListNodes(ctx context.Context, req *pb.ListNodesRequest) (*pb.ListNodesResponse, error) {
	if lead, _ := s.leader(); !lead {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.ListNodes(ctx, req)
	}
	now := s.cfg.Now()
	resp := &pb.ListNodesResponse{}
	nodes := s.cat.Load().Nodes()
	s.view.mu.Lock()
	defer s.view.mu.Unlock()
	for _, n := range nodes {
		resp.Nodes = append(resp.Nodes, s.nodeStatus(n, now))
	}
	return resp, nil
}

// ListShards implements pb.PlacementServer.
func (s *Service) ListShards(ctx context.Context, req *pb.ListShardsRequest) (*pb.ListShardsResponse, error) {
	if lead, _ := s.leader(); !lead {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.ListShards(ctx, req)
	}
	now := s.cfg.Now()
	addrs := s.addresses()
	s.view.mu.Lock()
	defer s.view.mu.Unlock()
	resp := &pb.ListShardsResponse{}
	for _, st := range s.view.sortedLocked() {
		if req.GetNodeId() != 0 {
			if !hasNode(st.desc, multiraft.NodeID(req.GetNodeId())) {
				continue
			}
		}
		ss := &pb.ShardStatus{Route: s.routeOf(st, addrs), ApproximateBytes: st.sizeBytes, ApproximateKeys: st.keys, Load: st.load}
		for _, r := range st.desc.Replicas {
			n := s.view.nodes[r.NodeID]
			if n == nil || now.Sub(n.lastBeat) >= s.downThreshold() {
				ss.UnhealthyReplicaIds = append(ss.UnhealthyReplicaIds, uint64(r.ReplicaID))
			}
		}
		for _, l := range st.lagging {
			ss.UnhealthyReplicaIds = append(ss.UnhealthyReplicaIds, uint64(l))
		}
		resp.Shards = append(resp.Shards, ss)
	}
	return resp, nil
}

func hasNode(d shard.Descriptor, n multiraft.NodeID) bool {
	for _, r := range d.Replicas {
		if r.NodeID == n {
			return true
		}
	}
	return false
}

// GetClusterStatus implements pb.PlacementServer.
func (s *Service) GetClusterStatus(ctx context.Context, req *pb.ClusterStatusRequest) (*pb.ClusterStatus, error) {
	if lead, _ := s.leader(); !lead {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.GetClusterStatus(ctx, req)
	}
	now := s.cfg.Now()
	cs := &pb.ClusterStatus{
		LeaderNodeId: uint64(s.cfg.ReplicaID), PlacementLeaderAddress: s.cfg.Peers[s.cfg.ReplicaID],
		Bootstrapped: s.cat.Load().Settings().Bootstrapped,
	}
	for _, id := range sortedIDs(s.cfg.Peers) {
		cs.PlacementAddresses = append(cs.PlacementAddresses, s.cfg.Peers[id])
	}
	nodes := s.cat.Load().Nodes()
	s.view.mu.Lock()
	for _, n := range nodes {
		if s.nodeStatus(n, now).GetState() == pb.NodeState_NODE_STATE_DOWN {
			cs.NodesDown++
		} else {
			cs.NodesUp++
		}
	}
	s.view.mu.Unlock()
	if err := s.fillHealth(cs); err != nil {
		return nil, err
	}
	cs.RecentOperators = s.ops.recent()
	return cs, nil
}

// DrainNode implements pb.PlacementServer.
func (s *Service) DrainNode(ctx context.Context, req *pb.DrainNodeRequest) (*pb.DrainNodeResponse, error) {
	if lead, _ := s.leader(); !lead {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.DrainNode(ctx, req)
	}
	if req.GetNodeId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "node_id: required")
	}
	if _, ok := s.cat.Load().Node(multiraft.NodeID(req.GetNodeId())); !ok {
		return nil, status.Errorf(codes.NotFound, "placement: node %d is not registered", req.GetNodeId())
	}
	if _, err := s.propose(ctx, command{Op: "drain", ID: req.GetNodeId(), On: req.GetDrain()}); err != nil {
		return nil, err
	}
	if !req.GetDrain() {
		return &pb.DrainNodeResponse{}, nil
	}
	return s.drainOutlook(multiraft.NodeID(req.GetNodeId()))
}

func sortedIDs[V any](m map[multiraft.NodeID]V) []multiraft.NodeID {
	ids := make([]multiraft.NodeID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
