// Package router is Flotilla's client library: it sends every key-value
// request to the leader of the shard that owns its key, and keeps doing so
// while shards split, leaders move and nodes die.
//
// It owns the route cache, the leader cache, the connections to
// shardnodes, retries and the exactly-once bookkeeping of writes (write
// lanes). It does not own where shards are (the placement service says,
// through a RouteSource) nor what they hold (the shardnodes). It imports
// only the wire types (rpc/flotillapb) and internal/keyfmt, never the
// server packages.
//
// # Use
//
//	c, err := router.New(ctx, router.Config{
//		PlacementAddresses: []string{"10.0.0.1:7200", "10.0.0.2:7200"},
//		NodeAddresses:      []string{"10.0.1.1:7100"}, // optional: asked for routes when placement is down
//	})
//	if err != nil { ... }
//	defer c.Close()
//	err = c.Put(ctx, []byte("user/42"), []byte("ada"))
//	v, found, err := c.Get(ctx, []byte("user/42"))                            // linearizable
//	v, found, err = c.Get(ctx, []byte("user/42"), router.WithConsistency(router.Stale))
//	res, err := c.CompareAndSwap(ctx, key, old, false, updated)             // res.Swapped, res.Current
//	kvs, err := c.Scan(ctx, []byte("user/"), []byte("user0"), 100)         // across shards, in key order
//	err = c.Batch(ctx, []router.Op{{Key: a, Value: x}, {Key: b, Delete: true}}) // atomic, one shard
//
//	w, err := c.PutRev(ctx, key, value)                                    // w.Revision
//	g, err := c.GetAt(ctx, key, w.Revision)                                 // g.KV.ModRevision, g.Revision
//	snap, err := c.ScanAt(ctx, []byte("user/"), []byte("user0"), 0, 0)     // one revision: snap.Revision
//	res, err := c.GetMany(ctx, [][]byte{k1, k2, k3})                        // in input order
//	for resp := range c.Watch(ctx, []byte("user/"), []byte("user0"), router.WithStartRevision(snap.Revision+1)) {
//		if resp.Err != nil { ... } // *router.CompactedError, ctx's error, ErrClosed
//		for _, ev := range resp.Events { ... } // in revision order, each once
//	}
//
// Every call takes a context; a call whose context has no deadline gets
// Config.Timeout. A Client is safe for concurrent use by any number of
// goroutines, and is meant to be shared: one per process. Close waits, at
// most Config.Timeout, for the commits of transactions that Commit
// answered before they finished, so a process that exits after Close
// leaves no locks behind.
//
// # Life of a request
//
//  1. Locate: the route cache returns the route (descriptor and leader) of
//     the shard whose [start, end) contains the key. On a miss the Client
//     asks the RouteSource (placement's GetRoute, or the shardnodes when
//     placement is down, below) for that route and
//     Config.PrefetchNeighbours neighbours on each side; concurrent misses
//     on one key, or reloads of one stale shard, share one load
//     (singleflight).
//  2. Pick a node: the cached leader for writes and linearizable or lease
//     reads, any replica (from a random one) for stale reads; replicas that
//     already failed this call are skipped, and those whose connection is
//     failing go last.
//  3. Send, with the route's shard ID and epoch in the header (and, for a
//     write, the lane's ClientID and Seq), through that node's coalescer
//     (below), over a framed KV connection to the node (below) or the one
//     gRPC connection the Client keeps per node address.
//  4. On failure, read the typed detail of the gRPC status (common.proto),
//     act on it (below), and retry or return.
//
// What each error does:
//
//	NotLeader{hint}       remember the hinted leader, retry at once; with no
//	                      usable hint (election under way), back off
//	EpochNotMatch{descs}  replace the cached routes with the node's
//	                      descriptors, removing every cached route they
//	                      overlap, and retry at once: a split heals without
//	                      asking placement
//	ShardNotFound         the node lost its replica: invalidate, reload, retry
//	KeyNotInShard         take the node's descriptor, invalidate, reload, retry
//	Busy{retry_after}     back off at least retry_after, retry
//	Ambiguous             the leader lost leadership with the write in its
//	                      log: back off, re-send the same ClientID and Seq
//	Unavailable           try the next replica at once; once every replica
//	                      failed, reload the route and back off
//	Compacted             final: *CompactedError (a read or watch below the
//	                      shard's compaction point)
//	FutureRevision        final: *FutureRevisionError (a read above every
//	                      revision handed out)
//	anything else         final (InvalidArgument, ...)
//
// A shard that answers NotLeader naming no reachable leader, or whose
// nodes cannot be reached, is polled for at most Config.ElectionWait
// (below).
//
// Retries that wait back off exponentially with jitter: a random duration
// in [d/2, d], d = min(BackoffMax, BackoffBase * 2^n); while a shard elects
// a leader (NotLeader naming none, or naming one that cannot be reached)
// d is also capped by ElectionBackoffMax, so the call finds the new leader
// soon after its election. At most
// Config.MaxRetries retries follow the first attempt, and none outlives
// the call's context.
//
// # A shard without a leader
//
// From the first attempt that finds the key's shard without a leader it
// can reach (a replica answers NotLeader naming none, or naming one this
// call cannot reach; a node cannot be reached or does not answer in time;
// no replica is left to try) the call counts Config.ElectionWait, 4s by
// default; an answer from a reachable leader, or naming one, stops the
// count. When it runs out the call fails with a *ShardUnavailableError
// (errors.Is ErrUnavailable, gRPC code Unavailable) naming the shard. A
// failover elects a new leader well within it (an election timeout or two
// after the old leader's death), so this ends calls to a shard that lost
// its majority in seconds instead of at the call's Timeout, and says
// which shard. For a stale read, the same holds for "no replica
// reachable".
//
// # Coalescing
//
// Under load most of the CPU a small request costs, on both sides, is
// gRPC's per-call work: a stream, its HEADERS and DATA frames, a handler
// goroutine, a write syscall each way. So Get, Put, Delete and
// CompareAndSwap attempts to one node share calls: while fewer than
// Config.BatchesPerNode calls are in flight to the node, an attempt goes
// at once, alone, as its own unary call; otherwise it queues, and when a
// call returns, everything queued (up to Config.MaxBatchOps) goes as one
// KV.Multi call, bounded to 4 MiB of keys and values so that requests
// valid alone never make a call above the node's 16 MiB message limit
// (one larger by itself goes alone); a call whose answer exceeds the
// router's receive limit (64 MiB: many large values read at once) fails
// whole with ResourceExhausted, and its attempts are sent again one by
// one. There is no timer: at low load every attempt finds room
// and nothing waits, and under load the batches grow with the queue. The
// node serves each op of a Multi as the request it is and returns one
// status per op, so routing, retries, lanes and errors above are exactly
// as for unary calls; a node without Multi (Unimplemented) gets unary
// calls from then on. An attempt carrying a sampled OpenTelemetry span
// always goes alone, so its trace is whole. Stats.Requests/Stats.RPCs is
// the mean batch size.
//
// # Framed KV connections
//
// What is left of a call's cost after coalescing is mostly gRPC's own
// handling: HTTP/2 frames and three goroutine hand-offs on each side. So
// by default (Config.DisableFramedKV) the coalescers' calls, lone
// requests as a Multi of one, go over framed KV connections
// (internal/framed, framed.go): one request frame and one answer frame
// on a TCP (or TLS, Config.FramedTLS) connection to the node's gRPC port,
// written and read by the calling goroutine, the node's connection
// goroutine serving it in between. A connection carries one call at a
// time and returns to the node's pool after it; the pool holds about
// BatchesPerNode of them. The frames carry the call's deadline and the
// node's full status, so everything above holds as over gRPC, and a call
// marks its send record once its whole request is written: a write whose
// answer is lost may have applied (ErrAmbiguous if the retries do not
// settle it). An idle connection the node closed (it restarted) is
// noticed before the request is written, and replaced. A failed dial
// fails the node's calls at once for a backoff (50ms doubling to 2s),
// and the node counts as failing when choosing a replica, as a gRPC
// connection in TRANSIENT_FAILURE does.
//
// Framed calls pass through none of DialOptions' interceptors and stats
// handlers. A call carrying a sampled trace, and every other method
// (Scan, Txn, Watch, leases, ...), uses gRPC; so does every call to a
// node that refuses framed connections (an older build, or other
// security than FramedTLS: Stats.FramedFallbacks), tried again a minute
// later. Config.Dialer opens both kinds of connection.
//
// # Inside a node
//
// A Client that runs inside a shardnode (the node's own router, which its
// etcd API and lessor use) names the node in Config.Local: its ID and a
// KV client that calls the node's KV service in-process
// (rpc.KVServer.LocalClient). Every attempt the Client would send to that
// node ID goes to the local client instead: no gRPC connection, no
// serialisation, no loopback round trip. The local client is counted in
// Stats and coalesced like a connection, and a local call is always taken
// to have reached the node, so a write whose local call fails may have
// applied (ErrAmbiguous) as one whose gRPC call was sent. The node's
// address must still be known (routes carry it): the Client chooses only
// nodes with one, and a Watch stream to the node uses gRPC at it. Stale
// reads go to the local replica first when the route has one (then, if it
// failed this call, to the others from a random one), so a node serves
// its serializable reads from its own data. Writes and other reads still
// go to the leader, locally only when this node leads. Without
// Config.Local nothing changes.
//
// # Route cache
//
// One route per shard, ordered by start key (a sorted slice, binary
// searched; routes change rarely, lookups are constant), bounded by
// Config.RouteCacheSize with least-recently-used eviction
// (github.com/hashicorp/golang-lru/v2). Cached ranges never overlap.
// Inserting a route removes every cached route it overlaps, unless one of
// those is newer, in which case the insert is refused: epoch versions grow
// along a shard's lineage (a split gives both halves the parent's version
// plus one), so between overlapping descriptors the higher version wins,
// and a lagging placement or replica cannot undo what a newer
// EpochNotMatch taught. The leader is part of a route; learning a new one
// replaces the route with a copy, so routes are immutable once built.
// Node addresses (from routes and NotLeader hints) live in an address book
// by node ID, which is how a split's new shard is reached without asking
// placement.
//
// # Exactly-once writes and lanes
//
// The shards apply a write with ClientID != 0 at most once per (ClientID,
// Seq), provided a client's Seq grows strictly and it never has two writes
// in flight to one shard (package shard). The Client keeps
// Config.WriteLanes lanes; each has a random 64-bit ClientID drawn from
// crypto/rand and its own Seq counter. A write takes a free lane for its
// whole duration (waiting if none is free), takes the next Seq, and every
// attempt of it, through retries, leader changes and splits (a split copies
// the client table to the new shard), carries that same ClientID and Seq;
// the lane then returns to the pool. So a write is never retried blindly:
// an attempt whose outcome was lost (Ambiguous, a broken connection, a
// deadline) is re-sent as the same request, which the shard recognises
// and answers with the recorded result, and a retried CompareAndSwap
// reports its own one outcome. If the outcome is still unknown when the
// retries or the context run out, or the shard becomes unavailable, the
// error wraps ErrAmbiguous: the write applied once or not at all. Reads
// carry no ClientID.
//
// Which attempts may have applied: one the node answered Ambiguous (it
// lost leadership with the write in its log) or ShardNotFound (its replica
// was removed with the write pending), or any answer the protocol does not
// define; and one whose answer was lost after the request may have reached
// the node (the connection broke under the call, or a deadline or
// cancellation cut it). Which surely did not: one refused before it
// entered a log (NotLeader, EpochNotMatch, KeyNotInShard, Busy), and one
// that never left the Client. gRPC answers Unavailable, DeadlineExceeded
// or Canceled both for calls that never got a connection (refused, not
// set up in time) and for calls cut off on one, so the code does not tell
// them apart; the Client does (sent.go): a stats handler on its
// connections marks each attempt once gRPC puts the attempt's stream on a
// connection, which comes before any byte of the request is written; an
// attempt that failed unmarked was never sent. A request that gives up
// while waiting in a coalescer's queue is taken out of the queue, so it is
// never sent later; one that gives up while the call carrying it is in
// flight counts as sent.
//
// The shard's client table is bounded (shard.Config.MaxClients records and
// a log-length TTL); a retry arriving after its record was evicted applies
// again. Keep lanes × routers writing to a shard well below MaxClients.
//
// # Errors
//
// Calls return errors that wrap the sentinels below together with the last
// cause; a gRPC status stays reachable through status.FromError and
// status.Code. ErrAmbiguous (a write may or may not have applied),
// ErrRetriesExhausted, ErrUnavailable (a *ShardUnavailableError),
// ErrNoRoute, ErrEmptyBatch, ErrClosed and ErrInvalidConfig are
// documented in errors.go; ErrConflict (a transaction that must start
// again) in percolator.go. A write that ends with
// ErrRetriesExhausted, ErrUnavailable or the context's error without
// ErrAmbiguous surely did not apply. Scan refuses an end that sorts before
// its start with InvalidArgument. Messages show at most the first 64
// bytes of a key, and its length (internal/keyfmt).
//
// # When placement is down
//
// The default RouteSource asks placement first, each address in turn.
// When none answers, it asks the shardnodes instead, all at once (each
// bounded by 2s): those of Config.NodeAddresses and every node whose
// address the Client learned from routes and NotLeader hints. Each node
// answers KV.LocalRoutes with the routes of the shards it holds a replica
// of, with the addresses it knows and no leader; the Client merges them,
// the newest descriptor winning where they disagree (a lagging node, a
// replica removed and not yet collected), and finds leaders through
// NotLeader as usual. A stale route from a node heals like any stale
// route. So a running Client keeps routing through a placement outage,
// and one started during it needs one reachable node in NodeAddresses.
// When nothing at all can be connected to (every placement address and
// every node refused, or there was no node to ask), the call fails at
// once with ErrNoRoute naming every address tried, instead of retrying
// until its Timeout. Placement that answers but has no route (it is
// bootstrapping) is retried as before.
//
// # Revisions
//
// Every write is stamped by the fleet's timestamp oracle with a revision
// (uint64, strictly increasing across the fleet in real-time order), and
// storage keeps versions. PutRev, DeleteRev, BatchRev and CASResult give
// a write's revision; KeyValue carries CreateRevision, ModRevision and
// Version; GetAt and ScanAt read at a revision (0: latest) and say which
// revision they saw. ScanAt with revision 0 reads a range within one
// shard at that shard's latest state and every later page at the revision
// the first saw; a range across shards at a fresh revision from the oracle
// (Now), which every shard resolves before it is read: either way the
// whole scan is one snapshot that sees every write acknowledged before
// it. Scan keeps reading each page at its own latest state. ScanKeysAt
// is ScanAt without values; CountAt counts the keys of a range at one
// revision, the nodes counting without sending them. Now returns a fresh
// revision (above every acknowledged write). A read at a revision the shard has not resolved
// yet is served by its leader (a follower redirects with NotLeader, as
// usual). Two answers are final for the caller and become typed errors
// (errors.As): OUT_OF_RANGE with Compacted (*CompactedError: below the
// shard's compaction point) and with FutureRevision
// (*FutureRevisionError: above every revision handed out). OUT_OF_RANGE
// with KeyNotInShard is still a stale route: reload, retry. GetMany reads
// many keys concurrently, sharing Multi calls through the coalescers, but
// each key at its own shard's revision (not a snapshot). Compact(ctx,
// start, end, rev) sets the compaction revision of every shard of a range
// (each whole shard: compaction is per shard).
//
// # Watch
//
// Watch(ctx, start, end, opts...) returns a channel of WatchResponses
// carrying the writes to [start, end) across every shard of the range.
// The Client opens one stream (KV.Watch) per piece of the range, a piece
// being the part one shard owns, at the shard's leader, and merges them:
//
//  1. Start: with a start revision S (WithStartRevision), every piece's
//     stream starts at S. With 0 (now), every piece's stream opens from
//     now, each created response names that shard's start (progress +
//     1), and the watch starts at the latest of them, S: every stream
//     covers every write from S on, and the events below S that some saw
//     are dropped. So the whole watch starts at one revision, and no
//     shard is asked for one below its compaction point (an idle shard's
//     "now" can be far behind a busy one's retention). Every write
//     acknowledged before Watch was called is below S.
//  2. Progress: each piece has a frontier, the highest revision at or
//     below which it has received every event (its stream's
//     progress_revision, and its last event's revision). The watch's
//     progress is the least frontier of its pieces.
//  3. Merge: an event of revision r is delivered once the watch's
//     progress reaches r, that is once every other piece has passed r,
//     so events go out in revision order, each once, and every event of
//     one write (one revision: a write is on one shard) in one response;
//     events of one revision go in key order. Every response's
//     ProgressRevision is the watch's progress after it; with
//     WithProgressNotify, progress-only responses also go out as it
//     advances (at most once per interval), the first as soon as every
//     stream is open. The Client asks each stream for progress every
//     100ms (WithMergeInterval; the caller's progress interval, if
//     shorter), so an idle shard holds the events of the others back by
//     about that much; each idle interval costs the shard's leader a
//     resolve (an oracle call and a log entry) per stream.
//  4. Resubscribe: a stream that ends (EpochNotMatch after a split or a
//     merge, NotLeader, Unavailable, a broken connection), or that sends
//     nothing for 20 merge intervals and at least 3s (a paused node, or
//     one cut off without the connection breaking), is opened again
//     from its piece's frontier + 1, routed afresh like any request (the
//     error is classified as above; the backoff is the usual one, with no
//     retry limit: a watch retries as long as its context lives). When
//     the piece's shard now ends before the piece does (it split), the
//     piece is cut there and the rest becomes new pieces at the same
//     frontier. Events at or below a piece's frontier are dropped, so a
//     stream that replays is harmless.
//  5. End: a Compacted answer ends the watch with a *CompactedError in
//     the last response's Err, as does any error no retry can help
//     (Unimplemented, InvalidArgument, ...). Cancelling ctx or closing
//     the Client ends it (a last response with the context's error or
//     ErrClosed if the channel has room); then the channel is closed and
//     every goroutine of the watch has ended.
//
// Memory is bounded: the channel holds WithWatchBuffer responses
// (default 16); a piece's goroutine hands the merger one message at a
// time and reads its stream again only once the merger took it, and the
// merger hands out what it can deliver before it takes more, so a slow
// consumer stops the streams, whose events wait on the nodes under gRPC
// flow control. Events held for a lagging piece are bounded by
// WithWatchMaxPending (default 4096): past it only the lagging pieces are
// read.
//
// A process that restarts resumes a watch without a gap or a duplicate
// by watching again with WithStartRevision(r + 1), r being the last
// ProgressRevision it received, or the revision of the last event it
// processed (a write's events all come in one response). A start below a
// shard's compaction point fails with *CompactedError: read a snapshot
// with ScanAt and watch from its Revision + 1.
//
// # Statistics
//
// Stats returns counters (retries by reason, cache hits and misses, route
// loads, evictions, ambiguous writes, requests and the RPCs that carried
// them) as plain atomics. Config.MeterProvider exports them as
// OpenTelemetry instruments, read at each collection (RegisterMetrics
// names them), so the program that embeds the Client chooses the
// exporter.
//
// # Dependencies
//
// google.golang.org/grpc (and its stats.Handler, which tells sent calls
// from unsent ones), github.com/hashicorp/golang-lru/v2 (the LRU order of
// the route cache), golang.org/x/sync/singleflight (deduplicated route
// loads).
package router
