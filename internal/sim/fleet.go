package sim

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// Fleet runs (Config.Fleet): the real placement service runs the fleet.
// No group exists at the start: one or three placement processes
// (placementproc.go) elect a catalogue leader, the shardnodes register and
// heartbeat (reporter.go), placement bootstraps the initial shards, and
// from then on every shard is created, split, repaired, moved and
// balanced by placement's scheduler through the nodes' Admin services
// (admin.go), while clients write and read keys spread over the whole key
// space, routing by the descriptors the nodes hold (as a router healing
// from EpochNotMatch would). The faults are those of the engine runs
// (crashes, partitions, lossy and slow links, cut snapshots, disk
// failures, skewed clocks, leadership transfers) plus crashes of
// placement processes (often the leader), partitions that cut a
// placement process or a shardnode off from placement, nodes that join
// during the run, and a node drained (and sometimes undrained). Crashes
// shorter and longer than placement's DownAfter alternate, so that splits
// happen while a replica's node is down and shards are re-added to nodes
// that once held them. See fleetcheck.go for what is checked.

// Timing of placement in fleet runs (virtual time; a step is 50 ms).
const (
	heartbeatInterval = 250 * time.Millisecond
	scheduleInterval  = 250 * time.Millisecond
	operatorTimeout   = 10 * time.Second
	// fleetKeys is how many user keys the clients use.
	fleetKeys = 40
)

// fleetProfile is the part of a fleet run's profile about placement.
type fleetProfile struct {
	placements    int // placement processes: 1 or 3
	rf            int
	initialShards int
	splitBytes    uint64
	splitLoad     float64
	downAfter     time.Duration
	// joinAt: the steps at which the nodes beyond Config.Nodes join.
	joinAt []int
	// drainAt, undrainAt: the steps of a drain request and of its undo (0:
	// none); drainNode is chosen then.
	drainAt, undrainAt int
	// pcrashPermille: per-step chance of crashing a placement process
	// (half of the time its leader); pcutPermille: per-step chance of a
	// partition cutting a placement process, or a shardnode, off from
	// placement.
	pcrashPermille, pcutPermille int
}

func (p fleetProfile) String() string {
	return fmt.Sprintf("placements=%d shards=%d split=%dB/%.0f/s downafter=%v join=%v drain=%d-%d pcrash=%d‰ pcut=%d‰",
		p.placements, p.initialShards, p.splitBytes, p.splitLoad, p.downAfter, p.joinAt, p.drainAt, p.undrainAt, p.pcrashPermille, p.pcutPermille)
}

func randomFleetProfile(s *simulation) fleetProfile {
	rng, cfg := s.rng, s.cfg
	p := fleetProfile{
		placements:    pick(rng, 1, 3, 3),
		rf:            3,
		initialShards: pick(rng, 2, 4, 6),
		splitBytes:    uint64(pick(rng, 300, 500, 800)),
		splitLoad:     float64(pick(rng, 0, 15, 30)),
		downAfter:     time.Duration(pick(rng, 2, 3, 5)) * time.Second,
	}
	for range pick(rng, 0, 1, 1, 2) {
		p.joinAt = append(p.joinAt, 100+rng.IntN(max(1, cfg.Steps-300)))
	}
	slices.Sort(p.joinAt)
	if rng.IntN(2) == 0 {
		p.drainAt = 200 + rng.IntN(max(1, cfg.Steps-300))
		if rng.IntN(2) == 0 {
			p.undrainAt = p.drainAt + 100 + rng.IntN(300)
		}
	}
	if !cfg.NoFaults {
		p.pcrashPermille = pick(rng, 0, 1, 3)
		p.pcutPermille = pick(rng, 0, 1, 3)
	}
	return p
}

// placementCounts are one kind's operator counts.
type placementCounts = placement.OperatorCounts

// fleet is the state of a fleet run.
type fleet struct {
	prof  fleetProfile
	peers map[multiraft.NodeID]string
	// keys are the user keys, spread over the whole key space.
	keys []string
	// routedAt is the step routes were last rebuilt.
	routedAt int
	// drained is the node drained (0: none).
	drained multiraft.NodeID
	checks  fleetChecks
}

// fleetKey is the i-th user key: its first byte spreads the keys evenly
// over the key space, so every initial shard gets some.
func fleetKey(i int) string {
	return string([]byte{byte(i * 256 / fleetKeys)}) + fmt.Sprintf("k%02d", i)
}

// newFleet sets up a fleet run: its profile, keys and processes (none
// started yet).
func (s *simulation) newFleet() {
	f := &fleet{peers: map[multiraft.NodeID]string{}}
	s.fleet = f
	f.prof = randomFleetProfile(s)
	for i := range fleetKeys {
		f.keys = append(f.keys, fleetKey(i))
	}
	for range f.prof.joinAt {
		s.prof.tickRates = append(s.prof.tickRates, nominalRate)
	}
	for i := range f.prof.placements {
		id := multiraft.NodeID(placementBase + i + 1)
		n := &node{s: s, id: id, addr: fmt.Sprintf("p%d", id), fs: vfs.NewCrashableMem(), tickRate: nominalRate, pl: &placementProc{}, joined: true}
		s.pnodes = append(s.pnodes, n)
		f.peers[id] = n.addr
	}
	s.tracef("fleet %s", f.prof)
}

