package schedule

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// planner holds one round's indexes over a Cluster. Nodes are addressed by
// a dense index (their rank by ID), shards by their position in
// Cluster.Shards; every iteration goes by ID order.
type planner struct {
	c   *Cluster
	set Settings
	ids IDAllocator
	// err is the allocator's first failure: once set, the round stops
	// planning and Schedule returns it (see newShardID).
	err error

	out   []Operator
	stats Stats

	nodes   []nodeInfo                 // sorted by ID
	dense   []int32                    // NodeID -> index+1, when IDs are small
	sparse  map[multiraft.NodeID]int32 // NodeID -> index, otherwise
	usable  []int32                    // nodes that are up, by ID
	zones   int                        // distinct zones among usable nodes
	zoneIDs int                        // distinct zones among all nodes: zone IDs are below
	open    int                        // usable nodes under both the snapshot and move limits
	ranked  []int32                    // open nodes by (metric, load, ID), built on first use
	dirty   []int32                    // nodes to re-rank before the next use

	order   []int32 // shard positions sorted by ShardID; nil if Shards are sorted
	repOff  []int32 // replicas of shard i: repNode[repOff[i]:repOff[i+1]]
	repNode []int32 // node index of each replica, -1 if the node is unknown
	leaders []int8  // per shard: index of the leader in its descriptor, -1 if unknown
	busy    []bool  // per shard: an operator is in flight or was emitted this round
	noted   []bool  // per shard: counted as throttled or unplaceable (lazily allocated)

	lists             *nodeLists // the shards of each node, built when balance needs them
	bytesMode         bool       // balance by used fraction of capacity, not count
	bootstrapInFlight bool

	// Candidates per checker, by shard ID.
	repairs, drains, zoneMoves, splits []int32
}

// nodeInfo is a node's state plus the counts projected from the shards,
// the operators in flight and the operators emitted so far this round.
type nodeInfo struct {
	n          *Node
	zone, rack int32 // interned labels
	usable     bool  // up: may receive replicas and leaderships
	down       bool
	dead       bool // down for longer than DownAfter, or unknown
	draining   bool

	held     int // replicas in the shards' descriptors (not projected)
	replicas int // held, plus what operators in flight or planned add, minus what they remove
	leaders  int
	bytes    int64 // sum of SizeBytes of the shards it holds
	incoming int64 // bytes of the replicas being added to it

	snapshots, moves, transfers int // in flight plus emitted
}

func newPlanner(c *Cluster, ids IDAllocator) (*planner, error) {
	p := &planner{c: c, set: c.Settings.withDefaults(), ids: ids}
	var ps problems
	p.indexNodes(&ps)
	p.indexShards(&ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	for i := range c.InFlight {
		op := &c.InFlight[i]
		pos := p.find(op.Shard)
		if pos >= 0 && !p.busy[pos] {
			p.busy[pos] = true
			p.stats.InFlight++
		}
		for _, st := range op.Steps {
			if _, ok := st.(CreateShard); ok {
				p.bootstrapInFlight = true
			}
		}
		p.account(op, pos)
	}
	p.chooseBalanceMode()
	p.open = 0 // charge kept no count before this point
	for _, n := range p.usable {
		if p.isOpen(n) {
			p.open++
		}
	}
	return p, nil
}

func (p *planner) indexNodes(ps *problems) {
	nodes := p.c.Nodes
	order := make([]int32, len(nodes))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(nodes[a].ID, nodes[b].ID) })
	p.nodes = make([]nodeInfo, len(nodes))
	var maxID multiraft.NodeID
	zones, racks := map[string]int32{}, map[string]int32{}
	for i, pos := range order {
		n := &nodes[pos]
		if n.ID == 0 {
			ps.add("node with ID 0")
		} else if i > 0 && nodes[order[i-1]].ID == n.ID {
			ps.add("duplicate node n%d", n.ID)
		}
		maxID = max(maxID, n.ID)
		zones[n.Labels.Zone], racks[n.Labels.Rack] = 0, 0
		p.nodes[i] = nodeInfo{
			n:        n,
			usable:   n.State == NodeUp,
			down:     n.State == NodeDown,
			dead:     n.State == NodeDown && n.DownFor > p.set.DownAfter,
			draining: n.State == NodeDraining,
		}
	}
	// Interned in name order, so that ties broken by zone are deterministic.
	intern := func(m map[string]int32) {
		names := make([]string, 0, len(m))
		for name := range m {
			names = append(names, name)
		}
		slices.Sort(names)
		for i, name := range names {
			m[name] = int32(i)
		}
	}
	intern(zones)
	intern(racks)
	p.zoneIDs = len(zones)
	usableZones := map[int32]bool{}
	for i := range p.nodes {
		ni := &p.nodes[i]
		ni.zone, ni.rack = zones[ni.n.Labels.Zone], racks[ni.n.Labels.Rack]
		if ni.usable {
			p.usable = append(p.usable, int32(i))
			usableZones[ni.zone] = true
		}
	}
	p.zones = len(usableZones)
	if uint64(maxID) <= uint64(8*len(nodes)+1024) {
		p.dense = make([]int32, maxID+1)
		for i := range p.nodes {
			p.dense[p.nodes[i].n.ID] = int32(i) + 1
		}
	} else {
		p.sparse = make(map[multiraft.NodeID]int32, len(nodes))
		for i := range p.nodes {
			p.sparse[p.nodes[i].n.ID] = int32(i)
		}
	}
}

