// Package shard is the replicated key-value state machine of one shard,
// and the node-level Store that serves key-value requests over the
// multiraft engine.
//
// # What it owns
//
// A shard owns the half-open user key range [Start, End) of its Descriptor
// (an empty End is +inf). In the node's one Pebble instance (layout in
// internal/keys) this package owns, per shard:
//
//	keys.MVCCKey(k, rev)                     the version of k at rev, for k in [Start, End)
//	keys.ShardKey(id, keys.ShardDescriptor)  the encoded Descriptor
//	keys.ShardKey(id, keys.ShardRevision)    the revision of its last write
//	keys.ShardClientKey(id, client)          the client table (exactly-once)
//	keys.ShardKey(id, keys.ShardCompacted)   the compaction point
//	keys.ShardKey(id, keys.ShardLock)+key    a transaction's lock on key
//	keys.ShardKey(id, keys.ShardTxn)+...     a transaction's outcome record
//
// It does not own Raft state, the log, membership changes or leadership
// (multiraft does), nor routing and retries (router), nor deciding when to
// split or where replicas go (placement).
//
// # Types
//
// StateMachine implements multiraft.StateMachine for one shard replica.
// Store is the node's facade: it builds commands, fails fast, proposes them
// through the engine and reads Pebble behind the engine's read barriers.
// Command is the unit of the replicated log; Result is what an applied
// command returns.
//
// # Wiring (one Store per node)
//
//	store, err := shard.NewStore(cfg, oracle)         // cfg identical on every node; oracle: see Oracle
//	eng, err := multiraft.Open(multiraft.Config{
//		NewStateMachine: store.StateMachineFunc(),     // registers each shard with the Store
//		/* NodeID, DB, Transport, ... */
//	})
//	store.SetEngine(eng)                              // requests before this: ErrNotReady
//	err = store.CreateShard(desc, myReplica)          // bootstrap; a split's new shard needs no call
//	err = store.Put(ctx, desc.ShardID, shard.Header{ClientID: c, Seq: 1, Epoch: desc.Epoch}, k, v)
//	v, found, err := store.Get(ctx, desc.ShardID, desc.Epoch, k, multiraft.ReadLinearizable)
//
// # Life of a write
//
//  1. Store.Execute checks the command's limits (non-empty key, key <=
//     MaxKeyBytes, value <= MaxValueBytes, batch size) and checks it against
//     this replica's cached descriptor (keys in range, epoch, split
//     validity). Failures return at once; nothing enters the log.
//  2. The command is encoded (Command.AppendEncoded); a write waits for its
//     revision (see below) and is proposed; the engine replicates it and
//     calls Apply on every replica, in log order.
//  3. Apply decodes it and, in this order:
//     a. deduplicates it against the client table (see below): a retry of
//     the last applied request returns the recorded Result, an older one
//     ErrStaleSequence;
//     b. checks the limits again and the descriptor current at apply time
//     (range and epoch; a split also its key and replica mapping), and a
//     write's revision against the shard's last;
//     c. writes user data (new versions), then the client record, into
//     the engine's batch, and returns a *Result. The shard's revision is
//     written once per round, after the round's last write
//     (FinishApply, a multiraft.ApplyFinisher), into the same batch.
//     A command refused in a or b returns an error and writes nothing at
//     all, so its client may fix the cause and retry with the same Seq.
//  4. The engine commits the batch with the applied index and hands the
//     result to the proposer; Store turns an error result into an error.
//
// Apply is deterministic: its writes and result depend only on the stored
// state, the entry (command and index) and Config. That is why every node
// must run with the same Config.
//
// # Revisions and versions
//
// Every write (Put, Delete, CompareAndSwap, Batch) carries a revision, a
// timestamp of the fleet's oracle (Oracle; placementd's placement/tso)
// that the Store stamps it with before proposing it (stamp.go: one oracle
// call out at a time per node, each for every write that arrived before
// it began, so a write's revision is above that of every write
// acknowledged before it arrived, on any shard). The revision travels in
// the log entry, so every replica applies the same one. Apply refuses,
// with ErrStaleRevision and identically on every replica, a write whose
// revision is not above the revision of the shard's last write (a new
// leader's write stamped before an old leader's write that committed
// after it): within a shard, revisions increase in log order.
//
// A write keeps every version before it (mvcc.go): each key holds its
// versions, newest first, as separate Pebble keys (internal/keys'
// MVCCKey), a delete writes a tombstone, and a version records the key's
// create revision and version (writes since creation); its mod revision
// is its own. Reads return the newest version at or below a revision. A
// write also removes the versions of its keys that no read at its
// revision minus Config.HistoryRetention or later can see, so a key's
// history stays bounded.
//
// # Resolved revisions, reads at a revision, watch
//
// A replica's resolved revision (StateMachine.Resolved) is the revision of
// the last write, or Resolve (a command that writes nothing), it applied;
// since Apply refuses a later write whose revision is not above it,
// nothing at or below it can commit any more. The guarantees, argued in
// readat.go and watch.go:
//
//   - A read at revision r sees every write at or below r and none above,
//     on every replica alike: it is served by a replica that resolved past
//     r, else by the leader after it resolved the shard with a fresh
//     timestamp (which also keeps later writes above r). A revision the
//     oracle had not handed out then is refused (FutureRevisionError); one
//     below the compaction point (just above the latest horizon a write
//     pruned at, or an operator's Compact) is refused (CompactedError),
//     never answered from pruned history.
//   - A read of the latest state reads at the replica's resolved revision
//     after its barrier and returns it: it saw exactly the writes at or
//     below it.
//   - A watch (Store.Watch) returns every write to its range at or above
//     its start exactly once, in revision order, a write's events
//     together; its progress revision promises that no event at or below
//     it is still to come. A slow watcher catches up from stored versions
//     (memory per watcher is bounded); a split or the replica's removal
//     ends it with the progress to resume from.
//
// # Garbage collection
//
// Two kinds of history are never written again, so no write prunes
// them: the last versions and meta of a deleted key, and the outcome
// records of transactions across shards. Store.CollectGarbage, which a
// node calls periodically for the shards it leads, collects them in
// bounded passes (gc.go has the rules and their argument): the leader
// chooses candidates from its own data, examining a budget of keys and
// records per pass and resuming where the last pass stopped, and
// proposes them in one KindGC command; Apply keeps only the candidates
// that still qualify, from the replicated state alone, so every replica
// deletes the same. In short:
//
//   - A key deleted below the compaction point goes, meta and versions:
//     reads and watches at or above the compaction point see the same;
//     a prewrite whose start is below the compaction point treats a key
//     with no meta as a write conflict. Pruning by retention never
//     raises the compaction point past the start of a transaction that
//     holds a lock on the shard (belowLocks).
//   - An outcome record (or a rollback marker of async commit) goes
//     once its transaction started more than Config.TxnRecordRetention
//     (default an hour; negative keeps records forever) before the
//     shard's resolved revision, and no lock on the shard started at or
//     before it; the shard's leader sweeps its expired locks
//     (locksweep.go) well within that bound. A prewrite past
//     the retention is refused, and a check, commit or rollback of a
//     forgotten transaction that finds neither record nor primary lock
//     returns ErrTxnForgotten rather than guess an outcome.
//
// # Epochs
//
// Every request carries the Epoch it was routed with. Reads and writes
// compare only Epoch.Version, which changes when the key range changes (a
// split); a Split compares the whole Epoch, since its replica mapping is
// only valid for the membership it was built from. A mismatch returns an
// *EpochNotMatchError with the current descriptor so the router heals
// without asking placement. A request with the zero Epoch skips the check
// (tools, tests, and callers that know their key is in range): the key
// range is still checked. Epoch.ConfVer grows when ApplyMembership sees a
// different set of replicas; Epoch.Version grows on each split, on both
// sides (the right-hand shard starts at the left's new epoch).
//
// # Exactly-once
//
// A write whose Header has ClientID != 0 is applied at most once per
// (ClientID, Seq): each shard records, per client, the Seq of the last
// write it applied and that write's Result. When a write of the same client
// commits again:
//
//   - Seq equal to the recorded one: the recorded Result is returned and
//     nothing is written (a retry after an ambiguous failure);
//   - Seq lower: ErrStaleSequence, nothing written;
//   - Seq higher: applied normally, and recorded.
//
// So a client must give its writes strictly increasing Seq, and must not
// have two writes to one shard in flight at once (the later one would make
// the earlier one stale if they committed out of order); a router with
// concurrent requests uses one ClientID per concurrent lane. ClientID 0
// opts out: the write applies whenever it commits, and retrying it after an
// ambiguous failure may apply it twice.
//
// The table is bounded deterministically, from the log alone: a record
// expires once the log moved more than Config.ClientTTLEntries indexes
// past the entry that wrote it (an expired client is treated as unknown),
// and a table holding Config.MaxClients records evicts the one written
// longest ago when a new client arrives. A retry that arrives after its
// record expired or was evicted applies again: the bounds must exceed any
// client's retry horizon. Refused commands are not recorded. The table is
// stored in Pebble, is part of snapshots, and a split copies it to the
// right-hand shard (with its entries' age reset), so a retry re-routed to
// the other side of a split is still recognised.
//
// # Split
//
// Split(key, newShard, newReplicas) is valid when key is strictly inside
// (Start, End) and newReplicas maps every current replica to a fresh
// replica ID of the new shard (on the same node). Applying it, in one
// batch: the shard shrinks to [Start, key) with Version+1; the descriptor
// of newShard [key, End) is written with the same epoch and the mapped
// replicas; the client table and the last revision are copied; and
// ApplyContext.CreateGroup creates the new group on this node, so every
// replica of the old shard starts the new one from identical state. User data does not move: it is
// keyed by the user key. A replica that applies a split after its own
// removal creates nothing and deletes the right-hand user data instead,
// and so does one whose node must not host the new replica (the engine's
// CreateGroup says so: that replica was removed here already, or another
// replica of the new shard waits here for a snapshot).
//
// A node whose replica skipped the split (it installed a snapshot taken
// after it) gets its right-hand replica from the engine: the new shard's
// leader addresses it, its message creates it empty, and a snapshot fills
// it. A node whose replica of the new shard was created that way before
// its own split applied has it initialised by the split, as if the split
// had created it (see multiraft's doc, "The node's layout").
//
// # Key ranges on a node
//
// A node never holds two initialised replicas whose ranges overlap: one
// would write over the other's data, since data is keyed by user key. The
// StateMachine is a multiraft.Spanner (its span is its key range), and the
// engine refuses a snapshot that would overlap another replica here (its
// leader sends it again later): a right-hand shard's snapshot waits until
// the local parent applied its split or installed a later snapshot of its
// own, or, if that parent was removed from its shard while its node was
// away, until the node garbage-collects it.
//
// # Snapshots
//
// Snapshot streams the shard's image from a Pebble snapshot: a header frame
// (format version, the revision of the shard's last write, descriptor),
// client-table frames, frames of every version of the user data
// of about Config.SnapshotChunkBytes, and a trailer with the numbers of
// client records and pairs and a CRC-32C of the whole image. Every frame
// carries its length and a CRC-32C. Restore verifies everything (checksums,
// frame order, key order and range, counts, shard ID, nothing after the
// trailer) while staging the writes in a private batch, and only if the
// image is sound copies them into the engine's batch: a DeleteRange of the
// image's user span and of the shard's local keys, then the image's state.
// A corrupt or truncated image returns ErrCorruptSnapshot and leaves the
// batch untouched. The exact format is written out in snapshot.go.
//
// # Errors
//
// Sentinel errors (errors.go) are prefixed "shard: " and tested with
// errors.Is. Apply returns them as results; Store returns them and, for
// writes, the engine's errors unchanged. A broken invariant (an
// uninitialised replica applying a command, an unreadable client record)
// panics with the values involved.
//
// # Concurrency
//
// The engine calls a StateMachine's Apply, ApplyMembership, Restore and
// Destroy only from the worker owning the group; Snapshot reads only its
// pebble.Reader and may run concurrently with them. The descriptor is
// published through an atomic pointer, so Store reads it from any
// goroutine; it is replaced, never mutated. Store methods are safe for
// concurrent use.
//
// # Formats and dependencies
//
// Commands, descriptors, results and client records use small hand-written
// binary formats (uvarints and length-prefixed bytes, see codec.go), each
// led by a format byte; decoders never panic and refuse trailing bytes.
// They are a few dozen lines each, stable, allocation-free to decode, and
// fuzzed (FuzzDecodeCommand, FuzzRestore), which protobuf would not make
// simpler. Storage is github.com/cockroachdb/pebble/v2; checksums are
// hash/crc32 (Castagnoli).
package shard
