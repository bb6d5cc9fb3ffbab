package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/flotilla-kv/flotilla/internal/launch"
)

// etcdBenchmarkModule is the module whose pinned release holds etcd's
// benchmark tool (bench/etcdbenchmark/go.mod).
const (
	etcdBenchmarkModule  = "go.etcd.io/etcd/v3"
	etcdBenchmarkPackage = "go.etcd.io/etcd/v3/tools/benchmark"
)

// EnsureEtcdBenchmark returns the path of etcd's benchmark tool: the
// cached build of the release pinned in bench/etcdbenchmark/go.mod, built
// with `go build` (modules from the Go module proxy) when it is missing.
// b's SourceDir, when set, is bench/etcdtool, beside which
// bench/etcdbenchmark is found; CacheDir and Log as for EnsureEtcd.
func EnsureEtcdBenchmark(ctx context.Context, b EtcdBuild) (path, version string, err error) {
	src := b.SourceDir
	if src == "" {
		if src, err = findEtcdTool(); err != nil {
			return "", "", err
		}
	}
	src = filepath.Join(filepath.Dir(src), "etcdbenchmark")
	version, err = PinnedVersion(filepath.Join(src, "go.mod"), etcdBenchmarkModule)
	if err != nil {
		return "", "", err
	}
	path, err = buildCached(ctx, b, src, etcdBenchmarkPackage, "etcd-benchmark-"+version, "etcd's benchmark tool "+version+" (once; a minute or two)")
	return path, version, err
}

// EtcdToolOptions configures RunEtcdTool.
type EtcdToolOptions struct {
	// Dir holds the systems' data and logs. Required.
	Dir string
	// BinDir holds shardnode and placementd (see launch.FindBinary).
	BinDir string
	// Etcd says where the etcd server and the tool's sources come from.
	Etcd EtcdBuild
	// Systems are "flotilla" and/or "etcd". Default both.
	Systems []string
	// Workloads are the tool's runs (see EtcdToolWorkloads). Default all.
	Workloads []string
	// Runs is the number of runs of every workload on every system, each
	// on a fresh fleet; the report gives the medians. Default 3.
	Runs int
	// Clients and Conns are the tool's --clients and --conns. Defaults
	// 100 and 10.
	Clients, Conns int
	// Total is the number of requests of each run. Default 20,000.
	Total int
	// Shards is the Flotilla fleet's initial shard count. Default 16.
	Shards int
	// ProfileDir, when set, receives a CPU profile of every shardnode of
	// each Flotilla run, taken over ProfileWindow from a second after the
	// tool starts (the nodes start with --pprof). A run shorter than that
	// leaves the profile's tail idle: raise Total to cover it.
	ProfileDir string
	// ProfileWindow is the profiles' length. Default 3 seconds.
	ProfileWindow time.Duration
	// Log receives one line per step.
	Log io.Writer
}

// EtcdToolWorkloads are the workloads of RunEtcdTool: each is one run of
// etcd's benchmark tool with these arguments (before the common ones:
// endpoints, clients, conns, total).
var EtcdToolWorkloads = map[string][]string{
	// Puts of random 8-byte keys, 256-byte values.
	"put": {"put", "--key-size=8", "--val-size=256", "--key-space-size=100000"},
	// Linearizable and serializable reads of one key.
	"range-linearizable": {"range", etcdToolRangeKey, "--consistency=l"},
	"range-serializable": {"range", etcdToolRangeKey, "--consistency=s"},
	// One-put transactions (a transaction of several random keys would
	// span shards, which Flotilla's etcd API refuses).
	"txn-put": {"txn-put", "--key-size=8", "--val-size=256", "--key-space-size=100000", "--txn-ops=1"},
	// Watch latency: puts at a fixed rate to one key, 10 streams of 10
	// watchers each; the figure is the latency of the events.
	"watch-latency": {"watch-latency", "--streams=10", "--watchers-per-stream=10", "--put-rate=500", "--key-size=8", "--val-size=32"},
}

// etcdToolRangeKey is the key the range workloads read; RunEtcdTool
// writes it first.
const etcdToolRangeKey = "flotilla-bench-range"

