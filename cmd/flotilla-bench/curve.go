package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-kv/flotilla/bench"
	"github.com/flotilla-kv/flotilla/internal/cli"
)

const curveSummary = `flotilla bench curve [flags]: Flotilla and etcd at several concurrencies in one
invocation: for every client count of --clients, one comparison (as
'flotilla bench compare', same flags) of every workload of --workload, --runs
times each on a fresh fleet, the systems alternating. Writes into --out:
curve.md (a markdown table per workload: ops/s of both systems and their
ratio, p50 and p99, server CPU µs per operation, errors; the disk's fsync p50),
curve-throughput.png and curve-cpu.png (by client count, log scales) and
curve.json (every median).

The defaults keep a curve of 2 workloads x 4 client counts x 2 systems x 3
runs (48 fleets) near a quarter of an hour on 2 cores: 1 s warm-up, 3 s
measured, 1,000 keys (the read workload preloads every key, at one client
too). Lengthen them for steadier figures.

Example:
  flotilla bench curve --clients 1,10,100,1000 --workload write,read --runs 3 --out curve/`

// curveFlags are the flags of 'flotilla bench curve'.
type curveFlags struct {
	*compareFlags
	clients, out, from string
}

func newCurveFlags() (*flag.FlagSet, *curveFlags) {
	fs, c := newWorkloadFlags("bench curve")
	cf := &curveFlags{compareFlags: c}
	fs.StringVar(&cf.clients, "clients", "1,10,100,1000", "client counts, comma-separated, in order: one point of the curve each")
	fs.StringVar(&cf.from, "from-json", "", "run nothing: write the table and plots of a curve.json written before (into --out)")
	fs.StringVar(&cf.out, "out", "curve", "directory receiving curve.md, curve-throughput.png, curve-cpu.png and curve.json (created if missing)")
	// Shorter points than compare's defaults: a curve is many of them.
	for name, v := range map[string]string{"workload": "write,read", "runs": "3", "warmup": "1s", "duration": "3s",
		"keys": "1000", "balance-wait": "10s"} {
		f := fs.Lookup(name)
		if err := f.Value.Set(v); err != nil {
			panic(fmt.Sprintf("curve default --%s %s: %v", name, v, err))
		}
		f.DefValue = v
	}
	return fs, cf
}

// points parses --clients.
func (cf *curveFlags) points() ([]int, cli.Problems) {
	var p cli.Problems
	var counts []int
	for _, s := range splitList(cf.clients) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			p.Addf("--clients: %q is not a positive client count", s)
			continue
		}
		counts = append(counts, n)
	}
	if len(counts) == 0 && len(p) == 0 {
		p.Addf("--clients: give at least one client count")
	}
	return counts, p
}

// curveOptions validates every flag and returns the curve to run, or one
// error listing every problem.
func (cf *curveFlags) curveOptions() (bench.CurveOptions, error) {
	counts, p := cf.points()
	cf.cfg.Clients = 1 // each point sets its own; this only passes validation
	cfgs, systems, wp := cf.workloadProblems()
	p = append(p, wp...)
	if cf.out == "" {
		p.Addf("--out: name a directory")
	}
	if err := p.Err(); err != nil {
		return bench.CurveOptions{}, err
	}
	var names []string
	for _, c := range cfgs {
		names = append(names, c.Workload)
	}
	tmpl := cfgs[0]
	tmpl.Workload = ""
	return bench.CurveOptions{
		Compare: bench.CompareOptions{Systems: systems, Runs: cf.runs, Conns: cf.conns, RouterBatches: cf.routerBatches,
			Dir: cf.dir, Keep: cf.keep, BinDir: cf.bin, Shards: cf.shards, FsyncSamples: cf.fsyncSamples, ProfileDir: cf.profile,
			BalanceWait: cf.balanceWait, EtcdTarget: cf.etcdTarget, Endpoints: splitList(cf.endpoints)},
		Workload: tmpl, Workloads: names, Clients: counts,
	}, nil
}

func runBenchCurve(ctx context.Context, args []string, out io.Writer) error {
	fs, cf := newCurveFlags()
	if err := parseBenchFlags(fs, args, curveSummary); err != nil {
		return err
	}
	o, err := cf.curveOptions()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return errUsage
	}
	if err := os.MkdirAll(cf.out, 0o755); err != nil {
		return err
	}
	var cv *bench.Curve
	if cf.from != "" {
		cv, err = bench.ReadCurve(cf.from)
	} else {
		pp := bench.NewProgressPrinter(out, isTerminal(out), 5*time.Second)
		o.Compare.Etcd = bench.EtcdBuild{Binary: cf.etcd, CacheDir: cf.cacheDir, Log: out}
		o.Compare.Log, o.Compare.Progress = lineWriter{pp, out}, pp.Print
		cv, err = bench.RunCurve(ctx, o)
	}
	if err != nil {
		return err
	}
	var md strings.Builder
	cv.WriteMarkdown(&md)
	fmt.Fprintf(out, "\n%s", md.String())
	if err := os.WriteFile(filepath.Join(cf.out, "curve.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	written := []string{filepath.Join(cf.out, "curve.md")}
	if cf.from == "" {
		if err := cv.WriteJSON(filepath.Join(cf.out, "curve.json")); err != nil {
			return err
		}
		written = append(written, filepath.Join(cf.out, "curve.json"))
	}
	files, err := cv.WritePlots(cf.out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nwritten: %s\n", strings.Join(append(written, files...), " "))
	return nil
}
