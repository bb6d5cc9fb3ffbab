package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// percentileTicks are the percentiles the latency plot marks on its x
// axis, placed at 100/(100-p) on a log scale (HDR's percentile plot).
var percentileTicks = []float64{0, 50, 90, 99, 99.9, 99.99, 99.999}

// percentilePoints are where the latency curve is sampled.
func percentilePoints() []float64 {
	var ps []float64
	for _, step := range []struct{ from, to, by float64 }{
		{0, 90, 5}, {90, 99, 0.5}, {99, 99.9, 0.05}, {99.9, 99.99, 0.005}, {99.99, 99.999, 0.0005},
	} {
		for p := step.from; p < step.to-1e-9; p += step.by {
			ps = append(ps, p)
		}
	}
	return append(ps, 99.999)
}

// representative returns the run of a system whose throughput is closest
// to the median throughput of its runs, nil if there is none.
func representative(runs []*Result) *Result {
	if len(runs) == 0 {
		return nil
	}
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = r.OpsPerSec()
	}
	med := Median(v)
	best := runs[0]
	for _, r := range runs {
		if math.Abs(r.OpsPerSec()-med) < math.Abs(best.OpsPerSec()-med) {
			best = r
		}
	}
	return best
}

// WritePlots writes two PNG charts per workload into dir, created if
// missing: WORKLOAD-latency.png, the latency at each percentile, and
// WORKLOAD-throughput.png, the ops/s of every second of the window; each
// chart holds every system (its run of median throughput), and under it
// a caption from the workload's records (plotCaption): the machine, the
// build and the settings, so a chart read alone says what made it. A
// chart with nothing to draw (every run of the workload failed) is not
// written. It returns the files written.
func (rep *Report) WritePlots(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	records := rep.Records()
	var files []string
	for _, wl := range rep.Workloads {
		caption := rep.plotCaption(wl, records)
		lat, err := newPlot(fmt.Sprintf("%s: latency by percentile", wl), "percentile", "latency (ms, log scale)")
		if err != nil {
			return nil, err
		}
		lat.X.Scale, lat.Y.Scale = plot.LogScale{}, plot.LogScale{}
		lat.Y.Tick.Marker = oneTwoFive{}
		var ticks []plot.Tick
		for _, p := range percentileTicks {
			ticks = append(ticks, plot.Tick{Value: 100 / (100 - p), Label: fmt.Sprintf("%g%%", p)})
		}
		lat.X.Tick.Marker = plot.ConstantTicks(ticks)
		tput, err := newPlot(fmt.Sprintf("%s: throughput over time", wl), "seconds into the measured window", "ops/s")
		if err != nil {
			return nil, err
		}
		tput.Y.Min = 0
		peak := 0.0
		drawn := map[*plot.Plot]int{}
		for i, s := range rep.Systems {
			r := representative(rep.Runs[wl][s])
			if r == nil {
				continue
			}
			if err := addLine(lat, s, i, latencyCurve(r.Latency), drawn); err != nil {
				return nil, err
			}
			var xy plotter.XYs
			for sec, v := range r.Throughput {
				xy = append(xy, plotter.XY{X: float64(sec + 1), Y: v})
				peak = max(peak, v)
			}
			if err := addLine(tput, s, i, xy, drawn); err != nil {
				return nil, err
			}
		}
		// Headroom above the highest line for the legend.
		if peak > 0 {
			tput.Y.Max = 1.3 * peak
		}
		for _, c := range []struct {
			p    *plot.Plot
			name string
		}{{lat, "latency"}, {tput, "throughput"}} {
			if drawn[c.p] == 0 {
				continue // no run recorded anything to draw
			}
			f := filepath.Join(dir, fmt.Sprintf("%s-%s.png", wl, c.name))
			if err := savePlot(c.p, caption, f); err != nil {
				return nil, err
			}
			files = append(files, f)
		}
	}
	return files, nil
}

// plotCaption returns the caption of workload's charts, from the records
// the JSON holds for it (records: rep.Records()): per system its median
// record, or its one run's.
func (rep *Report) plotCaption(workload string, records []Record) []string {
	var recs []Record
	for _, s := range rep.Systems {
		var mine []Record
		for _, r := range records {
			if r.Workload == workload && r.System == s {
				mine = append(mine, r)
			}
		}
		// The median record follows the runs it sums up.
		if len(mine) > 0 {
			recs = append(recs, mine[len(mine)-1])
		}
	}
	if len(recs) == 0 {
		return nil
	}
	r := recs[0]
	return []string{
		machineLine(r.CPUs, fmt.Sprintf("%.2f ms", r.FsyncP50Ms)),
		buildCaption(recs),
		fmt.Sprintf("settings: %s; %s; %s", loopLine(fmt.Sprintf("%d clients", r.Clients), r), keysLine(r), runsLine(r.Runs, "per system", "the run of median throughput", r)),
	}
}

// machineLine is a caption's machine line: the cores the records counted
// (0 from a bench that did not record them) and the disk's fsync p50.
func machineLine(cores int, fsyncP50 string) string {
	c := fmt.Sprintf("%d cores (shared by the servers and the bench's clients)", cores)
	if cores == 0 {
		c = "cores not recorded"
	}
	return "machine: " + c + "; disk write+fsync p50 " + fsyncP50
}

