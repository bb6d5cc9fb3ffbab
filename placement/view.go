package placement

import (
	"bytes"
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
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
