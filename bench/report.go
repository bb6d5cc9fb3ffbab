package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flotilla-kv/flotilla/internal/buildinfo"
)

// Report is everything a comparison measured: every run of every
// workload against every system, and the disk's fsync latency.
type Report struct {
	// Fsync is the disk's write+fsync latency, probed in the data
	// directory before the first run.
	Fsync FsyncProbe
	// Systems lists the systems in the order they ran.
	Systems []string
	// Workloads lists the workloads in the order they ran.
	Workloads []string
	// Runs holds every run: Runs[workload][system] in run order.
	Runs map[string]map[string][]*Result
	// Configs holds the configuration of each workload.
	Configs map[string]Config
	// Notes are remarks made while running (unbalanced leaders, ...).
	Notes []string
	// EtcdVersion is the etcd server's version, "" if etcd did not run.
	EtcdVersion string
	// Started is when the comparison began.
	Started time.Time
	// Build is the bench binary's own build (make build builds it with the
	// fleet's shardnode and placementd, from one tree).
	Build buildinfo.Info
	// Endpoints are the addresses of the already running fleet the runs
	// drove (CompareOptions.Endpoints), empty when each run started one.
	Endpoints []string
}

// Record is one row of the JSON output: one system, one workload, one run
// (Stat "run") or the median of every run (Stat "median", Run 0). The
// fields up to FsyncP50Ms are the ones the issue fixed; the rest add
// detail. Latencies are in milliseconds, CPU in seconds or µs per op.
type Record struct {
	System           string  `json:"system"`
	Workload         string  `json:"workload"`
	Clients          int     `json:"clients"`
	ValueSize        int     `json:"value_size"`
	OpsPerSec        float64 `json:"ops_per_sec"`
	P50Ms            float64 `json:"p50_ms"`
	P90Ms            float64 `json:"p90_ms"`
	P99Ms            float64 `json:"p99_ms"`
	P999Ms           float64 `json:"p999_ms"`
	Errors           int64   `json:"errors"`
	ServerCPUUsPerOp float64 `json:"server_cpu_us_per_op"`
	FsyncP50Ms       float64 `json:"fsync_p50_ms"`

	Stat               string                 `json:"stat"`
	Run                int                    `json:"run"`
	Runs               int                    `json:"runs"`
	MaxMs              float64                `json:"max_ms"`
	MeanMs             float64                `json:"mean_ms"`
	Ops                int64                  `json:"ops"`
	DurationS          float64                `json:"duration_s"`
	Mode               string                 `json:"mode"`
	TargetRate         float64                `json:"target_rate,omitempty"`
	KeySize            int                    `json:"key_size"`
	Keys               int                    `json:"keys"`
	Distribution       string                 `json:"distribution"`
	ReadFraction       float64                `json:"read_fraction"`
	WriteFraction      float64                `json:"write_fraction"`
	ScanFraction       float64                `json:"scan_fraction"`
	ScanLength         int                    `json:"scan_length,omitempty"`
	WarmupS            float64                `json:"warmup_s"`
	Seed               uint64                 `json:"seed,omitempty"`
	OpsByKind          map[string]int64       `json:"ops_by_kind,omitempty"`
	ErrorsByKind       map[string]int64       `json:"errors_by_kind,omitempty"`
	PreloadErrors      int64                  `json:"preload_errors"`
	WarmupErrors       int64                  `json:"warmup_errors"`
	LatencyByOp        map[string]LatencyJSON `json:"latency_by_op,omitempty"`
	ThroughputPerSec   []float64              `json:"throughput_per_sec,omitempty"`
	ServerCPUSeconds   float64                `json:"server_cpu_s"`
	ServerCPUByProcess map[string]float64     `json:"server_cpu_s_by_process,omitempty"`
	// ServerKernelShare is the part of the servers' CPU spent in kernel
	// mode (0 to 1), and ServerSwitchesPerOp how many times their threads
	// gave up their CPU per successful operation (CPUUse.ServerSwitches).
	ServerKernelShare   float64 `json:"server_kernel_share"`
	ServerSwitchesPerOp float64 `json:"server_context_switches_per_op"`
	ClientCPUSeconds    float64 `json:"client_cpu_s"`
	OtherCPUCores       float64 `json:"other_cpu_cores"`
	LoadAvgStart        float64 `json:"loadavg_start"`
	LoadAvgEnd          float64 `json:"loadavg_end"`
	FsyncP99Ms          float64 `json:"fsync_p99_ms"`
	CPUs                int     `json:"cpus"`
	EtcdVersion         string  `json:"etcd_version,omitempty"`
	// EtcdTarget is "leader" (every request sent to the member that
	// leads) or "all" (balanced over every member); etcd runs only.
	EtcdTarget        string `json:"etcd_target,omitempty"`
	EtcdLeaderChanges int64  `json:"etcd_leader_changes,omitempty"`
	// ServerStages is where requests spent their time on the servers
	// (Flotilla only). A median record carries the stages of its median
	// run by throughput.
	ServerStages *ServerStages `json:"server_stages,omitempty"`
	// Watch holds the watch workload's figures of the watches (nil for
	// the other workloads).
	Watch *WatchRecord `json:"watch,omitempty"`
	// Spread is, in a median record, the smallest and the largest value
	// over the runs of each figure of the table (nil in a run's record).
	Spread *Spread `json:"spread,omitempty"`

	// What ran: the bench's build (FlotillaVersion is the module version,
	// "(devel)" for a build from a working tree; FlotillaRevision the
	// commit, FlotillaModified whether the tree had changes), the Go
	// toolchain that built it, and the endpoints of an already running
	// fleet when the runs drove one instead of starting their own.
	FlotillaVersion  string   `json:"flotilla_version"`
	FlotillaRevision string   `json:"flotilla_revision"`
	FlotillaModified bool     `json:"flotilla_modified"`
	GoVersion        string   `json:"go_version"`
	Endpoints        []string `json:"endpoints,omitempty"`
}

