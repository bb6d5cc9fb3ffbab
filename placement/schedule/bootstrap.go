package schedule

import (
	"fmt"
	"slices"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// bootstrap creates the initial shards once: when the cluster was never
// bootstrapped, holds no shard, has no bootstrap in flight, and at least
// ReplicationFactor nodes are up. Every shard's replicas go to distinct
// nodes, spread over zones and racks, least loaded first. It is all or
// nothing: if any shard cannot be placed, nothing is emitted.
func (p *planner) bootstrap() {
	rf := p.set.ReplicationFactor
	if p.c.Bootstrapped || len(p.c.Shards) > 0 || p.bootstrapInFlight || len(p.usable) < rf {
		return
	}
	n := p.set.InitialShards
	placement := make([][]int32, n)
	for i := range placement {
		chosen := make([]int32, 0, rf)
		for range rf {
			t, _ := p.pickTarget(targetQuery{keep: chosen, holders: chosen, free: true})
			if t < 0 {
				for _, c := range placement[:i+1] {
					for _, m := range c {
						p.nodes[m].replicas--
					}
				}
				return
			}
			chosen = append(chosen, t)
			p.nodes[t].replicas++ // spread the next shards
		}
		placement[i] = chosen
	}
	keys := splitKeys(n)
	for i, chosen := range placement {
		d := shard.Descriptor{ShardID: p.ids.NewShardID(), Epoch: shard.Epoch{ConfVer: 1, Version: 1}}
		if i > 0 {
			d.Start = keys[i-1]
		}
		if i < len(keys) {
			d.End = keys[i]
		}
		for _, m := range chosen {
			d.Replicas = append(d.Replicas, multiraft.Replica{ReplicaID: p.ids.NewReplicaID(), NodeID: p.nodes[m].n.ID})
		}
		slices.SortFunc(d.Replicas, func(a, b multiraft.Replica) int { return cmpID(a.ReplicaID, b.ReplicaID) })
		for _, m := range chosen {
			p.nodes[m].replicas-- // emit counts them again
		}
		p.emit(Operator{
			Kind:   KindBootstrap,
			Shard:  d.ShardID,
			Epoch:  d.Epoch,
			Steps:  []Step{CreateShard{Descriptor: d}},
			Reason: fmt.Sprintf("initial shard %d of %d", i+1, n),
		}, -1)
	}
}

// splitKeys returns the n-1 split points that cut the key space into n
// ranges of equal width over the first two key bytes. A point whose second
// byte is zero is written as one byte.
func splitKeys(n int) [][]byte {
	keys := make([][]byte, 0, n-1)
	for i := 1; i < n; i++ {
		v := i * (1 << 16) / n
		if v&0xff == 0 {
			keys = append(keys, []byte{byte(v >> 8)})
		} else {
			keys = append(keys, []byte{byte(v >> 8), byte(v)})
		}
	}
	return keys
}

func cmpID[T ~uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
