package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/flotilla-kv/flotilla/bench"
	"github.com/flotilla-kv/flotilla/internal/cli"
)

const compareSummary = `flotilla bench compare [flags]: run the same workload against a local Flotilla
fleet (3 shardnodes and placementd) and a local 3-member etcd cluster, in
turn, each on a fresh fleet with data in the same directory, and print one
table with both and their ratio (Flotilla over etcd).

The etcd server is built once from the Go module proxy (the release pinned
in bench/etcdtool/go.mod) into .cache/etcd/ of the checkout; building takes a
few minutes. The shardnode and placementd binaries are looked up next to
flotilla-bench, then on $PATH (make build puts every binary in ./bin).

With --endpoints it drives an already running fleet of one system instead,
as etcd's benchmark tool and go-ycsb do.

Examples:
  flotilla bench compare --workload write --clients 100 --value-size 256 --duration 30s --json out.json --plot plots/
  flotilla bench compare --systems flotilla --endpoints 10.0.0.1:7000,10.0.0.2:7000 --workload ycsb-a --runs 3`

// compareFlags are the flags of 'flotilla bench compare'.
type compareFlags struct {
	workloads, systems, preload, distribution string
	cfg                                       bench.Config
	runs, conns, shards, fsyncSamples         int
	routerBatches                             int
	dir, bin, etcd, cacheDir, jsonPath, plot  string
	profile, etcdTarget, endpoints            string
	keep                                      bool
	balanceWait                               time.Duration
}

func newCompareFlags() (*flag.FlagSet, *compareFlags) {
	fs, c := newWorkloadFlags("bench compare")
	fs.IntVar(&c.cfg.Clients, "clients", bench.DefaultClients, "concurrent clients, each with one operation in flight")
	return fs, c
}

