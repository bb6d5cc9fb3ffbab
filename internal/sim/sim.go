package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// Defaults of Config.
const (
	DefaultNodes        = 3
	DefaultGroups       = 32
	DefaultSteps        = 1000
	DefaultClients      = 12
	DefaultKeysPerGroup = 3
)

// Timing of a run, in steps (the simulator's unit of virtual time).
const (
	// stepsPerTick: every node's engine ticks once every this many steps,
	// so a message delay of a few steps is a fraction of a tick.
	stepsPerTick = 2
	// opTimeoutSteps: a client gives up on a request after this long; an
	// unanswered write is then recorded as ambiguous.
	opTimeoutSteps = 40 * stepsPerTick
	// sampleEvery: the status of every replica is sampled (leaders per
	// term, replicas with equal applied index) this often.
	sampleEvery = 50
	// maxConvergeSteps bounds the phase that lets the healed cluster
	// settle before the final checks.
	maxConvergeSteps = 3000
)

// Config configures one simulated run. The zero value of each field means
// its default; Run never modifies the caller's Config.
type Config struct {
	// Seed determines every decision of the run (faults, workload,
	// delays). The caller must also seed crypto/rand with it (see
	// cryptotest.SetGlobalRandom): raft draws its election timeouts there.
	Seed uint64
	// Nodes, Groups: the cluster. Every group has a replica on every node.
	Nodes, Groups int
	// Steps is the length of the workload phase in steps.
	Steps int
	// Clients issue requests concurrently, one outstanding request each.
	Clients int
	// KeysPerGroup is how many user keys each group owns.
	KeysPerGroup int
	// NoFaults runs the workload on a perfect network without crashes.
	NoFaults bool
	// KeepTrace keeps the trace lines in Result.Trace (the digest is
	// always computed).
	KeepTrace bool
	// TraceTo, if not nil, receives every trace line as it happens (for
	// debugging a replay that panics).
	TraceTo io.Writer
	// Backend is the state machine under test: "shard" (the default, the
	// real shard package) or "kv" (the simulator's own kvSM).
	Backend string
	// Fleet runs the whole fleet under the real placement service
	// (fleet.go): Nodes is then the number of shardnodes at the start
	// (more may join), Groups is unused (placement creates the shards),
	// and the backend is shard.
	Fleet bool
	// NoLeases runs without lessors and lease clients (shard backend):
	// every seed then runs as it did before leases were modelled, which
	// the regression seeds of earlier bugs and the planted bugs of other
	// checks rely on.
	NoLeases bool
	// NoBank runs without the bank's transactions across shards (bank.go;
	// NoLeases turns them off too): the seeds of the lease checks' planted
	// bugs run as they did before the bank was modelled.
	NoBank bool
	// bug plants a bug (tests of the checks only).
	bug simBug
	// everyFault makes the profile draw every kind of fault: leader
	// isolation, skewed clocks, splits, disk faults, reconfigurations
	// with partitions aimed at them (tests only).
	everyFault bool
	// TraceGroup, if not zero, adds every message of that group, sent and
	// delivered, to the trace (for debugging a replay). It changes the
	// digest, not the run.
	TraceGroup multiraft.GroupID
}

func (c Config) withDefaults() Config {
	if c.Nodes == 0 {
		c.Nodes = DefaultNodes
	}
	if c.Groups == 0 {
		c.Groups = DefaultGroups
	}
	if c.Steps == 0 {
		c.Steps = DefaultSteps
	}
	if c.Clients == 0 {
		c.Clients = DefaultClients
	}
	if c.Backend == "" {
		c.Backend = "shard"
	}
	if c.KeysPerGroup == 0 {
		c.KeysPerGroup = DefaultKeysPerGroup
	}
	return c
}

// Result is the outcome of one run.
type Result struct {
	Seed uint64
	// Violations lists every broken safety property: non-linearizable
	// history, two leaders in one term, diverging replicas, a corrupt
	// snapshot accepted, a stuck cluster.
	Violations []string
	// Lost lists acknowledged writes that the final state does not
	// reflect.
	Lost []string
	// Profile describes the faults the seed drew.
	Profile string
	Stats   Stats
	// Digest is a hash of the run's trace: two runs of one seed must
	// produce the same digest.
	Digest string
	// Trace holds the trace lines if Config.KeepTrace.
	Trace []string

	history []record
}

// Failed reports whether the run broke any property.
func (r *Result) Failed() bool { return len(r.Violations) > 0 || len(r.Lost) > 0 }