// Spread holds the smallest and largest value over a median record's runs
// of each figure the table shows.
type Spread struct {
	OpsPerSec        MinMax `json:"ops_per_sec"`
	P50Ms            MinMax `json:"p50_ms"`
	P90Ms            MinMax `json:"p90_ms"`
	P99Ms            MinMax `json:"p99_ms"`
	P999Ms           MinMax `json:"p999_ms"`
	MaxMs            MinMax `json:"max_ms"`
	Errors           MinMax `json:"errors"`
	ServerCPUUsPerOp MinMax `json:"server_cpu_us_per_op"`
	OtherCPUCores    MinMax `json:"other_cpu_cores"`
}

// MinMax is the range of one figure over runs.
type MinMax struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// spreadOf returns the range of get over recs (which must not be empty).
func spreadOf(recs []Record, get func(Record) float64) MinMax {
	mm := MinMax{Min: get(recs[0]), Max: get(recs[0])}
	for _, r := range recs[1:] {
		mm.Min, mm.Max = min(mm.Min, get(r)), max(mm.Max, get(r))
	}
	return mm
}

// WatchRecord is the JSON of a WatchResult. In a median record every
// figure is the median over the runs, except the counts of events gone
// wrong (missing, duplicate, unexpected), which are totals, and
// drain_complete, true only if it held in every run.
type WatchRecord struct {
	Watchers         int      `json:"watchers"`
	EventsPerSec     float64  `json:"events_per_sec"`
	EventsDelivered  int64    `json:"events_delivered"`
	LagP50Ms         float64  `json:"lag_p50_ms"`
	LagP90Ms         float64  `json:"lag_p90_ms"`
	LagP99Ms         float64  `json:"lag_p99_ms"`
	LagP999Ms        float64  `json:"lag_p999_ms"`
	LagMaxMs         float64  `json:"lag_max_ms"`
	LagMeanMs        float64  `json:"lag_mean_ms"`
	LagCount         int64    `json:"lag_count"`
	AcknowledgedOps  int64    `json:"acknowledged_writes"`
	MissingEvents    int64    `json:"missing_events"`
	DuplicateEvents  int64    `json:"duplicate_events"`
	UnexpectedEvents int64    `json:"unexpected_events"`
	DrainS           float64  `json:"drain_s"`
	DrainComplete    bool     `json:"drain_complete"`
	Errors           []string `json:"errors,omitempty"`
}

