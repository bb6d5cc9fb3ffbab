package placement

import (
	"bytes"
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// view is the placement leader's picture of the fleet, rebuilt from
// heartbeats: it is soft state, never replicated, and a new leader starts
// with an empty one that fills within a heartbeat interval. For a shard the
// report with the newer epoch wins.
//
// Safe for concurrent use: every method takes mu itself and returns
// copies, or values a heartbeat replaces but never modifies (descriptors,
// lagging lists, replica reports), so nothing it returns needs the lock.
// Only the methods ending in Locked expect the caller (another view
// method, or a test) to hold it. mu is a leaf: no view method takes
// another lock while holding it.
type view struct {
	mu struct {
		sync.Mutex
		nodes  map[multiraft.NodeID]*nodeState
		shards map[shard.ShardID]*shardState
		// sorted is every shard ordered by start key; nil when it must be
		// rebuilt (a shard appeared or its range changed).
		sorted []*shardState
		// inUse is the largest ID of each counter (CounterShard,
		// CounterReplica) any heartbeat reported: the scheduler hands out
		// no ID at or below it (see idBlocks).
		inUse [4]uint64
		// series is each node's readings over the last hour, oldest
		// first (series.go).
		series map[multiraft.NodeID][]seriesPoint
	}
}

type nodeState struct {
	lastBeat  time.Time
	usedBytes uint64
	load      float64
	// replicas reported by the node in its last heartbeat.
	replicas []*pb.ReplicaReport
	leaders  int
	// leases is how many leases the node counts time for (those whose
	// home shards it leads); 0 from a node older than leases.
	leases uint64
	// p99Seconds and cpuCores are the node's request latency p99 and
	// process CPU over its last heartbeat interval (0 from a node older
	// than them).
	p99Seconds, cpuCores float64
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
	v := &view{}
	v.mu.nodes, v.mu.shards = map[multiraft.NodeID]*nodeState{}, map[shard.ShardID]*shardState{}
	v.mu.series = map[multiraft.NodeID][]seriesPoint{}
	return v
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
	n := v.mu.nodes[id]
	if n == nil {
		n = &nodeState{}
		v.mu.nodes[id] = n
	}
	n.lastBeat, n.usedBytes, n.load, n.replicas, n.leaders = now, req.GetUsedBytes(), req.GetLoad(), req.GetReplicas(), 0
	n.leases = req.GetLeases()
	n.p99Seconds, n.cpuCores = req.GetRequestP99Seconds(), req.GetCpuCores()
	for counter, id := range reportedIDs(req) {
		v.mu.inUse[counter] = max(v.mu.inUse[counter], id)
	}
	for _, r := range req.GetReplicas() {
		if !r.GetLeader() || r.GetShard() == nil {
			continue
		}
		n.leaders++
		d := pbconv.DescriptorFromProto(r.GetShard())
		s := v.mu.shards[d.ShardID]
		if s == nil {
			s = &shardState{}
			v.mu.shards[d.ShardID] = s
			v.mu.sorted = nil
		} else if newer(s.desc.Epoch, d.Epoch) {
			continue // a stale leader's report
		}
		if !bytes.Equal(s.desc.Start, d.Start) || !bytes.Equal(s.desc.End, d.End) {
			v.mu.sorted = nil
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
	v.recordLocked(id, n, req.GetReplicas(), now)
}

// idInUse returns the largest ID of counter any heartbeat reported.
func (v *view) idInUse(counter uint64) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mu.inUse[counter]
}

// sortedLocked returns the shards ordered by start key, rebuilding the
// index if needed. A shard whose range another shard with a newer epoch
// now covers (the pre-split view of a shard whose split was reported by
// the right-hand side first) is left out.
func (v *view) sortedLocked() []*shardState {
	if v.mu.sorted != nil {
		return v.mu.sorted
	}
	all := make([]*shardState, 0, len(v.mu.shards))
	for _, s := range v.mu.shards {
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
	v.mu.sorted = out
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

// copyShards returns copies of the shard states.
func copyShards(states []*shardState) []shardState {
	out := make([]shardState, len(states))
	for i, s := range states {
		out[i] = *s
	}
	return out
}

// routeWindow returns copies of the shard owning key and of up to n
// shards on each side of it, in key order, with the owner's index among
// them; no shards and -1 if no known shard owns key.
func (v *view) routeWindow(key []byte, n int) ([]shardState, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	sorted := v.sortedLocked()
	i := routeIndex(sorted, key)
	if i < 0 {
		return nil, -1
	}
	lo, hi := max(0, i-n), min(len(sorted), i+n+1)
	return copyShards(sorted[lo:hi]), i - lo
}

// scan returns copies of at most limit shards overlapping [start, end)
// (an empty end: to the end of the key space), in key order.
func (v *view) scan(start, end []byte, limit int) []shardState {
	v.mu.Lock()
	defer v.mu.Unlock()
	sorted := v.sortedLocked()
	i := routeIndex(sorted, start)
	if i < 0 {
		i = 0
	}
	var out []shardState
	for ; i < len(sorted) && len(out) < limit; i++ {
		d := sorted[i].desc
		if len(end) > 0 && string(d.Start) >= string(end) {
			break
		}
		if len(d.End) > 0 && string(d.End) <= string(start) {
			continue
		}
		out = append(out, *sorted[i])
	}
	return out
}

// shardList returns copies of the shards in key order (those with a
// replica on node, unless node is 0), and when each node's last heartbeat
// came, both as of one moment.
func (v *view) shardList(node multiraft.NodeID) ([]shardState, map[multiraft.NodeID]time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []shardState
	for _, st := range v.sortedLocked() {
		if node == 0 || hasNode(st.desc, node) {
			out = append(out, *st)
		}
	}
	beats := make(map[multiraft.NodeID]time.Time, len(v.mu.nodes))
	for id, n := range v.mu.nodes {
		beats[id] = n.lastBeat
	}
	return out, beats
}

func hasNode(d shard.Descriptor, n multiraft.NodeID) bool {
	for _, r := range d.Replicas {
		if r.NodeID == n {
			return true
		}
	}
	return false
}

// nodeStates returns a copy of the state of every node heard from.
func (v *view) nodeStates() map[multiraft.NodeID]nodeState {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[multiraft.NodeID]nodeState, len(v.mu.nodes))
	for id, n := range v.mu.nodes {
		out[id] = *n
	}
	return out
}

// shardCount returns how many shards the view routes to.
func (v *view) shardCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.sortedLocked())
}

// reports reports whether a leader has reported shard id.
func (v *view) reports(id shard.ShardID) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mu.shards[id] != nil
}

