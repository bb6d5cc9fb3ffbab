package shard

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Test for them with errors.Is; an
// *EpochNotMatchError also matches ErrEpochNotMatch. Every error result of
// Apply is a refusal: the command wrote nothing, so a refused command may be
// retried (after fixing its cause) with the same sequence number.
var (
	// ErrKeyNotInShard: a key or range of the request lies outside the
	// shard's [Start, End). Returned by Apply, by the Store's fast-path
	// checks and by Store reads. The router should reload the route.
	ErrKeyNotInShard = errors.New("shard: key not in shard")

	// ErrEpochNotMatch: the request was routed with an epoch that is not the
	// shard's current one. Always returned as an *EpochNotMatchError, which
	// carries the current descriptor.
	ErrEpochNotMatch = errors.New("shard: epoch not match")

	// ErrEmptyKey: a write or read named the empty key, which is reserved.
	ErrEmptyKey = errors.New("shard: empty key")

	// ErrKeyTooLarge: a key exceeds Config.MaxKeyBytes.
	ErrKeyTooLarge = errors.New("shard: key too large")

	// ErrValueTooLarge: a value exceeds Config.MaxValueBytes.
	ErrValueTooLarge = errors.New("shard: value too large")

	// ErrBatchTooLarge: a batch holds no operation or more than
	// Config.MaxBatchOps operations.
	ErrBatchTooLarge = errors.New("shard: batch too large")

	// ErrStaleSequence: the request's (ClientID, Seq) is older than the last
	// one the shard applied for that client. The request was not applied and
	// never will be; its client has moved on.
	ErrStaleSequence = errors.New("shard: stale sequence number")

	// ErrStaleRevision: a write's revision is not above the revision of
	// the shard's last write (a leader stamped it before another leader's
	// write with a higher revision committed). It was not applied; a retry
	// is stamped anew.
	ErrStaleRevision = errors.New("shard: stale revision")

	// ErrLeasePromise: a Put attaching its key to a lease was stamped
	// with a revision above the one through which the lease's home
	// promised the lease alive (Command.LeaseUntil). It was not applied;
	// the caller asks the home for a new promise (the lease may have
	// expired meanwhile) and retries.
	ErrLeasePromise = errors.New("shard: put past its lease's promise")

	// Lease errors, returned by package lease's Lessor and mapped by the
	// rpc layer. ErrLeaseNotFound: no such lease (never granted, revoked
	// or expired). ErrLeaseExists: a grant named an ID that exists.
	// ErrBadTTL: a TTL not above zero or above the maximum.
	// ErrLeaseNotReady: this node leads the lease's home shard but has not
	// loaded its leases in the term it leads in yet; retry shortly.
	ErrLeaseNotFound = errors.New("lease not found")
	ErrLeaseExists   = errors.New("lease already exists")
	ErrBadTTL        = errors.New("invalid lease TTL")
	ErrLeaseNotReady = errors.New("lease home leader not ready")

	// ErrNoRevision: the Store could not get a revision for a write from
	// its Oracle (see Oracle). The write did not enter the log.
	ErrNoRevision = errors.New("shard: no revision for the write")

	// ErrInvalidSplit: a split whose key is not strictly inside the shard,
	// whose new shard ID is zero or the shard's own, or whose replica
	// mapping does not map every current replica to a fresh, distinct ID.
	ErrInvalidSplit = errors.New("shard: invalid split")

	// ErrBadCommand: a command could not be decoded (garbage, unknown
	// format version or kind, trailing bytes).
	ErrBadCommand = errors.New("shard: malformed command")

	// ErrBadDescriptor: a descriptor could not be decoded or is invalid
	// (zero shard ID, Start >= End, unsorted or duplicate replicas).
	ErrBadDescriptor = errors.New("shard: malformed descriptor")

	// ErrCorruptSnapshot: a snapshot image failed verification (checksum,
	// framing, ordering, truncation, or it belongs to another shard).
	// Restore wrote nothing.
	ErrCorruptSnapshot = errors.New("shard: corrupt snapshot")

	// ErrShardNotFound: this node hosts no initialised replica of the shard
	// (it never did, it was removed, or it is an empty replica still waiting
	// for its first snapshot). The router should reload the route.
	ErrShardNotFound = errors.New("shard: shard not found")

	// ErrRangeOverlap: CreateShard of a shard whose range overlaps the
	// range of another replica on this node. A node never holds two
	// replicas whose ranges overlap (see the package doc).
	ErrRangeOverlap = errors.New("shard: key range overlaps another replica on this node")

	// ErrNotReady: a Store method was called before SetEngine.
	ErrNotReady = errors.New("shard: store not ready")
)

// EpochNotMatchError refuses a request routed with an outdated epoch. Current
// is the shard's descriptor when the request was refused; the caller owns it.
type EpochNotMatchError struct {
	// Requested is the epoch the request carried.
	Requested Epoch
	// Current is the shard's descriptor at the time of the refusal.
	Current Descriptor
}

func (e *EpochNotMatchError) Error() string {
	return fmt.Sprintf("shard: epoch not match: request has %s, shard %d is at %s",
		e.Requested, e.Current.ShardID, e.Current.Epoch)
}

// Is makes errors.Is(err, ErrEpochNotMatch) true for an *EpochNotMatchError.
func (e *EpochNotMatchError) Is(target error) bool { return target == ErrEpochNotMatch }

// CompactedError refuses a read or watch at a revision below the shard's
// compaction point: versions below it may have been deleted, so the
// answer could be wrong. Reads and watches at CompactRevision or later are
// served.
type CompactedError struct {
	Shard           ShardID
	Revision        uint64
	CompactRevision uint64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("shard: revision %d of shard %d is compacted: the oldest readable is %d",
		e.Revision, e.Shard, e.CompactRevision)
}

// FutureRevisionError refuses a read at a revision the fleet's oracle had
// not handed out when the shard was resolved: its state is not decided.
type FutureRevisionError struct {
	Shard    ShardID
	Revision uint64
	// Current is the shard's resolved revision, a fresh timestamp.
	Current uint64
}

func (e *FutureRevisionError) Error() string {
	return fmt.Sprintf("shard: revision %d is in the future: shard %d resolved to %d", e.Revision, e.Shard, e.Current)
}
