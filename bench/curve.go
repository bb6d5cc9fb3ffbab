package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// DefaultCurveClients are the client counts of a curve: one client (the
// latency floor), then each tenfold up to a thousand (throughput once
// rounds fill).
var DefaultCurveClients = []int{1, 10, 100, 1000}

// CurveOptions configures RunCurve.
type CurveOptions struct {
	// Compare is the comparison each point runs: systems, runs, fleets,
	// etcd. Its Workloads are ignored (see Workload and Clients).
	Compare CompareOptions
	// Workload is the template of every point's workload (keys, sizes,
	// warm-up, duration); its Workload and Clients are set per point.
	Workload Config
	// Workloads are the workloads measured at each client count
	// (default write and read).
	Workloads []string
	// Clients are the client counts, in order (default
	// DefaultCurveClients).
	Clients []int
}

// CurvePoint is one system's medians for one workload at one client
// count.
type CurvePoint struct {
	Workload string `json:"workload"`
	Clients  int    `json:"clients"`
	System   string `json:"system"`
	// Median is the median record of the point's runs (the record itself
	// when there was one run).
	Median Record `json:"median"`
}

// Curve is what RunCurve measured: for every workload, client count and
// system, the medians of the runs, and the disk's fsync latency.
type Curve struct {
	Systems   []string `json:"systems"`
	Workloads []string `json:"workloads"`
	Clients   []int    `json:"clients"`
	Runs      int      `json:"runs"`
	// FsyncP50Ms is the median of the fsync probes' p50s (one probe
	// before each client count), in milliseconds.
	FsyncP50Ms  float64      `json:"fsync_p50_ms"`
	FsyncProbes []FsyncProbe `json:"fsync_probes"`
	EtcdVersion string       `json:"etcd_version,omitempty"`
	Points      []CurvePoint `json:"points"`
	// Notes are the comparisons' remarks (unbalanced leaders, ...).
	Notes   []string  `json:"notes,omitempty"`
	Started time.Time `json:"started"`
	Elapsed float64   `json:"elapsed_s"`
}

// RunCurve measures every workload of o at every client count against
// every system: one Compare per client count (its fsync probe, then for
// each workload and run each system on a fresh fleet, the systems
// alternating), so every figure of one count comes from the same few
// minutes. It returns the curve of the medians.
func RunCurve(ctx context.Context, o CurveOptions) (*Curve, error) {
	if len(o.Workloads) == 0 {
		o.Workloads = []string{"write", "read"}
	}
	if len(o.Clients) == 0 {
		o.Clients = DefaultCurveClients
	}
	for _, n := range o.Clients {
		if n < 1 {
			return nil, fmt.Errorf("bench: curve: client count %d: want at least 1", n)
		}
	}
	cv := &Curve{Workloads: o.Workloads, Clients: o.Clients, Started: time.Now()}
	for _, n := range o.Clients {
		co := o.Compare
		co.Workloads = nil
		for _, w := range o.Workloads {
			cfg := o.Workload
			cfg.Workload, cfg.Clients = w, n
			co.Workloads = append(co.Workloads, cfg)
		}
		if co.Log != nil {
			fmt.Fprintf(co.Log, "curve: %d clients\n", n)
		}
		rep, err := Compare(ctx, co)
		if err != nil {
			return nil, fmt.Errorf("bench: curve at %d clients: %w", n, err)
		}
		cv.add(rep)
	}
	cv.Elapsed = time.Since(cv.Started).Seconds()
	return cv, nil
}

// add takes the medians of one comparison (one client count) into cv.
func (cv *Curve) add(rep *Report) {
	cv.Systems = rep.Systems
	cv.EtcdVersion = rep.EtcdVersion
	cv.FsyncProbes = append(cv.FsyncProbes, rep.Fsync)
	var p50s []float64
	for _, f := range cv.FsyncProbes {
		p50s = append(p50s, Millis(f.P50))
	}
	cv.FsyncP50Ms = Median(p50s)
	cv.Notes = append(cv.Notes, rep.Notes...)
	for _, w := range rep.Workloads {
		for _, s := range rep.Systems {
			m, ok := rep.summary(w, s)
			if !ok {
				continue
			}
			cv.Runs = max(cv.Runs, m.Runs)
			rep.stampRun(&m, s)
			cv.Points = append(cv.Points, CurvePoint{Workload: w, Clients: rep.Configs[w].Clients, System: s, Median: m})
		}
	}
}

