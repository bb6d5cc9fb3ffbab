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
// the settings (whether the initial shards were created). A node leaves it
// only when an operator forgets it (ForgetNode).
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
// # Construction
//
// The engine needs the catalogue's state machine when it opens (it
// recovers the catalogue group from disk), and the service needs the
// engine. The cycle is broken by the Catalogue, which holds the state
// machine and is made first; each piece is then whole when built:
//
//	var cat placement.Catalogue
//	engine, err := multiraft.Open(multiraft.Config{..., NewStateMachine: cat.StateMachineFunc()})
//	svc, err := placement.New(cfg, &cat, engine) // cfg.Validate: every problem at once
//	err = svc.Bootstrap()                        // creates the catalogue group on a fresh disk
//	pb.RegisterPlacementServer(grpcServer, svc)  // and RegisterHTTP for the status page
//	go svc.Run(ctx)                              // the coordinator, scheduling while this replica leads
//
// The service needs only the Engine interface of the engine (a fake one
// in TestForward).
//
// # Requests
//
// Every Placement RPC reaching a follower is forwarded to the leader, so a
// client may use any replica's address: each handler is forward (forward.go)
// around the method that serves it on the leader (api.go). Node liveness,
// routes, listings and the cluster status come from the leader's view
// (view.go, which owns its lock and hands out copies). Catalogue writes go
// through propose; its errors reach clients through toStatus: a command
// the catalogue refused is INVALID_ARGUMENT, any failure of the engine is
// UNAVAILABLE (clients retry), and a result the engine calls ambiguous
// says that the change may or may not have applied.
//
// # Operators asked for through the API
//
// SplitShard, MoveReplica and ForgetNode are the operator's hands
// (manual.go). A split or a move is checked against the catalogue and the
// view (unknown shard or node: NOT_FOUND; a replica already there, a
// target down or draining: FAILED_PRECONDITION), then runs on the leader
// as one of the coordinator's flights, so no scheduled operator touches
// the shard meanwhile and the next rounds wait for a heartbeat to show its
// effect; the RPC answers when its steps are done, with the shard
// leader's status code when a step is refused. ForgetNode removes a node
// from the catalogue only once it is down and no shard's descriptor names
// it; its ID is never handed out again. All three answer UNAVAILABLE while
// the leader is younger than two heartbeat intervals (its view may still
// miss shards).
//
// # Scheduling
//
// Only the leader schedules (coordinator.go): every Config.ScheduleInterval
// it snapshots its view into a schedule.Cluster, asks package schedule for
// operators (pure decisions: bootstrap, repair, drain, zone spread, split,
// replica and leader balance), and executes each operator's steps in order
// through the Admin service of the shard's leader (execute.go). Steps are
// idempotent, so an operator cut short by a failure or a leader change is
// simply decided again by a later round from the then-current view.
// Operators in flight are passed back to the scheduler, which never starts
// a second one for the same shard and counts them against per-node limits.
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
//
// # Where things are
//
//	service.go      Service, New, Catalogue, Engine; leader and observeLeader
//	config.go       Config and Validate
//	api.go          the Placement RPCs, as the leader serves them
//	forward.go      forward: a follower hands a request to the leader
//	propose.go      catalogue writes through Raft, and their errors as statuses
//	catalogue.go    the catalogue group's state machine
//	heartbeat.go    checking heartbeats; raising the ID counters past reported IDs
//	view.go         the leader's view of nodes and shards (owns its lock)
//	health.go       the cluster's health, for the status, the gauges and drains
//	coordinator.go  Run: scheduling rounds and the operators in flight
//	manual.go       SplitShard, MoveReplica, ForgetNode: operators asked for through the API
//	ids.go          ID blocks the scheduler reserves from the catalogue
//	execute.go      an operator's steps, through the shard leaders' Admin service
//	strays.go       removing replicas their shard no longer counts
//	orphans.go      finishing bootstraps a placement failover cut short
//	connect.go      Connector: clients of the nodes and the placement replicas
//	runtime.go      Runtime: goroutines, sleeps and waits (the simulator's hook)
//	history.go      the recent operators and their counts
//	metrics.go      OperatorCounts, Telemetry and ObserveStatus, for placementd's metrics
//	http.go         the status page and its JSON
//	status.go       the status page's verdict: the banner's problems, figures per node and shard
//	series.go       each node's load and bytes over the last hour, for the status page's charts
package placement