// bootFleet starts the placement processes and the first Config.Nodes
// shardnodes; the others join later (fleetProfile.joinAt).
func (s *simulation) bootFleet() bool {
	s.rpc = &rpcNet{s: s}
	for _, n := range s.pnodes {
		if err := n.start(); err != nil {
			s.violation("boot: %v", err)
			return false
		}
	}
	total := s.cfg.Nodes + len(s.fleet.prof.joinAt)
	for i := range total {
		n := &node{s: s, id: multiraft.NodeID(i + 1), fs: vfs.NewCrashableMem(), tickRate: s.prof.tickRates[i], restartAt: never,
			created: map[multiraft.GroupID]bool{}, known: map[multiraft.GroupID]bool{}, hosted: map[multiraft.GroupID]bool{}}
		n.addr = fmt.Sprintf("n%d", n.id)
		n.disk.lie = s.cfg.bug == bugLyingDisk
		s.nodes = append(s.nodes, n)
		s.cut = append(s.cut, nil)
		if i < s.cfg.Nodes {
			if !s.join(n) {
				return false
			}
		}
	}
	for i := range s.cfg.Clients {
		s.clients = append(s.clients, newClient(s, i))
	}
	return true
}

// never is a restart step that never comes.
const never = 1 << 62

// join starts a shardnode that has never run: it registers with
// placement and heartbeats.
func (s *simulation) join(n *node) bool {
	s.tracef("n%d joins", n.id)
	n.joined = true
	n.restartAt = 0
	if err := n.start(); err != nil {
		s.violation("join: %v", err)
		return false
	}
	s.stats.NodesJoined++
	return true
}

// started is called once a fleet process opened its engine: a placement
// process starts its service, a shardnode its heartbeats.
func (s *simulation) started(n *node) error {
	if n.pl != nil {
		return n.pl.start(n)
	}
	n.reporter = s.actors.spawn(n, "reporter", n.runReporter)
	s.actors.spawn(n, "replica gc", n.runReplicaGC)
	return nil
}

// fleetFaults draws this step's fleet events: nodes joining, the drain,
// crashes of placement processes, partitions around placement.
func (s *simulation) fleetFaults() {
	f := s.fleet
	p := &f.prof
	for i, at := range p.joinAt {
		if n := s.nodes[s.cfg.Nodes+i]; s.step == at && !n.joined {
			s.join(n)
		}
	}
	if s.step == p.drainAt {
		s.requestDrain(true)
	}
	if s.step == p.undrainAt && f.drained != 0 {
		s.requestDrain(false)
	}
	if s.cfg.NoFaults {
		return
	}
	if s.chance(p.pcrashPermille) && s.placementDown() == 0 {
		n := s.pnodes[s.rng.IntN(len(s.pnodes))]
		if lead := s.catalogueLeader(); lead != nil && s.rng.IntN(2) == 0 {
			n = lead
		}
		s.stats.PlacementCrashes++
		s.crash(n, 20+s.rng.IntN(200))
	}
	if s.partitionUntil == 0 && s.chance(p.pcutPermille) {
		s.stats.Partitions++
		s.partitionUntil = s.step + 20 + s.rng.IntN(300)
		if s.rng.IntN(2) == 0 {
			n := s.pnodes[s.rng.IntN(len(s.pnodes))]
			s.tracef("isolate placement %s until %d", n.addr, s.partitionUntil)
			for _, o := range s.procs() {
				if o != n {
					s.block(n.id, o.id)
					s.block(o.id, n.id)
				}
			}
		} else {
			n := s.nodes[s.rng.IntN(len(s.nodes))]
			s.tracef("cut n%d off from placement until %d", n.id, s.partitionUntil)
			for _, o := range s.pnodes {
				s.block(n.id, o.id)
				s.block(o.id, n.id)
			}
		}
	}
}

// tickPlacement ticks the placement processes' engines, at the nominal
// rate.
func (s *simulation) tickPlacement() {
	if s.step%stepsPerTick != 0 {
		return
	}
	for _, n := range s.pnodes {
		if n.up() {
			n.e.Tick()
			n.ticks++
		}
	}
}

// loseSplitReplicas plants bugLoseSplitReplica: node 2 deletes the
// replicas that appear on it without its Admin service creating them
// (those a split created).
func (s *simulation) loseSplitReplicas() {
	n := s.nodes[1]
	if !n.up() {
		return
	}
	for _, g := range n.e.Groups() {
		if n.known[g] {
			continue
		}
		n.known[g] = true
		if !n.created[g] {
			s.tracef("n%d drops its replica of g%d, which a split created (bugLoseSplitReplica)", n.id, g)
			n.e.RemoveGroupFuture(g)
		}
	}
}

// reconnectEvery is how often, in steps, a process retries its streams to
// peers it cannot reach (rpc.Transport's reconnect backoff).
const reconnectEvery = 10

