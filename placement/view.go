package placement

import (
	"bytes"
	"cmp"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// view is the placement leader's picture of the fleet, rebuilt from
// heartbeats: it is soft state, never replicated, and a new leader starts
// with an empty one that fills within a heartbeat interval. For a shard the
// report with the newer epoch wins. Safe for concurrent use.
type view struct {
	mu     sync.Mutex
	nodes  map[multiraft.NodeID]*nodeState
	shards map[shard.ShardID]*shardState
	// sorted is every shard ordered by start key; nil when it must be
	// rebuilt (a shard appeared or its range changed).
	sorted []*shardState
	// inUse is the largest ID of each counter (CounterShard,
	// CounterReplica) any heartbeat reported: the scheduler hands out no ID
	// at or below it (see idBlocks).
	inUse [4]uint64
	// health caches Service.health; it has its own lock, taken before mu.
	health healthCache
}

type nodeState struct {
	lastBeat  time.Time
	usedBytes uint64
	load      float64
	// replicas reported by the node in its last heartbeat.
	replicas []*pb.ReplicaReport
	leaders  int
}

type shardState struct {
	desc       shard.Descriptor
	leader     multiraft.ReplicaID
	leaderNode multiraft.NodeID
	sizeBytes  uint64
	keys       uint64
	load       float64
	lagging    []multiraft.ReplicaID
	reported   time.Time
}

func newView() *view {
	return &view{nodes: map[multiraft.NodeID]*nodeState{}, shards: map[shard.ShardID]*shardState{}}
}

// newer reports whether epoch a is more recent than b.
func newer(a, b shard.Epoch) bool {
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	return a.ConfVer > b.ConfVer
}

// heartbeat records a node's report at now.
func (v *view) heartbeat(req *pb.HeartbeatRequest, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	id := multiraft.NodeID(req.GetNodeId())
	n := v.nodes[id]
	if n == nil {
		n = &nodeState{}
		v.nodes[id] = n
	}
	n.lastBeat, n.usedBytes, n.load, n.replicas, n.leaders = now, req.GetUsedBytes(), req.GetLoad(), req.GetReplicas(), 0
	for counter, id := range reportedIDs(req) {
		v.inUse[counter] = max(v.inUse[counter], id)
	}
	for _, r := range req.GetReplicas() {
		if !r.GetLeader() || r.GetShard() == nil {
			continue
		}
		n.leaders++
		d := pbconv.DescriptorFromProto(r.GetShard())
		s := v.shards[d.ShardID]
		if s == nil {
			s = &shardState{}
			v.shards[d.ShardID] = s
			v.sorted = nil
		} else if newer(s.desc.Epoch, d.Epoch) {
			continue // a stale leader's report
		}
		if !bytes.Equal(s.desc.Start, d.Start) || !bytes.Equal(s.desc.End, d.End) {
			v.sorted = nil
		}
		s.desc = d
		s.leader, s.leaderNode = multiraft.ReplicaID(r.GetReplicaId()), id
		s.sizeBytes, s.keys, s.load, s.reported = r.GetApproximateBytes(), r.GetApproximateKeys(), r.GetLoad(), now
		// A new slice, never the old one refilled: snapshots taken for
		// the scheduler and the health share it after the lock is gone.
		s.lagging = nil
		for _, l := range r.GetLaggingReplicaIds() {
			s.lagging = append(s.lagging, multiraft.ReplicaID(l))
		}
	}
}

// idInUse returns the largest ID of counter any heartbeat reported.
func (v *view) idInUse(counter uint64) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.inUse[counter]
}

// sortedLocked returns the shards ordered by start key, rebuilding the
// index if needed. A shard whose range another shard with a newer epoch
// now covers (the pre-split view of a shard whose split was reported by
// the right-hand side first) is left out.
func (v *view) sortedLocked() []*shardState {
	if v.sorted != nil {
		return v.sorted
	}
	all := make([]*shardState, 0, len(v.shards))
	for _, s := range v.shards {
		all = append(all, s)
	}
	slices.SortFunc(all, func(a, b *shardState) int {
		if c := bytes.Compare(a.desc.Start, b.desc.Start); c != 0 {
			return c
		}
		return cmp.Compare(b.desc.Epoch.Version, a.desc.Epoch.Version)
	})
	out := all[:0]
	for _, s := range all {
		if n := len(out); n > 0 && overlaps(out[n-1].desc, s.desc) {
			if newer(s.desc.Epoch, out[n-1].desc.Epoch) {
				out[n-1] = s
			}
			continue
		}
		out = append(out, s)
	}
	v.sorted = out
	return out
}