// Stats counts what happened during a run.
type Stats struct {
	Steps                                         int
	Messages, Delivered, Dropped, Duplicated      int
	SnapshotsSent, SnapshotsApplied, SnapshotsCut int
	Crashes, Partitions, Transfers, Reconfigs     int
	// Splits counts the splits started; WrongShard the requests refused
	// or read from a replica that no longer owned the key, and re-routed.
	Splits, WrongShard int
	// Restamped counts the writes refused for a stale revision and sent
	// again with a new one.
	Restamped int
	// LeaderIsolations counts the partitions that isolated a leader
	// with clients pinned to it; ReconfigCuts the partitions aimed at a
	// reconfiguration in progress (both also count as Partitions).
	LeaderIsolations, ReconfigCuts int
	// DiskFaults counts the disk faults armed, DiskStops the engines that
	// stopped themselves on one (disk.go).
	DiskFaults, DiskStops int
	// MinorityLeaseReads counts the lease reads a node cut off from the
	// majority served (legitimately, on a lease confirmed before the cut).
	MinorityLeaseReads int
	// Ops counts requests issued; Acked and Ambiguous the writes that
	// ended so; Abandoned the requests given up before any attempt could
	// have applied; Reads the linearizable and lease reads recorded.
	Ops, Acked, Ambiguous, Abandoned, Reads, Stale int
	NotLeader, ProposalDropped, Unexpected         int
	AmbiguousRetries                               int
	LeaderTermsSeen, ConvergeSteps, FinalRetries   int
	// ElectionsAfterHeal counts the groups that elected a leader after the
	// healed cluster had settled, before the run ended.
	ElectionsAfterHeal int
	// Fleet runs: operators placement started and of those failed, and
	// by kind ("repair=3/1": started/failed); nodes that joined, drain
	// requests, placement crashes, RPCs, heartbeats answered, replicas
	// the nodes' collectors removed, shards at the end; splits while a
	// node holding a replica of the shard was down or cut off, and
	// replicas added to a node that held the shard before.
	Operators, OperatorsFailed                  int
	OperatorKinds                               string
	NodesJoined, Drains, PlacementCrashes, RPCs int
	Heartbeats, ReplicasCollected, Shards       int
	SplitsWhileDown, ReAdds                     int
	// Watches (shard backend, watch.go): sessions started, events
	// delivered, pieces resumed after a watcher ended, moved to another
	// replica, sessions or lists refused as compacted, answers whose
	// progress was below the piece's; ReadsAt counts the reads at a
	// revision the checks compared (readsat.go).
	WatchSessions, WatchEvents, WatchResumes, WatchMoves int
	WatchCompacted, WatchRegressions, ReadsAt            int
	// Leases (shard backend, lease.go): granted, keepalives answered,
	// revoked, reads of leased keys and those the fence answered absent,
	// deletes of leased keys the samples saw, leases ended; leases whose
	// home changed while they lived (a split: LeaseHomeMoves) or whose
	// serving node or its term did (LeaseHomeChanges, counting all).
	LeasesGranted, LeaseKeepAlives, LeasesRevoked, LeaseReads int
	LeaseReadsFenced, LeaseDeletes, LeasesEnded               int
	LeaseHomeMoves, LeaseHomeChanges                          int
	// LeaseEndSlack: the most steps a lease's end (not revoked) came
	// after its deadline plus the bound's terms other than the slack
	// (negative: every end came before them). See leasecheck.go.
	LeaseEndSlack int
	// Bank (bank.go): transfers committed (of which in one phase),
	// refused (conflicts), with an unknown outcome, abandoned, whose
	// coordinator "crashed"; locks resolved forward and back by readers
	// and writers, waits on a pending lock; audits.
	BankCommitted, BankOnePhase, BankConflicts, BankUnknown, BankAbandoned int
	BankCrashed, BankResolved, BankRolledBack, BankWaited, BankAudits      int
	// Async commit in the bank: transfers acknowledged once both
	// prewrites applied, those rolled back by their coordinator, and
	// those a reader decided by their secondaries, forward and back.
	BankAsyncCommitted, BankAsyncRolledBack, BankAsyncForward, BankAsyncBack int
	// History collection (historygc.go): KindGC commands proposed, and
	// deleted keys and outcome records the applied ones collected.
	HistoryGCPasses, HistoryGCKeys, HistoryGCTxns int
	// Lock sweeping (locksweep.go): expired locks the sweeper listed and
	// handed to a resolver, and those their node no longer held after.
	LocksListed, LocksSwept int
}

