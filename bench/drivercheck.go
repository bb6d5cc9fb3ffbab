package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// DriverCheckOptions configures CheckEtcdDriver.
type DriverCheckOptions struct {
	// Dir holds etcd's data, its logs and the tool's output. Required.
	Dir string
	// Etcd says where the etcd server and the tool's sources come from.
	Etcd EtcdBuild
	// Runs is the number of runs, each on a fresh etcd cluster. Default 3.
	Runs int
	// Clients and Conns are the concurrency of both the tool (its
	// --clients and --conns) and the driver (bench clients and
	// clientv3.Clients). Defaults 100 and 1 (the suite's compare).
	Clients, Conns int
	// Total is the number of the tool's requests per run. Default 20,000.
	Total int
	// Duration is the driver's measured window, after a one-second
	// warm-up. Default 5 s.
	Duration time.Duration
	// Keys and ValueSizeBytes shape both: puts of random keys among Keys
	// (16 bytes each), ValueSizeBytes each. Defaults 10,000 and 256.
	Keys, ValueSizeBytes int
	// Target is the members both send their requests to: EtcdTargetLeader
	// (default) or EtcdTargetAll.
	Target string
	// Log receives one line per step.
	Log io.Writer
}

// DriverCheckRun is one run: the tool's put benchmark and the suite's
// driver's write workload, one after the other on the same etcd.
type DriverCheckRun struct {
	Run int `json:"run"`
	// ToolFirst says which ran first (odd runs: the tool).
	ToolFirst        bool    `json:"tool_first"`
	ToolReqPerSec    float64 `json:"tool_requests_per_sec"`
	ToolAverageMs    float64 `json:"tool_average_ms"`
	ToolP99Ms        float64 `json:"tool_p99_ms"`
	ToolCPUUsPerOp   float64 `json:"tool_server_cpu_us_per_op"`
	DriverOpsPerSec  float64 `json:"driver_ops_per_sec"`
	DriverMeanMs     float64 `json:"driver_mean_ms"`
	DriverP50Ms      float64 `json:"driver_p50_ms"`
	DriverP99Ms      float64 `json:"driver_p99_ms"`
	DriverCPUUsPerOp float64 `json:"driver_server_cpu_us_per_op"`
	DriverErrors     int64   `json:"driver_errors"`
}

// DriverCheck is what CheckEtcdDriver measured.
type DriverCheck struct {
	ToolVersion string           `json:"tool_version"`
	EtcdVersion string           `json:"etcd_version"`
	Target      string           `json:"target"`
	Clients     int              `json:"clients"`
	Conns       int              `json:"conns"`
	Total       int              `json:"total"`
	DurationS   float64          `json:"driver_duration_s"`
	Keys        int              `json:"keys"`
	ValueSize   int              `json:"value_size"`
	Runs        []DriverCheckRun `json:"runs"`
}

