package schedule

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

var (
	simSeeds = flag.Int("sim-seeds", 40, "number of seeds TestSimulation runs")
	simSeed  = flag.Uint64("sim-seed", 0, "run TestSimulation with this seed only")
)

// TestSimulation drives a simulated cluster through bootstrap, data growth,
// node failures, drains and new nodes, executing the operators step by
// step across rounds as the placement service would (several in flight at
// once, steps completing at random). It checks every round that the limits
// hold and no shard has two operators, and at the end, once the scheduler
// falls quiet, that the cluster is fully repaired, spread, split and
// balanced. Each seed replays exactly: -sim-seed=N.
func TestSimulation(t *testing.T) {
	seeds := make([]uint64, 0, *simSeeds)
	if *simSeed != 0 {
		seeds = append(seeds, *simSeed)
	} else {
		for s := uint64(1); s <= uint64(*simSeeds); s++ {
			seeds = append(seeds, s)
		}
	}
	if testing.Short() || raceEnabled {
		seeds = seeds[:min(len(seeds), 8)]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { simulate(t, seed) })
	}
}

type sim struct {
	t      *testing.T
	rng    *rand.Rand
	h      *harness
	zones  []string
	nextID multiraft.NodeID
	back   []multiraft.NodeID // nodes down briefly, up again next round
}

// restart brings back the nodes that were down briefly; their shards
// elect leaders again.
func (s *sim) restart() {
	for _, id := range s.back {
		if n := s.h.node(id); n != nil {
			n.State, n.DownFor = NodeUp, 0
		}
	}
	if len(s.back) > 0 {
		s.h.reelect()
	}
	s.back = s.back[:0]
}

func simulate(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	s := &sim{t: t, rng: rng, h: newTestHarness()}
	rf := []int{1, 3, 3, 3, 5}[rng.IntN(5)]
	nzones := []int{1, rf, rf, rf + 1}[rng.IntN(4)]
	for z := range nzones {
		s.zones = append(s.zones, string(rune('a'+z)))
	}
	s.h.settings = Settings{
		ReplicationFactor:   rf,
		InitialShards:       1 + rng.IntN(8),
		SplitSizeBytes:      64 << 20,
		MaxSnapshotsPerNode: 1 + rng.IntN(3),
		MaxMovesPerNode:     2 + rng.IntN(4),
	}
	for range rf + rng.IntN(6) {
		s.addNode()
	}
	t.Logf("seed %d: rf=%d zones=%d nodes=%d %+v", seed, rf, nzones, len(s.h.nodes), s.h.settings)

	// 250 rounds of growth and failures, then rounds without until the
	// scheduler falls quiet (a drained zone can leave a long backlog for
	// the few nodes that can take it, a few at a time).
	const active, limit = 250, 5000
	for round := 0; round < limit; round++ {
		s.restart()
		if round < active {
			s.grow()
			s.maybeEvent(round)
		}
		if quiet := s.round(); quiet && round >= active {
			s.checkFinal()
			return
		}
	}
	plan, _ := s.h.schedule(false)
	var ops []string
	for i := range plan.Operators {
		ops = append(ops, plan.Operators[i].String())
	}
	var running []string
	for _, r := range s.h.inflight {
		running = append(running, r.op.String())
	}
	t.Fatalf("no quiescence after %d rounds:\n%s\nin flight: %q\nnext: %q", limit, s.h.nodeSummary(), running, ops)
}

func (s *sim) addNode() {
	s.nextID++
	s.h.setNode(Node{ID: s.nextID, Labels: Labels{Zone: s.zones[int(s.nextID)%len(s.zones)]}})
}

// grow adds data to a few shards.
func (s *sim) grow() {
	for range 3 {
		if len(s.h.shards) == 0 {
			return
		}
		sh := &s.h.shards[s.rng.IntN(len(s.h.shards))]
		sh.SizeBytes += s.rng.Int64N(40 << 20)
	}
}

// maybeEvent injects a failure or a change now and then.
func (s *sim) maybeEvent(round int) {
	if round%25 != 12 {
		return
	}
	up := []multiraft.NodeID{}
	for _, n := range s.h.nodes {
		if n.State == NodeUp {
			up = append(up, n.ID)
		}
	}
	rf := s.h.settings.ReplicationFactor
	switch s.rng.IntN(4) {
	case 0: // a node dies for good (within what RF tolerates), and a new one joins
		if id := up[s.rng.IntN(len(up))]; len(up) > rf && s.survivable(id) {
			n := s.h.node(id)
			n.State, n.DownFor = NodeDown, time.Hour
			s.h.events++
			s.h.reelect()
		}
		s.addNode()
	case 1: // a node is drained, and a new one joins
		if len(up) > rf {
			s.h.node(up[s.rng.IntN(len(up))]).State = NodeDraining
			s.h.events++
		}
		s.addNode()
	case 2: // a node restarts quickly: down, not yet dead
		if len(up) > rf {
			n := s.h.node(up[s.rng.IntN(len(up))])
			n.State, n.DownFor = NodeDown, 5*time.Second
			s.h.events++
			s.h.reelect()
			s.back = append(s.back, n.ID)
		}
	case 3:
		s.addNode()
	}
}

