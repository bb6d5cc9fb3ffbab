package placement

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flotilla-kv/flotilla/internal/readable"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// The status page's verdict. GET /api/status returns, next to the
// StatusPage message (cluster, nodes, shards), a "health" object that
// placement derives from that same message: the problems the banner at
// the top of the page lists, and figures per node and per shard that the
// raw message does not carry (bytes from every replica, stale counts,
// unhealthy replicas by node). It is computed from the message alone, not
// from this replica's own state, so a follower that forwarded the
// request to the leader gives the same verdict as the leader.

// Severities of a Problem, from the worst. StatusPageHealth.State is the
// worst severity of its problems, or StateOK when there are none.
const (
	// SeverityCritical: data is unreachable or at risk now, or placement
	// cannot act on it (nodes down, shards without a quorum, keys no
	// shard serves, repairs that cannot happen).
	SeverityCritical = "critical"
	// SeverityWarning: the fleet serves everything but is not as it
	// should be (shards under-replicated, operators stuck or repeating).
	SeverityWarning = "warning"
	// SeverityNotice: normal under change, worth a look if it lasts
	// (lagging replicas, repairs waiting for the per-node limits,
	// operators that failed once).
	SeverityNotice = "notice"
	// StateOK is the state of a fleet with no problem at all.
	StateOK = "ok"
)

// Problem kinds, stable names for scripts and tests.
const (
	ProblemNodesDown          = "nodes-down"
	ProblemShardsUnavailable  = "shards-unavailable"
	ProblemKeysUnowned        = "keys-unowned"
	ProblemPlacementBlocked   = "placement-blocked"
	ProblemUnderReplicated    = "shards-under-replicated"
	ProblemOperatorsStuck     = "operators-stuck"
	ProblemOperatorsRepeating = "operators-repeating"
	ProblemNotBootstrapped    = "not-bootstrapped"
	ProblemNoNodes            = "no-nodes"
	ProblemShardsLagging      = "shards-lagging"
	ProblemPlacementWaiting   = "placement-waiting"
	ProblemOperatorsFailed    = "operators-failed"
)

// StatusPageHealth is the verdict on one StatusPage: the "health" object
// of GET /api/status.
type StatusPageHealth struct {
	// State is the worst Severity among Problems, StateOK if none.
	State string `json:"state"`
	// Problems, the worst first: what the banner lists.
	Problems []Problem `json:"problems"`
	// Nodes holds one entry per StatusPage node, in the same order.
	Nodes []NodeFigures `json:"nodes"`
	// Shards holds one entry per StatusPage shard, in the same order.
	Shards []ShardFigures `json:"shards"`
}

// Problem is one line of the banner.
type Problem struct {
	Severity string `json:"severity"`
	// Kind is one of the Problem* constants.
	Kind string `json:"kind"`
	// Text says what is wrong, with counts and examples, for people.
	Text string `json:"text"`
	// NodeIDs and ShardIDs are the nodes and shards concerned (for shards,
	// at most maxProblemExamples of them).
	NodeIDs  []uint64 `json:"node_ids,omitempty"`
	ShardIDs []uint64 `json:"shard_ids,omitempty"`
}

// NodeFigures are the figures of one node that placement derives.
type NodeFigures struct {
	NodeID uint64 `json:"node_id"`
	// Down: the node is silent (also when it drains), so Stale holds.
	Down bool `json:"down"`
	// Stale: Node.replicas, leaders, leases, used_bytes and load are
	// what the node said in its last heartbeat, not what holds now.
	Stale bool `json:"stale"`
	// ReplicaBytes is the approximate size of every shard with a replica
	// (voter or learner) on the node, as the shards' leaders report it:
	// the data the node holds, not only that of the shards it leads.
	ReplicaBytes uint64 `json:"replica_bytes"`
	// ReplicasInDescriptors is how many shards' descriptors, as their
	// leaders report them, count a replica on the node: for a down node,
	// what it still holds in the fleet's eyes.
	ReplicasInDescriptors uint32 `json:"replicas_in_descriptors"`
}

// ShardFigures are the figures of one shard that placement derives.
type ShardFigures struct {
	ShardID uint64 `json:"shard_id"`
	// Unavailable: the shard's live voters are not a quorum (the banner's
	// shards-unavailable).
	Unavailable bool `json:"unavailable"`
	// Stale: the leader that last reported the shard is on a node that is
	// down, and no other has reported it since, or the shard is
	// unavailable, so no leader of it can commit anything: the shard's
	// leader, bytes and load are a past report's, not what holds now.
	Stale bool `json:"stale"`
	// Unhealthy names each unhealthy replica once, with its node and why.
	Unhealthy []UnhealthyReplica `json:"unhealthy"`
}