func (s Stats) String() string {
	leases := ""
	if s.LeasesGranted > 0 {
		leases = fmt.Sprintf(" leases=%d keepalives=%d revoked=%d ended=%d leasereads=%d fenced=%d leasedeletes=%d leasehomechanges=%d leasehomemoves=%d leaseslack=%d",
			s.LeasesGranted, s.LeaseKeepAlives, s.LeasesRevoked, s.LeasesEnded, s.LeaseReads, s.LeaseReadsFenced, s.LeaseDeletes,
			s.LeaseHomeChanges, s.LeaseHomeMoves, s.LeaseEndSlack)
	}
	if s.BankCommitted+s.BankConflicts > 0 {
		leases += fmt.Sprintf(" bankcommitted=%d bankonephase=%d bankconflicts=%d bankunknown=%d bankabandoned=%d bankcrashed=%d bankresolved=%d bankrolledback=%d bankwaited=%d bankaudits=%d",
			s.BankCommitted, s.BankOnePhase, s.BankConflicts, s.BankUnknown, s.BankAbandoned, s.BankCrashed, s.BankResolved, s.BankRolledBack, s.BankWaited, s.BankAudits)
		leases += fmt.Sprintf(" bankasync=%d bankasyncrolledback=%d bankasyncforward=%d bankasyncback=%d",
			s.BankAsyncCommitted, s.BankAsyncRolledBack, s.BankAsyncForward, s.BankAsyncBack)
	}
	fleet := leases
	if s.Heartbeats > 0 {
		fleet += fmt.Sprintf(" operators=%d failed=%d (%s) shards=%d joined=%d drains=%d pcrashes=%d rpcs=%d heartbeats=%d gc=%d splitsdown=%d readds=%d",
			s.Operators, s.OperatorsFailed, s.OperatorKinds, s.Shards, s.NodesJoined, s.Drains, s.PlacementCrashes, s.RPCs, s.Heartbeats,
			s.ReplicasCollected, s.SplitsWhileDown, s.ReAdds)
	}
	watch := ""
	if s.HistoryGCPasses > 0 {
		watch = fmt.Sprintf(" historygc=%d/%d/%d", s.HistoryGCKeys, s.HistoryGCTxns, s.HistoryGCPasses)
	}
	if s.LocksListed > 0 {
		watch += fmt.Sprintf(" lockswept=%d/%d", s.LocksSwept, s.LocksListed)
	}
	if s.WatchSessions > 0 {
		watch += fmt.Sprintf(" watches=%d wevents=%d wresumes=%d wmoves=%d wcompacted=%d wregress=%d readsat=%d",
			s.WatchSessions, s.WatchEvents, s.WatchResumes, s.WatchMoves, s.WatchCompacted, s.WatchRegressions, s.ReadsAt)
	}
	return fmt.Sprintf("steps=%d msgs=%d dropped=%d dup=%d snaps=%d/%d cut=%d crashes=%d partitions=%d isolations=%d minoritylease=%d transfers=%d reconfigs=%d reconfcuts=%d splits=%d wrongshard=%d restamped=%d diskfaults=%d/%d ops=%d acked=%d ambiguous=%d abandoned=%d reads=%d stale=%d notleader=%d propdropped=%d unexpected=%d retried=%d terms=%d converge=%d finalretries=%d unstable=%d",
		s.Steps, s.Messages, s.Dropped, s.Duplicated, s.SnapshotsApplied, s.SnapshotsSent, s.SnapshotsCut,
		s.Crashes, s.Partitions, s.LeaderIsolations, s.MinorityLeaseReads, s.Transfers, s.Reconfigs, s.ReconfigCuts, s.Splits, s.WrongShard, s.Restamped, s.DiskStops, s.DiskFaults, s.Ops, s.Acked, s.Ambiguous, s.Abandoned, s.Reads, s.Stale,
		s.NotLeader, s.ProposalDropped, s.Unexpected, s.AmbiguousRetries, s.LeaderTermsSeen, s.ConvergeSteps, s.FinalRetries, s.ElectionsAfterHeal) + watch + fleet
}

// simulation is one simulated cluster. It is single-threaded: the engines run in
// manual mode and only the goroutine calling Run touches anything.
type simulation struct {
	cfg  Config
	prof profile
	rng  *rand.Rand
	sm   backend

	step  int
	clock int64 // history timestamps: bumped at every call and return

	nodes   []*node
	net     *network
	clients []*client
	// Fleet runs (fleet.go): pnodes are the placement processes; actors
	// run their goroutines and the nodes' Admin and heartbeat code
	// (actors.go); rpc carries their calls (rpc.go).
	fleet  *fleet
	pnodes []*node
	actors *actors
	rpc    *rpcNet
	// phantoms: the replicas AddReplica claimed to add (bugAddIsNoop).
	phantoms map[multiraft.GroupID][]multiraft.Replica

	// watch runs the watch sessions and knows every write's revisions
	// (shard backend; watch.go).
	watch *watchState
	// leases: the lease clients' records and the lease checks' samples
	// (shard backend; lease.go).
	leases *leaseState
	// bank: the bank's coordinators' records and its checks' samples
	// (shard backend, with leases; bank.go).
	bank *bankState
	// historyGC: the history collector's cursors and counts
	// (historygc.go).
	historyGC historyGC
	// lockSweep: the lock sweeper's locks in flight and counts
	// (locksweep.go).
	lockSweep lockSweep

	history []record // linearizable reads and writes
	stale   []record // stale reads
	final   map[string]string

	leaders    map[leaderKey]multiraft.ReplicaID
	violations []string
	lost       []string
	stats      Stats

	partitionUntil int
	// groupCount is the number of groups, IDs 1 to groupCount: Groups
	// at first, one more with every split (split.go).
	groupCount int
	// owner maps every user key to the group that owns it, version each
	// group to its descriptor's Version, groupKeys each group to its keys
	// in order: the routing table clients use.
	owner     map[string]multiraft.GroupID
	version   map[multiraft.GroupID]uint64
	groupKeys map[multiraft.GroupID][]string
	split     *splitOp
	// cut[i] is set while node i+1 is cut off from the majority
	// (isolation.go).
	cut    []*cutOff
	reconf *reconfig
	// reconfCutAt, if not zero, is the step at which a partition aimed
	// at the reconfiguration in progress starts (reconfig.go).
	reconfCutAt int
	nextReplica []uint64 // by group ID - 1: the last k given to replicaID
	// settledTerms is each group's term when the healed cluster settled.
	settledTerms map[multiraft.GroupID]uint64
	trace        hash.Hash
	traceLines   []string
}

