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
//
// Each shard also gets an intended leader, its replica on the node of its
// set intended to lead the fewest shards so far (then the lowest ID), so
// the intended leaderships are spread evenly. That replica gets the
// shard's lowest replica ID and so comes first in the descriptor: the
// executor creates the replicas in descriptor order, so it is created
// first and its election timer runs first, and a split vote is broken by
// the candidate with the lowest replica ID (see multiraft). The replica
// that campaigns first with the others already present wins the first
// election. Without this, the replica on the lowest node ID came first
// in every shard of a fleet of RF nodes (every node ties on load), and
// under the load of creating thousands of replicas at once that node won
// most first elections: 78% of 5,000 shards on one of 3 nodes, which
// leader balance then took a quarter of an hour to undo.
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
	intended := make([]int, len(p.nodes)) // intended leaderships per node
	for i, chosen := range placement {
		id, ok := p.newShardID()
		if !ok {
			return
		}
		d := shard.Descriptor{ShardID: id, Epoch: shard.Epoch{ConfVer: 1, Version: 1}}
		if i > 0 {
			d.Start = keys[i-1]
		}
		if i < len(keys) {
			d.End = keys[i]
		}
		lead := 0
		for j, m := range chosen {
			if best := chosen[lead]; intended[m] < intended[best] || (intended[m] == intended[best] && p.nodes[m].n.ID < p.nodes[best].n.ID) {
				lead = j
			}
		}
		intended[chosen[lead]]++
		// The intended leader first: it gets the lowest replica ID.
		chosen[0], chosen[lead] = chosen[lead], chosen[0]
		for _, m := range chosen {
			rid, ok := p.newReplicaID()
			if !ok {
				return
			}
			d.Replicas = append(d.Replicas, multiraft.Replica{ReplicaID: rid, NodeID: p.nodes[m].n.ID})
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
			Reason: fmt.Sprintf("initial shard %d of %d, to be led by n%d", i+1, n, d.Replicas[0].NodeID),
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
