package main

import (
	"context"
	"flag"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/internal/telemetry"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// The lock sweeper
//
// A transaction's coordinator that dies leaves its locks behind, and
// readers resolve only the locks they meet: a cold key's lock could stay
// for days, past its transaction's outcome record (shard/gc.go). So the
// node sweeps the locks of the shards it leads, with one goroutine,
// lockSweeper: every interval, for each shard it leads, it lists the
// locks whose TTL ran out at a fresh timestamp (shard.Store.SweepLocks,
// at most budget of them, the oldest transactions first, from the
// replica's in-memory lock table) and resolves them through their
// primaries with the node's router (router.Client.SweepLocks), as a
// reader that met them would: committed forward, rolled back otherwise.
// A shard without locks costs nothing (no timestamp, no command).
//
// With the defaults, a lock outlives its TTL by at most an interval plus
// its resolution, or, when its shard or its primary's has no leader, by
// the time until one is elected: shard.DefaultTxnRecordRetention is far
// above that (shard/gc.go argues the bound).

// lockSweepConfig configures the node's lock sweeper: Interval is the
// time between rounds (0 disables sweeping), Budget how many expired
// locks one round resolves per shard.
type lockSweepConfig passConfig

// Defaults of the lock sweeper: a round every 2 seconds adds at most
// that to a lock's TTL (5 s by default in the router), and resolving up
// to 256 locks per shard per round (two Raft commands each, one after
// the other) keeps a round of a shard within seconds.
const (
	defaultLockSweepInterval = 2 * time.Second
	defaultLockSweepBudget   = 256
	// lockSweepPassTimeout bounds one pass over one shard: its timestamp
	// and its locks' resolution.
	lockSweepPassTimeout = 30 * time.Second
)

// defaultLockSweep is the sweeper's configuration when no flag sets it.
func defaultLockSweep() lockSweepConfig {
	return lockSweepConfig{Interval: defaultLockSweepInterval, Budget: defaultLockSweepBudget}
}

// registerFlags adds --lock-sweep-interval and --lock-sweep-budget to
// fs, with c's values as defaults.
func (c *lockSweepConfig) registerFlags(fs *flag.FlagSet) {
	(*passConfig)(c).registerFlags(fs, "lock-sweep",
		"how often the node resolves, on the shards it leads, the locks of transactions across shards whose TTL ran out (their coordinator went away): each through its transaction's primary, committed forward or rolled back, as a reader meeting it would. It bounds how long a lock outlives its TTL, which --txn-record-retention must exceed by far; 0 disables it (then only readers resolve locks, and a lock on a key nobody reads may outlive its outcome record and stay until an operator decides it)",
		"how many expired locks one sweep resolves per shard (the oldest transactions first; the next sweep goes on)")
}

// validate adds c's problems to p.
func (c lockSweepConfig) validate(p *cli.Problems) { passConfig(c).validate(p, "lock-sweep") }

// lockLister lists a led shard's expired locks: *shard.Store.
type lockLister interface {
	SweepLocks(ctx context.Context, shard shard.ShardID, limit int) (shard.LockSweep, error)
}

// lockResolver resolves locks through their primaries: *router.Client.
type lockResolver interface {
	SweepLocks(ctx context.Context, locks []*pb.Locked) (router.SweepStats, error)
}

// groupLister lists the node's replicas: *multiraft.Engine.
type groupLister interface {
	Summaries() []multiraft.GroupSummary
}

// lockSweeper runs the node's sweeping rounds. Its counters are read by
// /metrics while it runs.
type lockSweeper struct {
	cfg      lockSweepConfig
	groups   groupLister
	store    lockLister
	resolver lockResolver
	logger   *slog.Logger

	// swept counts the locks resolved; oldestAgeMillis is the age of the
	// oldest lock on the shards the last round went over (0: none).
	swept           atomic.Uint64
	oldestAgeMillis atomic.Int64
}

// newLockSweeper returns the node's sweeper, its metrics registered with
// tel (nil: none).
func newLockSweeper(cfg lockSweepConfig, engine *multiraft.Engine, store *shard.Store, rc *router.Client, tel *telemetry.Telemetry, logger *slog.Logger) (*lockSweeper, error) {
	s := &lockSweeper{cfg: cfg, groups: engine, store: store, resolver: rc, logger: logger}
	if tel == nil {
		return s, nil
	}
	return s, tel.Observe([]telemetry.Counter{
		{Name: "flotilla.txn.locks.swept", Description: "locks of transactions across shards this node's sweeper resolved (committed forward or rolled back) after their TTL ran out", Read: s.swept.Load},
	}, []telemetry.Gauge{
		{Name: "flotilla.txn.locks.oldest_age", Description: "age, since its transaction's start, of the oldest lock on the shards this node leads, as of the sweeper's last round", Unit: "ms", Read: s.oldestAgeMillis.Load},
	})
}

// run sweeps every cfg.Interval until ctx ends.
func (s *lockSweeper) run(ctx context.Context) {
	passConfig(s.cfg).runRounds(ctx, func(ctx context.Context) { s.round(ctx) })
}

// round sweeps each shard this node leads, one at a time, and returns
// what the resolutions did.
func (s *lockSweeper) round(ctx context.Context) router.SweepStats {
	var total router.SweepStats
	var oldest int64
	var st router.SweepStats // the last shard's
	eachLedShard(ctx, s.groups.Summaries(), lockSweepPassTimeout, func(ctx context.Context, id shard.ShardID) error {
		var err error
		st, err = s.sweep(ctx, id, &oldest)
		total.Resolved += st.Resolved
		total.Pending += st.Pending
		total.Failed += st.Failed
		return err
	}, func(id shard.ShardID, err error) {
		s.logger.Warn("sweeping expired locks", "shard", id, "resolved", st.Resolved, "failed", st.Failed, "err", err)
	})
	s.oldestAgeMillis.Store(oldest)
	return total
}

// sweep resolves the expired locks of one shard, and raises oldest to
// the age of its oldest lock.
func (s *lockSweeper) sweep(ctx context.Context, id shard.ShardID, oldest *int64) (router.SweepStats, error) {
	ls, err := s.store.SweepLocks(ctx, id, s.cfg.Budget)
	if err != nil {
		return router.SweepStats{}, err
	}
	*oldest = max(*oldest, ls.OldestAgeMillis())
	if len(ls.Expired) == 0 {
		return router.SweepStats{}, nil
	}
	locks := make([]*pb.Locked, len(ls.Expired))
	for i, l := range ls.Expired {
		locks[i] = &pb.Locked{Key: l.Key, Start: l.Start, Primary: l.Primary, Prewrite: l.Prewrite, TtlMs: l.TTL}
	}
	st, err := s.resolver.SweepLocks(ctx, locks)
	s.swept.Add(uint64(st.Resolved))
	if st.Resolved > 0 {
		s.logger.Debug("swept expired locks", "shard", id, "resolved", st.Resolved, "pending", st.Pending, "failed", st.Failed)
	}
	return st, err
}