// survivable reports whether every shard keeps a quorum of live voters if
// node id dies: failures beyond what RF tolerates lose data, which no
// scheduler can repair.
func (s *sim) survivable(id multiraft.NodeID) bool {
	for _, sh := range s.h.shards {
		voters, live := 0, 0
		for _, r := range sh.Descriptor.Replicas {
			if r.Learner {
				continue
			}
			voters++
			if n := s.h.node(r.NodeID); n != nil && n.State != NodeDown && r.NodeID != id {
				live++
			}
		}
		if live < voters/2+1 {
			return false
		}
	}
	return true
}

// round runs one scheduling round, accepts its operators and executes a
// random part of the steps in flight. It reports whether the round was
// quiet: no operator emitted and none in flight.
func (s *sim) round() bool {
	t := s.t
	inflight := map[shard.ShardID]bool{}
	for _, r := range s.h.inflight {
		inflight[r.op.Shard] = true
	}
	plan, err := s.h.schedule(true)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[shard.ShardID]bool{}
	for _, op := range plan.Operators {
		if inflight[op.Shard] || seen[op.Shard] {
			t.Fatalf("second operator for s%d: %v", op.Shard, &op)
		}
		seen[op.Shard] = true
	}
	s.h.accept(plan.Operators)
	s.checkLimits()
	quiet := len(plan.Operators) == 0 && len(s.h.inflight) == 0
	// Execute: each operator in flight advances by a step with
	// probability 1/2. A step that fails because of a failure injected
	// after the operator was planned abandons it, as the service would;
	// any other failure is a scheduler bug.
	for _, r := range slices.Clone(s.h.inflight) {
		if s.rng.IntN(2) == 0 {
			continue
		}
		if err := s.h.step(r.op.Shard, 1); err != nil {
			if r.events == s.h.events {
				t.Fatalf("step of %v failed: %v", &r.op, err)
			}
			s.h.inflight = slices.DeleteFunc(s.h.inflight, func(x *running) bool { return x == r })
		}
	}
	return quiet
}

// checkLimits recomputes, from the operators in flight and the cluster,
// what each node is charged, and checks it against the limits.
func (s *sim) checkLimits() {
	set := s.h.settings.withDefaults()
	snaps, moves, transfers := map[multiraft.NodeID]int{}, map[multiraft.NodeID]int{}, map[multiraft.NodeID]int{}
	for _, r := range s.h.inflight {
		sh := s.h.shard(r.op.Shard)
		moved := map[multiraft.NodeID]bool{}
		for _, st := range r.op.Steps {
			switch st := st.(type) {
			case AddReplica:
				if sh != nil {
					if x, ok := sh.Descriptor.Replica(st.Replica.ReplicaID); ok && x.Learner == st.Replica.Learner {
						continue
					}
				}
				snaps[st.Replica.NodeID]++
				moved[st.Replica.NodeID] = true
			case RemoveReplica:
				if sh == nil {
					continue
				}
				if _, ok := sh.Descriptor.Replica(st.Replica.ReplicaID); !ok {
					continue
				}
				if n := s.h.node(st.Replica.NodeID); n != nil && n.State != NodeDown {
					moved[st.Replica.NodeID] = true
				}
			case TransferLeader:
				if sh != nil && sh.Leader != st.To {
					transfers[st.ToNode]++
				}
			}
		}
		for n := range moved {
			moves[n]++
		}
	}
	for _, n := range s.h.nodes {
		if snaps[n.ID] > set.MaxSnapshotsPerNode || moves[n.ID] > set.MaxMovesPerNode || transfers[n.ID] > set.MaxLeaderTransfersPerNode {
			s.t.Fatalf("n%d over its limits: %d snapshots, %d moves, %d transfers in flight",
				n.ID, snaps[n.ID], moves[n.ID], transfers[n.ID])
		}
	}
}