// UnhealthyReplica is a replica on a node that is down, or one its
// leader reports lagging.
type UnhealthyReplica struct {
	ReplicaID uint64 `json:"replica_id"`
	NodeID    uint64 `json:"node_id"`
	// Why is "down" (its node is silent) or "lagging".
	Why string `json:"why"`
}

// statusLimits are the thresholds of assessStatus.
type statusLimits struct {
	// down: a node silent this long is down (three heartbeat intervals).
	down time.Duration
	// replicationFactor: fewer live voters is under-replicated.
	replicationFactor int
	// stuckAfter: an operator running longer is stuck.
	stuckAfter time.Duration
	// repeatWindow and repeatCount: repeatCount operators of one kind on
	// one shard started within repeatWindow are a loop.
	repeatWindow time.Duration
	repeatCount  int
}

// statusLimits returns the thresholds of this replica's configuration:
// operators are stuck past half of OperatorTimeout (at which they are
// cut), and three of a kind on one shard within ten minutes repeat.
func (c *core) statusLimits() statusLimits {
	return statusLimits{down: c.downThreshold(), replicationFactor: c.cfg.ReplicationFactor,
		stuckAfter: c.cfg.OperatorTimeout / 2, repeatWindow: 10 * time.Minute, repeatCount: 3}
}

// maxProblemExamples caps the shards a problem names.
const maxProblemExamples = 8

// assessStatus returns the verdict on page at now. It reads page only.
func assessStatus(page *pb.StatusPage, now time.Time, lim statusLimits) StatusPageHealth {
	a := &assessment{page: page, now: now, lim: lim, down: map[uint64]bool{}}
	a.nodes()
	a.shards()
	a.operators()
	a.placement()
	h := StatusPageHealth{State: StateOK, Problems: a.problems, Nodes: a.nodeFigures, Shards: a.shardFigures}
	rank := map[string]int{SeverityCritical: 0, SeverityWarning: 1, SeverityNotice: 2}
	slices.SortStableFunc(h.Problems, func(x, y Problem) int { return cmp.Compare(rank[x.Severity], rank[y.Severity]) })
	if len(h.Problems) > 0 {
		h.State = h.Problems[0].Severity
	}
	if h.Problems == nil {
		h.Problems = []Problem{}
	}
	return h
}

// assessment is assessStatus's work in progress.
type assessment struct {
	page *pb.StatusPage
	now  time.Time
	lim  statusLimits
	// down is the set of nodes that are down.
	down         map[uint64]bool
	problems     []Problem
	nodeFigures  []NodeFigures
	shardFigures []ShardFigures
}

func (a *assessment) add(p Problem) { a.problems = append(a.problems, p) }

// nodes finds the nodes that are down and derives the node figures.
func (a *assessment) nodes() {
	var downIDs []uint64
	var silent []string
	for _, n := range a.page.GetNodes() {
		ago := time.Duration(n.GetLastHeartbeatMsAgo()) * time.Millisecond
		// The same test as the cluster's count of nodes down (countNodes),
		// so the banner and the summary agree on a silent draining node.
		down := nodeDown(n, a.lim.down)
		if down {
			a.down[n.GetNodeId()] = true
			downIDs = append(downIDs, n.GetNodeId())
			what := "silent " + readable.Duration(ago)
			if n.GetLastHeartbeatMsAgo() == 0 {
				what = "never heard from since this placement leader took over"
			}
			silent = append(silent, fmt.Sprintf("n%d (%s)", n.GetNodeId(), what))
		}
		a.nodeFigures = append(a.nodeFigures, NodeFigures{NodeID: n.GetNodeId(), Down: down, Stale: down})
	}
	if len(a.page.GetNodes()) == 0 {
		a.add(Problem{Severity: SeverityWarning, Kind: ProblemNoNodes, Text: "no node has registered"})
	}
	if len(downIDs) > 0 {
		a.add(Problem{Severity: SeverityCritical, Kind: ProblemNodesDown, NodeIDs: downIDs,
			Text: fmt.Sprintf("%s down: %s", plural(len(downIDs), "node"), strings.Join(silent, ", "))})
	}
}