type leaderKey struct {
	group multiraft.GroupID
	term  uint64
	// catalogue: the placement catalogue's group, apart from the shard
	// with the same ID.
	catalogue bool
}

// Run runs one simulation and returns its result. Broken properties are
// reported in the Result; so is a panic of an engine (or of the state
// machine), which ends the run.
func Run(cfg Config) (res *Result) {
	s := newSim(cfg)
	defer func() {
		if r := recover(); r != nil {
			s.violation("panic at step %d: %v\n%s", s.step, r, debug.Stack())
			res = s.result()
		}
		s.shutdown()
	}()
	if s.boot() {
		s.startLeaseClients()
		s.startBankClients()
		for s.step < s.cfg.Steps {
			s.advance(true)
		}
		s.heal()
		if s.fleet != nil && s.convergeFleet() || s.fleet == nil && s.converge() {
			s.finalReads()
			s.countLeaderChanges()
			s.finishWatches()
			s.drainLeases()
			s.drainBank()
		}
		s.check()
	}
	return s.result()
}

func (s *simulation) result() *Result {
	res := &Result{
		Seed: s.cfg.Seed, Violations: s.violations, Lost: s.lost, Profile: s.prof.String(),
		Stats: s.stats, Digest: hex.EncodeToString(s.trace.Sum(nil)), Trace: s.traceLines, history: s.history,
	}
	res.Stats.Steps = s.step
	res.Stats.LeaderTermsSeen = len(s.leaders)
	res.Stats.HistoryGCPasses, res.Stats.HistoryGCKeys, res.Stats.HistoryGCTxns = s.historyGC.passes, s.historyGC.keys, s.historyGC.txns
	res.Stats.LocksListed, res.Stats.LocksSwept = s.lockSweep.listed, s.lockSweep.swept
	if st := s.leases; st != nil {
		res.Stats.LeasesGranted, res.Stats.LeaseKeepAlives, res.Stats.LeasesRevoked = st.stats.granted, st.stats.kept, st.stats.revoked
		res.Stats.LeaseReads, res.Stats.LeaseReadsFenced, res.Stats.LeaseDeletes = st.stats.reads, st.stats.fenced, st.stats.deletes
		res.Stats.LeasesEnded = len(st.ended)
		res.Stats.LeaseEndSlack = st.stats.slack
		for _, l := range st.leases {
			if l.changes > 0 {
				res.Stats.LeaseHomeChanges++
			}
			if l.homeMoves > 0 {
				res.Stats.LeaseHomeMoves++
			}
		}
	}
	if b := s.bank; b != nil {
		res.Stats.BankCommitted, res.Stats.BankOnePhase, res.Stats.BankConflicts = b.stats.committed, b.stats.onePhase, b.stats.conflicts
		res.Stats.BankUnknown, res.Stats.BankAbandoned, res.Stats.BankCrashed = b.stats.unknown, b.stats.abandoned, b.stats.crashed
		res.Stats.BankResolved, res.Stats.BankRolledBack, res.Stats.BankWaited, res.Stats.BankAudits = b.stats.resolved, b.stats.rolledBack, b.stats.waited, b.stats.audits
		res.Stats.BankAsyncCommitted, res.Stats.BankAsyncRolledBack = b.stats.asyncCommitted, b.stats.asyncRolledBack
		res.Stats.BankAsyncForward, res.Stats.BankAsyncBack = b.stats.asyncDecidedForward, b.stats.asyncDecidedBack
	}
	if s.fleet != nil {
		started, _, failed, byKind := s.operators()
		res.Stats.Operators, res.Stats.OperatorsFailed, res.Stats.OperatorKinds = int(started), int(failed), kindsString(byKind)
		res.Stats.Shards = len(s.groupKeys)
		res.Profile += " " + s.fleet.prof.String()
	}
	return res
}

