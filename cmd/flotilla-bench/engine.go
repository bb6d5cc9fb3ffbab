package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/flotilla-kv/flotilla/bench"
	"github.com/flotilla-kv/flotilla/internal/cli"
)

const engineSummary = `flotilla bench engine [flags]: the in-process engine benchmark. One multiraft
engine in this process over Pebble in --dir with fsync on, --groups groups
of one replica each (every proposal costs a synced write, no network),
--proposers goroutines proposing --value-size-byte puts in a closed loop.
Reports proposals/s, the mean groups and entries per sync (group commit) and
the mean sync latency from the engine's metrics, beside the disk's fsync p50.`

func runBenchEngine(ctx context.Context, args []string, out io.Writer) error {
	var o bench.EngineOptions
	var dir, jsonPath string
	fs := flag.NewFlagSet("bench engine", flag.ContinueOnError)
	fs.IntVar(&o.Groups, "groups", 48, "single-replica groups")
	fs.IntVar(&o.Proposers, "proposers", 4096, "concurrent proposers, dealt round-robin to the groups")
	fs.IntVar(&o.ValueBytes, "value-size", 16, "bytes per proposed value")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "measured window (after a 1 s warm-up)")
	fs.IntVar(&o.Workers, "workers", 0, "engine worker goroutines (0: the engine's default, twice the CPUs)")
	fs.IntVar(&o.FsyncSamples, "fsync-samples", 200, "4 KiB write+fsync samples of the disk probe")
	fs.StringVar(&dir, "dir", "", "directory of the Pebble store, on the disk under test (default: a new temporary directory, removed at the end)")
	fs.StringVar(&jsonPath, "json", "", "write the figures to this JSON file")
	if err := parseBenchFlags(fs, args, engineSummary); err != nil {
		return err
	}
	var p cli.Problems
	if o.Groups < 1 {
		p.Addf("--groups must be at least 1, got %d", o.Groups)
	}
	if o.Proposers < 1 {
		p.Addf("--proposers must be at least 1, got %d", o.Proposers)
	}
	if o.ValueBytes < 0 {
		p.Addf("--value-size must not be negative, got %d", o.ValueBytes)
	}
	if o.Duration <= 0 {
		p.Addf("--duration must be positive, got %s", o.Duration)
	}
	if o.Workers < 0 {
		p.Addf("--workers must not be negative, got %d", o.Workers)
	}
	if o.FsyncSamples < 1 {
		p.Addf("--fsync-samples must be at least 1, got %d", o.FsyncSamples)
	}
	if err := p.Err(); err != nil {
		return err
	}
	dir, cleanup, err := benchDir(dir, "flotilla-bench-engine-")
	if err != nil {
		return err
	}
	defer cleanup()
	o.Dir = dir
	pp := bench.NewProgressPrinter(out, isTerminal(out), 5*time.Second)
	o.Progress = func(pr bench.Progress) { pp.Print("engine", pr) }
	fmt.Fprintf(out, "engine: %d groups x 1 replica, %d proposers, %d-byte values, fsync on, %s in %s\n",
		o.Groups, o.Proposers, o.ValueBytes, o.Duration, dir)
	res, err := bench.RunEngine(ctx, o)
	pp.Print("engine", bench.Progress{Phase: bench.PhaseDone})
	if err != nil {
		return err
	}
	return report(out, res, res.Record(), jsonPath)
}