// Point returns the point of workload, clients and system.
func (cv *Curve) Point(workload string, clients int, system string) (CurvePoint, bool) {
	for _, p := range cv.Points {
		if p.Workload == workload && p.Clients == clients && p.System == system {
			return p, true
		}
	}
	return CurvePoint{}, false
}

// WriteMarkdown writes the curve as markdown: what ran, then per workload
// one row per client count with each system's throughput, latency and
// server CPU per operation, and the first system's throughput over the
// others'.
func (cv *Curve) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Medians of %d runs per point, each on a fresh fleet, the systems alternating; disk write+fsync p50 %.2f ms (median of %d probes, one per client count)%s.\n",
		cv.Runs, cv.FsyncP50Ms, len(cv.FsyncProbes), cv.shape())
	if cv.EtcdVersion != "" {
		fmt.Fprintf(w, "etcd %s, 3 members; Flotilla 3 shardnodes + placementd. Server CPU is every server process's CPU over the window per successful operation; other load is the CPU the rest of the machine used meanwhile, in cores.\n", cv.EtcdVersion)
	}
	if len(cv.Systems) == 0 {
		return
	}
	first := cv.Systems[0]
	for _, wl := range cv.Workloads {
		fmt.Fprintf(w, "\n**%s**\n\n", wl)
		head := []string{"clients"}
		for _, s := range cv.Systems {
			head = append(head, s+" ops/s")
		}
		for _, s := range cv.Systems[1:] {
			head = append(head, first+"/"+s)
		}
		head = append(head, "p50 ms ("+strings.Join(cv.Systems, " / ")+")", "p99 ms", "server CPU µs/op", "errors", "other load")
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
		for _, n := range cv.Clients {
			row := []string{fmt.Sprint(n)}
			var recs []Record
			for _, s := range cv.Systems {
				p, ok := cv.Point(wl, n, s)
				if !ok {
					recs = append(recs, Record{System: s})
					row = append(row, "-")
					continue
				}
				recs = append(recs, p.Median)
				row = append(row, fmt.Sprintf("%.0f", p.Median.OpsPerSec))
			}
			for _, o := range recs[1:] {
				row = append(row, ratio(recs[0].OpsPerSec, o.OpsPerSec))
			}
			join := func(get func(Record) string) string {
				parts := make([]string, len(recs))
				for i, r := range recs {
					parts[i] = get(r)
				}
				return strings.Join(parts, " / ")
			}
			row = append(row,
				join(func(r Record) string { return fmt.Sprintf("%.2f", r.P50Ms) }),
				join(func(r Record) string { return fmt.Sprintf("%.2f", r.P99Ms) }),
				join(func(r Record) string { return fmt.Sprintf("%.0f", r.ServerCPUUsPerOp) }),
				join(func(r Record) string { return fmt.Sprint(r.Errors) }),
				join(func(r Record) string { return fmt.Sprintf("%.2f", r.OtherCPUCores) }))
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		}
	}
	var targets []string
	for _, p := range cv.Points {
		if p.Median.EtcdTarget != "" && !slices.Contains(targets, p.Workload+": "+p.Median.EtcdTarget) {
			targets = append(targets, p.Workload+": "+p.Median.EtcdTarget)
		}
	}
	if len(targets) > 0 {
		fmt.Fprintf(w, "\netcd clients sent to (leader: the member that leads; all: balanced over every member): %s.\n", strings.Join(targets, ", "))
	}
	for _, n := range cv.Notes {
		fmt.Fprintf(w, "\nNote: %s\n", n)
	}
}

// shape describes the points' common workload settings, from the first
// point's record.
func (cv *Curve) shape() string {
	if len(cv.Points) == 0 {
		return ""
	}
	r := cv.Points[0].Median
	return fmt.Sprintf("; %s loop, %d %s keys of %d bytes, %d-byte values; warm-up %gs, measured %gs",
		r.Mode, r.Keys, r.Distribution, r.KeySize, r.ValueSize, r.WarmupS, math.Round(r.DurationS))
}