// buildCaption is a caption's build line: the bench's build, etcd's
// version and the fleet the runs drove, from recs.
func buildCaption(recs []Record) string {
	r := recs[0]
	s := "build: flotilla " + r.FlotillaVersion
	if r.FlotillaVersion == "" {
		s = "build: flotilla version not recorded"
	}
	if r.FlotillaRevision == "" {
		s += ", commit unknown"
	} else {
		s += ", commit " + r.FlotillaRevision[:min(12, len(r.FlotillaRevision))]
		if r.FlotillaModified {
			s += " (modified)"
		}
	}
	if r.GoVersion != "" {
		s += ", " + r.GoVersion
	}
	for _, o := range recs {
		if o.EtcdVersion != "" {
			s += "; etcd " + o.EtcdVersion
			break
		}
	}
	if len(r.Endpoints) > 0 {
		s += "; the running fleet at " + strings.Join(r.Endpoints, ",")
	}
	return s
}

// loopLine says how r's clients sent requests; clients names their
// count ("16 clients", or a curve's counts).
func loopLine(clients string, r Record) string {
	if r.Mode == "open" {
		return fmt.Sprintf("%s, open loop at %g ops/s", clients, r.TargetRate)
	}
	return clients + ", closed loop"
}

// keysLine describes r's keys, values and operation mix.
func keysLine(r Record) string {
	s := fmt.Sprintf("%d %s keys of %d B, %d B values", r.Keys, r.Distribution, r.KeySize, r.ValueSize)
	if mix := mixParts(r.ReadFraction, r.WriteFraction, r.ScanFraction); len(mix) > 0 {
		s += ", " + strings.Join(mix, " / ")
	}
	if r.ScanLength > 0 {
		s += fmt.Sprintf(" of %d keys", r.ScanLength)
	}
	return s + fmt.Sprintf("; warm-up %g s, measured %g s", r.WarmupS, math.Round(r.DurationS))
}

// runsLine says how many runs made each figure (per: "per system" or
// "per point") and which the chart draws; r says whether each run
// started its own fleet.
func runsLine(runs int, per, drawn string, r Record) string {
	if runs <= 1 {
		return "1 run " + per
	}
	s := fmt.Sprintf("%d runs %s", runs, per)
	if len(r.Endpoints) == 0 {
		s += ", each on a fresh fleet"
	}
	return s + ", " + drawn + " drawn"
}

// Chart sizes: the plot, and the caption's font and margin.
const (
	plotWidth, plotHeight = 20 * vg.Centimeter, 12 * vg.Centimeter
	captionPoints         = 8
	captionMargin         = 6 // points
)

// savePlot writes p as a PNG to path, with caption below it: each line
// wrapped to the width, in small grey type.
func savePlot(p *plot.Plot, caption []string, path string) error {
	sty := text.Style{Color: color.Gray{Y: 0x30}, Font: font.From(plot.DefaultFont, captionPoints),
		XAlign: draw.XLeft, YAlign: draw.YTop, Handler: p.TextHandler}
	margin := vg.Points(captionMargin)
	var lines []string
	for _, c := range caption {
		lines = append(lines, wrapText(sty, c, plotWidth-2*margin)...)
	}
	lineHeight := sty.FontExtents().Height
	var captionHeight vg.Length
	if len(lines) > 0 {
		captionHeight = lineHeight*vg.Length(len(lines)) + 2*margin
	}
	img := vgimg.New(plotWidth, plotHeight+captionHeight)
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	p.Draw(draw.Crop(dc, 0, 0, captionHeight, 0))
	for i, l := range lines {
		dc.FillText(sty, vg.Point{X: margin, Y: captionHeight - margin - lineHeight*vg.Length(i)}, l)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// wrapText breaks s at spaces into lines no wider than width in sty (a
// word wider than width stays whole); later lines are indented.
func wrapText(sty text.Style, s string, width vg.Length) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		next := w
		if line != "" {
			next = line + " " + w
		}
		if line != "" && sty.Width(next) > width {
			lines = append(lines, line)
			next = "    " + w
		}
		line = next
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

func newPlot(title, x, y string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	// Top left: the latency curves rise to the right, and the throughput
	// chart leaves headroom above its lines.
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	return p, nil
}

// addLine draws xy on p, unless it is empty, and counts it in drawn.
func addLine(p *plot.Plot, name string, i int, xy plotter.XYs, drawn map[*plot.Plot]int) error {
	if len(xy) == 0 {
		return nil
	}
	drawn[p]++
	l, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// latencyCurve samples h at percentilePoints: x is 100/(100-p), y the
// latency in ms (at least 1 µs, for the log scale).
func latencyCurve(h *hdrhistogram.Histogram) plotter.XYs {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	var xy plotter.XYs
	for _, p := range percentilePoints() {
		v := h.ValueAtPercentile(p)
		if p == 0 {
			v = h.Min() // HDR answers the bucket's low end, 0, at 0%
		}
		v = max(v, 1)
		xy = append(xy, plotter.XY{X: 100 / (100 - p), Y: float64(v) / 1000})
	}
	return xy
}

// tickLabel writes v in three significant digits, without an exponent
// from a thousand on (a throughput axis reads 10000, not 1e+04).
func tickLabel(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// oneTwoFive marks a log axis at 1, 2 and 5 times each power of ten, or
// at every multiple of them when that gives fewer than three marks, so a
// range within one decade still gets labels.
type oneTwoFive struct{}

func (oneTwoFive) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= lo {
		return nil
	}
	marks := func(multiples []float64) []plot.Tick {
		var ticks []plot.Tick
		for decade := math.Pow(10, math.Floor(math.Log10(lo))); decade <= hi; decade *= 10 {
			for _, m := range multiples {
				if v := m * decade; v >= lo && v <= hi {
					ticks = append(ticks, plot.Tick{Value: v, Label: tickLabel(v)})
				}
			}
		}
		return ticks
	}
	if ticks := marks([]float64{1, 2, 5}); len(ticks) >= 3 {
		return ticks
	}
	return marks([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9})
}
