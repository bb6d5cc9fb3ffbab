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
package placement