// ReadCurve reads a curve that WriteJSON wrote.
func ReadCurve(path string) (*Curve, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cv := &Curve{}
	if err := json.Unmarshal(b, cv); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	return cv, nil
}

// WriteJSON writes the curve to path as indented JSON.
func (cv *Curve) WriteJSON(path string) error {
	b, err := json.MarshalIndent(cv, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WritePlots writes two PNG charts into dir, created if missing:
// curve-throughput.png (ops/s by client count) and curve-cpu.png (server
// CPU µs per operation by client count), both axes on log scales, one
// line per system and workload, each with a caption from the curve's
// JSON (plotCaption): the machine, the build and the settings. It
// returns the files written.
func (cv *Curve) WritePlots(dir string) ([]string, error) {
	if len(cv.Points) == 0 {
		return nil, errors.New("bench: the curve has no point to plot")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	caption := cv.plotCaption()
	var files []string
	for _, c := range []struct {
		name, title, y string
		get            func(Record) float64
	}{
		{"throughput", "throughput by concurrency", "ops/s (log scale)", func(r Record) float64 { return r.OpsPerSec }},
		{"cpu", "server CPU per operation by concurrency", "server CPU µs/op (log scale)", func(r Record) float64 { return r.ServerCPUUsPerOp }},
	} {
		p, err := newPlot(c.title, "clients (log scale)", c.y)
		if err != nil {
			return nil, err
		}
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.Y.Tick.Marker = oneTwoFive{}
		var ticks []plot.Tick
		for _, n := range cv.Clients {
			ticks = append(ticks, plot.Tick{Value: float64(n), Label: fmt.Sprint(n)})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		line := 0
		for si, s := range cv.Systems {
			for wi, wl := range cv.Workloads {
				var xy plotter.XYs
				for _, n := range cv.Clients {
					// A log axis cannot show zero: a point whose every run
					// failed is left out of the line.
					if pt, ok := cv.Point(wl, n, s); ok && c.get(pt.Median) > 0 {
						xy = append(xy, plotter.XY{X: float64(n), Y: c.get(pt.Median)})
					}
				}
				if len(xy) == 0 {
					continue
				}
				l, pts, err := plotter.NewLinePoints(xy)
				if err != nil {
					return nil, err
				}
				// Colour by system, dashes and marks by workload.
				l.Color, pts.Color = plotutil.Color(si), plotutil.Color(si)
				l.Width = vg.Points(1.5)
				l.Dashes = plotutil.Dashes(wi)
				pts.Shape = plotutil.Shape(wi)
				p.Add(l, pts)
				p.Legend.Add(s+" "+wl, l, pts)
				line++
			}
		}
		if line == 0 {
			continue
		}
		if c.name == "cpu" {
			p.Legend.Left = false // CPU per op falls to the right
		}
		f := filepath.Join(dir, "curve-"+c.name+".png")
		if err := savePlot(p, caption, f); err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// plotCaption returns the caption of the curve's charts, from its JSON:
// the machine (the first point's cores, the median of the fsync probes),
// the build, and the settings the points share (the first point's keys,
// values, warm-up and window; the workloads and client counts).
func (cv *Curve) plotCaption() []string {
	if len(cv.Points) == 0 {
		return nil
	}
	recs := make([]Record, len(cv.Points))
	for i, p := range cv.Points {
		recs[i] = p.Median
	}
	r := recs[0]
	var counts []string
	for _, n := range cv.Clients {
		counts = append(counts, fmt.Sprint(n))
	}
	return []string{
		machineLine(r.CPUs, fmt.Sprintf("%.2f ms (median of %d probes, one per client count)", cv.FsyncP50Ms, len(cv.FsyncProbes))),
		buildCaption(recs),
		fmt.Sprintf("settings: workloads %s at %s; %s; %s", strings.Join(cv.Workloads, ", "),
			loopLine(strings.Join(counts, ", ")+" clients", r), curveKeysLine(r), runsLine(cv.Runs, "per point", "their medians", r)),
	}
}

// curveKeysLine is keysLine without the operation mix, which differs
// between the curve's workloads.
func curveKeysLine(r Record) string {
	r.ReadFraction, r.WriteFraction, r.ScanFraction, r.ScanLength = 0, 0, 0, 0
	return keysLine(r)
}