// reportUnreachable tells every live process, every reconnectEvery steps,
// which of its peers (shardnodes for a shardnode, placement processes for
// a placement process) are down or cut off: rpc.Transport calls NodeDown
// each time a stream to a peer fails, so a group that quiesced behind a
// leader that is gone wakes up even if the quiesce reached it after the
// leader died.
func (s *simulation) reportUnreachable() {
	if s.step%reconnectEvery != 0 {
		return
	}
	for _, peers := range [][]*node{s.nodes, s.pnodes} {
		for _, o := range peers {
			if !o.up() {
				continue
			}
			for _, p := range peers {
				if p != o && p.joined && (!p.up() || s.net.isBlocked(o.id, p.id) || s.net.isBlocked(p.id, o.id)) {
					o.e.NodeDown(p.id)
				}
			}
		}
	}
}

// placementDown counts the placement processes that are down.
func (s *simulation) placementDown() int {
	d := 0
	for _, n := range s.pnodes {
		if !n.up() {
			d++
		}
	}
	return d
}

// requestDrain asks placement to drain a node (on) or to undo it, as an
// operator's `flotilla drain` would: from an actor of the simulator's
// own, trying each placement process until one answers.
func (s *simulation) requestDrain(on bool) {
	f := s.fleet
	if on {
		var cands []*node
		for _, n := range s.nodes {
			if n.joined {
				cands = append(cands, n)
			}
		}
		if len(cands) <= f.prof.rf {
			return // nowhere to move its replicas
		}
		f.drained = cands[s.rng.IntN(len(cands))].id
	}
	id := f.drained
	s.stats.Drains++
	s.tracef("request drain n%d: %v", id, on)
	s.actors.spawn(nil, "drain", func() { s.drainCall(id, on) })
}

// drainCall asks placement to drain node id (or to undo it), trying each
// placement process, for a while.
func (s *simulation) drainCall(id multiraft.NodeID, on bool) {
	ctx := context.Background()
	for range 20 {
		for _, p := range s.pnodes {
			cctx, cancel := s.actors.withTimeout(ctx, 5*time.Second)
			_, err := placementClient{s: s, to: p}.DrainNode(cctx, &pb.DrainNodeRequest{NodeId: uint64(id), Drain: on})
			cancel()
			if err == nil {
				s.tracef("drain n%d %v: accepted by %s", id, on, p.addr)
				return
			}
		}
		_ = s.actors.sleep(ctx, time.Second)
	}
	s.tracef("drain n%d %v: no placement answered", id, on)
}

// procs returns every simulated process: the shardnodes, then the
// placement processes.
func (s *simulation) procs() []*node {
	if len(s.pnodes) == 0 {
		return s.nodes
	}
	return append(slices.Clip(s.nodes), s.pnodes...)
}

// endpoint returns the process with node ID id.
func (s *simulation) endpoint(id multiraft.NodeID) *node {
	if id > placementBase {
		return s.pnodes[id-placementBase-1]
	}
	return s.nodes[id-1]
}

// fleetGroups returns every group some live shardnode hosts, in order.
func (s *simulation) fleetGroups() []multiraft.GroupID {
	var out []multiraft.GroupID
	for _, n := range s.nodes {
		if n.up() {
			out = append(out, n.e.Groups()...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// refreshRoutes rebuilds the routing table (s.owner, s.version,
// s.groupKeys) from the descriptors the live shardnodes hold: for every
// key, the newest descriptor that contains it. At most once per step.
func (s *simulation) refreshRoutes() {
	f := s.fleet
	if f.routedAt == s.step && s.step > 0 {
		return
	}
	f.routedAt = s.step
	var ds []shard.Descriptor
	for _, n := range s.nodes {
		if n.up() {
			ds = append(ds, n.store.Descriptors()...)
		}
	}
	clear(s.owner)
	clear(s.version)
	clear(s.groupKeys)
	for _, k := range f.keys {
		var best *shard.Descriptor
		for i := range ds {
			d := &ds[i]
			if d.ContainsKey([]byte(k)) && (best == nil || newerEpoch(d.Epoch, best.Epoch)) {
				best = d
			}
		}
		if best == nil {
			continue
		}
		s.owner[k] = best.ShardID
		s.version[best.ShardID] = best.Epoch.Version
		s.groupKeys[best.ShardID] = append(s.groupKeys[best.ShardID], k)
	}
}

// newerEpoch reports whether a is more recent than b.
func newerEpoch(a, b shard.Epoch) bool {
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	return a.ConfVer > b.ConfVer
}

// operators adds up the operators every placement process started,
// done and failed, by kind.
func (s *simulation) operators() (started, done, failed uint64, byKind map[string]placement.OperatorCounts) {
	byKind = map[string]placement.OperatorCounts{}
	for _, n := range s.pnodes {
		for k, c := range n.pl.counts() {
			o := byKind[k]
			o.Started += c.Started
			o.Done += c.Done
			o.Failed += c.Failed
			byKind[k] = o
			started += c.Started
			done += c.Done
			failed += c.Failed
		}
	}
	return started, done, failed, byKind
}
