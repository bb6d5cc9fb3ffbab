package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
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
// chart holds every system (its run of median throughput). A chart with
// nothing to draw (every run of the workload failed) is not written. It
// returns the files written.
func (rep *Report) WritePlots(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, wl := range rep.Workloads {
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
			if err := c.p.Save(20*vg.Centimeter, 12*vg.Centimeter, f); err != nil {
				return nil, err
			}
			files = append(files, f)
		}
	}
	return files, nil
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
