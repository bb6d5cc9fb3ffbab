package placement

import (
	"slices"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// The leader keeps, for the last hour, a time series per node of what its
// heartbeats say: load (requests/s), bytes (of all its replicas, as the
// shards' leaders report their sizes), the p99 latency of the requests it
// served and the CPU its process used (both over the interval its
// heartbeat covers). Like the rest of the view it is soft state: a new
// leader starts with none, and a follower has none.

const (
	// seriesStep is the width of one point: the last heartbeat of a node
	// within a step is its point.
	seriesStep = 10 * time.Second
	// seriesKeep is how far back the series go.
	seriesKeep = time.Hour
)

// seriesPoint is a node's reading at one step.
type seriesPoint struct {
	at           time.Time // the step's start
	load         float64
	replicaBytes uint64
	replicas     int
	p99Seconds   float64
	cpuCores     float64
}

// recordLocked adds node's reading at now to its series: n as the
// heartbeat just left it, replicas the replicas it reported, whose bytes
// are their shards' sizes as the view has them. Points older than
// seriesKeep are dropped.
func (v *view) recordLocked(node multiraft.NodeID, n *nodeState, replicas []*pb.ReplicaReport, now time.Time) {
	p := seriesPoint{at: now.Truncate(seriesStep), load: n.load, replicas: len(replicas), p99Seconds: n.p99Seconds, cpuCores: n.cpuCores}
	for _, r := range replicas {
		if st := v.mu.shards[shard.ShardID(r.GetShardId())]; st != nil {
			p.replicaBytes += st.sizeBytes
		}
	}
	s := v.mu.series[node]
	if k := len(s); k > 0 && s[k-1].at.Equal(p.at) {
		s[k-1] = p
	} else {
		s = append(s, p)
	}
	cut := 0
	for cut < len(s) && now.Sub(s[cut].at) > seriesKeep {
		cut++
	}
	if cut > 0 {
		// Copy down, so the array does not grow for ever.
		s = append(s[:0], s[cut:]...)
	}
	v.mu.series[node] = s
}

// nodeSeries returns a copy of every node's series at now, without the
// points older than seriesKeep, by node ID.
func (v *view) nodeSeries(now time.Time) map[multiraft.NodeID][]seriesPoint {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[multiraft.NodeID][]seriesPoint, len(v.mu.series))
	for id, s := range v.mu.series {
		i := 0
		for i < len(s) && now.Sub(s[i].at) > seriesKeep {
			i++
		}
		out[id] = slices.Clone(s[i:])
	}
	return out
}

// SeriesPage is the answer of GET /api/series: every node's series, the
// points oldest first.
type SeriesPage struct {
	// StepMs is the width of a point in milliseconds; KeepMs how far back
	// the series go.
	StepMs int64 `json:"step_ms"`
	KeepMs int64 `json:"keep_ms"`
	// NowMs is the leader's clock when it answered (Unix milliseconds).
	NowMs int64        `json:"now_ms"`
	Nodes []NodeSeries `json:"nodes"`
}

// NodeSeries is one node's series: TimesMs[i] (the start of a step, Unix
// milliseconds) goes with Load[i] (requests/s), ReplicaBytes[i],
// Replicas[i], P99Seconds[i] (the p99 latency of the KV requests the node
// served over the heartbeat interval, 0 when it served none) and
// CPUCores[i] (its process's CPU over that interval, in cores). A node
// silent for a while has no points for it.
type NodeSeries struct {
	NodeID       uint64    `json:"node_id"`
	TimesMs      []int64   `json:"times_ms"`
	Load         []float64 `json:"load"`
	ReplicaBytes []uint64  `json:"replica_bytes"`
	Replicas     []int     `json:"replicas"`
	P99Seconds   []float64 `json:"p99_seconds"`
	CPUCores     []float64 `json:"cpu_cores"`
}

// seriesPage builds the SeriesPage at now from the view.
func (v *view) seriesPage(now time.Time) SeriesPage {
	page := SeriesPage{StepMs: seriesStep.Milliseconds(), KeepMs: seriesKeep.Milliseconds(), NowMs: now.UnixMilli(), Nodes: []NodeSeries{}}
	all := v.nodeSeries(now)
	for _, id := range sortedIDs(all) {
		ns := NodeSeries{NodeID: uint64(id), TimesMs: []int64{}, Load: []float64{}, ReplicaBytes: []uint64{}, Replicas: []int{},
			P99Seconds: []float64{}, CPUCores: []float64{}}
		for _, p := range all[id] {
			ns.TimesMs = append(ns.TimesMs, p.at.UnixMilli())
			ns.Load = append(ns.Load, p.load)
			ns.ReplicaBytes = append(ns.ReplicaBytes, p.replicaBytes)
			ns.Replicas = append(ns.Replicas, p.replicas)
			ns.P99Seconds = append(ns.P99Seconds, p.p99Seconds)
			ns.CPUCores = append(ns.CPUCores, p.cpuCores)
		}
		page.Nodes = append(page.Nodes, ns)
	}
	return page
}
