package schedule

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// genCluster builds a cluster of nodes nodes in 10 zones holding shards
// shards (RF 3, one replica per zone), with work for every checker: two
// nodes dead, one briefly down, one draining, five new and empty, a leader
// skew, shards over the split size, lagging replicas, and operators in
// flight. It is deterministic in seed. Shard IDs are 1..shards and the
// shards come sorted by ID, as a catalogue would keep them.
func genCluster(nodes, shards int, seed uint64) *Cluster {
	const zones = 10
	rng := rand.New(rand.NewPCG(seed, 0))
	// Limits high enough that balance gets budget left after repair.
	c := &Cluster{Bootstrapped: true, Settings: Settings{MaxSnapshotsPerNode: 8, MaxMovesPerNode: 16}}
	c.Nodes = make([]Node, nodes)
	for i := range c.Nodes {
		c.Nodes[i] = Node{
			ID:     multiraft.NodeID(i + 1),
			Labels: Labels{Zone: string(rune('a' + i%zones)), Rack: string(rune('a' + (i/zones)%4))},
			Load:   float64(rng.IntN(1000)),
		}
	}
	// The last five nodes are new: no replica lands on them below.
	fresh := min(5, nodes/zones)
	byZone := make([][]multiraft.NodeID, zones)
	for i := 0; i < nodes-fresh; i++ {
		byZone[i%zones] = append(byZone[i%zones], c.Nodes[i].ID)
	}
	c.Shards = make([]Shard, shards)
	replicas := make([]multiraft.Replica, 3*shards) // one backing array
	keys := make([]byte, 8*(shards+1))
	key := func(i int) []byte {
		k := keys[8*i : 8*i+8 : 8*i+8]
		binary.BigEndian.PutUint64(k, uint64(i)<<20)
		return k
	}
	for i := range c.Shards {
		id := shard.ShardID(i + 1)
		z0 := rng.IntN(zones)
		z1 := (z0 + 1 + rng.IntN(zones-1)) % zones
		z2 := z0
		for z2 == z0 || z2 == z1 {
			z2 = rng.IntN(zones)
		}
		rs := replicas[3*i : 3*i+3 : 3*i+3]
		for j, z := range []int{z0, z1, z2} {
			rs[j] = multiraft.Replica{
				ReplicaID: multiraft.ReplicaID(3*i + j + 1),
				NodeID:    byZone[z][rng.IntN(len(byZone[z]))],
			}
		}
		s := Shard{
			Descriptor: shard.Descriptor{ShardID: id, Epoch: shard.Epoch{ConfVer: 1, Version: 1}, Replicas: rs},
			Leader:     rs[0].ReplicaID, // skewed: the first replica leads
			SizeBytes:  rng.Int64N(60 << 20),
			Keys:       1000,
			Load:       float64(rng.IntN(100)),
		}
		if i > 0 {
			s.Descriptor.Start = key(i)
		}
		if i < shards-1 {
			s.Descriptor.End = key(i + 1)
		}
		if rng.IntN(1000) == 0 {
			s.SizeBytes = 100 << 20
		}
		if rng.IntN(100) == 0 {
			s.Lagging = []multiraft.ReplicaID{rs[1].ReplicaID}
		}
		c.Shards[i] = s
	}
	// Two dead nodes, one briefly down, one draining.
	c.Nodes[0].State, c.Nodes[0].DownFor = NodeDown, time.Hour
	c.Nodes[1].State, c.Nodes[1].DownFor = NodeDown, time.Hour
	c.Nodes[2].State, c.Nodes[2].DownFor = NodeDown, 10*time.Second
	c.Nodes[3].State = NodeDraining
	// Some operators in flight, on shards not touching the nodes above.
	for i := 0; i < shards && len(c.InFlight) < 1000; i += 97 {
		s := &c.Shards[i]
		if s.Descriptor.Replicas[0].NodeID <= 4 || s.Descriptor.Replicas[1].NodeID <= 4 {
			continue
		}
		r := s.Descriptor.Replicas[1]
		c.InFlight = append(c.InFlight, Operator{
			Kind: KindLeaderBalance, Shard: s.Descriptor.ShardID, Epoch: s.Descriptor.Epoch,
			Steps: []Step{TransferLeader{Shard: s.Descriptor.ShardID, To: r.ReplicaID, ToNode: r.NodeID}},
		})
	}
	return c
}

// TestRound1M builds a cluster of 1,000 nodes and 1,000,000 shards and runs
// one round, logging how long it took (timing is measured by
// BenchmarkRound1M, not asserted here).
func TestRound1M(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("1M shards: skipped with -short and -race")
	}
	defer func(v bool) { verifyRanking = v }(verifyRanking)
	verifyRanking = false // time the round as it runs in production
	c := genCluster(1000, 1_000_000, 1)
	ids := &seqAlloc{shard: 1 << 40, replica: 1 << 40}
	start := time.Now()
	plan, err := Schedule(c, ids)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[Kind]int{}
	for _, op := range plan.Operators {
		kinds[op.Kind]++
	}
	t.Logf("one round over 1000 nodes, 1M shards: %v, %d operators %v, stats %+v",
		took, len(plan.Operators), kinds, plan.Stats)
	for _, k := range []Kind{KindRepair, KindDrain, KindSplit, KindReplicaBalance, KindLeaderBalance} {
		if kinds[k] == 0 {
			t.Errorf("no %v operator: the generated cluster should exercise every checker", k)
		}
	}
}

// BenchmarkRound1M measures one scheduling round over 1,000 nodes and
// 1,000,000 shards (building the Cluster is not measured).
func BenchmarkRound1M(b *testing.B) {
	defer func(v bool) { verifyRanking = v }(verifyRanking)
	verifyRanking = false
	c := genCluster(1000, 1_000_000, 1)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := testutil.ProcessCPU(b)
	for b.Loop() {
		ids := &seqAlloc{shard: 1 << 40, replica: 1 << 40}
		if _, err := Schedule(c, ids); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time (user+system, all threads, GC included) next to wall time:
	// on a shared machine, wall time also counts waiting for a core.
	b.ReportMetric(float64(testutil.ProcessCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
}