// newSim builds the simulator of cfg; boot starts its nodes.
func newSim(cfg Config) *simulation {
	cfg = cfg.withDefaults()
	s := &simulation{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		leaders: make(map[leaderKey]multiraft.ReplicaID),

		settledTerms: make(map[multiraft.GroupID]uint64),
		trace:        sha256.New(),
		final:        make(map[string]string),
		cut:          make([]*cutOff, cfg.Nodes),

		groupCount: cfg.Groups,
		owner:      make(map[string]multiraft.GroupID),
		version:    make(map[multiraft.GroupID]uint64),
		groupKeys:  make(map[multiraft.GroupID][]string),
	}
	for g := range s.groupIDs() {
		s.version[g] = simEpoch.Version
		for k := range cfg.KeysPerGroup {
			key := groupKey(g, k)
			s.owner[key] = g
			s.groupKeys[g] = append(s.groupKeys[g], key)
		}
	}
	if cfg.Fleet {
		cfg.Backend = "shard"
		s.cfg.Backend = "shard"
		s.cut = nil
	}
	switch cfg.Backend {
	case "shard":
		s.sm = newShardBackend(func() int { return s.step })
		s.watch = newWatchState(s)
		if !cfg.NoLeases {
			s.leases = newLeaseState(s)
			if !cfg.NoBank {
				s.bank = newBankState(s)
			}
		}
	case "kv":
		s.sm = kvBackend{}
		if cfg.bug == bugDropWrites || cfg.bug == bugDiverge || cfg.bug == bugPanic {
			s.sm = buggyBackend{bug: cfg.bug}
		}
	default:
		panic(fmt.Sprintf("sim: unknown backend %q", cfg.Backend))
	}
	s.prof = randomProfile(s.rng, cfg)
	s.net = &network{s: s, cfg: s.prof.net, blocked: make(map[[2]multiraft.NodeID]bool)}
	s.tracef("profile %s", s.prof)
	if cfg.Fleet || s.leases != nil {
		s.actors = newActors(s)
	}
	if cfg.Fleet {
		s.phantoms = map[multiraft.GroupID][]multiraft.Replica{}
		s.newFleet()
	}
	return s
}

// boot starts every node and creates every group on all of them (in a
// fleet run, bootFleet starts the processes).
func (s *simulation) boot() bool {
	if s.fleet != nil {
		return s.bootFleet()
	}
	for i := range s.cfg.Nodes {
		n := &node{s: s, id: multiraft.NodeID(i + 1), addr: fmt.Sprintf("n%d", i+1), fs: vfs.NewCrashableMem(), tickRate: s.prof.tickRates[i], joined: true}
		n.disk.lie = s.cfg.bug == bugLyingDisk
		s.nodes = append(s.nodes, n)
		if err := n.start(); err != nil {
			s.violation("boot: %v", err)
			return false
		}
	}
	for g := range s.groupIDs() {
		var m multiraft.Membership
		for _, n := range s.nodes {
			m.Replicas = append(m.Replicas, multiraft.Replica{ReplicaID: replicaID(g, uint64(n.id)), NodeID: n.id})
		}
		s.nextReplica = append(s.nextReplica, uint64(len(s.nodes)))
		for _, n := range s.nodes {
			if err := n.e.CreateGroup(g, replicaID(g, uint64(n.id)), m, s.sm.initGroup(g, m)); err != nil {
				s.violation("boot: n%d: create group %d: %v", n.id, g, err)
				return false
			}
		}
	}
	if s.leases != nil {
		var m multiraft.Membership
		for _, n := range s.nodes {
			m.Replicas = append(m.Replicas, multiraft.Replica{ReplicaID: replicaID(leaseHomeGroup, uint64(n.id)), NodeID: n.id})
		}
		d := shard.Descriptor{ShardID: leaseHomeGroup, Start: leaseKeysStart, Epoch: simEpoch, Replicas: m.Replicas}
		if s.bank != nil {
			d.Start = []byte("\xfeC") // above the bank's groups
		}
		for _, n := range s.nodes {
			if err := n.e.CreateGroup(leaseHomeGroup, replicaID(leaseHomeGroup, uint64(n.id)), m, shard.InitialState(d)); err != nil {
				s.violation("boot: n%d: create the lease home group: %v", n.id, err)
				return false
			}
		}
	}
	if s.bank != nil {
		for g := 1; g <= bankGroups; g++ {
			id := bankGroupBase + multiraft.GroupID(g)
			var m multiraft.Membership
			for _, n := range s.nodes {
				m.Replicas = append(m.Replicas, multiraft.Replica{ReplicaID: replicaID(id, uint64(n.id)), NodeID: n.id})
			}
			start, end := bankGroupSpan(g)
			d := shard.Descriptor{ShardID: id, Start: start, End: end, Epoch: simEpoch, Replicas: m.Replicas}
			for _, n := range s.nodes {
				if err := n.e.CreateGroup(id, replicaID(id, uint64(n.id)), m, shard.InitialState(d)); err != nil {
					s.violation("boot: n%d: create bank group %d: %v", n.id, id, err)
					return false
				}
			}
		}
	}
	for i := range s.cfg.Clients {
		s.clients = append(s.clients, newClient(s, i))
	}
	return true
}

// groupIDs yields the IDs of the groups, 1 to Groups (in a fleet run,
// those the live nodes host, in order).
func (s *simulation) groupIDs() func(func(multiraft.GroupID) bool) {
	if s.fleet != nil {
		gs := s.fleetGroups()
		return func(yield func(multiraft.GroupID) bool) {
			for _, g := range gs {
				if !yield(g) {
					return
				}
			}
		}
	}
	return func(yield func(multiraft.GroupID) bool) {
		for g := 1; g <= s.groupCount; g++ {
			if !yield(multiraft.GroupID(g)) {
				return
			}
		}
	}
}

// replicaID is the k-th replica of group g: k is the node's ID for the
// initial replicas, and counts up from there for the replicas that
// reconfigurations add. Replica IDs are unique across the cluster and
// never reused.
func replicaID(g multiraft.GroupID, k uint64) multiraft.ReplicaID {
	return multiraft.ReplicaID(uint64(g)<<16 | k)
}

