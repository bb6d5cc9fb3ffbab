package etcdapi

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LocalStatus is what a member reports of itself in Maintenance.Status,
// from Config.Local. A shardnode runs many Raft groups, so the figures
// are sums and maxima over its replicas rather than one log's.
type LocalStatus struct {
	// RaftIndex and RaftAppliedIndex stand for etcd's raft index and
	// applied index: for a shardnode, the sum of its replicas' committed
	// and applied indexes, which grows with every entry it applies.
	RaftIndex, RaftAppliedIndex uint64
	// RaftTerm stands for etcd's raft term: the highest term among the
	// member's replicas.
	RaftTerm uint64
	// DBSizeBytes is the size of the member's store on disk;
	// DBSizeInUseBytes the part of it holding live data (0: unknown).
	DBSizeBytes, DBSizeInUseBytes int64
}

// maintenanceServer serves the parts of etcd's Maintenance service that
// etcdctl's `endpoint status` and `endpoint health` and clientv3 use:
// Status and Alarm. Defragment, Hash, HashKV, Snapshot, MoveLeader and
// Downgrade answer Unimplemented (etcd's generated stubs, which name the
// RPC): a fleet's storage and leadership are managed through Flotilla's
// own Admin and placement services.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

// Status reports the member: its version (Config.Version), a fresh
// revision in the header, its Raft and storage figures (Config.Local)
// and a leader. Flotilla has no single leader, every member serving every
// request; the lowest member ID stands in for one, so that tools that
// look for exactly one leader among the endpoints find one. What could
// not be read (the revision, the local figures, the member list) is
// reported in Errors rather than failing the call, so `etcdctl endpoint
// status` still shows the member.
func (m *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp := &pb.StatusResponse{Version: m.s.cfg.Version}
	rev, err := m.s.freshRevision(ctx)
	if err != nil {
		resp.Errors = append(resp.Errors, fmt.Sprintf("reading a revision: %v", err))
	}
	resp.Header = m.s.header(rev)
	if m.s.cfg.Local != nil {
		ls, err := m.s.cfg.Local(ctx)
		if err != nil {
			resp.Errors = append(resp.Errors, fmt.Sprintf("local status: %v", err))
		}
		resp.RaftIndex, resp.RaftAppliedIndex, resp.RaftTerm = ls.RaftIndex, ls.RaftAppliedIndex, ls.RaftTerm
		resp.DbSize, resp.DbSizeInUse = ls.DBSizeBytes, ls.DBSizeInUseBytes
	}
	members, err := m.s.members(ctx)
	if err != nil {
		resp.Errors = append(resp.Errors, fmt.Sprintf("listing members: %v", err))
	}
	resp.Leader = m.s.cfg.MemberID
	for _, mb := range members {
		resp.Leader = min(resp.Leader, mb.ID)
	}
	return resp, nil
}

// Alarm answers that no alarm is raised, to a GET (what `etcdctl
// endpoint health` asks) and to a DEACTIVATE (there is nothing to
// disarm): Flotilla raises none of etcd's alarms (NOSPACE, CORRUPT); a
// full disk stops a shardnode instead. ACTIVATE is refused.
func (m *maintenanceServer) Alarm(ctx context.Context, req *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if req.GetAction() == pb.AlarmRequest_ACTIVATE {
		return nil, status.Error(codes.Unimplemented, "etcdapi: Alarm ACTIVATE is not supported: Flotilla raises no etcd alarms")
	}
	rev, _ := m.s.freshRevision(ctx)
	return &pb.AlarmResponse{Header: m.s.header(rev)}, nil
}

// freshRevision returns a revision taken from the fleet's oracle after
// the call began, above every write acknowledged before it, on any shard:
// a read at it sees every such write. (A shard's own resolved revision,
// what a read of the latest state answers at, is only as new as that
// shard's last write, so it can be below writes other shards
// acknowledged.) It is Config.Now's when set, otherwise router.Client.Now's
// (a call to a node, which asks the oracle along with its writes).
func (s *Server) freshRevision(ctx context.Context) (uint64, error) {
	if s.cfg.Now != nil {
		return s.cfg.Now(ctx)
	}
	return s.r.Now(ctx)
}

// members returns the members serving the API, in ID order: from
// Config.Members, with this member added if the list lacks it, or this
// member alone (with Config.SelfURLs) without Config.Members. On an error
// of Config.Members it returns this member alone and the error.
func (s *Server) members(ctx context.Context) ([]Member, error) {
	self := Member{ID: s.cfg.MemberID, Name: fmt.Sprint(s.cfg.MemberID), ClientURLs: s.cfg.SelfURLs}
	if s.cfg.Members == nil {
		return []Member{self}, nil
	}
	ms, err := s.cfg.Members(ctx)
	if err != nil {
		return []Member{self}, err
	}
	if !slices.ContainsFunc(ms, func(m Member) bool { return m.ID == s.cfg.MemberID }) {
		ms = append(slices.Clone(ms), self)
	}
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return ms, nil
}
