package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Defaults of Config; a zero field takes the value below.
const (
	DefaultTimeout            = 10 * time.Second
	DefaultMaxRetries         = 100
	DefaultBackoffBase        = 10 * time.Millisecond
	DefaultBackoffMax         = time.Second
	DefaultElectionBackoffMax = 100 * time.Millisecond
	DefaultElectionWait       = 4 * time.Second
	DefaultRouteCacheSize     = 10_000
	DefaultWriteLanes         = 64
	DefaultPrefetchNeighbours = 2
	DefaultBatchesPerNode     = 1
	DefaultMaxBatchOps        = 256
)

// Config configures a Client. Its zero value, plus PlacementAddresses or
// RouteSource, is a working configuration: every zero field means its
// default. New does not modify the caller's Config; it works on a copy.
type Config struct {
	// PlacementAddresses are the gRPC addresses of the placementd replicas
	// the default RouteSource asks for routes, trying each in turn and moving
	// on when one fails. Required unless RouteSource or NodeAddresses is
	// set.
	PlacementAddresses []string
	// RouteSource, when set, replaces the default placement client: the
	// Client asks it, and only it, for routes. The Client does not close it.
	RouteSource RouteSource
	// NodeAddresses are gRPC addresses of shardnodes the default
	// RouteSource asks for routes (KV.LocalRoutes) when no placement
	// address answers, together with every node address the Client has
	// learned from earlier routes. Optional: a Client that has loaded
	// routes before knows nodes already; one that starts while placement
	// is down knows only these. Without PlacementAddresses, the Client
	// asks only the nodes. Unused with RouteSource.
	NodeAddresses []string

	// DialOptions are appended to the Client's own options (insecure
	// transport credentials, a reconnect backoff suited to failover, a
	// 64 MiB receive limit) for every connection, to shardnodes and to
	// placement alike; later options win, so
	// grpc.WithTransportCredentials(credentials.NewTLS(cfg)) here turns TLS
	// on, and grpc.WithChainUnaryInterceptor adds interceptors. An
	// interceptor must hand the invoker the call's context or one derived
	// from it: the Client learns from values in it whether a failed write
	// may have reached the node (sent.go). Calls over framed KV
	// connections (DisableFramedKV) pass through none of these options.
	DialOptions []grpc.DialOption

	// DisableFramedKV sends every call to the nodes over gRPC. By default
	// the Client sends Get, Put, Delete, CompareAndSwap and coalesced
	// Multi calls over framed KV connections (rpc.DialKV): one request
	// frame and one answer frame on a TCP connection opened on the node's
	// gRPC port, with the call's deadline and the full status, at about
	// half the CPU of a gRPC call on both sides (bench/README.md). They
	// pass through none of DialOptions' interceptors and stats handlers;
	// calls whose context carries a sampled trace, and every other
	// method, go over gRPC. A node that does not serve them, or serves
	// them with other security than FramedTLS, is called over gRPC
	// (Stats.FramedFallbacks).
	DisableFramedKV bool
	// FramedTLS secures the framed KV connections: the client side of the
	// fleet's mutual TLS, as the transport credentials in DialOptions use
	// it (tlsconfig's ClientTLS). Nil: plaintext. A Client that sets TLS
	// credentials in DialOptions but not FramedTLS calls the nodes over
	// gRPC only, since they refuse its plaintext framed connections.
	FramedTLS *tls.Config
	// Dialer, when set, opens every connection of the Client: gRPC's (as
	// grpc.WithContextDialer, before DialOptions, so a dialer there wins
	// for gRPC) and the framed KV connections'. Nil: the system's dialer.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)

	// MeterProvider, when set, receives the Client's counters (Stats) as
	// OpenTelemetry instruments of the meter MeterName, read at each
	// collection, until Close (RegisterMetrics lists them). Nil: the
	// counters are only in Stats.
	MeterProvider metric.MeterProvider

	// ReadConsistency is the consistency of reads that pass no
	// WithConsistency option. Default Linearizable.
	ReadConsistency Consistency
	// Timeout bounds a call whose context has no deadline, retries
	// included, and every route load. Default 10s; negative: no bound
	// (calls then end only with their context or MaxRetries).
	Timeout time.Duration
	// AttemptTimeout bounds each single RPC attempt, so a node that hangs
	// (paused, partitioned without a reset) is given up for the next
	// replica before the call's deadline. Default 0: no per-attempt bound,
	// an attempt may use the call's whole remaining time. A write whose
	// attempt times out is retried with the same ClientID and Seq, so the
	// bound never duplicates a write; too short a bound turns slow writes
	// into retries.
	AttemptTimeout time.Duration
	// MaxRetries bounds the attempts of a call after its first one; every
	// retry counts, including the immediate ones after a NotLeader hint or
	// an EpochNotMatch. Default 100, enough for an election polled every
	// ElectionBackoffMax at the shardnode's default timing, so Timeout
	// usually ends a call that cannot succeed first; negative: no retries
	// at all.
	MaxRetries int
	// BackoffBase and BackoffMax shape the exponential backoff between
	// retries that wait: the n-th waiting retry waits a random duration in
	// [d/2, d] with d = min(BackoffMax, BackoffBase * 2^n). Busy answers
	// wait at least the retry_after the node asked for. Defaults 10ms and
	// 1s.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// ElectionBackoffMax caps the backoff while a shard is electing a
	// leader: a replica answered NotLeader naming no leader, or naming
	// one this call could not reach. Elections end within an election
	// timeout or two, and a replica that answers is cheap to ask again, so
	// polling often finds the new leader within this much of its election
	// instead of up to BackoffMax later. Default 100ms (at most BackoffMax).
	ElectionBackoffMax time.Duration
	// ElectionWait bounds how long a call waits for a shard that has no
	// leader it can reach (for a stale read, no replica): its replicas
	// answer NotLeader naming no leader, or naming one that cannot be
	// reached, or cannot be reached themselves. Past it the call fails
	// with ErrUnavailable naming the shard (gRPC code Unavailable) instead
	// of spending its retries and its Timeout, so a shard that lost its
	// majority answers within this much. A write that fails so surely did
	// not apply, unless the error also wraps ErrAmbiguous. It must exceed
	// a failover (the shardnode's default election timeout is 1-2s; a
	// leader's death is seen within about 2s), or writes fail during one.
	// Default 4s; negative: no bound.
	ElectionWait time.Duration

	// RouteCacheSize bounds the route cache, in shards; the least recently
	// used route is evicted beyond it. A route costs a few hundred bytes.
	// Default 10,000.
	RouteCacheSize int
	// PrefetchNeighbours is how many routes on each side of a looked-up key
	// a cache miss asks placement for as well (GetRouteRequest.neighbours),
	// so a scan or a sequential workload misses once instead of once per
	// shard. Default 2; negative: none.
	PrefetchNeighbours int
	// WriteLanes is the number of write lanes: each lane is one exactly-once
	// client (a random 64-bit ClientID and its Seq counter) and carries one
	// write at a time, so it is also the bound on the Client's concurrent
	// writes; more writers queue for a lane. Every lane that writes to a
	// shard takes a record in that shard's client table (shard.Config
	// MaxClients, 4096 by default, evicting the oldest beyond it, after which
	// a retry of that client is no longer recognised), so lanes times
	// routers writing to one shard should stay well below that. Default 64.
	WriteLanes int

	// BatchesPerNode is how many Multi calls the Client keeps in flight to
	// one node while it coalesces requests: Get, Put, Delete and
	// CompareAndSwap requests that find that many in flight queue, and go
	// together in the next call (see the KV service's Multi). A request
	// that finds room goes at once, so coalescing adds no latency at low
	// load; under load it divides gRPC's per-request CPU by the batch size.
	// Outcomes, retries and exactly-once are per request, as without it.
	// More batches in flight means smaller batches and lower queueing
	// delay, fewer means more requests per RPC. Default 1: on a saturated
	// 2-core fleet with 100 writers it gave 16% more throughput than 2,
	// with lower latency at every percentile, and the same latency at 10
	// writers (bench/README.md). Negative: no coalescing, every request
	// is its own RPC.
	BatchesPerNode int
	// MaxBatchOps bounds the requests of one coalesced call. Default 256.
	MaxBatchOps int

	// Local, when set, names the node this Client runs inside and a KV
	// client that reaches it without the network (rpc.KVServer's
	// LocalClient): requests the Client sends to that node go to Local.KV
	// instead of a gRPC connection, and stale reads go to the node's own
	// replica first when it holds one. The Client still learns the node's
	// address from routes (it chooses only nodes with a known address),
	// and Watch streams still reach it over gRPC at that address. Default
	// nil: every node over gRPC.
	Local *LocalNode
}