// advance runs one step: faults, restarts, a tick every stepsPerTick
// steps, delivery of due messages, one Process of every live engine, and
// the clients (who issue new requests only during the workload).
func (s *simulation) advance(workload bool) {
	s.step++
	if workload && !s.cfg.NoFaults {
		s.injectFaults()
	}
	if workload && s.fleet != nil {
		s.fleetFaults()
	}
	s.restartDue()
	s.tickClocks()
	s.tickLeaseClocks()
	if s.fleet != nil {
		s.tickPlacement()
	}
	s.net.deliver(s.step)
	s.processAll()
	s.reapFailedEngines()
	if s.fleet != nil {
		s.reportUnreachable()
		s.rpc.deliver()
	}
	if s.actors != nil {
		s.actors.run()
	}
	if s.fleet != nil {
		s.fleetLiveness()
		if s.cfg.bug == bugLoseSplitReplica {
			s.loseSplitReplicas()
		}
	}
	if s.leases != nil {
		s.trackLeases()
		if s.step%leaseSampleEvery == 0 {
			s.sampleLeases()
		}
	}
	if s.bank != nil && s.step%bankSampleEvery == 0 {
		s.sampleBank()
	}
	s.pollWatches(workload)
	s.pollClients()
	if workload && !s.cfg.NoFaults && s.fleet == nil {
		s.maybeStartReconfig()
		s.maybeStartSplit()
	}
	s.driveReconfig()
	s.driveSplit()
	s.issue(workload)
	if s.step%sampleEvery == 0 {
		s.sample()
	}
	if s.step%historyGCEvery == 0 {
		s.collectHistory()
	}
	if s.step%lockSweepEvery == 0 {
		s.sweepLocks()
	}
}

func (s *simulation) processAll() {
	for _, n := range s.procs() {
		if n.up() {
			n.e.Process()
		}
	}
}

// now returns a new history timestamp, later than every earlier one.
func (s *simulation) now() int64 {
	s.clock++
	return s.clock
}

// observeLeader records that m's sender led its group in m's term if m is
// a message only a leader sends, and flags a second leader in one term.
func (s *simulation) observeLeader(m multiraft.Message) {
	if leaderOnly(m.Msg.GetType()) {
		s.sawLeader(m.Group, m.FromNode > placementBase, m.Msg.GetTerm(), multiraft.ReplicaID(m.Msg.GetFrom()), "message")
	}
}

func (s *simulation) sawLeader(g multiraft.GroupID, catalogue bool, term uint64, r multiraft.ReplicaID, how string) {
	k := leaderKey{g, term, catalogue}
	prev, ok := s.leaders[k]
	switch {
	case !ok:
		s.leaders[k] = r
	case prev != r && catalogue:
		s.violation("two leaders of the placement catalogue in term %d: r%d and r%d (seen by %s at step %d)", term, prev, r, how, s.step)
	case prev != r:
		s.violation("two leaders in group %d term %d: r%d and r%d (seen by %s at step %d)", g, term, prev, r, how, s.step)
	}
}

// violation records a broken safety property.
func (s *simulation) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.violations = append(s.violations, msg)
	s.tracef("VIOLATION %s", msg)
}

// tracef adds a line to the run's trace: every decision and outcome that
// two runs of one seed must agree on.
func (s *simulation) tracef(format string, args ...any) {
	line := fmt.Sprintf("%d ", s.step) + fmt.Sprintf(format, args...)
	s.trace.Write([]byte(line))
	s.trace.Write([]byte{'\n'})
	if s.cfg.KeepTrace {
		s.traceLines = append(s.traceLines, line)
	}
	if s.cfg.TraceTo != nil {
		fmt.Fprintln(s.cfg.TraceTo, line)
	}
}

// shutdown closes every node. After a panic an engine or Pebble may be
// left inconsistent: what their Close panics with is dropped.
func (s *simulation) shutdown() {
	if s.actors != nil {
		func() {
			defer func() { _ = recover() }()
			s.actors.killAll()
		}()
	}
	for _, n := range s.procs() {
		func() {
			defer func() { _ = recover() }()
			n.stop()
		}()
	}
}

// statuses returns the status of every live replica of every group,
// after every engine has finished all its work (so the applied indexes
// they report are those of the data in Pebble). Indexed [group][node];
// a nil entry means no live replica there.
func (s *simulation) statuses() map[multiraft.GroupID][]*multiraft.Status {
	s.processAll()
	var groups []multiraft.GroupID
	for g := range s.groupIDs() {
		groups = append(groups, g)
	}
	futs := make([][]*multiraft.Future, len(s.nodes))
	for i, n := range s.nodes {
		if !n.up() {
			continue
		}
		for _, g := range groups {
			futs[i] = append(futs[i], n.e.StatusFuture(g))
		}
		n.e.Process()
	}
	out := make(map[multiraft.GroupID][]*multiraft.Status, len(groups))
	for _, g := range groups {
		out[g] = make([]*multiraft.Status, len(s.nodes))
	}
	for i, fs := range futs {
		for _, f := range fs {
			if !isDone(f) {
				s.violation("status future on n%d did not resolve after Process", i+1)
				continue
			}
			v, err := f.Result()
			if err != nil {
				continue // group not hosted there
			}
			st := v.(multiraft.Status)
			out[st.Group][i] = &st
		}
	}
	return out
}

