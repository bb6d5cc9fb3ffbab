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
)

// The Placement API. Each RPC is forward (forward.go) around the method
// that serves it on the leader; the leader answers from its catalogue and
// its view, and turns the errors of catalogue proposals into statuses
// (toStatus).

// RegisterNode implements pb.PlacementServer.
func (s *Service) RegisterNode(ctx context.Context, req *pb.RegisterNodeRequest) (*pb.RegisterNodeResponse, error) {
	return forward(s, ctx, req, pb.PlacementClient.RegisterNode, s.registerNode)
}

func (s *Service) registerNode(ctx context.Context, req *pb.RegisterNodeRequest) (*pb.RegisterNodeResponse, error) {
	if req.GetAddress() == "" {
		return nil, status.Error(codes.InvalidArgument, "address: required")
	}
	n := &NodeRecord{
		ID: multiraft.NodeID(req.GetNodeId()), Address: req.GetAddress(), CapacityBytes: req.GetCapacityBytes(),
		Zone: req.GetLabels().GetZone(), Rack: req.GetLabels().GetRack(), Extra: req.GetLabels().GetExtra(),
	}
	res, err := s.propose(ctx, command{Op: "register", Node: n})
	if err != nil {
		return nil, toStatus(err)
	}
	s.cfg.Logger.Info("node registered", "node", res, "address", n.Address, "zone", n.Zone)
	return &pb.RegisterNodeResponse{NodeId: res.(uint64)}, nil
}

// Heartbeat implements pb.PlacementServer.
func (s *Service) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	return forward(s, ctx, req, pb.PlacementClient.Heartbeat, s.heartbeat)
}

