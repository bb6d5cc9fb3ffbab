package placement

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// A heartbeat is checked whole before anything of it is used: a report
// that could not come from a healthy node (a shard or replica ID 0, a
// descriptor whose range is inverted or that has no replicas) refuses the
// whole heartbeat with INVALID_ARGUMENT, so a buggy node is loud (it shows
// as down) instead of serving its report as routes.

// checkHeartbeat returns an INVALID_ARGUMENT status naming every invalid
// field of req, or nil.
func checkHeartbeat(req *pb.HeartbeatRequest) error {
	var problems []string
	bad := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	checkReplicaID := func(field string, id uint64) {
		switch {
		case id == 0:
			bad(field, "required")
		case id > uint64(multiraft.MaxReplicaID):
			bad(field, "%d is reserved by raft", id)
		}
	}
	for i, r := range req.GetReplicas() {
		f := fmt.Sprintf("replicas[%d]", i)
		if r.GetShardId() == 0 {
			bad(f+".shard_id", "required")
		}
		checkReplicaID(f+".replica_id", r.GetReplicaId())
		d := r.GetShard()
		if d == nil {
			if r.GetLeader() {
				bad(f+".shard", "required from a leader")
			}
			continue
		}
		switch {
		case d.GetShardId() == 0:
			bad(f+".shard.shard_id", "required")
		case d.GetShardId() != r.GetShardId():
			bad(f+".shard.shard_id", "%d is not the report's shard_id %d", d.GetShardId(), r.GetShardId())
		}
		if len(d.GetEnd()) > 0 && bytes.Compare(d.GetStart(), d.GetEnd()) >= 0 {
			bad(f+".shard.end", "%q does not sort after start %q", d.GetEnd(), d.GetStart())
		}
		if len(d.GetReplicas()) == 0 {
			bad(f+".shard.replicas", "required")
		}
		seen := map[uint64]bool{}
		for j, rep := range d.GetReplicas() {
			rf := fmt.Sprintf("%s.shard.replicas[%d]", f, j)
			checkReplicaID(rf+".replica_id", rep.GetReplicaId())
			if seen[rep.GetReplicaId()] {
				bad(rf+".replica_id", "%d appears twice", rep.GetReplicaId())
			}
			seen[rep.GetReplicaId()] = true
			if rep.GetNodeId() == 0 {
				bad(rf+".node_id", "required")
			}
		}
	}
	if len(problems) > 0 {
		return status.Errorf(codes.InvalidArgument, "placement: heartbeat of node %d refused: %s",
			req.GetNodeId(), strings.Join(problems, "; "))
	}
	return nil
}

// reportedIDs returns the largest shard ID (at CounterShard) and replica ID
// (at CounterReplica) a checked heartbeat names.
func reportedIDs(req *pb.HeartbeatRequest) (ids [4]uint64) {
	for _, r := range req.GetReplicas() {
		ids[CounterShard] = max(ids[CounterShard], r.GetShardId(), r.GetShard().GetShardId())
		ids[CounterReplica] = max(ids[CounterReplica], r.GetReplicaId())
		for _, rep := range r.GetShard().GetReplicas() {
			ids[CounterReplica] = max(ids[CounterReplica], rep.GetReplicaId())
		}
	}
	return ids
}

// raiseCounters makes the catalogue's shard and replica counters pass
// every ID a heartbeat reports, through its Raft log, before the report
// reaches the view. Normally every reported ID came from the counters and
// nothing is proposed; after the catalogue was lost and re-created, the
// first heartbeats move the counters past the IDs the fleet still uses.
func (s *Service) raiseCounters(ctx context.Context, req *pb.HeartbeatRequest) error {
	cat := s.cat.load()
	for counter, id := range reportedIDs(req) {
		if id == 0 || id < cat.Next(uint64(counter)) {
			continue
		}
		next, err := s.propose(ctx, command{Op: "raise", Kind: uint64(counter), ID: id})
		if err != nil {
			return err
		}
		s.cfg.Logger.Info("ID counter raised past a reported ID", "counter", counter, "reported", id, "next", next)
	}
	return nil
}