func newWatchRecord(r *Result) *WatchRecord {
	w := r.Watch
	if w == nil {
		return nil
	}
	p := Summarize(w.Lag)
	return &WatchRecord{
		Watchers: w.Watchers, EventsPerSec: r.EventsPerSec(), EventsDelivered: w.Delivered,
		LagP50Ms: Millis(p.P50), LagP90Ms: Millis(p.P90), LagP99Ms: Millis(p.P99), LagP999Ms: Millis(p.P999),
		LagMaxMs: Millis(p.Max), LagMeanMs: Millis(p.Mean), LagCount: p.Count,
		AcknowledgedOps: w.Acknowledged, MissingEvents: w.Missing, DuplicateEvents: w.Duplicates, UnexpectedEvents: w.Unexpected,
		DrainS: w.Drain.Seconds(), DrainComplete: w.DrainComplete, Errors: w.Errors,
	}
}

// medianWatchRecord is the median record's WatchRecord of recs (see
// WatchRecord), nil if they have none.
func medianWatchRecord(recs []Record) *WatchRecord {
	var ws []*WatchRecord
	for _, r := range recs {
		if r.Watch != nil {
			ws = append(ws, r.Watch)
		}
	}
	if len(ws) == 0 {
		return nil
	}
	med := func(get func(*WatchRecord) float64) float64 {
		v := make([]float64, len(ws))
		for i, w := range ws {
			v[i] = get(w)
		}
		return Median(v)
	}
	m := &WatchRecord{Watchers: ws[0].Watchers, DrainComplete: true}
	m.EventsPerSec = med(func(w *WatchRecord) float64 { return w.EventsPerSec })
	m.EventsDelivered = int64(med(func(w *WatchRecord) float64 { return float64(w.EventsDelivered) }))
	m.LagP50Ms = med(func(w *WatchRecord) float64 { return w.LagP50Ms })
	m.LagP90Ms = med(func(w *WatchRecord) float64 { return w.LagP90Ms })
	m.LagP99Ms = med(func(w *WatchRecord) float64 { return w.LagP99Ms })
	m.LagP999Ms = med(func(w *WatchRecord) float64 { return w.LagP999Ms })
	m.LagMaxMs = med(func(w *WatchRecord) float64 { return w.LagMaxMs })
	m.LagMeanMs = med(func(w *WatchRecord) float64 { return w.LagMeanMs })
	m.LagCount = int64(med(func(w *WatchRecord) float64 { return float64(w.LagCount) }))
	m.AcknowledgedOps = int64(med(func(w *WatchRecord) float64 { return float64(w.AcknowledgedOps) }))
	m.DrainS = med(func(w *WatchRecord) float64 { return w.DrainS })
	for _, w := range ws {
		m.MissingEvents += w.MissingEvents
		m.DuplicateEvents += w.DuplicateEvents
		m.UnexpectedEvents += w.UnexpectedEvents
		m.DrainComplete = m.DrainComplete && w.DrainComplete
	}
	return m
}