// node returns the dense index of the node with the given ID, or -1.
func (p *planner) node(id multiraft.NodeID) int32 {
	if p.dense != nil {
		if uint64(id) < uint64(len(p.dense)) {
			return p.dense[id] - 1
		}
		return -1
	}
	if i, ok := p.sparse[id]; ok {
		return i
	}
	return -1
}

// indexShards orders the shards by ID and, in one pass over them in that
// order, checks them, maps their replicas to nodes, finds their leaders,
// counts replicas, bytes and leaders per node, and sorts the shards into
// the checkers' candidate lists. Shards usually come sorted by ID; the
// pass assumes so, and starts over with a sorted order if they are not.
func (p *planner) indexShards(ps *problems) {
	shards := p.c.Shards
	p.stats.Shards = len(shards)
	p.leaders = make([]int8, len(shards))
	p.busy = make([]bool, len(shards))
	p.repOff = make([]int32, len(shards)+1)
	p.repNode = make([]int32, 0, 3*len(shards))
	nodeProblems := *ps
	if p.indexPass(ps) {
		return
	}
	// Not sorted: undo the partial pass, sort, and go again.
	for i := range p.nodes {
		ni := &p.nodes[i]
		ni.held, ni.replicas, ni.bytes, ni.leaders = 0, 0, 0, 0
	}
	p.repairs, p.drains, p.zoneMoves, p.splits = nil, nil, nil, nil
	p.stats.UnderReplicated, p.stats.Unavailable = 0, 0
	ps.errs, ps.more = ps.errs[:len(nodeProblems.errs)], nodeProblems.more
	p.order = make([]int32, len(shards))
	for i := range p.order {
		p.order[i] = int32(i)
	}
	slices.SortFunc(p.order, func(a, b int32) int {
		return cmp.Compare(shards[a].Descriptor.ShardID, shards[b].Descriptor.ShardID)
	})
	for i := range shards {
		p.repOff[i+1] = p.repOff[i] + int32(len(shards[i].Descriptor.Replicas))
	}
	// The first pass sized repNode for three replicas a shard; a shard
	// mid-move has more, so grow to the whole count before reslicing.
	total := int(p.repOff[len(shards)])
	p.repNode = slices.Grow(p.repNode[:0], total)[:total]
	p.indexPass(ps)
}

// indexPass is indexShards' pass over the shards in ID order: by position
// if p.order is nil, in which case it fills the replica offsets as it
// goes and gives up (returning false) at the first shard out of order.
func (p *planner) indexPass(ps *problems) bool {
	shards := p.c.Shards
	var prev shard.ShardID
	for i := range shards {
		pos := i
		if p.order != nil {
			pos = int(p.order[i])
		}
		s := &shards[pos]
		d := &s.Descriptor
		if p.order == nil {
			if i > 0 && d.ShardID < prev {
				return false
			}
			p.repOff[pos+1] = p.repOff[pos] + int32(len(d.Replicas))
			p.repNode = append(p.repNode, make([]int32, len(d.Replicas))...)
		}
		if i > 0 && d.ShardID == prev {
			ps.add("duplicate shard s%d", d.ShardID)
		}
		prev = d.ShardID
		if err := d.Validate(); err != nil {
			ps.add("shard s%d: %v", d.ShardID, err)
		}
		nodes := p.replicaNodes(pos)
		for j := range d.Replicas {
			n := p.node(d.Replicas[j].NodeID)
			nodes[j] = n
			if n >= 0 {
				p.nodes[n].held++
				p.nodes[n].replicas++
				p.nodes[n].bytes += s.SizeBytes
			}
		}
		li := p.findLeader(pos)
		p.leaders[pos] = li
		if li >= 0 {
			p.nodes[nodes[li]].leaders++
		}
		p.classify(int32(pos))
	}
	return true
}

