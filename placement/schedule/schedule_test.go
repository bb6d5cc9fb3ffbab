package schedule

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

func TestSettingsValidate(t *testing.T) {
	if err := (Settings{}).Validate(); err != nil {
		t.Fatalf("zero settings: %v", err)
	}
	s := Settings{
		ReplicationFactor: -1, InitialShards: MaxInitialShards + 1, SplitSizeBytes: -1,
		DownAfter: -time.Second, MaxSnapshotsPerNode: -1, MaxMovesPerNode: -1,
		MaxLeaderTransfersPerNode: -1, SplitLoad: -1, ReplicaTolerance: -1,
		LeaderTolerance: -1, CapacityTolerance: -1, MaxFullness: 1.5,
	}
	err := s.Validate()
	if !errors.Is(err, ErrInvalidSettings) {
		t.Fatalf("got %v, want ErrInvalidSettings", err)
	}
	for _, field := range []string{"ReplicationFactor", "InitialShards", "SplitSizeBytes", "DownAfter",
		"MaxSnapshotsPerNode", "MaxMovesPerNode", "MaxLeaderTransfersPerNode", "SplitLoad",
		"ReplicaTolerance", "LeaderTolerance", "CapacityTolerance", "MaxFullness"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not report %s: %v", field, err)
		}
	}
	c := &Cluster{Settings: s}
	if _, err := Schedule(c, &seqAlloc{}); !errors.Is(err, ErrInvalidSettings) {
		t.Errorf("Schedule: got %v, want ErrInvalidSettings", err)
	}
	d := Settings{}.withDefaults()
	if d.ReplicationFactor != 3 || d.SplitSizeBytes != 64<<20 || d.DownAfter != 30*time.Second ||
		d.MaxSnapshotsPerNode != 2 || d.MaxMovesPerNode != 4 || d.SplitLoad != 0 {
		t.Errorf("defaults: %+v", d)
	}
}

func TestInvalidCluster(t *testing.T) {
	desc := func(id shard.ShardID, start, end string, nodes ...multiraft.NodeID) shard.Descriptor {
		d := shard.Descriptor{ShardID: id, Start: []byte(start), End: []byte(end)}
		for i, n := range nodes {
			d.Replicas = append(d.Replicas, multiraft.Replica{ReplicaID: multiraft.ReplicaID(100*uint64(id) + uint64(i) + 1), NodeID: n})
		}
		return d
	}
	c := &Cluster{
		Nodes: []Node{{ID: 1}, {ID: 2}, {ID: 2}, {ID: 0}},
		Shards: []Shard{
			{Descriptor: desc(1, "a", "b", 1)},
			{Descriptor: desc(1, "b", "c", 1)},
			{Descriptor: desc(2, "d", "c", 1)},
			{Descriptor: desc(0, "", "", 1)},
		},
	}
	_, err := Schedule(c, &seqAlloc{})
	if !errors.Is(err, ErrInvalidCluster) {
		t.Fatalf("got %v, want ErrInvalidCluster", err)
	}
	for _, want := range []string{"duplicate node n2", "node with ID 0", "duplicate shard s1", "shard s2", "zero shard ID"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// Many problems: the first few are listed, then a count.
	c = &Cluster{Nodes: []Node{{ID: 1}}}
	for i := range 25 {
		c.Shards = append(c.Shards, Shard{Descriptor: desc(7, fmt.Sprint(i), "", 1)})
	}
	if _, err := Schedule(c, &seqAlloc{}); err == nil || !strings.Contains(err.Error(), "and 14 more problems") {
		t.Errorf("got %v", err)
	}
}

// TestDeterministic checks that a round is a pure function of its input:
// the same Cluster twice, or with its nodes and shards in another order,
// yields the same plan, and the Cluster is left untouched.
func TestDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		c := genCluster(60, 3000, seed)
		c.Nodes[10].Labels.Zone = "" // some variety
		c.Nodes[20].CapacityBytes = 1 << 40
		before := deepCopy(c)
		plan := mustSchedule(t, c)
		if len(plan) == 0 {
			t.Fatalf("seed %d: empty plan", seed)
		}
		if !reflect.DeepEqual(c, before) {
			t.Fatalf("seed %d: Schedule modified its input", seed)
		}
		if again := mustSchedule(t, c); !slices.Equal(plan, again) {
			t.Fatalf("seed %d: second run differs:\n%s", seed, firstDiff(plan, again))
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		shuffled := deepCopy(c)
		rng.Shuffle(len(shuffled.Nodes), func(i, j int) { shuffled.Nodes[i], shuffled.Nodes[j] = shuffled.Nodes[j], shuffled.Nodes[i] })
		rng.Shuffle(len(shuffled.Shards), func(i, j int) {
			shuffled.Shards[i], shuffled.Shards[j] = shuffled.Shards[j], shuffled.Shards[i]
		})
		if other := mustSchedule(t, shuffled); !slices.Equal(plan, other) {
			t.Fatalf("seed %d: shuffled input gives another plan:\n%s", seed, firstDiff(plan, other))
		}
	}
}