// leaderCandidates returns the nodes to ask for the leader of shard id:
// the node the view has leading it, then the node of every replica.
func (v *view) leaderCandidates(id shard.ShardID) []multiraft.NodeID {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.mu.shards[id]
	var candidates []multiraft.NodeID
	if st != nil {
		if st.leaderNode != 0 {
			candidates = append(candidates, st.leaderNode)
		}
		for _, r := range st.desc.Replicas {
			candidates = append(candidates, r.NodeID)
		}
	}
	return candidates
}

// votersOn returns how many of the shards the view routes to have a voter
// on node.
func (v *view) votersOn(node multiraft.NodeID) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, st := range v.sortedLocked() {
		for _, r := range st.desc.Replicas {
			if r.NodeID == node && !r.Learner {
				n++
			}
		}
	}
	return n
}

// cluster returns the catalogue's nodes and the view's shards at now as
// the scheduler's input: a node silent for downThreshold is down (for as
// long as it has been silent; one never heard of since this replica leads,
// for as long as it leads, leaderSince), a draining one draining; a leader
// on a node that is down is unknown. Under the same hold of the lock, so
// the answers agree with the shards returned, it reports for each of
// flights whether the view shows its effect (confirmedLocked). The shards
// share the view's descriptors and lagging lists, which a heartbeat
// replaces but never modifies: they must not be modified.
func (v *view) cluster(nodes []NodeRecord, now, leaderSince time.Time, downThreshold time.Duration, flights []*flight) ([]schedule.Node, []schedule.Shard, []bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []schedule.Node
	down := map[multiraft.NodeID]bool{}
	for _, n := range nodes {
		sn := schedule.Node{ID: n.ID, Labels: schedule.Labels{Zone: n.Zone, Rack: n.Rack}, CapacityBytes: int64(n.CapacityBytes)}
		st := v.mu.nodes[n.ID]
		switch {
		case st == nil:
			// Never heard of since this replica leads: down since then.
			sn.State, sn.DownFor = schedule.NodeDown, now.Sub(leaderSince)
		case now.Sub(st.lastBeat) >= downThreshold:
			sn.State, sn.DownFor = schedule.NodeDown, now.Sub(st.lastBeat)
		case n.Draining:
			sn.State = schedule.NodeDraining
		}
		if st != nil {
			sn.UsedBytes, sn.Load = int64(st.usedBytes), st.load
		}
		down[n.ID] = sn.State == schedule.NodeDown
		out = append(out, sn)
	}
	var shards []schedule.Shard
	for _, st := range v.sortedLocked() {
		sh := schedule.Shard{Descriptor: st.desc, Leader: st.leader, SizeBytes: int64(st.sizeBytes), Keys: int64(st.keys), Load: st.load, Lagging: st.lagging}
		if down[st.leaderNode] {
			sh.Leader = 0
		}
		shards = append(shards, sh)
	}
	var confirmed []bool
	if flights != nil {
		confirmed = make([]bool, len(flights))
		for i, f := range flights {
			confirmed[i] = f.done && v.confirmedLocked(f, now)
		}
	}
	return out, shards, confirmed
}

