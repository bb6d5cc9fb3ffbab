// Package rpc holds Flotilla's wire protocol and its gRPC servers and
// clients: the .proto files in rpc/proto (generated code in rpc/flotillapb,
// committed; `make proto` regenerates it), the node-to-node Raft transport,
// and the KV and Admin services of a shardnode.
//
// # Transport
//
// Transport implements multiraft.Transport. Towards each peer node there is
// one sender goroutine and one long-lived Raft.Stream; a worker's Send only
// appends to the peer's bounded queue and signals it, so a worker never
// waits on the network. The sender drains the queue into RaftBatch messages
// capped at MaxBatchBytes, so the heartbeats of every group bound for one
// node travel together. When a message does not fit in the queue it is
// dropped and reported unreachable; when a stream fails, the queue is
// dropped, the engine is told the node is down (NodeDown: quiesced groups
// led there wake up) and the sender redials with exponential backoff. The
// stream's receive side is idle; its end is how the sender learns at once
// that a peer process died.
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
// requests to a node into it). The server runs each op through the unary
// handler on its own goroutine (the last on the caller's), so validation,
// forwarding, exactly-once and error mapping are exactly those of the
// unary call, and answers one OpStatus per op. What it saves is gRPC's
// per-call work (a stream, its frames, a handler goroutine, a syscall
// each way), which under load was the largest single cost of a small
// request after the engine itself.
package rpc