// sample checks the invariants that hold at any moment: at most one
// leader per term, and replicas at the same applied index hold the same
// data.
func (s *simulation) sample() {
	sts := s.statuses()
	for _, g := range sortedGroups(sts) {
		for _, st := range sts[g] {
			if st != nil && st.IsLeader {
				s.sawLeader(g, false, st.Term, st.Replica, "status")
			}
		}
		s.compareReplicas(g, sts[g])
	}
	s.checkReadsAt(false)
	if s.fleet != nil {
		s.checkUnderReplicated(sts)
		for g, st := range sts {
			for i, r := range st {
				if r != nil {
					s.nodes[i].hosted[g] = true
				}
			}
		}
	}
}

// compareReplicas compares the data of the replicas of g that have the
// same applied index.
func (s *simulation) compareReplicas(g multiraft.GroupID, sts []*multiraft.Status) {
	sums := make([]uint64, len(sts))
	for i, a := range sts {
		if a == nil {
			continue
		}
		for j := i + 1; j < len(sts); j++ {
			b := sts[j]
			if b == nil || b.Applied != a.Applied {
				continue
			}
			if sums[i] == 0 {
				sums[i] = s.fingerprint(g, s.nodes[i])
			}
			if sums[j] == 0 {
				sums[j] = s.fingerprint(g, s.nodes[j])
			}
			if sums[i] != sums[j] {
				s.violation("group %d: n%d and n%d both applied %d but differ: %s", g, i+1, j+1, a.Applied, s.diffData(g, s.nodes[i], s.nodes[j]))
			}
		}
	}
}

// fingerprint hashes g's data on n (never 0).
func (s *simulation) fingerprint(g multiraft.GroupID, n *node) uint64 {
	h := fnv.New64a()
	s.scan(g, n, func(k, v []byte) {
		var l [8]byte
		binary.LittleEndian.PutUint32(l[:], uint32(len(k)))
		binary.LittleEndian.PutUint32(l[4:], uint32(len(v)))
		h.Write(l[:])
		h.Write(k)
		h.Write(v)
	})
	return h.Sum64() | 1
}

// diffData describes the first difference between a's and b's data of g.
func (s *simulation) diffData(g multiraft.GroupID, a, b *node) string {
	da, db := s.dump(g, a), s.dump(g, b)
	for k := 0; k < len(da) || k < len(db); k++ {
		switch {
		case k >= len(da):
			return fmt.Sprintf("n%d lacks %s", a.id, db[k])
		case k >= len(db):
			return fmt.Sprintf("n%d lacks %s", b.id, da[k])
		case da[k] != db[k]:
			return fmt.Sprintf("n%d has %s, n%d has %s", a.id, da[k], b.id, db[k])
		}
	}
	return "same data"
}

// dump lists g's data on n as "key=value" strings in key order.
func (s *simulation) dump(g multiraft.GroupID, n *node) []string {
	var out []string
	s.scan(g, n, func(k, v []byte) { out = append(out, fmt.Sprintf("%q=%q", k, v)) })
	return out
}

// scan calls fn for each key and value of g's data on n, in key order.
func (s *simulation) scan(g multiraft.GroupID, n *node, fn func(k, v []byte)) {
	for _, span := range s.sm.dataSpans(g, n.db) {
		s.scanSpan(n, span[0], span[1], fn)
	}
}

// scanSpan calls fn for each key and value of [lo, hi) in n's Pebble.
func (s *simulation) scanSpan(n *node, lo, hi []byte, fn func(k, v []byte)) {
	it, err := n.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		panic(err)
	}
	for it.First(); it.Valid(); it.Next() {
		fn(it.Key(), it.Value())
	}
	must(it.Error())
	must(it.Close())
}

// heal ends every fault: down nodes restart, partitions heal, the network
// stops losing, duplicating and cutting.
func (s *simulation) heal() {
	s.tracef("heal")
	// An engine that stopped on its disk failure during the last step
	// goes down first, to restart below like every down node.
	s.reapFailedEngines()
	s.healDisks()
	for _, n := range s.procs() {
		if !n.up() && n.joined {
			n.restartAt = s.step
		}
	}
	s.restartDue()
	s.healPartition()
	s.net.cfg = netConfig{maxDelay: min(s.net.cfg.maxDelay, 2)}
}