// CheckEtcdDriver checks that the suite's etcd driver does not
// short-change etcd: on one fresh 3-member etcd cluster per run it runs
// etcd's own benchmark tool (puts, the release pinned in
// bench/etcdbenchmark) and the driver's write workload with the same
// clients, connections, key space, value size and members (the leader,
// or all), one after the other, the order alternating across runs, and
// reads the servers' CPU over each. A driver far below the tool would
// make every comparison unfair to etcd.
func CheckEtcdDriver(ctx context.Context, o DriverCheckOptions) (*DriverCheck, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("bench: driver check: no directory")
	}
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if o.Clients <= 0 {
		o.Clients = DefaultClients
	}
	if o.Conns <= 0 {
		o.Conns = 1
	}
	if o.Total <= 0 {
		o.Total = 20000
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Keys <= 0 {
		o.Keys = DefaultKeys
	}
	if o.ValueSizeBytes <= 0 {
		o.ValueSizeBytes = DefaultValueSize
	}
	if o.Target == "" {
		o.Target = EtcdTargetLeader
	}
	if o.Target != EtcdTargetLeader && o.Target != EtcdTargetAll {
		return nil, fmt.Errorf("bench: driver check: target %q: want %s or %s", o.Target, EtcdTargetLeader, EtcdTargetAll)
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
	etcdBin, etcdVersion, err := EnsureEtcd(ctx, o.Etcd)
	if err != nil {
		return nil, err
	}
	dc := &DriverCheck{ToolVersion: toolVersion, EtcdVersion: etcdVersion, Target: o.Target, Clients: o.Clients, Conns: o.Conns,
		Total: o.Total, DurationS: o.Duration.Seconds(), Keys: o.Keys, ValueSize: o.ValueSizeBytes}
	for run := 1; run <= o.Runs; run++ {
		r, err := driverCheckOnce(ctx, o, tool, etcdBin, filepath.Join(o.Dir, fmt.Sprintf("run-%d", run)), run%2 == 1)
		if err != nil {
			return nil, fmt.Errorf("bench: driver check run %d: %w", run, err)
		}
		r.Run = run
		dc.Runs = append(dc.Runs, r)
		logf("run %d/%d: tool %.0f requests/s (p99 %.2f ms, %.0f µs CPU/op), driver %.0f ops/s (p99 %.2f ms, %.0f µs CPU/op)",
			run, o.Runs, r.ToolReqPerSec, r.ToolP99Ms, r.ToolCPUUsPerOp, r.DriverOpsPerSec, r.DriverP99Ms, r.DriverCPUUsPerOp)
	}
	return dc, nil
}

// driverCheckOnce runs the tool and the driver on one fresh etcd in dir.
func driverCheckOnce(ctx context.Context, o DriverCheckOptions, tool, etcdBin, dir string, toolFirst bool) (DriverCheckRun, error) {
	r := DriverCheckRun{ToolFirst: toolFirst}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	c, err := StartEtcd(ctx, etcdBin, dir, 3)
	if err != nil {
		return r, err
	}
	defer c.Stop()
	runTool := func() error {
		endpoints := c.Endpoints
		if o.Target == EtcdTargetLeader {
			sc, err := newEtcdClient(ctx, c.Endpoints)
			if err != nil {
				return err
			}
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			leader, err := waitEtcdLeader(lctx, sc, c.Endpoints)
			cancel()
			_ = sc.Close()
			if err != nil {
				return err
			}
			endpoints = []string{leader}
		}
		args := []string{"put", fmt.Sprintf("--key-size=%d", DefaultKeySize), fmt.Sprintf("--val-size=%d", o.ValueSizeBytes),
			fmt.Sprintf("--key-space-size=%d", o.Keys), "--endpoints=" + strings.Join(endpoints, ","),
			fmt.Sprintf("--clients=%d", o.Clients), fmt.Sprintf("--conns=%d", o.Conns), fmt.Sprintf("--total=%d", o.Total)}
		win := startCPUWindow(c.Procs())
		out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
		cpu := win.end()
		if logErr := os.WriteFile(filepath.Join(dir, "benchmark.out"), out, 0o644); logErr != nil && err == nil {
			err = logErr
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w\n%s", filepath.Base(tool), strings.Join(args, " "), err, lastLines(out, 20))
		}
		tr, err := parseEtcdToolReport(out)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, lastLines(out, 20))
		}
		r.ToolReqPerSec, r.ToolAverageMs, r.ToolP99Ms = tr.RequestsSec, tr.AverageMs, tr.P99Ms
		// The window includes the tool's start and its connections; at
		// thousands of requests that is a small share.
		r.ToolCPUUsPerOp = float64(cpu.Server) / float64(time.Microsecond) / float64(o.Total)
		return nil
	}
	runDriver := func() error {
		d, err := NewEtcdDriver(ctx, c.Endpoints, o.Conns, o.Target)
		if err != nil {
			return err
		}
		defer d.Close()
		cfg := Config{Workload: "write", Clients: o.Clients, Keys: o.Keys, ValueSizeBytes: o.ValueSizeBytes,
			Warmup: time.Second, Duration: o.Duration}
		res, err := Run(ctx, cfg, d, RunOptions{Servers: c.Procs()})
		if err != nil {
			return err
		}
		p := Summarize(res.Latency)
		r.DriverOpsPerSec, r.DriverMeanMs, r.DriverP50Ms, r.DriverP99Ms = res.OpsPerSec(), Millis(p.Mean), Millis(p.P50), Millis(p.P99)
		r.DriverCPUUsPerOp = float64(res.ServerCPUPerOp()) / float64(time.Microsecond)
		r.DriverErrors = res.Errors
		return nil
	}
	steps := []func() error{runTool, runDriver}
	if !toolFirst {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return r, err
		}
	}
	return r, nil
}

