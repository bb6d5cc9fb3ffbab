package router

import (
	"fmt"
	"sync/atomic"
)

// RetryReason says why the Client retried a request.
type RetryReason int

const (
	// RetryNotLeader: the node was not the leader (NotLeader); the hint, if
	// any, was followed at once.
	RetryNotLeader RetryReason = iota
	// RetryEpochNotMatch: the route was stale (EpochNotMatch); the cache
	// took the node's descriptors.
	RetryEpochNotMatch
	// RetryShardNotFound: the node does not host the shard; the route was
	// reloaded.
	RetryShardNotFound
	// RetryKeyNotInShard: the key is outside the shard's range; the route
	// was reloaded.
	RetryKeyNotInShard
	// RetryBusy: the node asked to back off (Busy).
	RetryBusy
	// RetryUnavailable: the node could not be reached, or the connection
	// broke; the next replica was tried.
	RetryUnavailable
	// RetryAmbiguous: the node could not tell whether a write applied
	// (Ambiguous, or a deadline inside the node); the write was re-sent with
	// the same ClientID and Seq.
	RetryAmbiguous
	// RetryNoRoute: the RouteSource failed or gave an unusable route.
	RetryNoRoute
	// RetryLocked: a key was locked by a transaction across shards; the
	// lock was resolved through its primary, or its transaction is still
	// running and the call waited.
	RetryLocked
	// NumRetryReasons is the number of RetryReason values.
	NumRetryReasons
)

var retryReasonNames = [NumRetryReasons]string{
	"not-leader", "epoch-not-match", "shard-not-found", "key-not-in-shard",
	"busy", "unavailable", "ambiguous", "no-route", "locked",
}

func (r RetryReason) String() string {
	if r >= 0 && r < NumRetryReasons {
		return retryReasonNames[r]
	}
	return fmt.Sprintf("RetryReason(%d)", int(r))
}

// Stats is a snapshot of a Client's counters, all counted since New. The
// caller owns it.
type Stats struct {
	// Retries counts retried attempts by reason, and the resubscriptions
	// of Watch streams by the reason their stream ended (a silent stream
	// counts as RetryUnavailable).
	Retries [NumRetryReasons]uint64
	// CacheHits and CacheMisses count route lookups answered by the cache,
	// or not.
	CacheHits, CacheMisses uint64
	// RouteLoads counts calls to the RouteSource (GetRoute and ScanRoutes),
	// RouteLoadErrors those that failed.
	RouteLoads, RouteLoadErrors uint64
	// CacheEvictions counts routes evicted from the full cache.
	CacheEvictions uint64
	// CachedRoutes is the number of routes in the cache now.
	CachedRoutes int
	// Ambiguous counts writes that returned ErrAmbiguous.
	Ambiguous uint64
	// Requests counts the Get, Put, Delete and CompareAndSwap attempts
	// sent to nodes, and RPCs the calls that carried them: with
	// coalescing (Config.BatchesPerNode), Requests/RPCs is the mean batch
	// size.
	Requests, RPCs uint64
	// FramedRPCs counts the RPCs sent over framed KV connections
	// (Config.DisableFramedKV), the rest of RPCs going over gRPC.
	// FramedFallbacks counts the times a node refused framed connections
	// (an older build, or other security than Config.FramedTLS), after
	// which it was called over gRPC for a minute.
	FramedRPCs, FramedFallbacks uint64
}

// TotalRetries returns the sum of Retries.
func (s Stats) TotalRetries() uint64 {
	var n uint64
	for _, v := range s.Retries {
		n += v
	}
	return n
}

// counters are the Client's live statistics.
type counters struct {
	retries                     [NumRetryReasons]atomic.Uint64
	cacheHits, cacheMisses      atomic.Uint64
	routeLoads, routeLoadErrors atomic.Uint64
	ambiguous                   atomic.Uint64
	requests, rpcs              atomic.Uint64
	framedRPCs, framedFallbacks atomic.Uint64
}