// newWorkloadFlags returns the flags compare shares with curve: all but
// --clients, which curve takes as a list.
func newWorkloadFlags(name string) (*flag.FlagSet, *compareFlags) {
	c := &compareFlags{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&c.workloads, "workload", "write", "workloads to run, comma-separated, in order: "+
		"write (100% puts), read (100% linearizable gets), ycsb-a (50% reads, 50% writes), ycsb-b (95/5), ycsb-c (100% reads), "+
		"scan (100% scans of --scan-length keys), mixed (--read-fraction reads, the rest writes), "+
		"watch (100% puts with --watchers range watches beside them: events/s, event lag, and every acknowledged write delivered), "+
		"batch (atomic batches of 2 puts on one shard; etcd: a Txn of the puts), txn (the same puts in a transaction), "+
		"transfer-1shard and transfer-2shard (read 2 keys of one or two shards, write both, commit if unchanged; etcd: a Txn of gets, then a compare-and-put Txn on their mod revisions)")
	fs.StringVar(&c.systems, "systems", "flotilla,etcd", "systems to run, comma-separated, in order; ratios are the first over each other")
	fs.StringVar(&c.endpoints, "endpoints", "", "drive an already running fleet instead of starting one per run: its placement addresses (with --systems flotilla) "+
		"or its etcd client endpoints (with --systems etcd), comma-separated, plaintext; no server CPU is measured and every run finds the keys of those before")
	fs.Float64Var(&c.cfg.Rate, "rate", 0, "open loop: start this many operations per second in total, latency measured from each one's scheduled start (0: closed loop)")
	fs.IntVar(&c.cfg.Keys, "keys", bench.DefaultKeys, "distinct keys")
	fs.IntVar(&c.cfg.KeySizeBytes, "key-size", bench.DefaultKeySize, "bytes per key (at least 8): a hash of the key's index, so keys spread evenly over the shards, then the index")
	fs.IntVar(&c.cfg.ValueSizeBytes, "value-size", bench.DefaultValueSize, "bytes per written value (random, incompressible)")
	fs.StringVar(&c.distribution, "distribution", bench.Uniform, "key popularity: uniform, or zipfian (YCSB's skew; hot keys still scattered over the shards)")
	fs.Float64Var(&c.cfg.Theta, "theta", bench.DefaultTheta, "zipfian constant in (0, 1): higher is more skewed")
	fs.Float64Var(&c.cfg.ReadFraction, "read-fraction", 0.5, "share of reads of the mixed workload, in [0, 1]")
	fs.IntVar(&c.cfg.ScanLength, "scan-length", bench.DefaultScanLength, "keys read by each scan")
	fs.DurationVar(&c.cfg.Warmup, "warmup", 2*time.Second, "run the workload this long before measuring (not counted)")
	fs.DurationVar(&c.cfg.Duration, "duration", bench.DefaultDuration, "length of the measured window (0 with --ops)")
	fs.Int64Var(&c.cfg.Ops, "ops", 0, "end the measured window after this many successful operations instead of --duration (set --duration 0)")
	fs.StringVar(&c.preload, "preload", "auto", "write every key once before the warm-up: on, off, or auto (on for workloads that read or scan)")
	fs.DurationVar(&c.cfg.Timeout, "timeout", bench.DefaultTimeout, "deadline of each operation; one that passes it counts as an error of kind timeout")
	fs.Uint64Var(&c.cfg.Seed, "seed", 0, "seed of the clients' key and operation choices (0: from the clock; the JSON records it)")
	fs.IntVar(&c.cfg.Watchers, "watchers", bench.DefaultWatchers, "watch workload: range watches, each over one contiguous slice of the keys' first byte (at most 256), so every write is seen by exactly one")
	fs.DurationVar(&c.cfg.WatchDrain, "watch-drain", bench.DefaultWatchDrain, "watch workload: after the window, wait up to this long for the events of the writes acknowledged in it; one still undelivered then is missing")
	fs.IntVar(&c.runs, "runs", 1, "runs per workload and system, each on a fresh fleet, alternating systems; the table shows medians")
	fs.IntVar(&c.routerBatches, "router-batches", 0, "Flotilla only: coalesced calls the router keeps in flight per node (router.Config.BatchesPerNode); 0: the router's default, -1: no coalescing, every request its own RPC")
	fs.IntVar(&c.conns, "conns", 1, "client connections per system (router.Clients for Flotilla, clientv3.Clients for etcd) the clients are spread over; 1 is one application process sharing one client, as both libraries intend")
	fs.IntVar(&c.shards, "shards", 16, "shards of the Flotilla fleet, created by placement at bootstrap")
	fs.DurationVar(&c.balanceWait, "balance-wait", 20*time.Second, "once every Flotilla shard has a leader, wait up to this long for placement to balance the leaders over the nodes, so it does not move them while measuring (0: do not wait)")
	fs.IntVar(&c.fsyncSamples, "fsync-samples", 200, "4 KiB write+fsync samples of the disk probe run before the workloads")
	fs.StringVar(&c.dir, "dir", "", "directory of the fleets' data and logs, on the disk under test (default: a new temporary directory, removed at the end)")
	fs.BoolVar(&c.keep, "keep", false, "keep the data and logs of every run")
	fs.StringVar(&c.bin, "bin", "", "directory holding shardnode and placementd (default: next to flotilla-bench, then $PATH)")
	fs.StringVar(&c.etcd, "etcd", "", "etcd server binary to use instead of building the pinned release")
	fs.StringVar(&c.cacheDir, "cache-dir", "", "where the built etcd is cached (default: .cache/etcd of the checkout)")
	fs.StringVar(&c.etcdTarget, "etcd-target", bench.EtcdTargetAuto, "etcd members the etcd clients talk to: leader (the member that leads, found with the maintenance Status API and followed when it changes, as Flotilla's router goes to leaders), all (balanced over every member; followers forward writes), or auto (leader for workloads that write, all otherwise)")
	fs.StringVar(&c.jsonPath, "json", "", "write every figure of every run, and the medians, to this JSON file")
	fs.StringVar(&c.profile, "profile", "", "save a CPU profile of every shardnode over each Flotilla run's measured window into this directory, and one of the bench's own clients and routers (starts the shardnodes with --pprof)")
	fs.StringVar(&c.plot, "plot", "", "write PNG plots (latency by percentile, throughput over time; every system on one chart) into this directory")
	return fs, c
}

// workloadConfigs validates the flags and returns one Config per
// workload, or one error listing every problem.
func (c *compareFlags) workloadConfigs() ([]bench.Config, []string, error) {
	cfgs, systems, p := c.workloadProblems()
	return cfgs, systems, p.Err()
}