// shards derives the shard figures and the nodes' replica bytes, and
// reports shards without a quorum, under-replicated or lagging, and keys
// no shard serves.
func (a *assessment) shards() {
	byNode := map[uint64]*NodeFigures{}
	for i := range a.nodeFigures {
		byNode[a.nodeFigures[i].NodeID] = &a.nodeFigures[i]
	}
	cs := a.page.GetCluster()
	var unavailable, under, lagging []uint64
	for _, s := range a.page.GetShards() {
		d := s.GetRoute().GetShard()
		sf := ShardFigures{ShardID: d.GetShardId(), Unhealthy: []UnhealthyReplica{}}
		nodeOf := map[uint64]uint64{}
		voters, live := 0, 0
		for _, r := range d.GetReplicas() {
			nodeOf[r.GetReplicaId()] = r.GetNodeId()
			if nf := byNode[r.GetNodeId()]; nf != nil {
				nf.ReplicaBytes += s.GetApproximateBytes()
				nf.ReplicasInDescriptors++
			}
			if !r.GetLearner() {
				voters++
				if !a.down[r.GetNodeId()] {
					live++
				}
			}
		}
		seen := map[uint64]bool{}
		isLagging := false
		for _, id := range s.GetUnhealthyReplicaIds() {
			if seen[id] {
				continue
			}
			seen[id] = true
			u := UnhealthyReplica{ReplicaID: id, NodeID: nodeOf[id], Why: "lagging"}
			if a.down[u.NodeID] {
				u.Why = "down"
			} else {
				isLagging = true
			}
			sf.Unhealthy = append(sf.Unhealthy, u)
		}
		if live < voters/2+1 {
			unavailable = append(unavailable, d.GetShardId())
			sf.Unavailable = true
		}
		if l := s.GetRoute().GetLeaderNodeId(); l != 0 && (a.down[l] || sf.Unavailable) {
			sf.Stale = true
		}
		a.shardFigures = append(a.shardFigures, sf)
		if live < a.lim.replicationFactor {
			under = append(under, d.GetShardId())
		}
		if isLagging {
			lagging = append(lagging, d.GetShardId())
		}
	}
	// The counts are the leader's Health (what flotilla status and the
	// gauges show); the examples are the shards this page lists so.
	if n := max(int(cs.GetUnavailable()), len(unavailable)); n > 0 {
		a.add(Problem{Severity: SeverityCritical, Kind: ProblemShardsUnavailable, ShardIDs: examples(unavailable),
			Text: fmt.Sprintf("%s unavailable: no live quorum, they serve nothing until their nodes return%s", plural(n, "shard"), list(unavailable, n))})
	}
	if n := max(int(cs.GetUnderReplicated()), len(under)); n > 0 {
		a.add(Problem{Severity: SeverityWarning, Kind: ProblemUnderReplicated, ShardIDs: examples(under),
			Text: fmt.Sprintf("%s under-replicated: fewer live voters than the replication factor%s", plural(n, "shard"), list(under, n))})
	}
	if n := max(int(cs.GetLagging()), len(lagging)); n > 0 {
		a.add(Problem{Severity: SeverityNotice, Kind: ProblemShardsLagging, ShardIDs: examples(lagging),
			Text: fmt.Sprintf("%s with a replica lagging behind its leader%s", plural(n, "shard"), list(lagging, n))})
	}
	if !cs.GetBootstrapped() {
		a.add(Problem{Severity: SeverityWarning, Kind: ProblemNotBootstrapped,
			Text: "placement has not created the initial shards yet: it waits for enough nodes to register"})
		return
	}
	if gaps := unowned(a.page.GetShards()); len(gaps) > 0 {
		a.add(Problem{Severity: SeverityCritical, Kind: ProblemKeysUnowned,
			Text: fmt.Sprintf("no leader reports a shard for %s: reads and writes of those keys fail", strings.Join(gaps, ", "))})
	}
}

// unowned returns the key ranges, printed, that no shard of shards (in key
// order) covers.
func unowned(shards []*pb.ShardStatus) []string {
	var gaps []string
	var at []byte // the first key not yet covered
	open := true  // at is a real key (false once a shard reaches +inf)
	for _, s := range shards {
		d := s.GetRoute().GetShard()
		if !open {
			break
		}
		if bytes.Compare(d.GetStart(), at) > 0 {
			gaps = append(gaps, fmt.Sprintf("[%q, %q)", at, d.GetStart()))
		}
		if len(d.GetEnd()) == 0 {
			open = false
		} else if bytes.Compare(d.GetEnd(), at) > 0 {
			at = d.GetEnd()
		}
	}
	if open {
		gaps = append(gaps, fmt.Sprintf("[%q, +inf)", at))
	}
	return gaps
}

