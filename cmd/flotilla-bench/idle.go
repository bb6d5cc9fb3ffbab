package main

import (
	"context"
	"flag"
	"io"
	"time"

	"github.com/flotilla-kv/flotilla/bench"
	"github.com/flotilla-kv/flotilla/internal/cli"
)

const idleSummary = `flotilla bench idle [flags]: start 3 shardnodes (no placement), create --groups
shards with a replica on each node through the Admin service, wait until
every shard has a leader and the replicas quiesced, then measure each node's
CPU over --measure, with no request in flight, and its resident memory.`

func runBenchIdle(ctx context.Context, args []string, out io.Writer) error {
	o := bench.IdleOptions{Log: out}
	var dir, jsonPath string
	fs := flag.NewFlagSet("bench idle", flag.ContinueOnError)
	fs.IntVar(&o.Groups, "groups", 10000, "shards, each with a replica on every node (at most 65536)")
	fs.DurationVar(&o.Measure, "measure", 10*time.Second, "window over which each node's CPU is measured")
	fs.DurationVar(&o.Settle, "settle", 5*time.Minute, "longest wait for leaders and quiescence before measuring anyway")
	fs.StringVar(&o.BinDir, "bin", "", "directory holding shardnode (default: next to flotilla-bench, then $PATH)")
	fs.StringVar(&dir, "dir", "", "directory of the nodes' data and logs (default: a new temporary directory, removed at the end)")
	fs.StringVar(&jsonPath, "json", "", "write the figures to this JSON file")
	fs.StringVar(&o.ProfileDir, "profile", "", "save a CPU profile of every shardnode over the measured window into this directory (starts the shardnodes with --pprof)")
	if err := parseBenchFlags(fs, args, idleSummary); err != nil {
		return err
	}
	var p cli.Problems
	if o.Groups < 1 || o.Groups > 65536 {
		p.Addf("--groups must be in [1, 65536], got %d", o.Groups)
	}
	if o.Measure <= 0 {
		p.Addf("--measure must be positive, got %s", o.Measure)
	}
	if o.Settle <= 0 {
		p.Addf("--settle must be positive, got %s", o.Settle)
	}
	if err := p.Err(); err != nil {
		return err
	}
	return runIn(out, dir, "flotilla-bench-idle-", jsonPath, func(dir string) (*bench.IdleResult, error) {
		o.Dir = dir
		return bench.RunIdle(ctx, o)
	})
}
