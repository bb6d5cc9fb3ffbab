package router

import "errors"

// Sentinel errors of the router. Test for them with errors.Is; the error a
// call returns wraps them together with the last cause (often a gRPC
// status, which status.Code and status.FromError still find).
var (
	// ErrInvalidConfig: Config.Validate found problems; the error lists all
	// of them. Returned by Validate and New.
	ErrInvalidConfig = errors.New("router: invalid configuration")
	// ErrClosed: the Client was closed before or during the call.
	ErrClosed = errors.New("router: client closed")
	// ErrAmbiguous: a write may or may not have applied. Some attempt of it
	// reached a node and its outcome was never learned (the node lost
	// leadership, the connection broke, or a deadline passed), and no later
	// attempt with the same ClientID and Seq settled it before the retries
	// or the context ran out. The write applies at most once; reading the
	// key tells whether it did. Returned by Put, Delete, CompareAndSwap and
	// Batch, together with ErrRetriesExhausted or the context's error.
	ErrAmbiguous = errors.New("router: write outcome unknown")
	// ErrRetriesExhausted: the call failed Config.MaxRetries+1 times with
	// errors worth retrying; the last one is wrapped.
	ErrRetriesExhausted = errors.New("router: retries exhausted")
	// ErrNoRoute: the RouteSource gave no usable route for a key (every
	// placement address failed, or the route it returned was malformed).
	// Retried like any transient failure; returned wrapped in
	// ErrRetriesExhausted, or alone when the context ends first.
	ErrNoRoute = errors.New("router: no route")
	// ErrCrossShardBatch: the keys of a Batch belong to more than one shard
	// (a batch is atomic only within one shard). Nothing was written.
	ErrCrossShardBatch = errors.New("router: batch spans shards")
	// ErrEmptyBatch: Batch was called without operations.
	ErrEmptyBatch = errors.New("router: empty batch")
)
