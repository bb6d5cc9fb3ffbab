package chaos

import (
	"bytes"
	"math/rand/v2"
	"testing"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

func desc(id uint64, start, end string, nodes ...uint64) *pb.Descriptor {
	d := &pb.Descriptor{ShardId: id, Start: []byte(start), End: []byte(end)}
	for i, n := range nodes {
		d.Replicas = append(d.Replicas, &pb.Replica{ReplicaId: id*10 + uint64(i), NodeId: n})
	}
	return d
}

func TestPickSplitFallsBetweenNeighbouringKeysOfOneShard(t *testing.T) {
	shards := []*pb.Descriptor{desc(1, "", "m", 1, 2, 3), desc(2, "m", "", 1, 2, 3)}
	keys := []string{"a", "c", "n", "p", "x"}
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	for range 200 {
		id, key := pickSplit(shards, keys, rng)
		var d *pb.Descriptor
		for _, s := range shards {
			if s.GetShardId() == id {
				d = s
			}
		}
		if d == nil || !holds(d, key) || bytes.Equal(key, d.GetStart()) {
			t.Fatalf("split of shard %d at %q: not a key inside it after its start", id, key)
		}
		seen[string(key)] = true
	}
	// "c" splits a|c in shard 1; "p" and "x" split shard 2's n|p and p|x.
	for _, k := range []string{"c", "p", "x"} {
		if !seen[k] {
			t.Errorf("never split at %q: %v", k, seen)
		}
	}
	if seen["a"] || seen["n"] {
		t.Errorf("split at a shard's first key of the cycle, which separates no pair: %v", seen)
	}
}

func TestPickSplitWithoutPairsLetsTheLeaderPick(t *testing.T) {
	shards := []*pb.Descriptor{desc(1, "", "b", 1), desc(2, "b", "d", 1), desc(3, "d", "", 1)}
	id, key := pickSplit(shards, []string{"a", "c"}, rand.New(rand.NewPCG(1, 2)))
	if id == 0 || key != nil {
		t.Fatalf("got shard %d key %q, want a shard and no key", id, key)
	}
	if id, _ := pickSplit(nil, []string{"a"}, rand.New(rand.NewPCG(1, 2))); id != 0 {
		t.Fatalf("split of shard %d with no shards", id)
	}
}

func TestPickMoveGoesToANodeWithoutAReplica(t *testing.T) {
	shards := []*pb.Descriptor{desc(1, "", "m", 1, 2, 3), desc(2, "m", "", 3, 4, 5)}
	shards[1].Replicas[0].Learner = true // node 3's replica of shard 2 is a learner: never moved
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		id, from, to := pickMove(shards, []uint64{1, 2, 3, 4, 5}, rng)
		switch id {
		case 1:
			if from < 1 || from > 3 || to < 4 {
				t.Fatalf("shard 1: move %d -> %d", from, to)
			}
		case 2:
			if from < 4 || to > 2 {
				t.Fatalf("shard 2: move %d -> %d", from, to)
			}
		default:
			t.Fatalf("no move chosen (shard %d)", id)
		}
	}
	// Every node holds a replica: nothing to move to.
	if id, _, _ := pickMove(shards[:1], []uint64{1, 2, 3}, rng); id != 0 {
		t.Fatalf("move of shard %d with no free node", id)
	}
}