// find returns the position of the shard with the given ID, or -1.
func (p *planner) find(id shard.ShardID) int {
	shards := p.c.Shards
	if p.order == nil {
		i, ok := slices.BinarySearchFunc(shards, id, func(s Shard, id shard.ShardID) int {
			return cmp.Compare(s.Descriptor.ShardID, id)
		})
		if !ok {
			return -1
		}
		return i
	}
	i, ok := slices.BinarySearchFunc(p.order, id, func(pos int32, id shard.ShardID) int {
		return cmp.Compare(shards[pos].Descriptor.ShardID, id)
	})
	if !ok {
		return -1
	}
	return int(p.order[i])
}

// replicaNodes returns the node index of each replica of the shard at pos.
func (p *planner) replicaNodes(pos int) []int32 {
	return p.repNode[p.repOff[pos]:p.repOff[pos+1]]
}

// leaderIndex returns the index in the descriptor of the shard's leader, or
// -1 when the leader is unknown or on a node that is down or unknown.
func (p *planner) leaderIndex(pos int) int { return int(p.leaders[pos]) }

// findLeader computes leaderIndex for the shard at pos.
func (p *planner) findLeader(pos int) int8 {
	s := &p.c.Shards[pos]
	if s.Leader == 0 {
		return -1
	}
	for i, r := range s.Descriptor.Replicas {
		if r.ReplicaID == s.Leader {
			if n := p.repNode[int(p.repOff[pos])+i]; n >= 0 && !p.nodes[n].down && i < 128 {
				return int8(i)
			}
			return -1
		}
	}
	return -1
}

// isOpen reports whether node n may receive a replica under its limits.
func (p *planner) isOpen(n int32) bool {
	ni := &p.nodes[n]
	return ni.usable && ni.snapshots < p.set.MaxSnapshotsPerNode && ni.moves < p.set.MaxMovesPerNode
}

// account charges the steps of op that are not yet visible in the shard at
// pos (-1: a shard not in the cluster) to the per-node limits and the
// projected counts. It serves both the operators in flight and the ones
// emitted this round (none of whose steps is visible yet).
func (p *planner) account(op *Operator, pos int) {
	var s *Shard
	leader := int32(-1)
	if pos >= 0 {
		s = &p.c.Shards[pos]
		if li := p.leaderIndex(pos); li >= 0 {
			leader = p.replicaNodes(pos)[li]
		}
	}
	var moved [8]int32 // nodes charged a move by this operator
	nm := 0
	move := func(n int32) {
		if n < 0 || p.nodes[n].down {
			return
		}
		for _, m := range moved[:nm] {
			if m == n {
				return
			}
		}
		if nm < len(moved) {
			moved[nm] = n
			nm++
		}
		p.charge(n, func(ni *nodeInfo) { ni.moves++ })
	}
	size := int64(0)
	if s != nil {
		size = s.SizeBytes
	}
	for _, st := range op.Steps {
		switch st := st.(type) {
		case CreateShard:
			if s != nil {
				continue
			}
			for _, r := range st.Descriptor.Replicas {
				if n := p.node(r.NodeID); n >= 0 {
					p.touch(n)
					p.nodes[n].replicas++
				}
			}
		case AddReplica:
			n := p.node(st.Replica.NodeID)
			if n < 0 {
				continue
			}
			p.touch(n)
			present, role := false, false
			if s != nil {
				if r, ok := s.Descriptor.Replica(st.Replica.ReplicaID); ok {
					present, role = true, r.Learner == st.Replica.Learner
				}
			}
			if present && role {
				continue // done
			}
			if !present {
				p.nodes[n].replicas++
				p.nodes[n].bytes += size
			}
			p.nodes[n].incoming += size
			p.charge(n, func(ni *nodeInfo) { ni.snapshots++ })
			move(n)
		case RemoveReplica:
			if s == nil {
				continue
			}
			if _, ok := s.Descriptor.Replica(st.Replica.ReplicaID); !ok {
				continue // done
			}
			if n := p.node(st.Replica.NodeID); n >= 0 {
				p.touch(n)
				p.nodes[n].replicas--
				p.nodes[n].bytes -= size
				move(n)
			}
		case TransferLeader:
			if s == nil || s.Leader == st.To {
				continue
			}
			n := p.node(st.ToNode)
			if n < 0 || n == leader {
				continue
			}
			if leader >= 0 {
				p.nodes[leader].leaders--
			}
			p.nodes[n].leaders++
			p.nodes[n].transfers++
			leader = n
		case Split:
			if s == nil || s.Descriptor.Epoch.Version > op.Epoch.Version {
				continue
			}
			for _, n := range p.replicaNodes(pos) {
				if n >= 0 {
					p.touch(n)
					p.nodes[n].replicas++
				}
			}
		}
	}
}