// LatencyJSON is the latency distribution of one kind of operation.
type LatencyJSON struct {
	Count  int64   `json:"count"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func latencyJSON(p Percentiles) LatencyJSON {
	return LatencyJSON{p.Count, Millis(p.P50), Millis(p.P90), Millis(p.P99), Millis(p.P999), Millis(p.Max)}
}

// NewRecord returns the record of one run.
func NewRecord(r *Result, fsync FsyncProbe, run int) Record {
	c := r.Config
	m := c.mix()
	p := Summarize(r.Latency)
	rec := Record{
		System: r.System, Workload: c.Workload, Clients: c.Clients, ValueSize: c.ValueSizeBytes,
		OpsPerSec: r.OpsPerSec(), P50Ms: Millis(p.P50), P90Ms: Millis(p.P90), P99Ms: Millis(p.P99), P999Ms: Millis(p.P999),
		Errors: r.Errors, ServerCPUUsPerOp: float64(r.ServerCPUPerOp()) / float64(time.Microsecond), FsyncP50Ms: Millis(fsync.P50),
		Stat: "run", Run: run, Runs: 1, MaxMs: Millis(p.Max), MeanMs: Millis(p.Mean), Ops: r.Ops, DurationS: r.Elapsed.Seconds(),
		Mode: "closed", KeySize: c.KeySizeBytes, Keys: c.Keys, Distribution: c.Distribution,
		ReadFraction: m.Read, WriteFraction: m.Write, ScanFraction: m.Scan, WarmupS: c.Warmup.Seconds(), Seed: r.Seed,
		OpsByKind: r.OpsByKind, ErrorsByKind: r.ErrorsByKind, PreloadErrors: r.PreloadErrors, WarmupErrors: r.WarmupErrors,
		LatencyByOp: map[string]LatencyJSON{}, ThroughputPerSec: r.Throughput,
		ServerCPUSeconds: r.CPU.Server.Seconds(), ServerCPUByProcess: map[string]float64{},
		ClientCPUSeconds: r.CPU.Client.Seconds(), LoadAvgStart: r.CPU.LoadStart, LoadAvgEnd: r.CPU.LoadEnd,
		FsyncP99Ms: Millis(fsync.P99), CPUs: runtime.NumCPU(), ServerStages: r.Stages, Watch: newWatchRecord(r),
		EtcdTarget: r.EtcdTarget, EtcdLeaderChanges: r.EtcdLeaderChanges,
	}
	if m.Scan > 0 {
		rec.ScanLength = c.ScanLength
	}
	if c.Rate > 0 {
		rec.Mode, rec.TargetRate = "open", c.Rate
	}
	if r.CPU.Wall > 0 {
		rec.OtherCPUCores = r.CPU.Others.Seconds() / r.CPU.Wall.Seconds()
	}
	if r.CPU.Server > 0 {
		rec.ServerKernelShare = r.CPU.ServerKernel.Seconds() / r.CPU.Server.Seconds()
	}
	if r.Ops > 0 {
		rec.ServerSwitchesPerOp = float64(r.CPU.ServerSwitches) / float64(r.Ops)
	}
	for op, h := range r.LatencyByOp {
		rec.LatencyByOp[op] = latencyJSON(Summarize(h))
	}
	for name, d := range r.CPU.Servers {
		rec.ServerCPUByProcess[name] = d.Seconds()
	}
	return rec
}

// MedianRecord returns the record whose every figure is the median of
// that figure over recs (the runs of one system and workload); the
// per-second, per-kind and per-process detail is left out.
func MedianRecord(recs []Record) Record {
	if len(recs) == 0 {
		return Record{}
	}
	med := func(get func(Record) float64) float64 {
		v := make([]float64, len(recs))
		for i, r := range recs {
			v[i] = get(r)
		}
		return Median(v)
	}
	m := recs[0]
	m.Stat, m.Run, m.Runs, m.Seed = "median", 0, len(recs), 0
	m.OpsByKind, m.ErrorsByKind, m.LatencyByOp, m.ThroughputPerSec, m.ServerCPUByProcess = nil, nil, nil, nil, nil
	m.OpsPerSec = med(func(r Record) float64 { return r.OpsPerSec })
	m.P50Ms = med(func(r Record) float64 { return r.P50Ms })
	m.P90Ms = med(func(r Record) float64 { return r.P90Ms })
	m.P99Ms = med(func(r Record) float64 { return r.P99Ms })
	m.P999Ms = med(func(r Record) float64 { return r.P999Ms })
	m.MaxMs = med(func(r Record) float64 { return r.MaxMs })
	m.MeanMs = med(func(r Record) float64 { return r.MeanMs })
	m.Errors = int64(med(func(r Record) float64 { return float64(r.Errors) }))
	m.Ops = int64(med(func(r Record) float64 { return float64(r.Ops) }))
	m.DurationS = med(func(r Record) float64 { return r.DurationS })
	m.ServerCPUUsPerOp = med(func(r Record) float64 { return r.ServerCPUUsPerOp })
	m.ServerCPUSeconds = med(func(r Record) float64 { return r.ServerCPUSeconds })
	m.ServerKernelShare = med(func(r Record) float64 { return r.ServerKernelShare })
	m.ServerSwitchesPerOp = med(func(r Record) float64 { return r.ServerSwitchesPerOp })
	m.ClientCPUSeconds = med(func(r Record) float64 { return r.ClientCPUSeconds })
	m.OtherCPUCores = med(func(r Record) float64 { return r.OtherCPUCores })
	m.LoadAvgStart = med(func(r Record) float64 { return r.LoadAvgStart })
	m.LoadAvgEnd = med(func(r Record) float64 { return r.LoadAvgEnd })
	m.PreloadErrors = int64(med(func(r Record) float64 { return float64(r.PreloadErrors) }))
	m.WarmupErrors = int64(med(func(r Record) float64 { return float64(r.WarmupErrors) }))
	byOps := slices.Clone(recs)
	sort.SliceStable(byOps, func(i, j int) bool { return byOps[i].OpsPerSec < byOps[j].OpsPerSec })
	m.ServerStages = byOps[(len(byOps)-1)/2].ServerStages
	m.Watch = medianWatchRecord(recs)
	m.Spread = &Spread{
		OpsPerSec:        spreadOf(recs, func(r Record) float64 { return r.OpsPerSec }),
		P50Ms:            spreadOf(recs, func(r Record) float64 { return r.P50Ms }),
		P90Ms:            spreadOf(recs, func(r Record) float64 { return r.P90Ms }),
		P99Ms:            spreadOf(recs, func(r Record) float64 { return r.P99Ms }),
		P999Ms:           spreadOf(recs, func(r Record) float64 { return r.P999Ms }),
		MaxMs:            spreadOf(recs, func(r Record) float64 { return r.MaxMs }),
		Errors:           spreadOf(recs, func(r Record) float64 { return float64(r.Errors) }),
		ServerCPUUsPerOp: spreadOf(recs, func(r Record) float64 { return r.ServerCPUUsPerOp }),
		OtherCPUCores:    spreadOf(recs, func(r Record) float64 { return r.OtherCPUCores }),
	}
	m.EtcdLeaderChanges = 0
	for _, r := range recs {
		m.EtcdLeaderChanges += r.EtcdLeaderChanges // a total, as events gone wrong are
	}
	return m
}

// Median returns the median of v (the mean of the two middle values for
// an even count), 0 for none. It does not modify v.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// stampRun fills in what ran rec, a record of system: etcd's version,
// the bench's build and the endpoints of the fleet it drove.
func (rep *Report) stampRun(rec *Record, system string) {
	rec.EtcdVersion = rep.etcdVersion(system)
	rec.FlotillaVersion, rec.FlotillaRevision, rec.FlotillaModified = rep.Build.Version, rep.Build.Revision, rep.Build.Modified
	rec.GoVersion, rec.Endpoints = rep.Build.GoVersion, rep.Endpoints
}

// Records returns every run's record and, for each system and workload
// run more than once, the median record, in run order.
func (rep *Report) Records() []Record {
	var out []Record
	for _, w := range rep.Workloads {
		for _, s := range rep.Systems {
			runs := rep.Runs[w][s]
			var recs []Record
			for i, r := range runs {
				rec := NewRecord(r, rep.Fsync, i+1)
				rep.stampRun(&rec, s)
				recs = append(recs, rec)
			}
			out = append(out, recs...)
			if len(recs) > 1 {
				out = append(out, MedianRecord(recs))
			}
		}
	}
	return out
}

func (rep *Report) etcdVersion(system string) string {
	if system == "etcd" {
		return rep.EtcdVersion
	}
	return ""
}

// summary returns the record the table shows for a system and workload:
// the median over runs, or the one run.
func (rep *Report) summary(workload, system string) (Record, bool) {
	runs := rep.Runs[workload][system]
	if len(runs) == 0 {
		return Record{}, false
	}
	var recs []Record
	for i, r := range runs {
		recs = append(recs, NewRecord(r, rep.Fsync, i+1))
	}
	if len(recs) == 1 {
		return recs[0], true
	}
	return MedianRecord(recs), true
}

// WriteJSON writes every record to path as an indented JSON array.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep.Records(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteTable writes the human-readable report: the machine and disk, then
// per workload one row per system and the ratio of the first system to
// each other.
func (rep *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "disk: write+fsync of 4 KiB in the data directory, %d samples: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		rep.Fsync.Samples, Millis(rep.Fsync.P50), Millis(rep.Fsync.P99), Millis(rep.Fsync.Max))
	fmt.Fprintf(w, "machine: %d CPUs, shared by every system's servers and the bench's clients\n", runtime.NumCPU())
	fmt.Fprintf(w, "build: flotilla-bench %s\n", rep.buildLine())
	switch {
	case len(rep.Endpoints) > 0:
		fmt.Fprintf(w, "%s: the running fleet at %s (started by no run; its servers' CPU is not measured)\n",
			strings.Join(rep.Systems, ","), strings.Join(rep.Endpoints, ","))
		if rep.EtcdVersion != "" {
			fmt.Fprintf(w, "etcd: %s\n", rep.EtcdVersion)
		}
	case rep.EtcdVersion != "":
		fmt.Fprintf(w, "etcd: %s, 3 members, default durability; flotilla: 3 shardnodes + placementd\n", rep.EtcdVersion)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, wl := range rep.Workloads {
		cfg := rep.Configs[wl]
		runs := len(rep.Runs[wl][rep.Systems[0]])
		fmt.Fprintf(w, "\nworkload %s\n", cfg.Describe())
		if runs > 1 {
			fmt.Fprintf(w, "figures are medians of %d runs per system, each with its runs' smallest and largest value on the line below\n", runs)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "SYSTEM\tOPS/S\tP50 ms\tP90 ms\tP99 ms\tP99.9 ms\tMAX ms\tERRORS\tSERVER CPU µs/op\tOTHER LOAD cores\t")
		var rows []Record
		for _, s := range rep.Systems {
			r, ok := rep.summary(wl, s)
			if !ok {
				continue
			}
			rows = append(rows, r)
			fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%.1f\t%.2f\t\n", s, r.OpsPerSec, r.P50Ms, r.P90Ms,
				r.P99Ms, r.P999Ms, r.MaxMs, r.Errors, r.ServerCPUUsPerOp, r.OtherCPUCores)
			if x := r.Spread; x != nil {
				fmt.Fprintf(tw, "min-max\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", x.OpsPerSec.format("%.0f"), x.P50Ms.format("%.2f"),
					x.P90Ms.format("%.2f"), x.P99Ms.format("%.2f"), x.P999Ms.format("%.2f"), x.MaxMs.format("%.2f"), x.Errors.format("%.0f"),
					x.ServerCPUUsPerOp.format("%.1f"), x.OtherCPUCores.format("%.2f"))
			}
		}
		for _, o := range rows[min(1, len(rows)):] {
			a := rows[0]
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t%s\t\t\n", a.System, o.System, ratio(a.OpsPerSec, o.OpsPerSec),
				ratio(a.P50Ms, o.P50Ms), ratio(a.P90Ms, o.P90Ms), ratio(a.P99Ms, o.P99Ms), ratio(a.P999Ms, o.P999Ms),
				ratio(a.MaxMs, o.MaxMs), ratio(a.ServerCPUUsPerOp, o.ServerCPUUsPerOp))
		}
		tw.Flush()
		if len(rows) > 1 {
			fmt.Fprintf(w, "ratios are %s over the other: above 1 is better for OPS/S, below 1 is better for latencies and server CPU per op\n", rows[0].System)
		}
		if line := wakeupLine(rows); line != "" {
			fmt.Fprintln(w, line)
		}
		for _, r := range rows {
			if r.EtcdTarget != "" {
				fmt.Fprintf(w, "%s\n", etcdTargetLine(r))
			}
		}
		writeWatchTable(w, rows)
		for _, r := range rows {
			if r.ServerStages != nil {
				fmt.Fprintf(w, "%s server stages (means): %s\n", r.System, r.ServerStages)
			}
		}
		for _, s := range rep.Systems {
			for i, r := range rep.Runs[wl][s] {
				if len(r.ErrorsByKind) > 0 || r.PreloadErrors > 0 {
					fmt.Fprintf(w, "errors of %s run %d: %s (preload %d, warm-up %d)\n", s, i+1, formatCounts(r.ErrorsByKind), r.PreloadErrors, r.WarmupErrors)
				}
				if r.Watch != nil {
					for _, e := range r.Watch.Errors {
						fmt.Fprintf(w, "watch error of %s run %d: %s\n", s, i+1, e)
					}
				}
			}
		}
	}
	fmt.Fprintln(w, "\nOTHER LOAD: CPU used by the rest of the machine (other tenants) during the window, in cores; high values mean the figures are disturbed.")
}

// wakeupLine says, for each row whose servers were measured, how often
// their threads gave up the CPU per operation and how much of their CPU
// the kernel used: on a machine where waking a thread is costly, these
// explain CPU per operation that Go's CPU profiles show only in part. It is
// empty when no row has them (a fleet the bench did not start).
func wakeupLine(rows []Record) string {
	var parts []string
	for _, r := range rows {
		if r.ServerSwitchesPerOp > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f, %.0f%% of their CPU in the kernel", r.System, r.ServerSwitchesPerOp, 100*r.ServerKernelShare))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "server threads' context switches per op: " + strings.Join(parts, "; ")
}

// format formats mm as "min-max", each with verb.
func (mm MinMax) format(verb string) string {
	return fmt.Sprintf(verb+"-"+verb, mm.Min, mm.Max)
}

// buildLine describes the bench's build: version, commit and Go version.
func (rep *Report) buildLine() string {
	b := rep.Build
	s := b.Version
	if b.Revision != "" {
		s += ", commit " + b.Revision[:min(12, len(b.Revision))]
		if b.Modified {
			s += " (modified)"
		}
	}
	return s + ", " + b.GoVersion
}

// etcdTargetLine says which members an etcd row's requests went to.
func etcdTargetLine(r Record) string {
	s := "etcd clients: balanced over every member (a follower forwards writes to the leader and asks it for each linearizable read's index)"
	if r.EtcdTarget == EtcdTargetLeader {
		s = "etcd clients: leader only (found with the maintenance Status API, followed when it changes)"
		if r.EtcdLeaderChanges > 0 {
			s += fmt.Sprintf("; %d leader changes followed", r.EtcdLeaderChanges)
		}
	}
	return s
}

// writeWatchTable writes the watches' table of a watch workload's rows
// (nothing for other workloads).
func writeWatchTable(w io.Writer, rows []Record) {
	if len(rows) == 0 || rows[0].Watch == nil {
		return
	}
	n, watches := rows[0].Watch.Watchers, "range watches, one per slice of the key space"
	if n == 1 {
		watches = "range watch over the whole key space"
	}
	fmt.Fprintf(w, "watches: %d %s; lag = delivery - send time of each event\n", n, watches)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SYSTEM\tEVENTS/S\tWRITES/S\tLAG P50 ms\tLAG P90 ms\tLAG P99 ms\tLAG P99.9 ms\tLAG MAX ms\tMISSING\tDUPLICATES\tDRAIN ms\t")
	for _, r := range rows {
		x := r.Watch
		if x == nil {
			continue
		}
		drain := fmt.Sprintf("%.0f", x.DrainS*1e3)
		if !x.DrainComplete {
			drain += " (incomplete)"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%s\t\n", r.System, x.EventsPerSec, r.OpsPerSec,
			x.LagP50Ms, x.LagP90Ms, x.LagP99Ms, x.LagP999Ms, x.LagMaxMs, x.MissingEvents, x.DuplicateEvents, drain)
	}
	if a := rows[0].Watch; a != nil {
		for _, o := range rows[1:] {
			if b := o.Watch; b != nil {
				fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t\t%s\t\n", rows[0].System, o.System,
					ratio(a.EventsPerSec, b.EventsPerSec), ratio(rows[0].OpsPerSec, o.OpsPerSec), ratio(a.LagP50Ms, b.LagP50Ms),
					ratio(a.LagP90Ms, b.LagP90Ms), ratio(a.LagP99Ms, b.LagP99Ms), ratio(a.LagP999Ms, b.LagP999Ms),
					ratio(a.LagMaxMs, b.LagMaxMs), ratio(a.DrainS, b.DrainS))
			}
		}
	}
	tw.Flush()
	for _, r := range rows {
		if x := r.Watch; x != nil && (x.MissingEvents > 0 || x.DuplicateEvents > 0 || x.UnexpectedEvents > 0) {
			fmt.Fprintf(w, "WATCH FAILED: %s: %d acknowledged writes never delivered, %d delivered twice, %d unexpected events\n",
				r.System, x.MissingEvents, x.DuplicateEvents, x.UnexpectedEvents)
		}
	}
}

// ratio formats a/b as "2.50x", or "-" when b is 0.
func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func formatCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
