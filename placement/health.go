package placement

import (
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// healthCache holds the last Health computed, so that the surfaces read
// within a moment of each other (a scrape's gauges, a status page's
// request) agree and pay for one computation.
type healthCache struct {
	mu struct {
		sync.Mutex
		valid bool
		at    time.Time
		h     schedule.Health
		err   error
	}
}

// healthMaxAge is how long a computed Health is served again: a quarter of
// a heartbeat interval, far below the three intervals after which a
// silent node counts as down.
func (s *Service) healthMaxAge() time.Duration { return s.cfg.HeartbeatInterval / 4 }

// health returns the cluster's Health as this replica's view and
// catalogue show it (schedule.Assess over them): the one computation
// behind the cluster status (flotilla status, the status page) and the
// health gauges. fresh skips the cache. Meaningful on the leader only; a
// follower's view is empty. Safe for concurrent use; the caller owns the
// result.
func (s *Service) health(fresh bool) (schedule.Health, error) {
	now := s.cfg.Now()
	hc := &s.healthCache
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if !fresh && hc.mu.valid && !now.Before(hc.mu.at) && now.Sub(hc.mu.at) < s.healthMaxAge() {
		return hc.mu.h, hc.mu.err
	}
	c, _ := s.clusterOf(now, nil)
	h, err := schedule.Assess(c)
	hc.mu.valid, hc.mu.at, hc.mu.h, hc.mu.err = true, now, h, err
	return h, err
}

// Health returns the cluster's health — shards under-replicated (fewer
// live voters than the replication factor), unavailable (no live quorum),
// lagging, and the shards whose repair or drain cannot happen, and why —
// as the leader's view shows it; ok is false on a follower, whose view is
// empty, or if the view cannot be assessed. It is what flotilla status,
// the status page and placementd's gauges show. Safe for concurrent use;
// the caller owns the result.
func (s *Service) Health() (h schedule.Health, ok bool) {
	if lead, _ := s.observeLeader(); !lead {
		return schedule.Health{}, false
	}
	h, err := s.health(false)
	if err != nil {
		s.cfg.Logger.Warn("assessing the cluster's health", "err", err)
		return schedule.Health{}, false
	}
	return h, true
}

// fillHealth sets cs's health fields from the leader's Health.
func (s *Service) fillHealth(cs *pb.ClusterStatus) error {
	h, err := s.health(false)
	if err != nil {
		return status.Errorf(codes.Internal, "placement: assessing the cluster: %v", err)
	}
	cs.Shards = uint32(h.Shards)
	cs.UnderReplicated, cs.Unavailable, cs.Lagging = uint32(h.UnderReplicated), uint32(h.Unavailable), uint32(h.Lagging)
	cs.BlockedShards, cs.WaitingShards = uint32(h.BlockedShards), uint32(h.WaitingShards)
	cs.Blocked = blockedToProto(h.Blocked, "")
	return nil
}

// blockedToProto converts the groups of Blocked that need need (every
// group if need is empty).
func blockedToProto(groups []schedule.Blocked, need string) []*pb.BlockedShards {
	var out []*pb.BlockedShards
	for _, b := range groups {
		if need != "" && b.Need != need {
			continue
		}
		pbb := &pb.BlockedShards{Need: b.Need, Reason: b.Reason, Waiting: b.Waiting, Shards: uint32(b.Shards)}
		for _, id := range b.Examples {
			pbb.ShardIds = append(pbb.ShardIds, uint64(id))
		}
		out = append(out, pbb)
	}
	return out
}

// drainOutlook answers a drain request for node: how many shards have a
// voter on it, and the groups of shards of draining nodes whose replica
// cannot move off (not those that only wait for the limits).
func (s *Service) drainOutlook(node multiraft.NodeID) (*pb.DrainNodeResponse, error) {
	h, err := s.health(true /* fresh: the drain just started */)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "placement: assessing the drain: %v", err)
	}
	resp := &pb.DrainNodeResponse{}
	for _, b := range blockedToProto(h.Blocked, "drain") {
		if !b.GetWaiting() {
			resp.Blocked = append(resp.Blocked, b)
		}
	}
	resp.Shards = uint32(s.view.votersOn(node))
	return resp, nil
}
