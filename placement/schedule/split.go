package schedule

import (
	"fmt"

	"github.com/flotilla-kv/flotilla/shard"
)

// needsSplit returns why s should be split, or "" if it should not: larger
// than SplitSizeBytes, or hotter than SplitLoad (when set). A shard known
// to hold a single key, or found unsplittable, is not split.
func (p *planner) needsSplit(s *Shard) string {
	if s.Keys == 1 || s.Unsplittable || (s.SizeBytes <= p.set.SplitSizeBytes && (p.set.SplitLoad <= 0 || s.Load <= p.set.SplitLoad)) {
		return ""
	}
	if s.SizeBytes > p.set.SplitSizeBytes {
		return fmt.Sprintf("size %s > %s", formatBytes(s.SizeBytes), formatBytes(p.set.SplitSizeBytes))
	}
	if p.set.SplitLoad > 0 && s.Load > p.set.SplitLoad {
		return fmt.Sprintf("load %.0f/s > %.0f/s", s.Load, p.set.SplitLoad)
	}
	return ""
}

// split splits a shard that is too large or too hot, at a key its leader
// picks (the middle of its data), into a new shard with one new replica
// per existing replica, on the same nodes. Splits copy no data and so are
// not charged to the per-node limits. Shards with a dead replica or a
// learner are repaired first.
func (p *planner) split(pos int32) {
	s := &p.c.Shards[pos]
	d := &s.Descriptor
	newShard, ok := p.newShardID()
	if !ok {
		return
	}
	st := Split{Shard: d.ShardID, NewShard: newShard}
	st.NewReplicas = make([]shard.SplitReplica, len(d.Replicas))
	for i, r := range d.Replicas {
		id, ok := p.newReplicaID()
		if !ok {
			return
		}
		st.NewReplicas[i] = shard.SplitReplica{Old: r.ReplicaID, New: id}
	}
	p.emit(Operator{Kind: KindSplit, Shard: d.ShardID, Epoch: d.Epoch, Steps: []Step{st}, Reason: p.needsSplit(s)}, int(pos))
}

// formatBytes formats n in the largest binary unit that divides it, or with
// one decimal.
func formatBytes(n int64) string {
	units := []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n >= u.size {
			if n%u.size == 0 {
				return fmt.Sprintf("%d%s", n/u.size, u.name)
			}
			return fmt.Sprintf("%.1f%s", float64(n)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}