// EtcdToolRun is one run of one workload on one system.
type EtcdToolRun struct {
	System      string  `json:"system"`
	Workload    string  `json:"workload"`
	Run         int     `json:"run"`
	RequestsSec float64 `json:"requests_per_sec"`
	AverageMs   float64 `json:"average_ms"`
	P99Ms       float64 `json:"p99_ms"`
	// ServerCPUUsPerReq is the CPU time the system's server processes
	// (etcd's members; Flotilla's shardnodes and placementd) used during
	// the tool's run, per request of the run, in microseconds: what a
	// request costs the servers, which on a machine whose cores other
	// processes share bounds the throughput more than any wait does.
	// Zero for watch-latency, whose requests are not the tool's total.
	ServerCPUUsPerReq float64 `json:"server_cpu_us_per_request,omitempty"`
	// OthersCPUShare is the share of the machine's CPU time during the
	// run that neither the servers nor this process used: the tool and
	// other tenants. High values make the run's figures rough.
	OthersCPUShare float64 `json:"others_cpu_share"`
}

// EtcdToolResult is what RunEtcdTool measured: every run, and the tool's
// version and arguments.
type EtcdToolResult struct {
	ToolVersion string        `json:"tool_version"`
	EtcdVersion string        `json:"etcd_version"`
	Clients     int           `json:"clients"`
	Conns       int           `json:"conns"`
	Total       int           `json:"total"`
	Shards      int           `json:"shards"`
	Runs        []EtcdToolRun `json:"runs"`
	workloads   []string
	systems     []string
}

