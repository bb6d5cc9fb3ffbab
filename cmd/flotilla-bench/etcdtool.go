package main

import (
	"context"
	"flag"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/flotilla-kv/flotilla/bench"
	"github.com/flotilla-kv/flotilla/internal/cli"
)

const etcdToolSummary = `flotilla bench etcd-tool [flags]: drive Flotilla's etcd API and etcd with
etcd's own benchmark tool, the same client for both: for every workload, a
fresh local Flotilla fleet (3 shardnodes serving the etcd API with
--etcd-listen, a placementd, --shards shards) and a fresh local 3-member etcd
cluster, in turn, --runs times; one table of the medians with Flotilla's
throughput over etcd's and each system's server CPU per request.

The tool (go.etcd.io/etcd/v3/tools/benchmark, the release pinned in
bench/etcdbenchmark/go.mod) and the etcd server (bench/etcdtool/go.mod) are
built once from the Go module proxy into .cache/etcd/ of the checkout.
Workloads: put, range-linearizable, range-serializable, txn-put (one put per
transaction), watch-latency.`

func runBenchEtcdTool(ctx context.Context, args []string, out io.Writer) error {
	o := bench.EtcdToolOptions{Log: out}
	var dir, jsonPath, systems, workloads string
	fs := flag.NewFlagSet("bench etcd-tool", flag.ContinueOnError)
	fs.StringVar(&systems, "systems", "flotilla,etcd", "systems to run, comma-separated: flotilla, etcd")
	fs.StringVar(&workloads, "workloads", "put,range-linearizable,range-serializable,txn-put,watch-latency", "workloads to run, comma-separated")
	fs.IntVar(&o.Runs, "runs", 3, "runs of every workload on every system, each on a fresh fleet; the table gives medians")
	fs.IntVar(&o.Clients, "clients", 100, "the tool's --clients: concurrent requests")
	fs.IntVar(&o.Conns, "conns", 10, "the tool's --conns: gRPC connections, spread over every endpoint")
	fs.IntVar(&o.Total, "total", 20000, "requests per run (watch-latency: a tenth of it as puts, at 500 per second)")
	fs.IntVar(&o.Shards, "shards", 16, "initial shards of the Flotilla fleet")
	fs.StringVar(&o.BinDir, "bin", "", "directory holding shardnode and placementd (default: next to flotilla-bench, then $PATH)")
	fs.StringVar(&o.Etcd.Binary, "etcd", "", "etcd server binary to use instead of building the pinned release")
	fs.StringVar(&o.Etcd.CacheDir, "cache-dir", "", "where the built etcd and tool are cached (default: .cache/etcd of the checkout)")
	fs.StringVar(&dir, "dir", "", "directory of the systems' data, logs and the tool's output (default: a new temporary directory, removed at the end)")
	fs.StringVar(&jsonPath, "json", "", "write every run's figures to this JSON file")
	fs.StringVar(&o.ProfileDir, "profile", "", "save a CPU profile of every shardnode of each Flotilla run into this directory, over --profile-window from a second after the tool starts (starts the shardnodes with --pprof)")
	fs.DurationVar(&o.ProfileWindow, "profile-window", 3*time.Second, "length of the --profile profiles; raise --total so that the runs last longer")
	if err := parseBenchFlags(fs, args, etcdToolSummary); err != nil {
		return err
	}
	o.Etcd.Log = out
	o.Systems = splitList(systems)
	o.Workloads = splitList(workloads)
	var p cli.Problems
	for _, s := range o.Systems {
		if s != "flotilla" && s != "etcd" {
			p.Addf("--systems: unknown system %q (want flotilla or etcd)", s)
		}
	}
	known := make([]string, 0, len(bench.EtcdToolWorkloads))
	for w := range bench.EtcdToolWorkloads {
		known = append(known, w)
	}
	sort.Strings(known)
	for _, w := range o.Workloads {
		if !slices.Contains(known, w) {
			p.Addf("--workloads: unknown workload %q (want some of %s)", w, strings.Join(known, ", "))
		}
	}
	if len(o.Systems) == 0 || len(o.Workloads) == 0 {
		p.Addf("--systems and --workloads need at least one name each")
	}
	for name, v := range map[string]int{"--runs": o.Runs, "--clients": o.Clients, "--conns": o.Conns, "--total": o.Total, "--shards": o.Shards} {
		if v < 1 {
			p.Addf("%s must be at least 1, got %d", name, v)
		}
	}
	if err := p.Err(); err != nil {
		return err
	}
	return runIn(out, dir, "flotilla-bench-etcd-tool-", jsonPath, func(dir string) (*bench.EtcdToolResult, error) {
		o.Dir = dir
		return bench.RunEtcdTool(ctx, o)
	})
}
