package router

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

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
	// or the context ran out, or the shard became unavailable. The write
	// applies at most once; reading the key tells whether it did. Returned
	// by Put, Delete, CompareAndSwap and Batch, together with
	// ErrRetriesExhausted, ErrUnavailable or the context's error.
	ErrAmbiguous = errors.New("router: write outcome unknown")
	// ErrRetriesExhausted: the call failed Config.MaxRetries+1 times with
	// errors worth retrying; the last one is wrapped.
	ErrRetriesExhausted = errors.New("router: retries exhausted")
	// ErrUnavailable: the shard owning the key had no leader the call could
	// reach (for a stale read, no replica) for Config.ElectionWait: its
	// replicas answered that they know no leader, or could not be reached.
	// The error is a *ShardUnavailableError, naming the shard, and its gRPC
	// code is Unavailable. A write that ends with it and without
	// ErrAmbiguous surely did not apply: no attempt of it reached a leader
	// that could have accepted it.
	ErrUnavailable = errors.New("router: shard unavailable")
	// ErrNoRoute: the RouteSource gave no usable route for a key (every
	// placement address failed, and no shardnode could tell either, or the
	// route it returned was malformed). Retried like any transient
	// failure; returned wrapped in ErrRetriesExhausted, or alone when the
	// context ends first. When no placement address and no shardnode could
	// even be connected to, the default RouteSource says so, naming every
	// address it tried, and the call fails at once.
	ErrNoRoute = errors.New("router: no route")
	// ErrEmptyBatch: Batch was called without operations.
	ErrEmptyBatch = errors.New("router: empty batch")
)

// ShardUnavailableError is the ErrUnavailable a call ends with when the
// shard owning its key went Config.ElectionWait without a leader it could
// reach (a replica, for a stale read). errors.Is(err, ErrUnavailable)
// finds it, errors.As gets it, and status.Code gives Unavailable.
type ShardUnavailableError struct {
	// ShardID is the shard.
	ShardID uint64
	// For is how long the call found the shard so.
	For time.Duration
	// Stale is set for a stale read, which any replica could have served.
	Stale bool
}

func (e *ShardUnavailableError) Error() string {
	what := "leader"
	if e.Stale {
		what = "replica"
	}
	return fmt.Sprintf("router: shard %d unavailable: no %s reachable for %s", e.ShardID, what, e.For.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *ShardUnavailableError) Is(target error) bool { return target == ErrUnavailable }

// GRPCStatus gives the error the gRPC code Unavailable, for status.Code
// and status.FromError.
func (e *ShardUnavailableError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

// CompactedError: a read or a Watch asked for a revision below the
// compaction point of a shard, whose versions may be gone. It is final:
// retrying cannot help; read at CompactRevision or later. errors.As gets
// it from the error of GetAt, ScanAt, GetMany and the Err of the last
// WatchResponse; status.Code gives OutOfRange.
type CompactedError struct {
	// ShardID is the shard that refused.
	ShardID uint64
	// CompactRevision is the shard's compaction point: reads at it or
	// above are served.
	CompactRevision uint64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("router: revision compacted: shard %d is compacted up to revision %d", e.ShardID, e.CompactRevision)
}

// GRPCStatus gives the error the gRPC code OutOfRange.
func (e *CompactedError) GRPCStatus() *status.Status {
	return status.New(codes.OutOfRange, e.Error())
}

// FutureRevisionError: a read asked for a revision above every timestamp
// the fleet's oracle had handed out. It is final. errors.As gets it from
// the error of GetAt, ScanAt and GetMany; status.Code gives OutOfRange.
type FutureRevisionError struct {
	// ShardID is the shard that refused.
	ShardID uint64
	// Revision is the revision asked for.
	Revision uint64
	// CurrentRevision is the shard's resolved revision when it refused.
	CurrentRevision uint64
}

func (e *FutureRevisionError) Error() string {
	return fmt.Sprintf("router: future revision: revision %d is above every revision handed out (shard %d is at %d)", e.Revision, e.ShardID, e.CurrentRevision)
}

// GRPCStatus gives the error the gRPC code OutOfRange.
func (e *FutureRevisionError) GRPCStatus() *status.Status {
	return status.New(codes.OutOfRange, e.Error())
}
