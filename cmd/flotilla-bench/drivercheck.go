package main

import (
	"context"
	"flag"
	"io"
	"time"

	"github.com/flotilla-kv/flotilla/bench"
	"github.com/flotilla-kv/flotilla/internal/cli"
)

const driverCheckSummary = `flotilla bench driver-check [flags]: check that the suite's etcd driver does
not short-change etcd: on a fresh local 3-member etcd cluster per run, etcd's
own benchmark tool (put; go.etcd.io/etcd/v3/tools/benchmark, the release
pinned in bench/etcdbenchmark/go.mod) and the driver of 'flotilla bench
compare' (write) run one after the other, the order alternating across runs,
with the same clients, connections, keys, value size and members. One table:
each run, the medians, and the tool's throughput over the driver's.`

func runBenchDriverCheck(ctx context.Context, args []string, out io.Writer) error {
	o := bench.DriverCheckOptions{Log: out}
	var dir, jsonPath string
	fs := flag.NewFlagSet("bench driver-check", flag.ContinueOnError)
	fs.IntVar(&o.Runs, "runs", 3, "runs, each on a fresh etcd cluster; the table gives every run and the medians")
	fs.IntVar(&o.Clients, "clients", bench.DefaultClients, "concurrent requests of both the tool (--clients) and the driver (bench clients)")
	fs.IntVar(&o.Conns, "conns", 1, "gRPC connections of both the tool (--conns) and the driver (clientv3.Clients); 1 is compare's default")
	fs.IntVar(&o.Total, "total", 20000, "the tool's requests per run")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "the driver's measured window per run, after a one-second warm-up")
	fs.IntVar(&o.Keys, "keys", bench.DefaultKeys, "distinct keys both write (the tool's --key-space-size)")
	fs.IntVar(&o.ValueSizeBytes, "value-size", bench.DefaultValueSize, "bytes per written value")
	fs.StringVar(&o.Target, "etcd-target", bench.EtcdTargetLeader, "members both send to: leader (the member that leads) or all (balanced over every member)")
	fs.StringVar(&o.Etcd.Binary, "etcd", "", "etcd server binary to use instead of building the pinned release")
	fs.StringVar(&o.Etcd.CacheDir, "cache-dir", "", "where the built etcd and tool are cached (default: .cache/etcd of the checkout)")
	fs.StringVar(&dir, "dir", "", "directory of etcd's data, logs and the tool's output (default: a new temporary directory, removed at the end)")
	fs.StringVar(&jsonPath, "json", "", "write every run's figures to this JSON file")
	if err := parseBenchFlags(fs, args, driverCheckSummary); err != nil {
		return err
	}
	o.Etcd.Log = out
	var p cli.Problems
	if o.Runs < 1 {
		p.Addf("--runs must be at least 1, got %d", o.Runs)
	}
	if o.Clients < 1 {
		p.Addf("--clients must be at least 1, got %d", o.Clients)
	}
	if o.Conns < 1 {
		p.Addf("--conns must be at least 1, got %d", o.Conns)
	}
	if o.Total < 1 {
		p.Addf("--total must be at least 1, got %d", o.Total)
	}
	if o.Duration <= 0 {
		p.Addf("--duration must be positive, got %s", o.Duration)
	}
	if o.Keys < 1 {
		p.Addf("--keys must be at least 1, got %d", o.Keys)
	}
	if o.ValueSizeBytes < 1 {
		p.Addf("--value-size must be at least 1, got %d", o.ValueSizeBytes)
	}
	if o.Target != bench.EtcdTargetLeader && o.Target != bench.EtcdTargetAll {
		p.Addf("--etcd-target %q: want leader or all", o.Target)
	}
	if err := p.Err(); err != nil {
		return err
	}
	return runIn(out, dir, "flotilla-driver-check-", jsonPath, func(dir string) (*bench.DriverCheck, error) {
		o.Dir = dir
		return bench.CheckEtcdDriver(ctx, o)
	})
}