// checkFinal checks the cluster the scheduler left alone.
func (s *sim) checkFinal() {
	t, h := s.t, s.h
	rf := h.settings.ReplicationFactor
	usable := map[multiraft.NodeID]*Node{}
	zones := map[string]int{}
	for i := range h.nodes {
		if n := &h.nodes[i]; n.State == NodeUp {
			usable[n.ID] = n
			zones[n.Labels.Zone]++
		}
	}
	// The shards partition the key space.
	sorted := slices.Clone(h.shards)
	slices.SortFunc(sorted, func(a, b Shard) int { return bytes.Compare(a.Descriptor.Start, b.Descriptor.Start) })
	if len(sorted) == 0 || len(sorted[0].Descriptor.Start) != 0 || len(sorted[len(sorted)-1].Descriptor.End) != 0 {
		t.Fatalf("shards do not cover the key space:\n%s", h.shardSummary())
	}
	for i := 1; i < len(sorted); i++ {
		if !bytes.Equal(sorted[i-1].Descriptor.End, sorted[i].Descriptor.Start) {
			t.Fatalf("gap or overlap at %q:\n%s", sorted[i].Descriptor.Start, h.shardSummary())
		}
	}
	replicas, leaders := map[multiraft.NodeID]int{}, map[multiraft.NodeID]int{}
	for _, sh := range h.shards {
		d := &sh.Descriptor
		if len(d.Replicas) != rf {
			t.Fatalf("%v: %d replicas, want %d", d, len(d.Replicas), rf)
		}
		shardZones := map[string]bool{}
		for _, r := range d.Replicas {
			n := usable[r.NodeID]
			if r.Learner || n == nil {
				t.Fatalf("%v leader r%d: replica %v is a learner or not on an up node:\n%s", d, sh.Leader, r, h.nodeSummary())
			}
			replicas[r.NodeID]++
			shardZones[n.Labels.Zone] = true
		}
		if len(shardZones) < min(rf, len(zones)) {
			t.Fatalf("%v spans %d zones of %d", d, len(shardZones), len(zones))
		}
		if sh.SizeBytes > h.settings.SplitSizeBytes {
			t.Fatalf("%v: %d bytes, not split", d, sh.SizeBytes)
		}
		if r, ok := d.Replica(sh.Leader); ok {
			leaders[r.NodeID]++
		}
	}
	// Balance reached its fixed point: no move or transfer that the
	// documented rule allows is left (within ±tolerance of the mean, or two
	// apart, or blocked by the zone rule).
	mean := func(counts map[multiraft.NodeID]int) float64 {
		sum := 0
		for id := range usable {
			sum += counts[id]
		}
		return float64(sum) / float64(len(usable))
	}
	rm, lm := mean(replicas), mean(leaders)
	for _, sh := range h.shards {
		d := &sh.Descriptor
		leader, _ := d.Replica(sh.Leader)
		for _, r := range d.Replicas {
			// Leadership: from the leader to this follower?
			if r.ReplicaID != sh.Leader {
				l, f := leaders[leader.NodeID], leaders[r.NodeID]
				if (float64(l) > lm+1 || float64(f) < lm-1) && l >= f+2 {
					t.Fatalf("%v: leadership could move from n%d (%d) to n%d (%d), mean %.2f:\n%s",
						d, leader.NodeID, l, r.NodeID, f, lm, h.nodeSummary())
				}
			}
			// Replica: from r's node to a node that does not hold the shard?
			keepZones := map[string]bool{}
			for _, o := range d.Replicas {
				if o.ReplicaID != r.ReplicaID {
					keepZones[usable[o.NodeID].Labels.Zone] = true
				}
			}
			srcShares := keepZones[usable[r.NodeID].Labels.Zone]
			for id, n := range usable {
				if slices.ContainsFunc(d.Replicas, func(x multiraft.Replica) bool { return x.NodeID == id }) {
					continue
				}
				src, dst := replicas[r.NodeID], replicas[id]
				if (float64(src) > rm+1 || float64(dst) < rm-1) && src >= dst+2 && (srcShares || !keepZones[n.Labels.Zone]) {
					t.Fatalf("%v: replica %v could move to n%d (%d replicas, source %d, mean %.2f):\n%s",
						d, r, id, dst, src, rm, h.nodeSummary())
				}
			}
		}
	}
	// And with one zone, or RF zones of as many nodes each, nothing
	// constrains replica counts: they are within one of the mean.
	equalZones := len(zones) == 1
	if len(zones) == rf {
		equalZones = true
		for _, c := range zones {
			equalZones = equalZones && c == len(usable)/rf
		}
	}
	if equalZones {
		for id := range usable {
			if math.Abs(float64(replicas[id])-rm) > 1 {
				t.Fatalf("n%d has %d replicas, mean %.2f:\n%s", id, replicas[id], rm, h.nodeSummary())
			}
		}
	}
}
