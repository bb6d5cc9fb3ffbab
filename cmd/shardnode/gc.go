package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// History collection
//
// Writes prune the old versions of the keys they write, but the history
// of a deleted key is never written again: the node collects it
// (shard/gc.go) with one goroutine, historyCollector, which every interval runs one
// bounded pass (Store.CollectGarbage: at most budget keys and budget
// records examined, resuming where the last pass stopped) over each
// shard this node leads. A pass that finds nothing proposes nothing, so
// idle shards stay quiesced; a shard of millions of keys is collected
// over many rounds, never blocking its worker for long. Outcome records
// of transactions across shards go too, once --txn-record-retention (an
// hour by default) passed since their transaction's start and since the
// record was written; the lock
// sweeper (locksweep.go) keeps every lock's life far below that
// (shard/gc.go argues the bound).

// historyGCConfig configures the node's history collector: Interval is
// the time between rounds (0 disables collection), Budget how many keys,
// and how many outcome records, one pass over one shard examines.
type historyGCConfig passConfig

// Defaults of the history collector: a round every 10 seconds keeps the
// history of deleted keys within seconds of the compaction point (itself
// 5 minutes behind), at one pass of at most 1024 metas per led shard.
const (
	defaultHistoryGCInterval = 10 * time.Second
	defaultHistoryGCBudget   = shard.DefaultGCBudget
	// historyGCPassTimeout bounds one pass (its timestamp and its
	// command's commit).
	historyGCPassTimeout = 10 * time.Second
)

// defaultHistoryGC is the collector's configuration when no flag sets it.
func defaultHistoryGC() historyGCConfig {
	return historyGCConfig{Interval: defaultHistoryGCInterval, Budget: defaultHistoryGCBudget}
}

// registerFlags adds --history-gc-interval and --history-gc-budget to
// fs, with c's values as defaults.
func (c *historyGCConfig) registerFlags(fs *flag.FlagSet) {
	(*passConfig)(c).registerFlags(fs, "history-gc",
		"how often the node collects, on the shards it leads, the history no read needs any more: keys deleted below the compaction point, and outcome records of transactions across shards older than --txn-record-retention; 0 disables it",
		"how many keys one collection pass examines per shard (a pass resumes where the last stopped)")
}

// validate adds c's problems to p.
func (c historyGCConfig) validate(p *cli.Problems) { passConfig(c).validate(p, "history-gc") }

// historyCollector runs the node's collection rounds.
type historyCollector struct {
	cfg    historyGCConfig
	engine *multiraft.Engine
	store  *shard.Store
	logger *slog.Logger
}

// run collects every cfg.Interval until ctx ends.
func (h *historyCollector) run(ctx context.Context) {
	passConfig(h.cfg).runRounds(ctx, func(ctx context.Context) { h.round(ctx) })
}

// round runs one pass over each shard this node leads, one at a time,
// and returns what they collected.
func (h *historyCollector) round(ctx context.Context) (keys, txns int) {
	eachLedShard(ctx, h.engine.Summaries(), historyGCPassTimeout, func(ctx context.Context, id shard.ShardID) error {
		st, err := h.store.CollectGarbage(ctx, id, h.cfg.Budget)
		if err != nil {
			return err
		}
		keys += st.CollectedKeys
		txns += st.CollectedTxns
		if st.CollectedKeys+st.CollectedTxns > 0 {
			h.logger.Debug("collected history", "shard", id, "keys", st.CollectedKeys, "txns", st.CollectedTxns)
		}
		return nil
	}, func(id shard.ShardID, err error) {
		h.logger.Warn("collecting history", "shard", id, "err", err)
	})
	return keys, txns
}
