package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// passConfig is the shape of the node's periodic passes over the shards
// it leads (the history collector, gc.go, and the lock sweeper,
// locksweep.go): how often a round runs, and how much one pass over one
// shard may do. A pass named NAME has the flags --NAME-interval and
// --NAME-budget.
type passConfig struct {
	// Interval is the time between rounds; 0 disables the pass.
	Interval time.Duration
	// Budget bounds the work of one pass over one shard (what it counts
	// is the pass's own).
	Budget int
}

// registerFlags adds --NAME-interval and --NAME-budget to fs, with c's
// values as defaults.
func (c *passConfig) registerFlags(fs *flag.FlagSet, name, intervalUsage, budgetUsage string) {
	fs.DurationVar(&c.Interval, name+"-interval", c.Interval, intervalUsage)
	fs.IntVar(&c.Budget, name+"-budget", c.Budget, budgetUsage)
}

// validate adds c's problems to p, naming the flags of the pass name.
func (c passConfig) validate(p *cli.Problems, name string) {
	if c.Interval < 0 {
		p.Addf("--%s-interval must not be negative, got %s", name, c.Interval)
	}
	if c.Budget < 1 {
		p.Addf("--%s-budget must be positive, got %d", name, c.Budget)
	}
}

// runRounds calls round every c.Interval until ctx ends.
func (c passConfig) runRounds(ctx context.Context, round func(context.Context)) {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		round(ctx)
	}
}

// eachLedShard calls pass for each group of groups this node leads, one
// at a time, each with a context of its own bounded by timeout, until ctx
// ends. An error saying only that the leadership or the replica moved
// since the summary is dropped (the next leader makes the pass); any
// other goes to failed.
func eachLedShard(ctx context.Context, groups []multiraft.GroupSummary, timeout time.Duration,
	pass func(context.Context, shard.ShardID) error, failed func(shard.ShardID, error)) {
	for _, g := range groups {
		if !g.Leading {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := pass(pctx, g.Group)
		cancel()
		var nl *multiraft.NotLeaderError
		switch {
		case err == nil:
		case errors.As(err, &nl), errors.Is(err, shard.ErrShardNotFound), ctx.Err() != nil:
		default:
			failed(g.Group, err)
		}
	}
}
