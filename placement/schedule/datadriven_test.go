package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// TestDataDriven runs the scripts in testdata/. Directives (each may also
// be given as lines of a "cluster" directive's input):
//
//	reset                    start an empty cluster
//	settings rf=3 initial-shards=4 split-size=64MiB split-load=100 down-after=30s
//	         max-snapshots=2 max-moves=4 max-transfers=8 replica-tol=1 leader-tol=1
//	         capacity-tol=0.05 max-fullness=0.95
//	node id=(1,2,3) zone=a rack=r1 capacity=1GiB used=0 load=0
//	shard id=1 start=a end=m replicas=(1,2,3) learners=(4) leader=1 size=10MiB
//	      keys=100 load=5 lagging=(2)        replicas by node ID; r<shard*100+node>
//	gen-shards count=10 from=1 replicas=(1,2,3) leader=1 size=1MiB
//	                                   count shards on the same nodes
//	update-shard id=1 size=.. load=.. leader=.. keys=.. lagging=(..)
//	down node=2 for=31s     up node=2     drain node=3     forget node=2
//	bootstrapped [false]
//	health                   print Assess: the counts and the blocked shards
//	schedule [apply|inflight] [rounds=N] [stats] [count]
//	                 dry run by default; apply executes the operators,
//	                 inflight records them in flight; rounds repeats (apply);
//	                 count prints how many operators of each kind instead
//	                 of each operator
//	step shard=1 [n=1]       execute the next n steps of an operator in flight
//	complete                 execute every operator in flight
//	nodes / shards           print the cluster
//
// Each operator prints on one line; run with -rewrite to regenerate.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := newTestHarness()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd == "cluster" {
				var out strings.Builder
				for _, line := range strings.Split(d.Input, "\n") {
					cmd, args, err := datadriven.ParseLine(line)
					if err != nil {
						t.Fatalf("%s: %v", d.Pos, err)
					}
					if cmd != "" {
						out.WriteString(h.exec(t, d.Pos, cmd, args))
					}
				}
				return out.String()
			}
			return h.exec(t, d.Pos, d.Cmd, d.CmdArgs)
		})
	})
}

// newTestHarness returns an empty harness whose new IDs stand out: shards
// from s101, replicas from r1001.
func newTestHarness() *harness { return &harness{ids: seqAlloc{shard: 100, replica: 1000}} }

// args reads directive arguments.
type args struct {
	t    *testing.T
	pos  string
	list []datadriven.CmdArg
}

func (a args) has(key string) bool {
	for _, arg := range a.list {
		if arg.Key == key {
			return true
		}
	}
	return false
}

// vals returns key's values; "1,2" and "(1,2)" are both two values.
func (a args) vals(key string) []string {
	for _, arg := range a.list {
		if arg.Key == key {
			var out []string
			for _, v := range arg.Vals {
				for _, f := range strings.Split(v, ",") {
					if f = strings.TrimSpace(f); f != "" {
						out = append(out, f)
					}
				}
			}
			return out
		}
	}
	return nil
}

func (a args) str(key, def string) string {
	if v := a.vals(key); len(v) > 0 {
		return v[0]
	}
	return def
}

func (a args) uint(key string, def uint64) uint64 {
	if !a.has(key) {
		return def
	}
	v, err := strconv.ParseUint(a.str(key, ""), 10, 64)
	if err != nil {
		a.t.Fatalf("%s: %s: %v", a.pos, key, err)
	}
	return v
}

func (a args) uints(key string) []uint64 {
	var out []uint64
	for _, s := range a.vals(key) {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			a.t.Fatalf("%s: %s: %v", a.pos, key, err)
		}
		out = append(out, v)
	}
	return out
}

func (a args) float(key string, def float64) float64 {
	if !a.has(key) {
		return def
	}
	v, err := strconv.ParseFloat(a.str(key, ""), 64)
	if err != nil {
		a.t.Fatalf("%s: %s: %v", a.pos, key, err)
	}
	return v
}

func (a args) bytes(key string, def int64) int64 {
	if !a.has(key) {
		return def
	}
	v, err := parseBytes(a.str(key, ""))
	if err != nil {
		a.t.Fatalf("%s: %s: %v", a.pos, key, err)
	}
	return v
}

func (a args) duration(key string, def time.Duration) time.Duration {
	if !a.has(key) {
		return def
	}
	v, err := time.ParseDuration(a.str(key, ""))
	if err != nil {
		a.t.Fatalf("%s: %s: %v", a.pos, key, err)
	}
	return v
}

func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.size
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	return int64(v * float64(mult)), err
}

