// Package schedule is the placement scheduler's decision logic: given a
// snapshot of the cluster, it decides which shards to create, repair,
// drain, spread, split and rebalance, and returns the changes as
// operators. It is pure and deterministic: no I/O, no clock, no goroutine,
// no state kept between rounds. Cluster state goes in, operators come out.
//
// # What it owns, and what it does not
//
// It owns the policy: which shard needs what, where a replica goes, in
// which order and how many at once. It does not own the cluster's state
// (the shards' own Raft groups do, and the placement catalogue mirrors it
// from heartbeats), the execution of operators (the placement service
// drives them through the shard leaders' Admin service), node liveness
// (the caller judges it from heartbeats and passes it in), ID allocation
// (the catalogue's, through IDAllocator), or time (the caller passes
// durations).
//
// # The loop (the placement leader, every second or so)
//
//	c := &schedule.Cluster{
//		Nodes:        nodes,        // every registered node, State and DownFor from heartbeats
//		Shards:       shards,       // every shard as its leader last reported it (newest epoch wins)
//		InFlight:     running,      // operators accepted earlier and not yet finished or abandoned
//		Bootstrapped: bootstrapped, // persisted in the catalogue
//		Settings:     settings,     // zero fields mean defaults
//	}
//	plan, err := schedule.Schedule(c, ids) // ids: the catalogue's allocator
//	if err != nil { /* malformed input, or ids failed: log it, retry next tick */ }
//	for _, op := range plan.Operators {
//		persist(op) // with Bootstrapped = true if op.Kind == KindBootstrap
//		running = append(running, op)
//		go execute(op) // or hand to the executor; see below
//	}
//
// Only the placement leader schedules. A new leader starts with no
// operators in flight: it may re-plan a shard whose operator the old
// leader left half done, which is safe (see "Idempotency by epoch").
//
// # Inputs
//
// Cluster is read, never modified nor retained; Plan shares no memory with
// it. Nodes and shards may come in any order (sorted by ID is fastest).
// A node's State is Up, Down or Draining; a Down node's replicas are
// replaced only once DownFor exceeds Settings.DownAfter (30 s), so a
// restart moves nothing. A replica on a node that is not in Nodes counts
// as dead. A shard's Leader is a replica ID (0: unknown); Lagging lists
// the replicas its leader reports as behind, which never get a
// leadership. SizeBytes and Load drive splits and, when every up node
// reports a capacity and one of them fills CapacityTolerance of it,
// replica balance by bytes.
//
// # Checkers, in priority order
//
// Every round runs the checkers in this order. A shard gets at most one
// operator per round, and none while one is in flight. Checkers share the
// per-node limits, so earlier ones get the budget first. A shard that
// needed a repair or a drain that could not happen (throttled, or no
// target) is not split or rebalanced meanwhile.
//
//  1. Bootstrap (KindBootstrap): once, when Bootstrapped is false, no
//     shard exists and at least ReplicationFactor nodes are up: create
//     InitialShards shards whose split points divide the first two key
//     bytes evenly, each with its replicas on distinct nodes spread over
//     zones and racks, least loaded first. All or nothing. Each shard's
//     intended leader rotates over its nodes (the one meant to lead the
//     fewest so far); its replica gets the lowest replica ID, so it comes
//     first in the descriptor, is created first and wins split votes,
//     and so wins the first election: the leaderships start spread.
//  2. Repair (KindRepair), only for shards whose live voters are a quorum
//     (otherwise Raft cannot change them: they count in Stats.Unavailable
//     and wait): remove a stray learner (left by an abandoned AddReplica);
//     add a voter to a shard with fewer than ReplicationFactor; remove the
//     worst voter of a shard with more (dead, then down, then draining,
//     then the one sharing a zone, a follower before the leader, the most
//     loaded node); replace a voter on a dead node, adding the new one
//     before removing the dead one.
//  3. Drain (KindDrain): move each voter off a Draining node, its
//     leadership first. When the replica cannot move yet (limits, no
//     target), its leadership still does.
//  4. Zone spread (KindZone): a healthy shard (RF voters, all on up nodes,
//     no learner) spanning fewer zones than min(RF, zones of up nodes)
//     moves a replica from its most crowded zone to a zone it lacks.
//  5. Split (KindSplit): a shard larger than SplitSizeBytes (64 MiB) or,
//     if SplitLoad is set, serving more requests/s than it, is split at a
//     key its leader picks, into a new shard with one new replica per
//     existing replica. A shard known to hold one key is not split.
//  6. Replica balance (KindReplicaBalance): move replicas of healthy
//     shards from the up node with the highest metric to lower ones. The
//     metric is the replica count, or, when every up node has a capacity
//     and one fills at least Settings.CapacityTolerance of it, the used
//     fraction of capacity (shard bytes / CapacityBytes). Below that,
//     every fraction is within the tolerance and bytes would see nothing
//     to even out, so the count is balanced.
//  7. Leader balance (KindLeaderBalance): transfer leaderships from nodes
//     that lead more shards to caught-up voters on nodes that lead fewer.
//     It also balances shards whose repair or drain cannot happen at all
//     (no node to take a replica), unlike the checkers before it: a
//     transfer needs no new node, and a fleet short of nodes would
//     otherwise keep its leaderships wherever a failure or a drain left
//     them.
//
// Target choice, for every new replica: an up node that does not hold the
// shard, is under its limits and below Settings.MaxFullness of its
// capacity (by reported UsedBytes plus what is heading its way); the best
// is the one sharing a zone with the fewest kept replicas, then a rack,
// then the lowest metric, then the lowest load, then the lowest ID.
//
// # Balance bounds
//
// Both balancers move one unit from a node A to a node B only if A is
// above mean+tolerance or B below mean-tolerance, and only if the move
// does not flip them (B after the move at most A after it, i.e. two
// apart in count mode). Every move strictly lowers the sum of squares, so
// balancing converges; at its fixed point with nothing in the way every
// up node is within tolerance of the mean. Leader balance first makes
// only the moves that take no node past the mean (a receiver of a node
// above the band up to the mean rounded up, a giver to a node below it
// down to the mean rounded down), then the other allowed moves with the
// budget left: leaderships go straight from heavy to light nodes, close
// to the fewest transfers, instead of the lightest node filling up to
// the heaviest's level and passing the surplus on later. The tolerances default to 1
// replica (ReplicaTolerance), 1 leadership (LeaderTolerance) and 5
// points of fullness (CapacityTolerance): "within ±1 of the mean is
// balanced". The mean is over up nodes, not per zone, and a move never
// lowers the number of zones a shard spans: when zones have unequal
// numbers of nodes, the nodes of a small zone carry more than the mean
// (the zone spread wins), and the others balance among themselves. A
// leadership can only go to a node that holds a replica, so replica
// placement can leave a node two leaderships off the mean with no single
// transfer that helps. Replica balance gives up a source for the round
// after 16 shards whose every target was refused for fullness or size.
//
// # Limits
//
// Per node, counting the operators in flight and those planned this
// round: MaxSnapshotsPerNode (2) operators that add a replica to it (an
// AddReplica costs its target a snapshot), MaxMovesPerNode (4) operators
// that add or remove a replica on it (nodes that are down are never
// charged), MaxLeaderTransfersPerNode (64) leaderships heading to it.
// Bootstrap and splits copy no data and are not charged.
//
// # Operators and steps
//
// An Operator changes one shard; its Steps run in order, each after the
// previous one is confirmed, through the shard leader's Admin service:
//
//   - CreateShard{Descriptor}: create every replica of the descriptor on
//     its node (shard.Store.CreateShard), all with this exact descriptor.
//   - AddReplica{Shard, Replica}: create an empty joining replica on
//     Replica.NodeID, add it as a learner (joint consensus), wait for it to
//     catch up (snapshot), then promote it to a voter (unless
//     Replica.Learner). Never emitted for a node already holding the shard.
//   - RemoveReplica{Shard, Replica}: remove it. Never the leader's: an
//     operator that must remove the leader's replica transfers the
//     leadership in an earlier step, to a caught-up voter or, if there is
//     none, to the replica the operator just added.
//   - TransferLeader{Shard, To, ToNode}: transfer the leadership to To.
//   - Split{Shard, Key, NewShard, NewReplicas}: propose a split
//     (shard.Command{Kind: shard.KindSplit}); an empty Key lets the leader
//     pick the middle of its data. NewReplicas maps every replica of the
//     shard to the new shard's replica on the same node.
//
// Moves are add-then-remove: [TransferLeader,] AddReplica, RemoveReplica
// (or AddReplica, TransferLeader to it, RemoveReplica). A replacement
// thus briefly has RF+1 voters; that shard is in flight, so repair does
// not mistake it for over-replicated. Executors that can should run the
// promotion and the removal as one joint configuration change.
//
// # Idempotency by epoch
//
// Operator.Epoch is the shard's epoch the operator was planned from. The
// caller does not start an operator whose shard is already past it, and
// treats each step as done once a later heartbeat shows its effect: the
// new replica in the descriptor with its role, the old one gone, To
// reported as leader, a Version above Epoch.Version (split), the new
// shard reported (create). Each step is thus idempotent: re-running it
// after a placement failover first checks the heartbeat. The caller keeps
// passing the operator in Cluster.InFlight until then; Schedule discounts
// the steps whose effect is visible, blocks the shard, and charges the
// rest to the per-node limits and to the projected replica and leader
// counts, so the next rounds neither exceed the limits nor overshoot the
// balance. An operator that fails or times out (a step refused with an
// epoch mismatch, a target that went down) is abandoned: dropped from
// InFlight; whatever it left behind (a learner, an extra voter) is the
// repair checker's to clean up.
//
// Schedule is deterministic: the same Cluster (in any order of nodes and
// shards) and the same sequence of IDs from the allocator give the same
// Plan. Every iteration goes by ID, never by map order.
//
// # IDs
//
// New shard IDs come from IDAllocator.NewShardID (bootstrap, split), new
// replica IDs from NewReplicaID (add, split), only for operators that
// Schedule returns. IDs are never reused; those of dropped operators are
// simply skipped. An allocator may fail (the catalogue cannot reserve
// IDs, the caller is stopping): the round then stops where it is, asks for
// no further ID, and Schedule returns the allocator's error and no
// operator.
//
// # Cost
//
// One pass over the shards (in ID order) builds every index: node of each
// replica, leader, per-node counts, the checkers' candidate lists. The
// checkers then touch only their candidates; target search walks the
// nodes ranked by metric and stops at the first diverse one; the
// balancers build per-node shard lists once. A round over 1,000 nodes and
// 1,000,000 shards takes a few hundred milliseconds on two cores
// (BenchmarkRound1M).
//
// # Health
//
// Assess runs the checkers that must act (repair, drain) as a round
// would, without allocating IDs or returning operators, and reports the
// cluster's Health: shards with fewer live voters than the replication
// factor (a voter on a Down node is not live, from the moment the caller
// judges the node down, long before DownAfter), shards without a live
// quorum, shards with a lagging replica, and the shards whose repair or
// drain cannot happen, grouped by why ("no live node without a replica of
// the shard", fullness, no leadership target, no live quorum) or that
// wait only for the per-node limits. The placement service serves it as
// the cluster status and its gauges; Plan.Stats counts the same way.
//
// Not done here yet: merging small shards, balancing by load rather than
// leadership count, and choosing split keys (the leader picks them).
package schedule