// confirmedLocked reports whether the view shows f's effect (or waited long
// enough for it). A split is confirmed only once the new shard is in the
// view too, so the next round never sees its key range as a gap.
func (v *view) confirmedLocked(f *flight, now time.Time) bool {
	if now.After(f.settled) {
		return true
	}
	st := v.mu.shards[f.op.Shard]
	if st == nil || !f.op.Visible(&st.desc, st.leader) {
		return false
	}
	for _, step := range f.op.Steps {
		if sp, ok := step.(schedule.Split); ok && v.mu.shards[sp.NewShard] == nil {
			return false
		}
	}
	return true
}

// strays returns the replicas that nodes heard from within downThreshold
// still host but whose shard, as a leader reported it within fresh, does
// not count them, in no particular order.
func (v *view) strays(now time.Time, downThreshold, fresh time.Duration) []stray {
	v.mu.Lock()
	defer v.mu.Unlock()
	var strays []stray
	for node, n := range v.mu.nodes {
		if now.Sub(n.lastBeat) >= downThreshold {
			continue
		}
		for _, r := range n.replicas {
			st := v.mu.shards[shard.ShardID(r.GetShardId())]
			if st == nil || now.Sub(st.reported) > fresh || r.GetLeader() {
				continue
			}
			if _, member := st.desc.Replica(multiraft.ReplicaID(r.GetReplicaId())); !member {
				strays = append(strays, stray{node, st.desc.ShardID, multiraft.ReplicaID(r.GetReplicaId()), st.desc.Epoch})
			}
		}
	}
	return strays
}

// unreported returns the shards that nodes heard from within
// downThreshold host but no leader has reported, with those nodes (in no
// particular order).
func (v *view) unreported(now time.Time, downThreshold time.Duration) map[shard.ShardID][]multiraft.NodeID {
	v.mu.Lock()
	defer v.mu.Unlock()
	hosts := map[shard.ShardID][]multiraft.NodeID{}
	for node, n := range v.mu.nodes {
		if now.Sub(n.lastBeat) >= downThreshold {
			continue
		}
		for _, r := range n.replicas {
			if id := shard.ShardID(r.GetShardId()); v.mu.shards[id] == nil {
				hosts[id] = append(hosts[id], node)
			}
		}
	}
	return hosts
}

// shard returns a copy of the view's state of shard id.
func (v *view) shard(id shard.ShardID) (shardState, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if st := v.mu.shards[id]; st != nil {
		return *st, true
	}
	return shardState{}, false
}

// shardsOn returns, in ascending order, the shards whose descriptor (as
// their leaders last reported it) has a replica on node.
func (v *view) shardsOn(node multiraft.NodeID) []shard.ShardID {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []shard.ShardID
	for _, st := range v.sortedLocked() {
		for _, r := range st.desc.Replicas {
			if r.NodeID == node {
				out = append(out, st.desc.ShardID)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// forget drops what the view knows of node (forgotten by the catalogue):
// its state and its series.
func (v *view) forget(node multiraft.NodeID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.mu.nodes, node)
	delete(v.mu.series, node)
}