func mustSchedule(t *testing.T, c *Cluster) []string {
	t.Helper()
	plan, err := Schedule(c, &seqAlloc{shard: 1 << 30, replica: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(plan.Operators))
	for i := range plan.Operators {
		out[i] = plan.Operators[i].String()
	}
	return append(out, fmt.Sprintf("%+v", plan.Stats))
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("at %d:\n  %s\n  %s", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}

func deepCopy(c *Cluster) *Cluster {
	d := *c
	d.Nodes = slices.Clone(c.Nodes)
	d.Shards = slices.Clone(c.Shards)
	for i := range d.Shards {
		s := &d.Shards[i]
		s.Descriptor = s.Descriptor.Clone()
		s.Lagging = slices.Clone(s.Lagging)
	}
	d.InFlight = slices.Clone(c.InFlight)
	return &d
}

// TestPlanShares checks that the plan shares no memory with the input:
// the caller may keep the plan and reuse the Cluster.
func TestPlanShares(t *testing.T) {
	h := newTestHarness()
	for id := multiraft.NodeID(1); id <= 4; id++ {
		h.setNode(Node{ID: id})
	}
	h.setShard(Shard{
		Descriptor: shard.Descriptor{ShardID: 1, Start: []byte("a"), End: []byte("z"), Epoch: shard.Epoch{ConfVer: 1, Version: 1},
			Replicas: []multiraft.Replica{{ReplicaID: 1, NodeID: 1}, {ReplicaID: 2, NodeID: 2}, {ReplicaID: 3, NodeID: 3}}},
		Leader: 1, SizeBytes: 100 << 20,
	})
	plan, err := h.schedule(false)
	if err != nil || len(plan.Operators) != 1 {
		t.Fatalf("plan %v, %v", plan.Operators, err)
	}
	st := plan.Operators[0].Steps[0].(Split)
	st.NewReplicas[0].Old = 99
	if h.shards[0].Descriptor.Replicas[0].ReplicaID != 1 {
		t.Fatal("the plan aliases the cluster's replicas")
	}
}

// TestUnsortedShardsWithExtraReplica is the placement leader's panic seen
// after load splits and a move: shards listed in key order whose IDs are
// not (s3 split off s1 before s2 did), one of them mid-move with four
// replicas. The first pass over the shards gave up at s2 and the second
// resliced the replica index past the capacity sized for three replicas a
// shard.
func TestUnsortedShardsWithExtraReplica(t *testing.T) {
	desc := func(id shard.ShardID, start, end string, nodes ...multiraft.NodeID) shard.Descriptor {
		d := shard.Descriptor{ShardID: id, Start: []byte(start), End: []byte(end), Epoch: shard.Epoch{ConfVer: 1, Version: 1}}
		for i, n := range nodes {
			d.Replicas = append(d.Replicas, multiraft.Replica{ReplicaID: multiraft.ReplicaID(100*uint64(id) + uint64(i) + 1), NodeID: n})
		}
		return d
	}
	c := &Cluster{
		Bootstrapped: true,
		Nodes:        []Node{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4}},
		Shards: []Shard{
			{Descriptor: desc(1, "", "b", 1, 2, 3), Leader: 101},
			{Descriptor: desc(3, "b", "c", 1, 2, 3, 4), Leader: 301},
			{Descriptor: desc(2, "c", "", 1, 2, 3), Leader: 201},
		},
	}
	plan, err := Schedule(c, &seqAlloc{})
	if err != nil {
		t.Fatal(err)
	}
	// s3 has one voter too many: repair removes one, and nothing else is
	// wrong enough to act on.
	var removed bool
	for _, op := range plan.Operators {
		if op.Shard == 3 {
			for _, st := range op.Steps {
				_, removed = st.(RemoveReplica)
			}
		}
	}
	if !removed {
		t.Errorf("no removal planned for the shard with 4 voters: %v", plan.Operators)
	}
}

// failingAlloc hands out left IDs, then fails; it counts the calls made
// after it failed.
type failingAlloc struct {
	seqAlloc
	left       int
	afterFault int
}

var errNoIDs = errors.New("test: no IDs")

func (a *failingAlloc) take() error {
	if a.left == 0 {
		a.afterFault++
		return errNoIDs
	}
	a.left--
	return nil
}

func (a *failingAlloc) NewShardID() (shard.ShardID, error) {
	if err := a.take(); err != nil {
		return 0, err
	}
	return a.seqAlloc.NewShardID()
}

func (a *failingAlloc) NewReplicaID() (multiraft.ReplicaID, error) {
	if err := a.take(); err != nil {
		return 0, err
	}
	return a.seqAlloc.NewReplicaID()
}

// TestAllocatorFailureStopsTheRound: when the allocator fails, at any
// point of a bootstrap or of a round with repairs, moves and splits,
// Schedule returns its error and no operator, and asks it for no further
// ID.
func TestAllocatorFailureStopsTheRound(t *testing.T) {
	boot := &Cluster{Settings: Settings{InitialShards: 8}}
	for id := multiraft.NodeID(1); id <= 5; id++ {
		boot.Nodes = append(boot.Nodes, Node{ID: id})
	}
	busy := genCluster(60, 3000, 1)
	for name, c := range map[string]*Cluster{"bootstrap": boot, "busy": busy} {
		all := &seqAlloc{}
		if _, err := Schedule(c, all); err != nil {
			t.Fatal(err)
		}
		needed := int(all.shard) + int(all.replica)
		if needed == 0 {
			t.Fatalf("%s: the round allocates no ID", name)
		}
		for _, left := range []int{0, 1, needed / 2, needed - 1} {
			a := &failingAlloc{left: left}
			plan, err := Schedule(c, a)
			if !errors.Is(err, errNoIDs) {
				t.Errorf("%s, failing after %d of %d IDs: err %v, want errNoIDs", name, left, needed, err)
			}
			if len(plan.Operators) != 0 {
				t.Errorf("%s, failing after %d of %d IDs: %d operators returned", name, left, needed, len(plan.Operators))
			}
			if a.afterFault != 1 {
				t.Errorf("%s, failing after %d of %d IDs: asked %d times, want once", name, left, needed, a.afterFault)
			}
		}
	}
}