// newShardID returns a new shard ID from the allocator. Once the
// allocator has failed it returns false, without asking it again, and
// p.err says why: the caller emits nothing and the round stops.
func (p *planner) newShardID() (shard.ShardID, bool) {
	if p.err != nil {
		return 0, false
	}
	id, err := p.ids.NewShardID()
	if err != nil {
		p.err = err
		return 0, false
	}
	return id, true
}

// newReplicaID is newShardID for a replica ID.
func (p *planner) newReplicaID() (multiraft.ReplicaID, bool) {
	if p.err != nil {
		return 0, false
	}
	id, err := p.ids.NewReplicaID()
	if err != nil {
		p.err = err
		return 0, false
	}
	return id, true
}

// touch notes that node n's place in the target ranking may have changed.
func (p *planner) touch(n int32) {
	if p.ranked != nil {
		p.dirty = append(p.dirty, n)
	}
}

// charge applies f to node n, keeping the count of open nodes current.
func (p *planner) charge(n int32, f func(*nodeInfo)) {
	wasOpen := p.isOpen(n)
	f(&p.nodes[n])
	if wasOpen && !p.isOpen(n) {
		p.open--
	}
}

// blocked reports whether the shard at pos may get no operator from the
// next checker: it has one (in flight or this round), or an earlier
// checker needed to act on it and could not (throttled or unplaceable).
// A shard that waits for a repair or a drain is not split or rebalanced
// meanwhile: that would delay the urgent change, or add replicas on a
// node that is leaving. (Repair and drain both try a shard that needs
// both: a drain that cannot place a replica still moves the leadership.)
func (p *planner) blocked(pos int32) bool {
	return p.busy[pos] || (p.noted != nil && p.noted[pos])
}

// emit appends op for the shard at pos and charges it.
func (p *planner) emit(op Operator, pos int) {
	if pos >= 0 {
		if p.busy[pos] {
			panic(fmt.Sprintf("schedule: second operator for shard s%d: %s", op.Shard, op.String()))
		}
		p.busy[pos] = true
	}
	p.account(&op, pos)
	p.out = append(p.out, op)
}

// chooseBalanceMode balances by bytes when every usable node has a capacity
// and some usable node fills at least CapacityTolerance of it. Below that
// every node's used fraction is within the tolerance of the cluster's, so
// balancing by bytes would see nothing to do, however unevenly the
// replicas are spread: a fleet that reports its disks' sizes (shardnode
// does by default) but holds little data yet is balanced by replica count.
func (p *planner) chooseBalanceMode() {
	filling := false
	for _, n := range p.usable {
		ni := &p.nodes[n]
		if ni.n.CapacityBytes <= 0 {
			return
		}
		if ni.bytes > 0 && float64(ni.bytes) >= p.set.CapacityTolerance*float64(ni.n.CapacityBytes) {
			filling = true
		}
	}
	p.bytesMode = filling
}

// metric is what replica balance evens out, and what target selection
// prefers low: the replica count, or the used fraction of capacity.
func (p *planner) metric(n int32) float64 {
	ni := &p.nodes[n]
	if p.bytesMode {
		return float64(ni.bytes) / float64(ni.n.CapacityBytes)
	}
	return float64(ni.replicas)
}

// delta is how much a replica of size bytes changes node n's metric.
func (p *planner) delta(n int32, size int64) float64 {
	if p.bytesMode {
		return float64(size) / float64(p.nodes[n].n.CapacityBytes)
	}
	return 1
}

// run executes the checkers in priority order. Each sees the budgets and
// projected counts left by the ones before it. It stops as soon as the
// allocator fails (p.err).
func (p *planner) run() {
	p.bootstrap()
	for _, check := range []struct {
		shards []int32
		fn     func(pos int32)
		urgent bool // tried even if an earlier checker could not act
	}{
		{p.repairs, p.repair, true},
		{p.drains, p.drain, true},
		{p.zoneMoves, p.spreadZones, false},
		{p.splits, p.split, false},
	} {
		for _, pos := range check.shards {
			if p.err != nil {
				return
			}
			if !p.busy[pos] && (check.urgent || !p.blocked(pos)) {
				check.fn(pos)
			}
		}
	}
	if p.err != nil {
		return
	}
	p.balanceReplicas()
	if p.err != nil {
		return
	}
	p.balanceLeaders()
}