func overlaps(a, b shard.Descriptor) bool {
	aEndsAfterB := len(a.End) == 0 || bytes.Compare(a.End, b.Start) > 0
	bEndsAfterA := len(b.End) == 0 || bytes.Compare(b.End, a.Start) > 0
	return aEndsAfterB && bEndsAfterA
}

// routeIndex returns the index in sorted of the shard owning key, or -1.
func routeIndex(sorted []*shardState, key []byte) int {
	i, _ := slices.BinarySearchFunc(sorted, key, func(s *shardState, k []byte) int {
		return bytes.Compare(s.desc.Start, k)
	})
	// i is the first shard starting after key (or at it).
	if i < len(sorted) && bytes.Equal(sorted[i].desc.Start, key) {
		return i
	}
	if i == 0 {
		return -1
	}
	if sorted[i-1].desc.ContainsKey(key) {
		return i - 1
	}
	return -1
}

// clusterLocked returns the catalogue's nodes and the view's shards at now
// as the scheduler's input, with no operator in flight: a node silent for
// downThreshold is down (for as long as it has been silent; one never
// heard of since this replica leads, for as long as it leads), a draining
// one draining; a leader on a node that is down is unknown. The caller
// holds s.view.mu. The Cluster shares the view's descriptors and lagging
// lists, which a heartbeat replaces but never modifies: it may be read
// after the lock is released, and must not be modified.
func (s *Service) clusterLocked(cat *catalogue, now time.Time) *schedule.Cluster {
	c := &schedule.Cluster{Bootstrapped: cat.Settings().Bootstrapped, Settings: s.scheduleSettings()}
	leaderSince := time.Unix(0, s.leaderSince.Load())
	down := map[multiraft.NodeID]bool{}
	for _, n := range cat.Nodes() {
		sn := schedule.Node{ID: n.ID, Labels: schedule.Labels{Zone: n.Zone, Rack: n.Rack}, CapacityBytes: int64(n.CapacityBytes)}
		st := s.view.nodes[n.ID]
		switch {
		case st == nil:
			sn.State, sn.DownFor = schedule.NodeDown, now.Sub(leaderSince)
		case now.Sub(st.lastBeat) >= s.downThreshold():
			sn.State, sn.DownFor = schedule.NodeDown, now.Sub(st.lastBeat)
		case n.Draining:
			sn.State = schedule.NodeDraining
		}
		if st != nil {
			sn.UsedBytes, sn.Load = int64(st.usedBytes), st.load
		}
		down[n.ID] = sn.State == schedule.NodeDown
		c.Nodes = append(c.Nodes, sn)
	}
	for _, st := range s.view.sortedLocked() {
		sh := schedule.Shard{Descriptor: st.desc, Leader: st.leader, SizeBytes: int64(st.sizeBytes), Keys: int64(st.keys), Load: st.load, Lagging: st.lagging}
		if down[st.leaderNode] {
			sh.Leader = 0
		}
		c.Shards = append(c.Shards, sh)
	}
	return c
}

// scheduleSettings returns the scheduler's settings from the config.
func (s *Service) scheduleSettings() schedule.Settings {
	return schedule.Settings{
		ReplicationFactor: s.cfg.ReplicationFactor, InitialShards: s.cfg.InitialShards,
		SplitSizeBytes: int64(s.cfg.SplitSizeBytes), SplitLoad: s.cfg.SplitLoad, DownAfter: s.cfg.DownAfter,
	}
}

// healthCache holds the last Health computed, so that the surfaces read
// within a moment of each other (a scrape's gauges, a status page's
// request) agree and pay for one computation.
type healthCache struct {
	mu    sync.Mutex
	valid bool
	at    time.Time
	h     schedule.Health
	err   error
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
	hc := &s.view.health
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if !fresh && hc.valid && !now.Before(hc.at) && now.Sub(hc.at) < s.healthMaxAge() {
		return hc.h, hc.err
	}
	cat := s.cat.Load()
	s.view.mu.Lock()
	c := s.clusterLocked(cat, now)
	s.view.mu.Unlock()
	h, err := schedule.Assess(c)
	hc.valid, hc.at, hc.h, hc.err = true, now, h, err
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
	if lead, _ := s.leader(); !lead {
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
	s.view.mu.Lock()
	defer s.view.mu.Unlock()
	for _, st := range s.view.sortedLocked() {
		for _, r := range st.desc.Replicas {
			if r.NodeID == node && !r.Learner {
				resp.Shards++
			}
		}
	}
	return resp, nil
}
