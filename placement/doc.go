// Package placement is Flotilla's placement service: the directory of
// nodes and shards, the allocator of IDs, and the scheduler that creates,
// repairs, balances and splits shards. cmd/placementd runs it.
//
// # What is replicated, and what is not
//
// The catalogue, a single Raft group (CatalogueGroup) on placementd's own
// multiraft engine with 1 or 3 replicas, holds only what cannot be
// recovered from the fleet: registered nodes (address, labels, capacity,
// draining), the ID counters (nodes, shards, replicas: never reused) and
// the settings (whether the initial shards were created).
//
// Shards are not in it. Their truth is their own Raft state; every node
// heartbeats (Config.HeartbeatInterval) the descriptor, size, load and
// lagging replicas of the shards it leads, and the placement leader keeps
// the newest epoch of each shard in its view. A new placement leader — or
// one whose catalogue was lost and re-created — starts with an empty view
// that is complete after one heartbeat interval, and it schedules nothing
// until two have passed. Heartbeats also bring the ID counters of a
// re-created catalogue back up: an ID a node reports that a counter has
// not reached yet raises the counter past it (through the catalogue's log)
// before the report is used, so IDs still in use are never handed out
// again (heartbeat.go). A heartbeat with an invalid report is refused
// whole.
//
// # Requests
//
// Every Placement RPC reaching a follower is forwarded to the leader, so a
// client may use any replica's address. Node liveness, routes, listings and
// the cluster status come from the leader's view.
//
// # Scheduling
//
// Only the leader schedules: every Config.ScheduleInterval it snapshots its
// view into a schedule.Cluster, asks package schedule for operators (pure
// decisions: bootstrap, repair, drain, zone spread, split, replica and
// leader balance), and executes each operator's steps in order through the
// Admin service of the shard's leader (execute.go). Steps are idempotent,
// so an operator cut short by a failure or a leader change is simply
// decided again by a later round from the then-current view. Operators in
// flight are passed back to the scheduler, which never starts a second one
// for the same shard and counts them against per-node limits.
//
// A bootstrap operator is the exception to "decided again by a later
// round": a shard whose replicas could not all be created may have no
// quorum anywhere, so no leader reports it and no round would ever see it.
// A failed bootstrap operator therefore stays in flight and runs again at
// every round until it succeeds (CreateReplica is idempotent). After a
// failover, the new leader finishes such a bootstrap from the other side:
// a shard that nodes host but no leader reports for ten heartbeat
// intervals, whose hosted replica still holds its initial descriptor and
// knows no leader, has all its replicas created again (recreateOrphans).
//
// The view can be stale (a new leader's first reports, a change whose
// outcome was unknown), so the executor checks the shard itself before it
// takes anything away: operators run within the leader's term, cancelled
// as soon as the loop finds the replica no longer leading, and each step
// first checks the lead; a removal that the leader's current descriptor
// says would leave fewer voters than the replication factor is refused
// (every planned removal leaves at least that many); a stray replica is
// removed only once its own descriptor is older (a lower ConfVer) than
// the one that leaves it out, and by its replica ID.
//
// # Goroutines, time and calls: Runtime and Connector
//
// Run is the scheduling loop: it sleeps Config.ScheduleInterval, and, on
// the leader, runs a round, which starts one executor goroutine per
// operator and one per stray replica to remove. These goroutines block in
// exactly two ways: through Config.Runtime (Go, Sleep, WithTimeout, and
// Wait for a catalogue proposal) and through the clients of
// Config.Connect (the nodes' Admin service, another placement replica).
// The RPC handlers block the same ways (a proposal, a forward to the
// leader). Runtime nil means goroutines, timers and Future.Wait on the
// wall clock; Connect nil means gRPC connections made with Config.Dial.
// The deterministic simulator (internal/sim, fleet runs) supplies both: it
// runs every one of these goroutines in lock-step with its virtual clock,
// so one seed decides every interleaving. Code added here must keep that
// discipline: no bare goroutine, timer, sleep or channel wait. An
// operator's steps run within Config.OperatorTimeout (2 min).
package placement