// LocalNode is the node a Client runs inside (Config.Local).
type LocalNode struct {
	// ID is the node's ID, as routes name it. Required.
	ID uint64
	// KV serves the node's KV requests in-process; it must behave as the
	// node's KV service over gRPC would (status errors, responses the
	// caller owns). The Client counts its calls in Stats as RPCs. Required.
	KV pb.KVClient
}

// withDefaults returns a copy of c with every zero field set to its
// default. Slices are copied, so the Client never shares them with the
// caller.
func (c Config) withDefaults() Config {
	c.PlacementAddresses = append([]string(nil), c.PlacementAddresses...)
	c.NodeAddresses = append([]string(nil), c.NodeAddresses...)
	c.DialOptions = append([]grpc.DialOption(nil), c.DialOptions...)
	c.FramedTLS = c.FramedTLS.Clone()
	if c.Local != nil {
		l := *c.Local
		c.Local = &l
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.ElectionBackoffMax == 0 {
		c.ElectionBackoffMax = DefaultElectionBackoffMax
	}
	if c.ElectionWait == 0 {
		c.ElectionWait = DefaultElectionWait
	}
	if c.RouteCacheSize == 0 {
		c.RouteCacheSize = DefaultRouteCacheSize
	}
	if c.PrefetchNeighbours == 0 {
		c.PrefetchNeighbours = DefaultPrefetchNeighbours
	}
	if c.WriteLanes == 0 {
		c.WriteLanes = DefaultWriteLanes
	}
	if c.BatchesPerNode == 0 {
		c.BatchesPerNode = DefaultBatchesPerNode
	}
	if c.MaxBatchOps == 0 {
		c.MaxBatchOps = DefaultMaxBatchOps
	}
	return c
}

// Validate reports every problem of c at once, as one error wrapping
// ErrInvalidConfig. It applies the defaults first, so a zero field is never
// a problem. Safe to call concurrently; it does not modify c.
func (c Config) Validate() error {
	c = c.withDefaults()
	var problems []error
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf(format, args...))
	}
	if len(c.PlacementAddresses) == 0 && len(c.NodeAddresses) == 0 && c.RouteSource == nil {
		add("either PlacementAddresses (or NodeAddresses) or RouteSource is required")
	}
	for i, a := range c.PlacementAddresses {
		if a == "" {
			add("PlacementAddresses[%d] is empty", i)
		}
	}
	for i, a := range c.NodeAddresses {
		if a == "" {
			add("NodeAddresses[%d] is empty", i)
		}
	}
	if !c.ReadConsistency.valid() {
		add("ReadConsistency %d is not Linearizable, Lease or Stale", int(c.ReadConsistency))
	}
	if c.AttemptTimeout < 0 {
		add("AttemptTimeout must not be negative, got %s", c.AttemptTimeout)
	}
	if c.BackoffBase < 0 {
		add("BackoffBase must be positive, got %s", c.BackoffBase)
	}
	if c.BackoffMax < 0 {
		add("BackoffMax must be positive, got %s", c.BackoffMax)
	}
	if c.ElectionBackoffMax < 0 {
		add("ElectionBackoffMax must be positive, got %s", c.ElectionBackoffMax)
	}
	if c.BackoffBase > 0 && c.BackoffMax > 0 && c.BackoffMax < c.BackoffBase {
		add("BackoffMax (%s) must not be below BackoffBase (%s)", c.BackoffMax, c.BackoffBase)
	}
	if c.RouteCacheSize < 0 {
		add("RouteCacheSize must be positive, got %d", c.RouteCacheSize)
	}
	if c.WriteLanes < 0 {
		add("WriteLanes must be positive, got %d", c.WriteLanes)
	}
	if c.MaxBatchOps < 0 || c.MaxBatchOps > 4096 {
		add("MaxBatchOps must be in [1, 4096] (the node's limit per Multi call), got %d", c.MaxBatchOps)
	}
	if c.Local != nil {
		if c.Local.ID == 0 {
			add("Local.ID is required")
		}
		if c.Local.KV == nil {
			add("Local.KV is required")
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(problems...))
}