// RunEtcdTool drives Flotilla's etcd API (3 shardnodes serving it, a
// placementd, o.Shards shards) and a 3-member etcd cluster with etcd's own
// benchmark tool, so the comparison does not depend on Flotilla's
// drivers: every workload, every system, o.Runs times, each run on a
// fresh fleet, the systems alternating. The tool spreads its connections
// over every endpoint of the system.
func RunEtcdTool(ctx context.Context, o EtcdToolOptions) (*EtcdToolResult, error) {
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if o.Clients <= 0 {
		o.Clients = 100
	}
	if o.Conns <= 0 {
		o.Conns = 10
	}
	if o.Total <= 0 {
		o.Total = 20000
	}
	if o.Shards <= 0 {
		o.Shards = 16
	}
	if o.ProfileWindow <= 0 {
		o.ProfileWindow = 3 * time.Second
	}
	if len(o.Systems) == 0 {
		o.Systems = []string{"flotilla", "etcd"}
	}
	if len(o.Workloads) == 0 {
		o.Workloads = []string{"put", "range-linearizable", "range-serializable", "txn-put", "watch-latency"}
	}
	for _, w := range o.Workloads {
		if _, ok := EtcdToolWorkloads[w]; !ok {
			return nil, fmt.Errorf("bench: unknown etcd-tool workload %q", w)
		}
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	tool, toolVersion, err := EnsureEtcdBenchmark(ctx, o.Etcd)
	if err != nil {
		return nil, err
	}
	res := &EtcdToolResult{ToolVersion: toolVersion, Clients: o.Clients, Conns: o.Conns, Total: o.Total, Shards: o.Shards,
		workloads: o.Workloads, systems: o.Systems}
	var etcdBin string
	for _, s := range o.Systems {
		switch s {
		case "etcd":
			if etcdBin, res.EtcdVersion, err = EnsureEtcd(ctx, o.Etcd); err != nil {
				return nil, err
			}
		case "flotilla":
			if err := findBinary(o.BinDir, "shardnode"); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("bench: unknown system %q (want flotilla or etcd)", s)
		}
	}
	for run := 1; run <= o.Runs; run++ {
		for _, system := range o.Systems {
			for _, w := range o.Workloads {
				dir := filepath.Join(o.Dir, fmt.Sprintf("%s-%s-%d", system, w, run))
				logf("run %d/%d: %s, %s", run, o.Runs, system, w)
				r, err := etcdToolOnce(ctx, o, tool, etcdBin, system, w, dir)
				if err != nil {
					return nil, err
				}
				r.Run = run
				res.Runs = append(res.Runs, r)
				logf("  %.0f requests/s, average %.2f ms, p99 %.2f ms", r.RequestsSec, r.AverageMs, r.P99Ms)
			}
		}
	}
	return res, nil
}

// etcdToolOnce starts system fresh in dir, runs workload w on it with the
// tool, and stops it.
func etcdToolOnce(ctx context.Context, o EtcdToolOptions, tool, etcdBin, system, w, dir string) (EtcdToolRun, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return EtcdToolRun{}, err
	}
	var (
		endpoints []string
		servers   []Proc
		profile   func() // profiles the fleet's nodes, when asked to
	)
	switch system {
	case "flotilla":
		lo := launch.Options{Dir: dir, BinDir: o.BinDir, Nodes: 3, LogLevel: "warn", ReadyTimeout: readyTimeout,
			OwnProcessGroup: true, Etcd: true, PlacementReplicas: 1, Shards: o.Shards, ReplicationFactor: 3}
		if o.ProfileDir != "" {
			lo.NodeArgs = []string{"--pprof"}
		}
		f, err := launch.Start(ctx, lo)
		if err != nil {
			return EtcdToolRun{}, fmt.Errorf("bench: flotilla fleet: %w", binaryHint(err))
		}
		defer f.Close()
		if _, err := waitLeaders(ctx, f, o.Shards, 10*time.Second); err != nil {
			return EtcdToolRun{}, err
		}
		for _, n := range f.Nodes() {
			endpoints = append(endpoints, n.EtcdAddr())
		}
		servers = procs(f)
		if o.ProfileDir != "" {
			prefix := filepath.Join(o.ProfileDir, filepath.Base(dir))
			profile = func() {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				// profileNodes profiles a second less than its window.
				profileNodes(ctx, f, o.ProfileWindow+time.Second, prefix, o.Log)
			}
		}
	case "etcd":
		c, err := StartEtcd(ctx, etcdBin, dir, 3)
		if err != nil {
			return EtcdToolRun{}, err
		}
		defer c.Stop()
		endpoints = c.Endpoints
		servers = c.Procs()
	}
	if strings.HasPrefix(w, "range") {
		if err := putOnce(ctx, endpoints, etcdToolRangeKey, strings.Repeat("v", 256)); err != nil {
			return EtcdToolRun{}, fmt.Errorf("bench: writing the range key on %s: %w", system, err)
		}
	}
	args := append([]string{}, EtcdToolWorkloads[w]...)
	args = append(args, "--endpoints="+strings.Join(endpoints, ","), fmt.Sprintf("--clients=%d", o.Clients), fmt.Sprintf("--conns=%d", o.Conns))
	if w == "watch-latency" {
		args = append(args, fmt.Sprintf("--put-total=%d", max(o.Total/10, 100)))
	} else {
		args = append(args, fmt.Sprintf("--total=%d", o.Total))
	}
	cmd := exec.CommandContext(ctx, tool, args...)
	var profiled sync.WaitGroup
	if profile != nil {
		profiled.Go(profile)
	}
	win := startCPUWindow(servers)
	out, err := cmd.CombinedOutput()
	use := win.end()
	profiled.Wait() // before the fleet stops
	if logErr := os.WriteFile(filepath.Join(dir, "benchmark.out"), out, 0o644); logErr != nil && err == nil {
		err = logErr
	}
	if err != nil {
		return EtcdToolRun{}, fmt.Errorf("bench: %s %s on %s: %w\n%s", filepath.Base(tool), strings.Join(args, " "), system, err, lastLines(out, 20))
	}
	r, err := parseEtcdToolReport(out)
	if err != nil {
		return EtcdToolRun{}, fmt.Errorf("bench: %s on %s: %w\n%s", w, system, err, lastLines(out, 20))
	}
	r.System, r.Workload = system, w
	if w != "watch-latency" && len(use.Errors) == 0 {
		r.ServerCPUUsPerReq = float64(use.Server.Microseconds()) / float64(o.Total)
	}
	if total := use.Server + use.Client + use.Others; total > 0 {
		r.OthersCPUShare = float64(use.Others) / float64(total)
	}
	return r, nil
}

// putOnce writes key through an etcd client of endpoints.
func putOnce(ctx context.Context, endpoints []string, key, value string) error {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = c.Put(pctx, key, value)
	return err
}