// operators reports operators running for too long, repeating on one
// shard, and recent failures.
func (a *assessment) operators() {
	ops := a.page.GetCluster().GetRecentOperators()
	type key struct {
		kind  string
		shard uint64
	}
	type run struct {
		n, failed int
		last      *pb.Operator
	}
	runs := map[key]*run{}
	var order []key
	var stuck []string
	var stuckShards []uint64
	var failed []*pb.Operator
	for _, op := range ops {
		started := time.UnixMilli(op.GetStartedUnixMs())
		if op.GetState() == "running" && a.now.Sub(started) > a.lim.stuckAfter {
			stuck = append(stuck, fmt.Sprintf("#%d %s of s%d running for %s", op.GetId(), op.GetKind(), op.GetShardId(), readable.Duration(a.now.Sub(started))))
			stuckShards = append(stuckShards, op.GetShardId())
		}
		if a.now.Sub(started) > a.lim.repeatWindow {
			continue
		}
		if op.GetState() == "failed" {
			failed = append(failed, op)
		}
		k := key{op.GetKind(), op.GetShardId()}
		r := runs[k]
		if r == nil {
			r = &run{}
			runs[k] = r
			order = append(order, k)
		}
		r.n++
		if op.GetState() == "failed" {
			r.failed++
		}
		r.last = op
	}
	if len(stuck) > 0 {
		a.add(Problem{Severity: SeverityWarning, Kind: ProblemOperatorsStuck, ShardIDs: examples(stuckShards),
			Text: fmt.Sprintf("%s running for longer than %s: %s", plural(len(stuck), "operator"), readable.Duration(a.lim.stuckAfter), strings.Join(stuck, "; "))})
	}
	var loops []string
	var loopShards []uint64
	repeating := map[uint64]bool{}
	for _, k := range order {
		r := runs[k]
		if r.n < a.lim.repeatCount {
			continue
		}
		repeating[k.shard] = true
		loopShards = append(loopShards, k.shard)
		s := fmt.Sprintf("%s of s%d %d times (%d failed; last: %s)", k.kind, k.shard, r.n, r.failed, r.last.GetDescription())
		if r.last.GetError() != "" {
			s += ": " + r.last.GetError()
		}
		loops = append(loops, s)
	}
	if len(loops) > 0 {
		a.add(Problem{Severity: SeverityWarning, Kind: ProblemOperatorsRepeating, ShardIDs: examples(loopShards),
			Text: fmt.Sprintf("placement repeats itself, %s in the last %s: %s", plural(len(loops), "loop"), readable.Duration(a.lim.repeatWindow), strings.Join(loops, "; "))})
	}
	// Failures that are not part of a loop already shown.
	var once []string
	var onceShards []uint64
	for _, op := range failed {
		if repeating[op.GetShardId()] {
			continue
		}
		once = append(once, fmt.Sprintf("#%d %s of s%d: %s", op.GetId(), op.GetKind(), op.GetShardId(), op.GetError()))
		onceShards = append(onceShards, op.GetShardId())
	}
	if len(once) > 0 {
		a.add(Problem{Severity: SeverityNotice, Kind: ProblemOperatorsFailed, ShardIDs: examples(onceShards),
			Text: fmt.Sprintf("%s failed in the last %s (a later round decides again): %s", plural(len(once), "operator"), readable.Duration(a.lim.repeatWindow), strings.Join(once, "; "))})
	}
}

// placement reports the repairs and drains placement cannot do, and why,
// and those that wait for the per-node limits.
func (a *assessment) placement() {
	for _, b := range a.page.GetCluster().GetBlocked() {
		p := Problem{Severity: SeverityCritical, Kind: ProblemPlacementBlocked, ShardIDs: examples(b.GetShardIds()),
			Text: fmt.Sprintf("placement cannot %s %s: %s%s", b.GetNeed(), plural(int(b.GetShards()), "shard"), b.GetReason(), list(b.GetShardIds(), int(b.GetShards())))}
		if b.GetWaiting() {
			p.Severity, p.Kind = SeverityNotice, ProblemPlacementWaiting
			p.Text = fmt.Sprintf("%s of %s waits: %s%s", b.GetNeed(), plural(int(b.GetShards()), "shard"), b.GetReason(), list(b.GetShardIds(), int(b.GetShards())))
		}
		a.add(p)
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func examples(ids []uint64) []uint64 {
	return ids[:min(len(ids), maxProblemExamples)]
}

// list prints shard IDs after a problem's text, " (s1 s2 ...)", with
// "..." when there are more than it prints or than ids (total).
func list(ids []uint64, total int) string {
	if len(ids) == 0 {
		return ""
	}
	var b strings.Builder
	for i, id := range examples(ids) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "s%d", id)
	}
	if len(ids) > maxProblemExamples || total > len(ids) {
		b.WriteString(" ...")
	}
	return " (" + b.String() + ")"
}
