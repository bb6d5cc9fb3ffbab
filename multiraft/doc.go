// Package multiraft hosts thousands of Raft groups in one process, on
// etcd/raft's RawNode and one shared Pebble instance. It knows nothing
// about keys: a group replicates opaque commands into a StateMachine that
// its user (package shard) supplies.
//
// # What it owns
//
//   - The life of every group hosted on this node: creation (CreateGroup
//     for a new group, JoinGroup for an empty replica that waits for a
//     snapshot, ApplyContext.CreateGroup for the right-hand side of a
//     split, and a leader's message for a replica the node does not host
//     yet), recovery on Open, removal (RemoveGroup, RemoveReplica, a
//     replica applying its own removal, or a leader addressing a newer
//     replica of the group on this node), and the tombstone every removal
//     leaves so that a removed replica never comes back.
//   - All Raft state in Pebble under the raft-local keys of internal/keys:
//     hard state, log entries, truncated state, applied state (index, term,
//     ConfState and the node of every member) and the replica ID.
//   - Proposals, reads, membership changes, leadership transfers,
//     snapshots, log truncation, quiescence.
//
// It does not own the network (a Transport is injected), time (the user
// calls Tick; RunTicker does it from a time.Ticker) or the state machine.
//
// # Threads: no goroutine per group
//
// A fixed pool of workers (Config.Workers) serves every group. Work reaches
// a group through its inbox (messages, proposals, reads, operations) and a
// shared scheduler queue that holds each group at most once; a worker pops
// a batch of groups and owns each of them, with its RawNode, until the
// round ends. Nothing else ever touches a RawNode, so there is no lock per
// group on the hot path, only the short inbox mutex. One ticker marks every
// active group and enqueues it.
//
// With Workers < 0 the engine starts no goroutine at all and the caller
// drives it with Process: this is how the simulator (internal/sim) runs
// several engines deterministically in one goroutine.
//
// # A round
//
// For a batch of groups, a worker:
//
//  1. hands each group's inbox to its RawNode (Step, Tick, Propose,
//     ReadIndex) and takes its Ready;
//  2. sends the messages that need no local durability; the leader's
//     appends go out before its own write (Raft thesis §10.2.1), while
//     append acknowledgements and votes wait;
//  3. writes the entries, hard states and snapshots of every group into one
//     Pebble batch and syncs it once: group commit across groups;
//  4. sends the acknowledgements and votes;
//  5. applies every group's committed entries into one more batch, written
//     without sync together with each group's applied index (the synced log
//     makes replay safe, and the two never separate), then resolves the
//     proposers' futures;
//  6. calls Advance, answers reads whose index is applied, truncates logs
//     and quiesces idle groups.
//
// Step 2 holds back one kind of message: the append raft broadcasts to
// announce a new commit index, when it goes to a follower that already has
// every entry. A lone write would otherwise cost each follower two appends
// and two acknowledgements instead of one of each, with a round on either
// side for each. Holding them back saves server CPU and latency (figures
// in bench/README.md, "Figures behind the engine's choices"). Followers
// learn the index
// from the next append or heartbeat, at most HeartbeatTicks later: only
// their apply, and so stale reads, waits. A round that applies a
// membership change or a split still sends them, ahead of the new group's
// campaign (round.route says why). Etcd's raft has no option for this;
// dropping a message is always safe in Raft, so the engine does it.
//
// AsyncStorageWrites was considered and not used: step 2 already lets the
// leader replicate while it syncs, and group commit amortises the sync over
// every group of the round, which is what AsyncStorageWrites would buy; the
// synchronous Ready contract keeps the worker simple and the simulator
// deterministic.
//
// Rounds run side by side, one per busy worker, and each syncs on its
// own; a node's syncs nonetheless share the disk's flushes, because
// Pebble's WAL syncs one at a time and a sync requested while one is in
// progress joins the next. Gathering rounds in the engine was tried and
// not kept (issue 20; the experiment was not merged): a round about to
// sync while another round's sync was in progress took every group
// queued meanwhile into itself, finishing at once those that needed no
// sync. Its rounds were fuller (at 10 writers 2.7 entries per sync
// instead of 2.0, at 100 writers 20.9 instead of 16.7) but writes did not
// get cheaper: on the 2-core machine, alternating the two builds, 10
// writers made 500 and 426 writes/s against 518 and 402 without it, at
// 1,669 and 1,785 µs of server CPU per write against 1,644 and 1,761.
// Fewer rounds save little once the disk's flushes are shared, and the
// gathering round starts its sync only after a wake-up that the WAL,
// queueing the next sync itself, does without. The extreme, one worker
// per node (shardnode --workers 1: one round at a time), made 383 and 302
// writes/s at 10 writers against 460 and 393 with the default workers.
//
// The log stays in Pebble, beside the state it produces. A log of its
// own, synced by the round in a preallocated file, with Pebble then
// running without a WAL, was measured as an upper bound before building
// it (a throwaway build without replay or segment deletion; bench/README.md,
// "A Raft log apart from Pebble"): level at 10 writers, 6% more writes
// at 100 and 17% more at 1,000, because most of what Pebble does per
// write is the applied data (its versions, flushed and compacted), not
// the log. Worth building when throughput at high concurrency is the
// aim; it would bring its own replay, segment deletion and crash tests.
//
// # Proposals
//
// Propose (or ProposeFuture) wraps the command in a 16-byte envelope (the
// engine's incarnation and a proposal ID) and queues it; the worker hands
// all queued proposals of a group to raft in one MsgProp. The future
// resolves with the state machine's result when the entry applies on this
// replica. Errors tell whether the command may have applied:
// ErrProposalDropped and *NotLeaderError mean surely not; ErrAmbiguous
// (leadership lost after the entry was appended) and a context error mean
// it may have. The incarnation is bumped and synced at every Open, so an
// entry proposed before a restart never resolves a future made after it.
//
// # Reads
//
// ReadBarrier(ctx, group, mode) returns once the local applied state may be
// read at mode; the caller then reads Pebble:
//
//   - ReadLinearizable: Raft ReadIndex. All linearizable reads of a group
//     that arrive before a round share one ReadIndex, i.e. one heartbeat
//     round to a quorum.
//   - ReadLease: served by the leader without a quorum round while its lease
//     holds. A lease starts at the tick a ReadIndex round began, once that
//     round is confirmed by a quorum, and lasts Config.LeaseTicks (less than
//     the election timeout): with CheckQuorum no follower that acknowledged
//     votes for another candidate within an election timeout. A leader that
//     sent MsgTimeoutNow (leadership transfer) gives up its lease for the
//     rest of its term. Lease reads renew the lease in the background.
//     With a Config.TickInterval (RunTicker sets it) the lease also ends
//     LeaseTicks*TickInterval after its round began on Config.Clock, read
//     when each lease read is served: a leader paused for longer than its
//     lease misses the pause's ticks, and would otherwise resume serving
//     reads the new leader's writes have made stale. Leases assume the
//     nodes' tick rates differ by less than the LeaseTicks margin.
//   - ReadStale: whatever this replica has applied.
//
// # Membership
//
// ChangeReplicas proposes a ConfChangeV2 (joint consensus when more than
// one voter changes; left automatically). ChangeReplicasFrom proposes it
// only if the group's members are still those the caller decided it from,
// checked on the worker with the proposal. A change's context carries the
// nodes of added replicas, so every replica learns where its peers live
// from the log. A replica that applies its own removal deletes itself. A
// new replica is added as a learner, sent a snapshot, promoted with
// AddVoter; it may be created empty with JoinGroup first, or else the
// leader's first message creates it.
//
// # Replicas created by messages, tombstones
//
// A leader's message (MsgApp, MsgHeartbeat, MsgSnap) for a replica of a
// group this node does not host creates that replica, empty (create.go):
// this is how a node whose replica of a split's parent skipped the split
// (it installed a snapshot taken after it) gets its right-hand replica,
// and how a learner added before anyone created it appears. A leader's
// message for a newer replica ID than the one hosted here destroys the
// hosted one, which must have been removed from its group, so re-adding a
// group to a node that kept a stale replica of it needs no cleanup.
// Every destroyed replica leaves a tombstone (tombstone.go): its ID, which
// no message, JoinGroup, CreateGroup or split may create again; replica
// IDs are never reused, so a removed voter can never vote twice. The
// check runs only for messages of groups the node does not host, so the
// hot path pays nothing. Empty replicas that are never filled are left to
// the node's garbage collection (rpc.ReplicaGC), as are replicas removed
// while their node was away: the engine alone cannot tell a removed
// replica that hears nothing from one whose group is merely idle.
//
// # The node's layout
//
// State machines that share one key space (package shard keeps user data
// under the user key, not the shard) implement Spanner, and the engine
// keeps their spans disjoint on a node (layout.go): a snapshot whose span
// overlaps another group here is refused and sent again later, and every
// change of spans (installing a snapshot, a split creating a group,
// destroying one) happens under one node-wide lock held from the check to
// the commit. The split's right-hand replica starts from the split's
// state on every node that applies it, even when that node's replica of
// the new group was created empty by a message first (the split then
// initialises it, keeping its vote, and tells its leader, so no snapshot
// is sent); a snapshot of the new group waits until the local parent no
// longer spans its range. A transport may ask PrecheckSnapshot before it
// reads a snapshot's body, so a refused one does not travel in vain.
//
// # Snapshots
//
// raft.Storage.Snapshot describes the state as of the applied index; the
// round that sees the MsgSnap takes a Pebble snapshot at once and hands the
// transport an OutgoingSnapshot that streams StateMachine.Snapshot from it,
// off the worker. The receiver restores the body into a staging batch on
// its worker (a corrupt or truncated body is refused there, before raft
// sees the snapshot, and so is one whose span overlaps another group of
// the node), then steps the MsgSnap; when raft hands the snapshot back,
// the staged data and the new Raft state are committed in one synced
// batch.
//
// # Log truncation
//
// When a group's log exceeds LogTruncateEntries or LogTruncateBytes it is
// truncated locally, never past the applied index known to be durable (the
// applied index recorded before the last synced write of that group). A
// leader keeps the entries a follower still needs unless the log exceeds
// the byte bound; a follower that falls behind the truncated log gets a
// snapshot.
//
// # Quiescence
//
// A leader with nothing in flight, every follower caught up, and
// QuiesceAfterTicks idle ticks sends a last heartbeat marked Quiesce and
// stops ticking; a follower that receives it stops too. Any proposal, read
// or message other than a heartbeat response wakes the group. NodeDown is
// the node-liveness hook: it wakes every quiesced group whose leader lives
// on the node that went down, so its followers still elect a new leader.
// A follower that missed the quiescing heartbeat stays awake with an old
// commit index; after an election timeout without a word from its leader
// it pokes the leader awake (round.pokeLeader), since a learner, unlike a
// voter, never campaigns, and a quiesced leader would sleep on.
//
// # Split votes
//
// When a leader dies, its followers' election timers were reset by the
// same last heartbeat, so two of them can time out within a message's
// flight of each other. Pre-votes do not prevent it (a pre-candidate grants
// another's pre-vote for a higher term); both become candidates of the same
// term, each votes for itself and rejects the other, and with the third
// replica dead neither wins. Raft ends that when a randomized election
// timeout expires again, one to two election timeouts later. The engine
// ends it sooner: a candidate that rejects a candidate of its own term
// (round.sawSplitVote) campaigns again two ticks later if it has the lowest
// replica ID among those it rejected; the others wait for their timers and
// grant its pre-vote and vote. It shortens failovers (figures in
// bench/README.md, "Figures behind the engine's choices"). Starting an
// election is always safe, so only liveness is at stake, and the
// simulator checks it.
//
// # Disk failures: fail-stop
//
// A failed write or sync of Pebble stops the engine (see diskfailure.go):
// the round that met it sends no acknowledgement or vote, applies nothing
// and never calls Advance; the engine then closes itself, pending requests
// fail with errors wrapping ErrStopped and ErrDiskFailure, Failed's channel
// closes and Err reports the cause. Pebble reports a failed commit through
// its Logger.Fatalf, which must not return: serve.PebbleLogger exits the
// process (status 1), a test logger panics and the engine recovers the
// panic into ErrDiskFailure. The node restarts over what it synced.
//
// # Testing
//
// All time is ticks, the transport and the filesystem (Pebble's vfs) are
// injected. Crash tests use vfs.NewCrashableMem and CrashClone (pebble v2's
// successor of NewStrictMem): a crash keeps exactly what was synced.
package multiraft