// lastLines returns the last n lines of out.
func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var (
	reqsPerSec = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	avgSecs    = regexp.MustCompile(`Average:\s+([0-9.]+) secs`)
	p99Secs    = regexp.MustCompile(`99% in ([0-9.]+) secs`)
)

// parseEtcdToolReport reads the tool's summary: its requests per second,
// and its average and 99th percentile latency. A report of several
// summaries (watch-latency prints one per stage) gives its last.
func parseEtcdToolReport(out []byte) (EtcdToolRun, error) {
	last := func(re *regexp.Regexp) (float64, bool) {
		m := re.FindAllSubmatch(out, -1)
		if len(m) == 0 {
			return 0, false
		}
		v, err := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
		return v, err == nil
	}
	var r EtcdToolRun
	var ok bool
	if r.RequestsSec, ok = last(reqsPerSec); !ok {
		return r, fmt.Errorf("no Requests/sec in the tool's report")
	}
	if avg, ok := last(avgSecs); ok {
		r.AverageMs = avg * 1000
	}
	if p99, ok := last(p99Secs); ok {
		r.P99Ms = p99 * 1000
	}
	return r, nil
}

// median returns the median run of system and workload.
func (r *EtcdToolResult) median(system, w string) (EtcdToolRun, bool) {
	var rs, lat, p99, cpu, others []float64
	for _, run := range r.Runs {
		if run.System == system && run.Workload == w {
			rs, lat, p99 = append(rs, run.RequestsSec), append(lat, run.AverageMs), append(p99, run.P99Ms)
			cpu, others = append(cpu, run.ServerCPUUsPerReq), append(others, run.OthersCPUShare)
		}
	}
	if len(rs) == 0 {
		return EtcdToolRun{}, false
	}
	return EtcdToolRun{System: system, Workload: w, RequestsSec: Median(rs), AverageMs: Median(lat), P99Ms: Median(p99),
		ServerCPUUsPerReq: Median(cpu), OthersCPUShare: Median(others)}, true
}

// WriteTable prints the medians of every workload for each system:
// throughput, latency, the servers' CPU per request and the share of the
// machine's CPU others used; and Flotilla's throughput as a multiple of
// etcd's, then etcd's server CPU per request as a multiple of
// Flotilla's (below 1: Flotilla's requests cost its servers more). On a
// machine whose cores are busy with other work the two ratios come
// close: the throughput follows what a request costs.
func (r *EtcdToolResult) WriteTable(out io.Writer) {
	fmt.Fprintf(out, "etcd benchmark tool %s; %d clients on %d connections, %d requests per run; medians of the runs; Flotilla: 3 nodes, %d shards; etcd %s: 3 members\n",
		r.ToolVersion, r.Clients, r.Conns, r.Total, r.Shards, r.EtcdVersion)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tsystem\trequests/s\taverage ms\tp99 ms\tserver CPU us/req\tothers' CPU\tflotilla/etcd\tCPU etcd/flotilla")
	for _, w := range r.workloads {
		f, fok := r.median("flotilla", w)
		e, eok := r.median("etcd", w)
		ratio, cpuRatio := "-", "-"
		if fok && eok && e.RequestsSec > 0 {
			ratio = fmt.Sprintf("%.2fx", f.RequestsSec/e.RequestsSec)
		}
		if fok && eok && f.ServerCPUUsPerReq > 0 && e.ServerCPUUsPerReq > 0 {
			cpuRatio = fmt.Sprintf("%.2fx", e.ServerCPUUsPerReq/f.ServerCPUUsPerReq)
		}
		for _, s := range r.systems {
			m, ok := r.median(s, w)
			if !ok {
				continue
			}
			cpu := "-"
			if m.ServerCPUUsPerReq > 0 {
				cpu = fmt.Sprintf("%.0f", m.ServerCPUUsPerReq)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f\t%.2f\t%s\t%.0f%%\t%s\t%s\n", w, s, m.RequestsSec, m.AverageMs, m.P99Ms, cpu, 100*m.OthersCPUShare, ratio, cpuRatio)
		}
	}
	tw.Flush()
}