func (h *harness) exec(t *testing.T, pos, cmd string, list []datadriven.CmdArg) string {
	a := args{t: t, pos: pos, list: list}
	nodeArg := func() *Node {
		n := h.node(multiraft.NodeID(a.uint("node", 0)))
		if n == nil {
			t.Fatalf("%s: no node %s", pos, a.str("node", "?"))
		}
		return n
	}
	switch cmd {
	case "reset":
		*h = *newTestHarness()
	case "settings":
		s := &h.settings
		s.ReplicationFactor = int(a.uint("rf", uint64(s.ReplicationFactor)))
		s.InitialShards = int(a.uint("initial-shards", uint64(s.InitialShards)))
		s.SplitSizeBytes = a.bytes("split-size", s.SplitSizeBytes)
		s.SplitLoad = a.float("split-load", s.SplitLoad)
		s.DownAfter = a.duration("down-after", s.DownAfter)
		s.MaxSnapshotsPerNode = int(a.uint("max-snapshots", uint64(s.MaxSnapshotsPerNode)))
		s.MaxMovesPerNode = int(a.uint("max-moves", uint64(s.MaxMovesPerNode)))
		s.MaxLeaderTransfersPerNode = int(a.uint("max-transfers", uint64(s.MaxLeaderTransfersPerNode)))
		s.ReplicaTolerance = a.float("replica-tol", s.ReplicaTolerance)
		s.LeaderTolerance = a.float("leader-tol", s.LeaderTolerance)
		s.CapacityTolerance = a.float("capacity-tol", s.CapacityTolerance)
		s.MaxFullness = a.float("max-fullness", s.MaxFullness)
	case "node":
		for _, id := range a.uints("id") {
			h.setNode(Node{
				ID:            multiraft.NodeID(id),
				Labels:        Labels{Zone: a.str("zone", ""), Rack: a.str("rack", "")},
				CapacityBytes: a.bytes("capacity", 0),
				UsedBytes:     a.bytes("used", 0),
				Load:          a.float("load", 0),
			})
		}
	case "shard":
		id := a.uint("id", 0)
		h.setShard(h.makeShard(a, shard.ShardID(id), []byte(a.str("start", "")), []byte(a.str("end", ""))))
	case "shards":
		return h.shardSummary()
	case "gen-shards":
		from, count := a.uint("from", 1), a.uint("count", 1)
		for id := from; id < from+count; id++ {
			start := []byte(fmt.Sprintf("k%05d", id))
			end := []byte(fmt.Sprintf("k%05d", id+1))
			h.setShard(h.makeShard(a, shard.ShardID(id), start, end))
		}
	case "update-shard":
		s := h.shard(shard.ShardID(a.uint("id", 0)))
		if s == nil {
			t.Fatalf("%s: no shard %s", pos, a.str("id", "?"))
		}
		s.SizeBytes = a.bytes("size", s.SizeBytes)
		s.Keys = int64(a.uint("keys", uint64(s.Keys)))
		s.Load = a.float("load", s.Load)
		if a.has("leader") {
			s.Leader = h.replicaOn(s, a.uint("leader", 0))
		}
		if a.has("lagging") {
			s.Lagging = nil
			for _, n := range a.uints("lagging") {
				s.Lagging = append(s.Lagging, h.replicaOn(s, n))
			}
		}
	case "down":
		n := nodeArg()
		n.State, n.DownFor = NodeDown, a.duration("for", 0)
		h.reelect()
	case "up":
		n := nodeArg()
		n.State, n.DownFor = NodeUp, 0
	case "drain":
		nodeArg().State = NodeDraining
	case "forget":
		h.removeNode(nodeArg().ID)
		h.reelect()
	case "bootstrapped":
		h.bootstrapped = !a.has("false")
	case "schedule":
		return h.scheduleCmd(t, a)
	case "health":
		hl, err := Assess(h.cluster())
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		var out strings.Builder
		fmt.Fprintf(&out, "shards=%d under-replicated=%d unavailable=%d lagging=%d blocked=%d waiting=%d\n",
			hl.Shards, hl.UnderReplicated, hl.Unavailable, hl.Lagging, hl.BlockedShards, hl.WaitingShards)
		for _, b := range hl.Blocked {
			out.WriteString(b.String())
			out.WriteByte('\n')
		}
		return out.String()
	case "step":
		if err := h.step(shard.ShardID(a.uint("shard", 0)), int(a.uint("n", 1))); err != nil {
			return "error: " + err.Error() + "\n"
		}
	case "complete":
		if err := h.complete(); err != nil {
			return "error: " + err.Error() + "\n"
		}
	case "nodes":
		return h.nodeSummary()
	default:
		t.Fatalf("%s: unknown directive %q", pos, cmd)
	}
	return ""
}