// median returns the run whose every figure is the median of that
// figure over the runs.
func (dc *DriverCheck) median() DriverCheckRun {
	med := func(get func(DriverCheckRun) float64) float64 {
		v := make([]float64, len(dc.Runs))
		for i, r := range dc.Runs {
			v[i] = get(r)
		}
		return Median(v)
	}
	return DriverCheckRun{
		ToolReqPerSec:    med(func(r DriverCheckRun) float64 { return r.ToolReqPerSec }),
		ToolAverageMs:    med(func(r DriverCheckRun) float64 { return r.ToolAverageMs }),
		ToolP99Ms:        med(func(r DriverCheckRun) float64 { return r.ToolP99Ms }),
		ToolCPUUsPerOp:   med(func(r DriverCheckRun) float64 { return r.ToolCPUUsPerOp }),
		DriverOpsPerSec:  med(func(r DriverCheckRun) float64 { return r.DriverOpsPerSec }),
		DriverMeanMs:     med(func(r DriverCheckRun) float64 { return r.DriverMeanMs }),
		DriverP50Ms:      med(func(r DriverCheckRun) float64 { return r.DriverP50Ms }),
		DriverP99Ms:      med(func(r DriverCheckRun) float64 { return r.DriverP99Ms }),
		DriverCPUUsPerOp: med(func(r DriverCheckRun) float64 { return r.DriverCPUUsPerOp }),
		DriverErrors:     int64(med(func(r DriverCheckRun) float64 { return float64(r.DriverErrors) })),
	}
}

// WriteTable prints every run and the medians, with the tool's
// throughput over the driver's.
func (dc *DriverCheck) WriteTable(out io.Writer) {
	fmt.Fprintf(out, "etcd %s (3 members) driven by etcd's benchmark tool %s (put) and by the suite's driver (write), in turn on the same cluster; "+
		"requests to %s; %d clients on %d connections; %d keys of %d bytes, %d-byte values; tool %d requests, driver %gs after 1s warm-up\n",
		dc.EtcdVersion, dc.ToolVersion, dc.Target, dc.Clients, dc.Conns, dc.Keys, DefaultKeySize, dc.ValueSize, dc.Total, dc.DurationS)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "RUN\tFIRST\tTOOL REQ/S\tTOOL AVG ms\tTOOL P99 ms\tTOOL CPU µs/op\tDRIVER OPS/S\tDRIVER MEAN ms\tDRIVER P99 ms\tDRIVER CPU µs/op\tERRORS\tTOOL/DRIVER\t")
	row := func(name, first string, r DriverCheckRun) {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f\t%.2f\t%.0f\t%.0f\t%.2f\t%.2f\t%.0f\t%d\t%s\t\n", name, first, r.ToolReqPerSec, r.ToolAverageMs,
			r.ToolP99Ms, r.ToolCPUUsPerOp, r.DriverOpsPerSec, r.DriverMeanMs, r.DriverP99Ms, r.DriverCPUUsPerOp, r.DriverErrors,
			ratio(r.ToolReqPerSec, r.DriverOpsPerSec))
	}
	for _, r := range dc.Runs {
		first := "driver"
		if r.ToolFirst {
			first = "tool"
		}
		row(fmt.Sprint(r.Run), first, r)
	}
	if len(dc.Runs) > 1 {
		row("median", "", dc.median())
	}
	tw.Flush()
	fmt.Fprintln(out, "TOOL/DRIVER near 1 or below: the driver gets from etcd at least what etcd's own tool gets, so it does not short-change etcd.")
}
