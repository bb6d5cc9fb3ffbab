package main

import (
	"flag"
	"time"

	"github.com/flotilla-kv/flotilla/internal/cli"
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
