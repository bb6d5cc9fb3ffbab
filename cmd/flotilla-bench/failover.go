package main

import (
	"context"
	"flag"
	"io"
	"time"

	"github.com/flotilla-kv/flotilla/bench"
	"github.com/flotilla-kv/flotilla/internal/cli"
)

const failoverSummary = `flotilla bench failover [flags]: start placementd and 3 shardnodes with
--shards shards, write steadily to every shard (--writers-per-shard clients
per shard, each writing only that shard's keys), kill the node leading the
most shards with SIGKILL after --kill-after, keep writing for --after, and
report per shard how long writes were unavailable (from the kill to the
first successful write started after it), the max and p99 over the shards
whose leader died, and whether the other shards saw any error.`

func runBenchFailover(ctx context.Context, args []string, out io.Writer) error {
	o := bench.FailoverOptions{Log: out}
	var dir, jsonPath string
	fs := flag.NewFlagSet("bench failover", flag.ContinueOnError)
	fs.IntVar(&o.Shards, "shards", 32, "shards placement creates")
	fs.IntVar(&o.WritersPerShard, "writers-per-shard", 2, "closed-loop writers per shard")
	fs.IntVar(&o.ValueBytes, "value-size", 256, "bytes per written value")
	fs.DurationVar(&o.KillAfter, "kill-after", 5*time.Second, "steady load before the kill")
	fs.DurationVar(&o.After, "after", 15*time.Second, "load after the kill")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Second, "deadline of each write, the router's retries included")
	fs.StringVar(&o.BinDir, "bin", "", "directory holding shardnode and placementd (default: next to flotilla-bench, then $PATH)")
	fs.StringVar(&dir, "dir", "", "directory of the fleet's data and logs (default: a new temporary directory, removed at the end)")
	fs.StringVar(&jsonPath, "json", "", "write the figures to this JSON file")
	if err := parseBenchFlags(fs, args, failoverSummary); err != nil {
		return err
	}
	var p cli.Problems
	if o.Shards < 1 {
		p.Addf("--shards must be at least 1, got %d", o.Shards)
	}
	if o.WritersPerShard < 1 {
		p.Addf("--writers-per-shard must be at least 1, got %d", o.WritersPerShard)
	}
	if o.ValueBytes < 0 {
		p.Addf("--value-size must not be negative, got %d", o.ValueBytes)
	}
	if o.KillAfter <= 0 {
		p.Addf("--kill-after must be positive, got %s", o.KillAfter)
	}
	if o.After <= 0 {
		p.Addf("--after must be positive, got %s", o.After)
	}
	if o.Timeout <= 0 {
		p.Addf("--timeout must be positive, got %s", o.Timeout)
	}
	if err := p.Err(); err != nil {
		return err
	}
	return runIn(out, dir, "flotilla-bench-failover-", jsonPath, func(dir string) (*bench.FailoverResult, error) {
		o.Dir = dir
		return bench.RunFailover(ctx, o)
	})
}
