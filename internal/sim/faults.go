package sim

import (
	"fmt"
	"math/rand/v2"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// profile is the fault profile of one run, drawn from its seed: each
// seed tries a different mix and intensity of faults.
type profile struct {
	net netConfig
	// Per-step chances, in 1/1000, of crashing a node, partitioning the
	// network and asking a leader to hand over.
	crashPermille, partitionPermille, transferPermille int
	// reconfigPermille: per-step chance of starting to replace a voter
	// of a group (one replacement at a time).
	reconfigPermille int
	// isolatePermille: per-step chance of isolating the node that leads
	// the most groups, with clients pinned to it (isolation.go).
	isolatePermille int
	// reconfCutPermille: chance that a reconfiguration, when it starts,
	// is hit by a partition a little later: its node, the leader's or
	// another one is isolated (reconfig.go).
	reconfCutPermille int
	// diskPermille: per-step chance of arming a disk fault on a node
	// (disk.go); like a crash, it counts against maxDown.
	diskPermille int
	// splitPermille: per-step chance of starting to split a group (shard
	// backend only, one split at a time; split.go).
	splitPermille int
	// tickRates is each node's clock rate in 1/1000 of the nominal one
	// (skew.go).
	tickRates []int
	// maxDown caps how many nodes are down at once.
	maxDown int
	// Engine settings: a small log truncation threshold makes lagging
	// followers need snapshots; quiescence on or off.
	logTruncateEntries uint64
	quiesceAfterTicks  int
}

func (p profile) String() string {
	return fmt.Sprintf("loss=%d‰ dup=%d‰ delay≤%d cut=%d‰ crash=%d‰ partition=%d‰ isolate=%d‰ transfer=%d‰ reconfig=%d‰ reconfcut=%d‰ split=%d‰ disk=%d‰ clocks=%s maxdown=%d truncate=%d quiesce=%d",
		p.net.lossPermille, p.net.dupPermille, p.net.maxDelay, p.net.snapCutPermille,
		p.crashPermille, p.partitionPermille, p.isolatePermille, p.transferPermille, p.reconfigPermille, p.reconfCutPermille, p.splitPermille, p.diskPermille,
		ratesString(p.tickRates), p.maxDown, p.logTruncateEntries, p.quiesceAfterTicks)
}

// electionTicks is the engines' election timeout.
func (p profile) electionTicks() int { return multiraft.DefaultElectionTicks }

func pick[T any](rng *rand.Rand, vs ...T) T { return vs[rng.IntN(len(vs))] }

func randomProfile(rng *rand.Rand, cfg Config) profile {
	p := profile{
		logTruncateEntries: pick[uint64](rng, 8, 24, 0),
		quiesceAfterTicks:  pick(rng, 0, 0, 1, -1),
	}
	if cfg.NoFaults {
		p.tickRates = drawTickRates(rng, cfg.Nodes, false)
		return p
	}
	p.net = netConfig{
		lossPermille:    pick(rng, 0, 5, 20, 60),
		dupPermille:     pick(rng, 0, 5, 30),
		maxDelay:        pick(rng, 0, 2, 6, 12),
		snapCutPermille: pick(rng, 0, 200, 500),
	}
	p.crashPermille = pick(rng, 0, 2, 4, 8)
	p.partitionPermille = pick(rng, 0, 3, 8)
	p.transferPermille = pick(rng, 0, 0, 10, 30)
	p.reconfigPermille = pick(rng, 0, 5, 20)
	p.maxDown = (cfg.Nodes - 1) / 2
	if rng.IntN(5) == 0 {
		p.maxDown = cfg.Nodes
	}
	p.isolatePermille = pick(rng, 0, 0, 2, 5)
	p.reconfCutPermille = pick(rng, 0, 300, 700)
	p.tickRates = drawTickRates(rng, cfg.Nodes, rng.IntN(3) == 0 || cfg.everyFault)
	if split := pick(rng, 0, 3, 10); cfg.Backend == "shard" {
		p.splitPermille = split
	}
	p.diskPermille = pick(rng, 0, 0, 1, 3)
	if cfg.everyFault {
		p.partitionPermille, p.isolatePermille, p.reconfigPermille, p.reconfCutPermille = 3, 5, 20, 700
		p.diskPermille, p.crashPermille = 3, 4
		if cfg.Backend == "shard" {
			p.splitPermille = 10
		}
	}
	if cfg.bug == bugSkewBeyondBound || cfg.bug == bugLeakyPartition {
		p.isolatePermille = 20
	}
	if cfg.bug == bugReadWithoutOwnership {
		// Splits, and leaders that move so that a node's right-hand
		// replica lags behind its left-hand one.
		p.splitPermille, p.transferPermille = 30, 50
	}
	if cfg.bug == bugLyingDisk {
		p.diskPermille = 20
	}
	return p
}

func (s *simulation) chance(permille int) bool { return permille > 0 && s.rng.IntN(1000) < permille }

// injectFaults draws this step's faults.
func (s *simulation) injectFaults() {
	p := &s.prof
	if s.partitionUntil > 0 && s.step >= s.partitionUntil {
		s.healPartition()
	}
	if s.partitionUntil == 0 && s.chance(p.partitionPermille) {
		s.partition()
	}
	if s.partitionUntil == 0 && s.chance(p.isolatePermille) {
		s.isolateLeader()
	}
	if s.partitionUntil == 0 && s.reconfCutAt > 0 && s.step >= s.reconfCutAt {
		s.cutReconfig()
	}
	if s.chance(p.crashPermille) && s.down() < p.maxDown {
		var up []*node
		for _, n := range s.nodes {
			if n.up() {
				up = append(up, n)
			}
		}
		// Short outages race with leases and elections; long ones need snapshots.
		down := pick(s.rng, 2+s.rng.IntN(20), 20+s.rng.IntN(200))
		s.crash(up[s.rng.IntN(len(up))], down)
	}
	if s.chance(p.diskPermille) && s.down()+s.armedDisks() < p.maxDown {
		s.breakDisk()
	}
	if s.chance(p.transferPermille) {
		if s.fleet != nil {
			if gs := s.fleetGroups(); len(gs) > 0 {
				s.transferLeader(gs[s.rng.IntN(len(gs))])
			}
		} else {
			s.transferLeader(multiraft.GroupID(1 + s.rng.IntN(s.groupCount)))
		}
	}
}

// armedDisks counts the live nodes with a disk fault armed.
func (s *simulation) armedDisks() int {
	d := 0
	for _, n := range s.nodes {
		if n.up() && n.disk.on.Load() {
			d++
		}
	}
	return d
}

func (s *simulation) down() int {
	d := 0
	for _, n := range s.nodes {
		if !n.up() && n.joined {
			d++
		}
	}
	return d
}

// crash crashes n (losing its unsynced writes) and schedules its restart.
func (s *simulation) crash(n *node, downSteps int) {
	s.stats.Crashes++
	s.tracef("crash %s for %d steps", n.addr, downSteps)
	n.crash()
	n.restartAt = s.step + downSteps
	for _, o := range s.procs() {
		if o.up() {
			o.e.NodeDown(n.id)
		}
	}
}

// restartDue restarts the down nodes whose time has come.
func (s *simulation) restartDue() {
	for _, n := range s.procs() {
		if n.up() || n.restartAt > s.step {
			continue
		}
		s.tracef("restart %s", n.addr)
		if err := n.start(); err != nil {
			// A node that cannot recover from its own disk after a crash
			// is a durability bug.
			s.violation("restart: %v", err)
			n.restartAt = 1 << 62
		}
	}
}

// partition cuts the network: one node isolated, one link cut in one
// direction, or (with five or more nodes) a split in two sides.
func (s *simulation) partition() {
	s.stats.Partitions++
	s.partitionUntil = s.step + 20 + s.rng.IntN(300)
	nn := len(s.nodes)
	var side []bool // side[i]: node i+1 is cut off from the others
	switch kind := s.rng.IntN(3); {
	case kind == 0 || (kind == 2 && nn < 5):
		s.isolate(s.rng.IntN(nn), s.partitionUntil, "random")
		return
	case kind == 2:
		side = make([]bool, nn)
		for _, i := range s.rng.Perm(nn)[:1+s.rng.IntN(nn/2)] {
			side[i] = true
		}
	default:
		a := s.rng.IntN(nn)
		b := (a + 1 + s.rng.IntN(nn-1)) % nn
		s.tracef("partition one-way n%d->n%d until %d", a+1, b+1, s.partitionUntil)
		s.block(s.nodes[a].id, s.nodes[b].id)
		return
	}
	s.tracef("partition %v until %d", side, s.partitionUntil)
	small := 0
	for i := range nn {
		for j := range nn {
			if side[i] != side[j] {
				s.block(s.nodes[i].id, s.nodes[j].id)
			}
		}
		if side[i] {
			small++
		}
	}
	// In a fleet run a shard has replicas on only some of the nodes: a
	// side of two nodes may hold two of a shard's three; only a node alone
	// is surely cut off from every quorum.
	if 2*small < nn && (s.fleet == nil || small == 1) {
		for i := range nn {
			if side[i] {
				s.markCut(i)
			}
		}
	}
}

// block drops every message from → to, and tells to that from is gone.
func (s *simulation) block(from, to multiraft.NodeID) {
	s.net.blocked[[2]multiraft.NodeID{from, to}] = true
	if n := s.endpoint(to); n.up() {
		n.e.NodeDown(from)
	}
}

func (s *simulation) healPartition() {
	if s.partitionUntil == 0 {
		return
	}
	s.tracef("heal partition")
	clear(s.net.blocked)
	clear(s.cut)
	s.unpinClients()
	s.partitionUntil = 0
}

// transferLeader asks g's leader, if there is one, to hand leadership to
// another voter. The outcome is not awaited: the transfer may well fail
// under the other faults.
func (s *simulation) transferLeader(g multiraft.GroupID) {
	futs := make([]*multiraft.Future, len(s.nodes))
	for i, n := range s.nodes {
		if n.up() {
			futs[i] = n.e.StatusFuture(g)
			n.e.Process()
		}
	}
	for i, f := range futs {
		if f == nil || !isDone(f) {
			continue
		}
		v, err := f.Result()
		if err != nil || !v.(multiraft.Status).IsLeader {
			continue
		}
		st := v.(multiraft.Status)
		var voters []multiraft.ReplicaID
		for _, r := range st.Members.Replicas {
			if !r.Learner && r.ReplicaID != st.Replica {
				voters = append(voters, r.ReplicaID)
			}
		}
		if len(voters) == 0 {
			return
		}
		to := voters[s.rng.IntN(len(voters))]
		s.stats.Transfers++
		s.tracef("transfer g%d r%d->r%d", g, st.Replica, to)
		s.nodes[i].e.TransferLeadershipFuture(g, to)
		return
	}
}
