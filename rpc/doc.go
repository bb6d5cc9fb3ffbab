// Package rpc holds Flotilla's wire protocol and its gRPC servers and
// clients: the .proto files in rpc/proto (generated code in rpc/flotillapb,
// committed; `make proto` regenerates it), the node-to-node Raft transport,
// and the KV and Admin services of a shardnode.
//
// # Transport
//
// Transport implements multiraft.Transport. Towards each peer node there is
// one sender goroutine and one long-lived connection; a worker's Send only
// appends to the peer's bounded queue and signals it, so a worker never
// waits on the network. The sender drains the queue into batches capped at
// MaxBatchBytes, so the heartbeats of every group bound for one node travel
// together. When a message does not fit in the queue it is dropped and
// reported unreachable; when a connection fails, the queue is dropped, the
// engine is told the node is down (NodeDown: quiesced groups led there
// wake up) and the sender redials with exponential backoff, which starts
// over once a connection is made.
//
// The connection is one of two kinds. With TransportConfig.Framed it is a
// framed connection (raftconn.go): plain TCP, or TLS with the node's
// certificates, opened on the peer's gRPC port and recognised there by its
// first bytes (RaftServer.Demux), carrying length-prefixed, CRC-32C checked
// frames of Raft messages, encoded and decoded by raftcodec.go rather than
// proto's reflection. The sender encodes everything queued into one buffer
// and writes it with one call; the receiver reads a frame into a reused
// buffer, decodes its Raft messages with a reader of their fields that
// allocates per frame rather than per field, and steps them into the engine
// from the connection's goroutine. The receiver pings every second, and a
// sender that hears nothing for three seconds redials: the end of the
// pings, or of the connection, is how it learns that a peer died. Without
// Framed, or towards a peer that answers a framed connection with anything
// but its status (a build before them), the batches are RaftBatch messages
// on a gRPC Raft.Stream, whose receive side is idle and whose end tells the
// same.
//
// Framed connections exist because HTTP/2 cost the nodes more than the
// batches' content (issue 20): gRPC's frame loops, flow control and the
// hand-offs between their goroutines and the stream's. In the nodes' CPU
// profiles at 100 writers (flotilla bench compare --profile), gRPC,
// HTTP/2 and the Raft transport together took 51-56 µs per replicated
// write with the stream and 35-38 µs with framed connections; the server
// CPU per write the bench reports fell from 345 to 262 µs, and writes per
// second rose from 0.70x to 1.03x of etcd's in the same runs (medians of
// six runs of each build, alternated, on the shared 2-core machine; at 10
// writers 1,688 and 1,550 µs per write, 0.56x and 0.58x of etcd).
//
// The shardnodes' timestamp requests to placement's oracle travel the
// same way (tsoconn.go): a framed connection on placementd's gRPC port,
// recognised by its first bytes (TimestampServer.Demux), with one
// goroutine per connection that reads a request, answers it and writes
// the answer, instead of a gRPC stream whose hand-offs between HTTP/2's
// goroutines cost placementd 23-34 µs of CPU per write at 100 writers
// (13-16 µs framed). A shardnode falls back to the stream towards a
// placementd without them. Placement's own catalogue group still runs
// its Raft on gRPC; if it moves to framed connections too, one
// demultiplexer must recognise both kinds.
//
// The routers' KV calls travel the same way (kvconn.go, and
// internal/framed/kv.go for the wire format and the client): Get, Put,
// Delete, CompareAndSwap and coalesced Multi calls, each one request
// frame and one answer frame on a framed KV connection on the node's gRPC
// port (KVFrameServer.Demux, stacked on RaftServer.Demux), read, served
// by KVServer.Multi through the node's telemetry interceptor, and
// answered by the connection's one goroutine. The frames carry what the
// gRPC call would (the call's remaining time; the response, or the full
// status with its details), so the router's retries, exactly-once and
// ambiguity rules hold unchanged. A connection carries one call at a
// time; the router keeps one per call it has in flight to the node. At
// 100 readers gRPC's handling was about half of a read call's server CPU
// (bench/README.md, "The read path at 100 readers"). Calls carrying a
// sampled trace, Watch, the etcd API, forwarding between nodes and every
// other method stay on gRPC.
//
// Snapshots go through Raft.Snapshot, one stream per transfer, in chunks of
// SnapshotChunkBytes with a CRC-32C each and the total size in the last
// one, throttled by a node-wide token bucket (SnapshotRateBytes) and
// bounded by MaxConcurrentSnapshots on both sides (the receiver answers
// RESOURCE_EXHAUSTED beyond it). The receiver verifies every chunk before
// handing the body to the engine, which validates it again by restoring it
// into a staging batch before Raft sees the snapshot.
//
// # Services and errors
//
// KVServer and AdminServer translate requests to shard.Store and
// multiraft.Engine calls. Every error leaves as a gRPC status with the
// codes and typed details documented in common.proto (NotLeader with the
// leader's address, EpochNotMatch with the current descriptors,
// ShardNotFound, KeyNotInShard, Busy, Ambiguous); invalid requests get
// INVALID_ARGUMENT naming the field (a Scan whose end sorts before its
// start, too); messages cut a long key to its first 64 bytes and its
// length. With forwarding on, a KV request that reaches a follower is
// proxied once to the leader.
//
// KV.LocalRoutes answers the routes of the shards the node holds a replica
// of, with the addresses its Resolver knows and no leader: what a router
// asks the nodes when placement does not answer (routes.go).
//
// KV.Multi carries several independent Get, Put, Delete and
// CompareAndSwap requests in one call (the router coalesces concurrent
// requests to a node into it), and answers one OpStatus per op, the
// status the op would have failed with alone (multi.go). The server
// starts every op without waiting (writes proposed, reads' barriers
// begun) and then awaits each in turn, so a batch costs no goroutine per
// op and its proposals share the engine's rounds and syncs; its reads of
// one shard share one barrier (shard.ReadBarriers: every read of the call
// arrived before it started), and its reads of the latest state pass
// their barriers first and then share one Pebble iterator
// (shard.PointReader). An op is
// validated by the same functions as its unary call (readHeader,
// writeHeader and the request-to-command conversions in kv.go) and its
// error is mapped by the same errorMapper; an op refused because this
// node does not lead its shard is forwarded to the leader as its unary
// call, on a goroutine of its own. Only a call carrying a sampled trace
// runs each op through its unary handler, one goroutine per op, so that
// each op gets its own apply span. What Multi saves is gRPC's per-call
// work (a stream, its frames, a handler goroutine, a syscall each way),
// which under load was the largest single cost of a small request after
// the engine itself.
//
// # Replica collection
//
// ReplicaGC (replicagc.go, one goroutine for the whole node) finds the
// replicas this node holds that are no longer members of their shard: one
// removed while its node was away, an empty one whose add never happened.
// It asks the shard's other replicas, the leader first, through their
// Admin service (FindLeader answers with the descriptor that node holds),
// decides by epochs, and destroys a replica only when an answer proves it
// is no member (multiraft.Engine.RemoveReplica, which leaves a
// tombstone). A replica nobody could answer for is asked about again
// later. Placement's stray collection does the same from the other side.
package rpc