// converge runs the healed cluster until every group has one leader and
// all its replicas applied the whole log, and no client request is
// outstanding. It then compares every group's replicas. It reports
// whether the cluster converged.
func (s *simulation) converge() bool {
	start := s.step
	var lagging []string
	for s.step-start < maxConvergeSteps {
		s.advance(false)
		if s.step%8 != 0 || s.clientsBusy() || s.reconf != nil || s.split != nil {
			continue
		}
		sts := s.statuses()
		lagging = lagging[:0]
		for g := range s.groupIDs() {
			if why := settled(sts[g]); why != "" {
				lagging = append(lagging, fmt.Sprintf("g%d: %s", g, why))
			}
		}
		if len(lagging) == 0 {
			s.stats.ConvergeSteps = s.step - start
			for g := range s.groupIDs() {
				s.compareReplicas(g, sts[g])
				s.settledTerms[g] = sts[g][leaderOf(sts[g])].Term
			}
			return true
		}
	}
	if s.clientsBusy() {
		lagging = append(lagging, "a client request is still outstanding")
	}
	if rc := s.reconf; rc != nil {
		lagging = append(lagging, fmt.Sprintf("reconfiguration of g%d (r%d to r%d on n%d) unfinished", rc.g, rc.old, rc.new, rc.node.id))
	}
	if sp := s.split; sp != nil {
		lagging = append(lagging, fmt.Sprintf("split of g%d at %s into g%d unfinished (applied: %v)", sp.g, sp.key, sp.right, sp.applied))
	}
	if len(lagging) > 5 {
		lagging = append(lagging[:5], fmt.Sprintf("and %d more", len(lagging)-5))
	}
	s.violation("cluster did not converge within %d steps after healing: %s", maxConvergeSteps, strings.Join(lagging, "; "))
	return false
}

// settled explains why a group's replicas have not converged, or returns
// "" if they have: one leader, one term, and every replica applied the
// same, whole log.
func settled(sts []*multiraft.Status) string {
	var lead *multiraft.Status
	for i, st := range sts {
		if st == nil {
			return fmt.Sprintf("no replica on n%d", i+1)
		}
		if st.IsLeader {
			if lead != nil {
				return "two leaders"
			}
			lead = st
		}
	}
	if lead == nil {
		return "no leader"
	}
	for _, st := range sts {
		if st.Term != lead.Term || st.Applied != lead.LastIndex || st.Commit != lead.LastIndex || st.LastIndex != lead.LastIndex {
			return fmt.Sprintf("r%d term %d applied %d commit %d last %d; leader r%d term %d last %d",
				st.Replica, st.Term, st.Applied, st.Commit, st.LastIndex, lead.Replica, lead.Term, lead.LastIndex)
		}
	}
	return ""
}

// finalReads reads every key linearizably from its group's leader and
// appends the reads to the history, so the checker sees the final state.
// Like a client it retries (elsewhere) when the leader changed meanwhile.
func (s *simulation) finalReads() {
	var groups []multiraft.GroupID
	if s.fleet != nil {
		s.refreshRoutes()
		groups = sortedGroups(s.groupKeys)
	} else {
		for g := range s.groupIDs() {
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			if attempt > 0 {
				s.stats.FinalRetries++
				for range 2 * s.prof.electionTicks() * stepsPerTick {
					s.advance(false)
				}
			}
			if err = s.finalRead(g); err == nil {
				break
			}
			s.tracef("final read g%d: %v", g, err)
		}
		if err != nil {
			s.violation("final read of group %d failed 10 times; last: %v", g, err)
		}
	}
}

func (s *simulation) finalRead(g multiraft.GroupID) error {
	var lead *node
	for i, st := range s.statuses()[g] {
		if st != nil && st.IsLeader {
			lead = s.nodes[i]
		}
	}
	if lead == nil {
		return fmt.Errorf("no leader")
	}
	call := s.now()
	f := lead.e.ReadFuture(g, multiraft.ReadLinearizable)
	for i := 0; !isDone(f); i++ {
		if i == opTimeoutSteps {
			return fmt.Errorf("read on n%d timed out", lead.id)
		}
		s.advance(false)
	}
	if _, err := f.Result(); err != nil {
		return fmt.Errorf("read on n%d: %w", lead.id, err)
	}
	if !lead.up() {
		return fmt.Errorf("n%d went down during the read", lead.id)
	}
	ks := s.groupKeys[g]
	vals := make([]string, len(ks))
	for k, key := range ks {
		vals[k] = s.sm.read(lead.db, key)
	}
	if !slices.Contains(lead.e.Groups(), g) {
		return fmt.Errorf("n%d lost its replica during the read", lead.id)
	}
	for _, key := range ks {
		if !s.sm.owns(lead.db, g, key) {
			return fmt.Errorf("n%d: g%d does not own %s", lead.id, g, key)
		}
	}
	ret := s.now()
	for k, v := range vals {
		key := ks[k]
		s.final[key] = v
		s.history = append(s.history, record{client: -1, kind: opGet, mode: multiraft.ReadLinearizable, key: key, out: v, call: call, ret: ret})
		s.tracef("final %s=%q", key, v)
	}
	return nil
}

// countLeaderChanges counts the groups whose term moved on since the
// healed cluster settled: elections in a cluster with no faults left (see
// doc.go, engine bugs found).
func (s *simulation) countLeaderChanges() {
	sts := s.statuses()
	for _, g := range sortedGroups(s.settledTerms) {
		if li := leaderOf(sts[g]); li < 0 || sts[g][li].Term != s.settledTerms[g] {
			s.stats.ElectionsAfterHeal++
			s.tracef("g%d: elections after healing", g)
		}
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