// workloadProblems is workloadConfigs returning the problems, for a
// caller that adds its own.
func (c *compareFlags) workloadProblems() ([]bench.Config, []string, cli.Problems) {
	var p cli.Problems
	c.cfg.Distribution = c.distribution
	switch c.preload {
	case "auto":
	case "on", "off":
		c.cfg.Preload, c.cfg.PreloadSet = c.preload == "on", true
	default:
		p.Addf("--preload %q: want on, off or auto", c.preload)
	}
	var systems []string
	seenSys := map[string]bool{}
	for _, s := range splitList(c.systems) {
		if s != bench.SystemFlotilla && s != bench.SystemEtcd {
			p.Addf("--systems: unknown system %q (want flotilla, etcd)", s)
		} else if seenSys[s] {
			p.Addf("--systems: %q given twice", s)
		}
		seenSys[s] = true
		systems = append(systems, s)
	}
	if len(systems) == 0 {
		p.Addf("--systems: name at least one of flotilla, etcd")
	}
	if c.endpoints != "" && len(systems) > 1 {
		p.Addf("--endpoints are one running fleet's: name its system alone (--systems flotilla or --systems etcd), not %s", c.systems)
	}
	if c.runs < 1 {
		p.Addf("--runs must be at least 1, got %d", c.runs)
	}
	if _, err := bench.ResolveEtcdTarget(c.etcdTarget, bench.Config{}); err != nil {
		p.Addf("--etcd-target %q: want auto, leader or all", c.etcdTarget)
	}
	if c.conns < 1 {
		p.Addf("--conns must be at least 1, got %d", c.conns)
	}
	if c.shards < 1 {
		p.Addf("--shards must be at least 1, got %d", c.shards)
	}
	if c.balanceWait < 0 {
		p.Addf("--balance-wait must not be negative, got %s", c.balanceWait)
	}
	if c.fsyncSamples < 1 {
		p.Addf("--fsync-samples must be at least 1, got %d", c.fsyncSamples)
	}
	if c.cfg.Clients < 1 {
		p.Addf("--clients must be at least 1, got %d", c.cfg.Clients)
	}
	if c.cfg.Keys < 1 {
		p.Addf("--keys must be at least 1, got %d", c.cfg.Keys)
	}
	if c.cfg.Duration == 0 && c.cfg.Ops == 0 {
		p.Addf("--duration 0 needs --ops")
	}
	var cfgs []bench.Config
	names := splitList(c.workloads)
	if len(names) == 0 {
		p.Addf("--workload: name at least one workload")
	}
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			p.Addf("--workload: %q given twice", name)
			continue
		}
		seen[name] = true
		cfg := c.cfg
		cfg.Workload = name
		cfgs = append(cfgs, cfg)
	}
	// Every problem of the shared settings once, then what is wrong with
	// a workload's name.
	shared := c.cfg
	shared.Workload = "write"
	for _, prob := range shared.Problems() {
		p.Addf("%s", prob)
	}
	for _, cfg := range cfgs {
		if _, ok := bench.Workloads[cfg.Workload]; !ok {
			p.Addf("--workload %q: want one of %s", cfg.Workload, strings.Join(bench.WorkloadNames, ", "))
		} else {
			// The problems only this workload has (--read-fraction of
			// mixed, --value-size of watch); dedupe drops the shared ones.
			for _, prob := range cfg.Problems() {
				p.Addf("%s", prob)
			}
		}
	}
	return cfgs, systems, dedupe(p)
}

// dedupe drops repeated problems (a flag checked by two validators).
func dedupe(p cli.Problems) cli.Problems {
	var out cli.Problems
	seen := map[string]bool{}
	for _, s := range p {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func runBenchCompare(ctx context.Context, args []string, out io.Writer) error {
	fs, c := newCompareFlags()
	if err := parseBenchFlags(fs, args, compareSummary); err != nil {
		return err
	}
	cfgs, systems, err := c.workloadConfigs()
	if err != nil {
		return err
	}
	pp := bench.NewProgressPrinter(out, isTerminal(out), 5*time.Second)
	rep, err := bench.Compare(ctx, bench.CompareOptions{
		Workloads: cfgs, Systems: systems, Runs: c.runs, Conns: c.conns, RouterBatches: c.routerBatches, Dir: c.dir, Keep: c.keep,
		BinDir: c.bin, Shards: c.shards, FsyncSamples: c.fsyncSamples, ProfileDir: c.profile,
		BalanceWait: c.balanceWait, EtcdTarget: c.etcdTarget, Endpoints: splitList(c.endpoints),
		Etcd:     bench.EtcdBuild{Binary: c.etcd, CacheDir: c.cacheDir, Log: out},
		Log:      lineWriter{pp, out},
		Progress: pp.Print,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	rep.WriteTable(out)
	if c.jsonPath != "" {
		if err := rep.WriteJSON(c.jsonPath); err != nil {
			return err
		}
		fmt.Fprintf(out, "JSON: %s\n", c.jsonPath)
	}
	if c.plot != "" {
		files, err := rep.WritePlots(c.plot)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "plots: %s\n", strings.Join(files, " "))
	}
	return nil
}

// lineWriter writes log lines through the progress printer, so they do
// not collide with a progress line being redrawn.
type lineWriter struct {
	pp  *bench.ProgressPrinter
	out io.Writer
}

func (l lineWriter) Write(b []byte) (int, error) {
	l.pp.Log(string(b))
	return len(b), nil
}