// makeShard builds a shard from a directive's arguments; replica IDs are
// shard*100+node.
func (h *harness) makeShard(a args, id shard.ShardID, start, end []byte) Shard {
	s := Shard{
		Descriptor: shard.Descriptor{ShardID: id, Start: start, End: end, Epoch: shard.Epoch{ConfVer: 1, Version: 1}},
		SizeBytes:  a.bytes("size", 0),
		Keys:       int64(a.uint("keys", 0)),
		Load:       a.float("load", 0),
	}
	add := func(node uint64, learner bool) {
		if node >= 100 {
			a.t.Fatalf("%s: node IDs in shard directives must be < 100", a.pos)
		}
		s.Descriptor.Replicas = append(s.Descriptor.Replicas, multiraft.Replica{
			ReplicaID: multiraft.ReplicaID(uint64(id)*100 + node), NodeID: multiraft.NodeID(node), Learner: learner,
		})
	}
	for _, n := range a.uints("replicas") {
		add(n, false)
	}
	for _, n := range a.uints("learners") {
		add(n, true)
	}
	sortReplicas(s.Descriptor.Replicas)
	if a.has("leader") {
		s.Leader = h.replicaOn(&s, a.uint("leader", 0))
	}
	for _, n := range a.uints("lagging") {
		s.Lagging = append(s.Lagging, h.replicaOn(&s, n))
	}
	return s
}

func sortReplicas(rs []multiraft.Replica) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].ReplicaID < rs[j-1].ReplicaID; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// replicaOn returns the ID of s's replica on node n, 0 if none.
func (h *harness) replicaOn(s *Shard, n uint64) multiraft.ReplicaID {
	for _, r := range s.Descriptor.Replicas {
		if uint64(r.NodeID) == n {
			return r.ReplicaID
		}
	}
	return 0
}

// reelect moves the leadership of shards led from a node that is down or
// gone to the first voter on a live node, as an election would when the
// live voters are a quorum, and forgets it otherwise.
func (h *harness) reelect() {
	live := func(id multiraft.NodeID) bool {
		n := h.node(id)
		return n != nil && n.State != NodeDown
	}
	for i := range h.shards {
		s := &h.shards[i]
		if r, ok := s.Descriptor.Replica(s.Leader); ok && live(r.NodeID) {
			continue
		}
		s.Leader = 0
		voters, up := 0, []multiraft.ReplicaID{}
		for _, r := range s.Descriptor.Replicas {
			if !r.Learner {
				voters++
				if live(r.NodeID) {
					up = append(up, r.ReplicaID)
				}
			}
		}
		if len(up) >= voters/2+1 {
			s.Leader = up[0]
		}
	}
}

func (h *harness) scheduleCmd(t *testing.T, a args) string {
	apply, inflight := a.has("apply"), a.has("inflight")
	rounds := int(a.uint("rounds", 1))
	var out strings.Builder
	for round := 1; round <= rounds; round++ {
		plan, err := h.schedule(apply || inflight)
		if err != nil {
			return fmt.Sprintf("error: %v\n", err)
		}
		if rounds > 1 {
			if len(plan.Operators) == 0 {
				fmt.Fprintf(&out, "round %d: quiescent\n", round)
				break
			}
			fmt.Fprintf(&out, "round %d:\n", round)
		}
		if a.has("count") {
			// One line per kind instead of one per operator.
			counts := map[Kind]int{}
			for i := range plan.Operators {
				counts[plan.Operators[i].Kind]++
			}
			for k := KindBootstrap; k <= KindLeaderBalance; k++ {
				if counts[k] > 0 {
					fmt.Fprintf(&out, "%s: %d operators\n", k, counts[k])
				}
			}
		} else {
			for i := range plan.Operators {
				out.WriteString(plan.Operators[i].String())
				out.WriteByte('\n')
			}
		}
		if a.has("stats") {
			st := plan.Stats
			fmt.Fprintf(&out, "stats: shards=%d in-flight=%d under-replicated=%d unavailable=%d throttled=%d unplaceable=%d\n",
				st.Shards, st.InFlight, st.UnderReplicated, st.Unavailable, st.Throttled, st.Unplaceable)
		}
		switch {
		case apply:
			if err := h.run(plan.Operators); err != nil {
				fmt.Fprintf(&out, "error: %v\n", err)
				return out.String()
			}
		case inflight:
			h.accept(plan.Operators)
		}
		if rounds > 1 && round == rounds {
			fmt.Fprintf(&out, "stopped after %d rounds\n", rounds)
		}
	}
	if len(strings.TrimSpace(out.String())) == 0 {
		return "no operators\n"
	}
	return out.String()
}
