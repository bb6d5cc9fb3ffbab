package schedule

import (
	"bytes"
	"cmp"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// harness is a simulated cluster that executes operators the way the
// placement service would, step by step, so tests can run rounds until
// the scheduler has nothing left to do.
type harness struct {
	nodes        []Node  // sorted by ID
	shards       []Shard // sorted by ID
	inflight     []*running
	bootstrapped bool
	settings     Settings
	ids          seqAlloc
	events       int // failures injected so far (by the simulation)
}

// running is an operator in flight and how many of its steps completed.
type running struct {
	op     Operator
	done   int
	events int // harness.events when it was accepted
}

// seqAlloc allocates IDs from two counters.
type seqAlloc struct {
	shard   shard.ShardID
	replica multiraft.ReplicaID
}

func (a *seqAlloc) NewShardID() (shard.ShardID, error) {
	a.shard++
	return a.shard, nil
}

func (a *seqAlloc) NewReplicaID() (multiraft.ReplicaID, error) {
	a.replica++
	return a.replica, nil
}

func (h *harness) cluster() *Cluster {
	c := &Cluster{Nodes: h.nodes, Shards: h.shards, Bootstrapped: h.bootstrapped, Settings: h.settings}
	for _, r := range h.inflight {
		c.InFlight = append(c.InFlight, r.op)
	}
	return c
}

func (h *harness) node(id multiraft.NodeID) *Node {
	i, ok := slices.BinarySearchFunc(h.nodes, id, func(n Node, id multiraft.NodeID) int { return cmp.Compare(n.ID, id) })
	if !ok {
		return nil
	}
	return &h.nodes[i]
}

// setNode adds or replaces n.
func (h *harness) setNode(n Node) {
	i, ok := slices.BinarySearchFunc(h.nodes, n.ID, func(n Node, id multiraft.NodeID) int { return cmp.Compare(n.ID, id) })
	if ok {
		h.nodes[i] = n
	} else {
		h.nodes = slices.Insert(h.nodes, i, n)
	}
}

func (h *harness) removeNode(id multiraft.NodeID) {
	h.nodes = slices.DeleteFunc(h.nodes, func(n Node) bool { return n.ID == id })
}

func (h *harness) shard(id shard.ShardID) *Shard {
	i, ok := slices.BinarySearchFunc(h.shards, id, func(s Shard, id shard.ShardID) int { return cmp.Compare(s.Descriptor.ShardID, id) })
	if !ok {
		return nil
	}
	return &h.shards[i]
}

// setShard adds or replaces s, and keeps the ID counters past its IDs.
func (h *harness) setShard(s Shard) {
	id := s.Descriptor.ShardID
	i, ok := slices.BinarySearchFunc(h.shards, id, func(s Shard, id shard.ShardID) int { return cmp.Compare(s.Descriptor.ShardID, id) })
	if ok {
		h.shards[i] = s
	} else {
		h.shards = slices.Insert(h.shards, i, s)
	}
	h.ids.shard = max(h.ids.shard, id)
	for _, r := range s.Descriptor.Replicas {
		h.ids.replica = max(h.ids.replica, r.ReplicaID)
	}
}

// accept records ops as in flight.
func (h *harness) accept(ops []Operator) {
	for _, op := range ops {
		h.inflight = append(h.inflight, &running{op: op, events: h.events})
	}
}

// complete executes every step of every operator in flight.
func (h *harness) complete() error {
	for len(h.inflight) > 0 {
		if err := h.step(h.inflight[0].op.Shard, 1<<30); err != nil {
			return err
		}
	}
	return nil
}

// step executes up to n further steps of the operator in flight for the
// shard, and forgets it once all its steps are done.
func (h *harness) step(id shard.ShardID, n int) error {
	i := slices.IndexFunc(h.inflight, func(r *running) bool { return r.op.Shard == id })
	if i < 0 {
		return fmt.Errorf("no operator in flight for s%d", id)
	}
	r := h.inflight[i]
	for ; n > 0 && r.done < len(r.op.Steps); n-- {
		if err := h.apply(r.op, r.op.Steps[r.done]); err != nil {
			return err
		}
		r.done++
	}
	if r.done == len(r.op.Steps) {
		h.inflight = slices.Delete(h.inflight, i, i+1)
	}
	return nil
}

// run executes ops at once.
func (h *harness) run(ops []Operator) error {
	for _, op := range ops {
		for _, st := range op.Steps {
			if err := h.apply(op, st); err != nil {
				return err
			}
		}
	}
	return nil
}

// apply executes one step as the shard leader would, checking what a real
// shard would refuse.
func (h *harness) apply(op Operator, st Step) error {
	if c, ok := st.(CreateShard); ok {
		if h.shard(c.Descriptor.ShardID) != nil {
			return fmt.Errorf("create: s%d exists", c.Descriptor.ShardID)
		}
		d := c.Descriptor.Clone()
		h.setShard(Shard{Descriptor: d, Leader: d.Replicas[0].ReplicaID})
		h.bootstrapped = true
		return nil
	}
	s := h.shard(op.Shard)
	if s == nil {
		return fmt.Errorf("%v: no shard s%d", st, op.Shard)
	}
	d := &s.Descriptor
	switch st := st.(type) {
	case AddReplica:
		if _, ok := d.Replica(st.Replica.ReplicaID); ok {
			return fmt.Errorf("%v: already in %v", st, d)
		}
		for _, r := range d.Replicas {
			if r.NodeID == st.Replica.NodeID {
				return fmt.Errorf("%v: n%d already holds %v", st, r.NodeID, d)
			}
		}
		if n := h.node(st.Replica.NodeID); n == nil || n.State != NodeUp {
			return fmt.Errorf("%v: target not up", st)
		}
		d.Replicas = append(slices.Clone(d.Replicas), st.Replica)
		slices.SortFunc(d.Replicas, func(a, b multiraft.Replica) int { return cmp.Compare(a.ReplicaID, b.ReplicaID) })
		d.Epoch.ConfVer++
	case RemoveReplica:
		if _, ok := d.Replica(st.Replica.ReplicaID); !ok {
			return fmt.Errorf("%v: not in %v", st, d)
		}
		if s.Leader == st.Replica.ReplicaID {
			return fmt.Errorf("%v: removes the leader of %v", st, d)
		}
		d.Replicas = slices.DeleteFunc(slices.Clone(d.Replicas), func(r multiraft.Replica) bool { return r.ReplicaID == st.Replica.ReplicaID })
		d.Epoch.ConfVer++
	case TransferLeader:
		r, ok := d.Replica(st.To)
		if !ok || r.Learner || r.NodeID != st.ToNode {
			return fmt.Errorf("%v: not a voter of %v", st, d)
		}
		if n := h.node(st.ToNode); n == nil || n.State == NodeDown {
			return fmt.Errorf("%v: target down", st)
		}
		s.Leader = st.To
	case Split:
		key := st.Key
		if len(key) == 0 {
			key = middle(d.Start, d.End)
		}
		if !d.ContainsKey(key) || bytes.Equal(key, d.Start) {
			return fmt.Errorf("%v: no key strictly inside %v", st, d)
		}
		if len(d.Replicas) != len(st.NewReplicas) {
			return fmt.Errorf("%v: replicas of %v", st, d)
		}
		right := Shard{
			Descriptor: shard.Descriptor{ShardID: st.NewShard, Start: key, End: d.End, Epoch: d.Epoch},
			SizeBytes:  s.SizeBytes - s.SizeBytes/2,
			Keys:       s.Keys - s.Keys/2,
			Load:       s.Load / 2,
		}
		for i, r := range d.Replicas {
			if st.NewReplicas[i].Old != r.ReplicaID {
				return fmt.Errorf("%v: mapping of %v", st, d)
			}
			right.Descriptor.Replicas = append(right.Descriptor.Replicas,
				multiraft.Replica{ReplicaID: st.NewReplicas[i].New, NodeID: r.NodeID, Learner: r.Learner})
			if r.ReplicaID == s.Leader {
				right.Leader = st.NewReplicas[i].New
			}
		}
		d.End = key
		d.Epoch.Version++
		right.Descriptor.Epoch.Version++
		s.SizeBytes, s.Keys, s.Load = s.SizeBytes/2, s.Keys/2, s.Load/2
		h.setShard(right)
	default:
		return fmt.Errorf("unexpected step %T", st)
	}
	return nil
}

// schedule runs a round with a copy of the allocator, which it keeps only
// if commit is set: a dry run leaves the cluster as it was.
func (h *harness) schedule(commit bool) (Plan, error) {
	ids := h.ids
	plan, err := Schedule(h.cluster(), &ids)
	if commit {
		h.ids = ids
	}
	return plan, err
}

// nodeSummary prints per node: state, zone, replicas, leaders, bytes.
func (h *harness) nodeSummary() string {
	type counts struct {
		replicas, leaders int
		bytes             int64
	}
	m := map[multiraft.NodeID]*counts{}
	for _, n := range h.nodes {
		m[n.ID] = &counts{}
	}
	for _, s := range h.shards {
		for _, r := range s.Descriptor.Replicas {
			if c := m[r.NodeID]; c != nil {
				c.replicas++
				c.bytes += s.SizeBytes
				if r.ReplicaID == s.Leader {
					c.leaders++
				}
			}
		}
	}
	var sb strings.Builder
	for _, n := range h.nodes {
		c := m[n.ID]
		fmt.Fprintf(&sb, "n%d zone=%s %s replicas=%d leaders=%d", n.ID, n.Labels.Zone, n.State, c.replicas, c.leaders)
		if c.bytes > 0 {
			fmt.Fprintf(&sb, " bytes=%s", formatBytes(c.bytes))
		}
		if n.CapacityBytes > 0 {
			fmt.Fprintf(&sb, " capacity=%s", formatBytes(n.CapacityBytes))
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

func (h *harness) shardSummary() string {
	var sb strings.Builder
	for _, s := range h.shards {
		fmt.Fprintf(&sb, "%v leader=r%d", &s.Descriptor, s.Leader)
		if s.SizeBytes > 0 {
			fmt.Fprintf(&sb, " size=%s", formatBytes(s.SizeBytes))
		}
		if s.Load > 0 {
			fmt.Fprintf(&sb, " load=%.0f", s.Load)
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

// middle returns a key halfway between start and end (+inf if empty), as
// a leader splitting evenly filled keys would pick.
func middle(start, end []byte) []byte {
	if len(end) == 0 {
		return append(bytes.Clone(start), 0x80)
	}
	n := max(len(start), len(end)) + 1
	pad := func(b []byte) *big.Int {
		p := make([]byte, n)
		copy(p, b)
		return new(big.Int).SetBytes(p)
	}
	m := new(big.Int).Add(pad(start), pad(end))
	m.Rsh(m, 1)
	key := m.FillBytes(make([]byte, n))
	for len(key) > 0 && key[len(key)-1] == 0 {
		key = key[:len(key)-1]
	}
	return key
}