func (s *Service) heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	cat := s.cat.load()
	if _, ok := cat.Node(multiraft.NodeID(req.GetNodeId())); !ok {
		return nil, status.Errorf(codes.NotFound, "placement: node %d is not registered", req.GetNodeId())
	}
	if err := checkHeartbeat(req); err != nil {
		return nil, err
	}
	if err := s.raiseCounters(ctx, req); err != nil {
		return nil, toStatus(err)
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
	for _, n := range s.cat.load().Nodes() {
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
	return forward(s, ctx, req, pb.PlacementClient.GetRoute, s.route)
}

func (s *Service) route(_ context.Context, req *pb.GetRouteRequest) (*pb.GetRouteResponse, error) {
	addrs := s.addresses()
	window, i := s.view.routeWindow(req.GetKey(), min(int(req.GetNeighbours()), maxNeighbours))
	if i < 0 {
		return nil, status.Errorf(codes.Unavailable, "placement: no shard known for key %q yet (bootstrapping, or heartbeats pending); retry", req.GetKey())
	}
	resp := &pb.GetRouteResponse{Route: s.routeOf(&window[i], addrs)}
	for j := range window {
		if j != i {
			resp.Neighbours = append(resp.Neighbours, s.routeOf(&window[j], addrs))
		}
	}
	return resp, nil
}

// maxScanRoutes caps one ScanRoutes answer.
const maxScanRoutes = 1000

// ScanRoutes implements pb.PlacementServer.
func (s *Service) ScanRoutes(ctx context.Context, req *pb.ScanRoutesRequest) (*pb.ScanRoutesResponse, error) {
	return forward(s, ctx, req, pb.PlacementClient.ScanRoutes, s.scanRoutes)
}

func (s *Service) scanRoutes(_ context.Context, req *pb.ScanRoutesRequest) (*pb.ScanRoutesResponse, error) {
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
	resp := &pb.ScanRoutesResponse{}
	for _, st := range s.view.scan(req.GetStart(), req.GetEnd(), limit) {
		resp.Routes = append(resp.Routes, s.routeOf(&st, addrs))
	}
	return resp, nil
}

// nodeStatus builds the API view at now of node n, whose state in the
// view is st (nil if never heard from). LastHeartbeatMsAgo is 0 only for a
// node this replica never heard from (a heartbeat of less than a
// millisecond ago shows as 1), which nodeDown and the banner rely on.
func (s *Service) nodeStatus(n NodeRecord, st *nodeState, now time.Time) *pb.Node {
	out := &pb.Node{
		NodeId: uint64(n.ID), Address: n.Address, CapacityBytes: n.CapacityBytes,
		Labels: &pb.NodeLabels{Zone: n.Zone, Rack: n.Rack, Extra: n.Extra}, State: pb.NodeState_NODE_STATE_DOWN,
	}
	if st != nil {
		ago := now.Sub(st.lastBeat)
		out.LastHeartbeatMsAgo = uint64(max(ago.Milliseconds(), 1))
		if ago < s.downThreshold() {
			out.State = pb.NodeState_NODE_STATE_UP
		}
		out.Replicas, out.Leaders, out.UsedBytes, out.Load = uint32(len(st.replicas)), uint32(st.leaders), st.usedBytes, st.load
		out.Leases = st.leases
		out.RequestP99Seconds, out.CpuCores = st.p99Seconds, st.cpuCores
	}
	if n.Draining {
		out.State = pb.NodeState_NODE_STATE_DRAINING
	}
	return out
}

// nodeStatuses returns the API view at now of every registered node.
func (s *Service) nodeStatuses(now time.Time) []*pb.Node {
	nodes := s.cat.load().Nodes()
	states := s.view.nodeStates()
	out := make([]*pb.Node, 0, len(nodes))
	for _, n := range nodes {
		var st *nodeState
		if ns, ok := states[n.ID]; ok {
			st = &ns
		}
		out = append(out, s.nodeStatus(n, st, now))
	}
	return out
}

// countNodes returns how many of nodes are down (by nodeDown, with down
// the silence after which a node is down), and how many are not, and the
// leases the nodes that are not down count (a down node's last count is
// stale: its shards' new leaders count those leases).
func countNodes(nodes []*pb.Node, down time.Duration) (up, downs int, leases uint64) {
	for _, n := range nodes {
		if nodeDown(n, down) {
			downs++
		} else {
			up++
			leases += n.GetLeases()
		}
	}
	return up, downs, leases
}

// nodeDown reports whether node n is down: shown down, or draining and
// either silent for down or longer or never heard from by this placement
// leader (LastHeartbeatMsAgo 0, see nodeStatus). A draining node's state
// says draining even when it is silent (the drain is what the operator
// asked for), but the scheduler treats it as down (view.cluster: a node a
// new leader never heard from is down from the moment it took over), and
// so must every count of the nodes that are down, or the summary would
// disagree with the banner and the scheduler.
func nodeDown(n *pb.Node, down time.Duration) bool {
	switch n.GetState() {
	case pb.NodeState_NODE_STATE_DOWN:
		return true
	case pb.NodeState_NODE_STATE_DRAINING:
		ago := n.GetLastHeartbeatMsAgo()
		return ago == 0 || time.Duration(ago)*time.Millisecond >= down
	}
	return false
}

// downThreshold is how long a node may stay silent before it is shown as
// down: a few missed heartbeats. (Its replicas are replaced only after
// DownAfter.)
func (c *core) downThreshold() time.Duration { return 3 * c.cfg.HeartbeatInterval }

// ListNodes implements pb.PlacementServer.
func (s *Service) ListNodes(ctx context.Context, req *pb.ListNodesRequest) (*pb.ListNodesResponse, error) {
	return forward(s, ctx, req, pb.PlacementClient.ListNodes, s.listNodes)
}

func (s *Service) listNodes(context.Context, *pb.ListNodesRequest) (*pb.ListNodesResponse, error) {
	resp := &pb.ListNodesResponse{}
	resp.Nodes = append(resp.Nodes, s.nodeStatuses(s.cfg.Now())...)
	return resp, nil
}

// ListShards implements pb.PlacementServer.
func (s *Service) ListShards(ctx context.Context, req *pb.ListShardsRequest) (*pb.ListShardsResponse, error) {
	return forward(s, ctx, req, pb.PlacementClient.ListShards, s.listShards)
}

func (s *Service) listShards(_ context.Context, req *pb.ListShardsRequest) (*pb.ListShardsResponse, error) {
	now := s.cfg.Now()
	addrs := s.addresses()
	shards, beats := s.view.shardList(multiraft.NodeID(req.GetNodeId()))
	resp := &pb.ListShardsResponse{}
	for _, st := range shards {
		ss := &pb.ShardStatus{Route: s.routeOf(&st, addrs), ApproximateBytes: st.sizeBytes, ApproximateKeys: st.keys, Load: st.load}
		for _, r := range st.desc.Replicas {
			if last, ok := beats[r.NodeID]; !ok || now.Sub(last) >= s.downThreshold() {
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

// GetClusterStatus implements pb.PlacementServer.
func (s *Service) GetClusterStatus(ctx context.Context, req *pb.ClusterStatusRequest) (*pb.ClusterStatus, error) {
	return forward(s, ctx, req, pb.PlacementClient.GetClusterStatus, s.clusterStatus)
}

func (s *Service) clusterStatus(context.Context, *pb.ClusterStatusRequest) (*pb.ClusterStatus, error) {
	now := s.cfg.Now()
	cs := &pb.ClusterStatus{
		LeaderNodeId: uint64(s.cfg.ReplicaID), PlacementLeaderAddress: s.cfg.Peers[s.cfg.ReplicaID],
		Bootstrapped: s.cat.load().Settings().Bootstrapped,
	}
	for _, id := range sortedIDs(s.cfg.Peers) {
		cs.PlacementAddresses = append(cs.PlacementAddresses, s.cfg.Peers[id])
	}
	up, down, leases := countNodes(s.nodeStatuses(now), s.downThreshold())
	cs.NodesUp, cs.NodesDown, cs.Leases = uint32(up), uint32(down), leases
	if err := s.fillHealth(cs); err != nil {
		return nil, err
	}
	cs.RecentOperators = s.ops.recent()
	return cs, nil
}

func sortedIDs[V any](m map[multiraft.NodeID]V) []multiraft.NodeID {
	ids := make([]multiraft.NodeID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// DrainNode implements pb.PlacementServer.
func (s *Service) DrainNode(ctx context.Context, req *pb.DrainNodeRequest) (*pb.DrainNodeResponse, error) {
	return forward(s, ctx, req, pb.PlacementClient.DrainNode, s.drainNode)
}

func (s *Service) drainNode(ctx context.Context, req *pb.DrainNodeRequest) (*pb.DrainNodeResponse, error) {
	if req.GetNodeId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "node_id: required")
	}
	if _, ok := s.cat.load().Node(multiraft.NodeID(req.GetNodeId())); !ok {
		return nil, status.Errorf(codes.NotFound, "placement: node %d is not registered", req.GetNodeId())
	}
	if _, err := s.propose(ctx, command{Op: "drain", ID: req.GetNodeId(), On: req.GetDrain()}); err != nil {
		return nil, toStatus(err)
	}
	if !req.GetDrain() {
		return &pb.DrainNodeResponse{}, nil
	}
	return s.drainOutlook(multiraft.NodeID(req.GetNodeId()))
}
