package bench

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/buildinfo"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// TestWritePlots writes both charts of a two-system report and reads them
// back as PNG images.
func TestWritePlots(t *testing.T) {
	run := func(lat int64, tput float64) *Result {
		h := hdrhistogram.New(1, 60_000_000, 3)
		for i := range int64(1000) {
			if err := h.RecordValue(lat + i); err != nil {
				t.Fatal(err)
			}
		}
		return &Result{Elapsed: 3 * time.Second, Ops: int64(3 * tput), Latency: h, Throughput: []float64{tput, tput * 1.1, tput * 0.9}}
	}
	rep := &Report{
		Systems:   []string{"flotilla", "etcd"},
		Workloads: []string{"write"},
		Runs: map[string]map[string][]*Result{"write": {
			"flotilla": {run(2000, 10000)},
			"etcd":     {run(4000, 6000)},
		}},
	}
	dir := t.TempDir()
	files, err := rep.WritePlots(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "write-latency.png"), filepath.Join(dir, "write-throughput.png")}
	if !slices.Equal(files, want) {
		t.Fatalf("wrote %v, want %v", files, want)
	}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(r)
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
			t.Fatalf("%s is %v", f, b)
		}
	}
}

// TestWritePlotsWithoutData: a workload whose runs recorded nothing (every
// operation failed) gets no chart, and the others still get theirs.
func TestWritePlotsWithoutData(t *testing.T) {
	h := hdrhistogram.New(1, 60_000_000, 3)
	if err := h.RecordValue(1500); err != nil {
		t.Fatal(err)
	}
	rep := &Report{
		Systems:   []string{"flotilla"},
		Workloads: []string{"write", "read"},
		Runs: map[string]map[string][]*Result{
			"write": {"flotilla": {{}}},
			"read":  {"flotilla": {{Elapsed: time.Second, Ops: 1, Latency: h, Throughput: []float64{1}}}},
		},
	}
	dir := t.TempDir()
	files, err := rep.WritePlots(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "read-latency.png"), filepath.Join(dir, "read-throughput.png")}
	if !slices.Equal(files, want) {
		t.Fatalf("wrote %v, want %v", files, want)
	}
}

// TestOneTwoFiveTicks: a log axis within one decade still gets labels.
func TestOneTwoFiveTicks(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   []string
	}{
		{2, 60, []string{"2", "5", "10", "20", "50"}},
		{0.3, 1.5, []string{"0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"}},
		{2, 5.5, []string{"2", "3", "4", "5"}},
		{300, 20000, []string{"500", "1000", "2000", "5000", "10000", "20000"}},
		{0, 10, nil},
		{5, 5, nil},
	} {
		var got []string
		for _, tk := range (oneTwoFive{}).Ticks(c.lo, c.hi) {
			got = append(got, tk.Label)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("ticks of [%g, %g] = %v, want %v", c.lo, c.hi, got, c.want)
		}
	}
}

// captionReport is a two-system report of one workload whose settings are
// unlike any default, so a caption that shows them read them.
func captionReport(t *testing.T, valueSize int) *Report {
	t.Helper()
	cfg := Config{Workload: "mixed", ReadFraction: 0.25, Clients: 123, Keys: 4321, KeySizeBytes: 21, ValueSizeBytes: valueSize,
		Warmup: 3 * time.Second, Duration: 7 * time.Second}.withDefaults()
	rep := &Report{Systems: []string{"flotilla", "etcd"}, Workloads: []string{"mixed"}, EtcdVersion: "3.6.16",
		Configs: map[string]Config{"mixed": cfg}, Runs: map[string]map[string][]*Result{"mixed": {}},
		Fsync: FsyncProbe{Samples: 10, P50: 3210 * time.Microsecond},
		Build: buildinfo.Info{Version: "v9.8.7", Revision: "0123456789abcdef0123456789abcdef01234567", Modified: true, GoVersion: "go1.99.1"}}
	for i, s := range rep.Systems {
		for run := range 3 {
			h := hdrhistogram.New(1, 60_000_000, 3)
			for v := range int64(500) {
				if err := h.RecordValue(1000*int64(i+1) + v); err != nil {
					t.Fatal(err)
				}
			}
			tput := float64(5000 * (i + 1) * (run + 1))
			rep.Runs["mixed"][s] = append(rep.Runs["mixed"][s], &Result{System: s, Config: cfg, Elapsed: 7 * time.Second,
				Ops: int64(7 * tput), Latency: h, Throughput: []float64{tput, tput, tput}})
		}
	}
	return rep
}

// TestPlotCaptionFromRecords: the caption under a workload's charts says
// what the JSON records of it say: the cores and the fsync p50, the
// build, and every setting.
func TestPlotCaptionFromRecords(t *testing.T) {
	rep := captionReport(t, 777)
	got := strings.Join(rep.plotCaption("mixed", rep.Records()), "\n")
	var med Record
	for _, r := range rep.Records() {
		if r.Workload == "mixed" && r.System == "flotilla" && r.Stat == "median" {
			med = r
		}
	}
	if med.Runs != 3 {
		t.Fatalf("no median record of 3 runs: %+v", med)
	}
	for _, want := range []string{
		fmt.Sprintf("machine: %d cores", runtime.NumCPU()),
		fmt.Sprintf("disk write+fsync p50 %.2f ms", med.FsyncP50Ms), // 3.21
		"build: flotilla v9.8.7, commit 0123456789ab (modified), go1.99.1; etcd 3.6.16",
		fmt.Sprintf("%d clients, closed loop", med.Clients),
		fmt.Sprintf("%d %s keys of %d B, %d B values", med.Keys, med.Distribution, med.KeySize, med.ValueSize),
		"25% reads / 75% writes",
		fmt.Sprintf("warm-up %g s, measured %g s", med.WarmupS, med.DurationS),
		"3 runs per system, each on a fresh fleet, the run of median throughput drawn",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("caption lacks %q:\n%s", want, got)
		}
	}
	if !strings.Contains(got, "123 clients") || !strings.Contains(got, "4321 uniform keys of 21 B, 777 B values") || !strings.Contains(got, "p50 3.21 ms") {
		t.Errorf("caption does not show the report's settings:\n%s", got)
	}
}

// TestPlotsDrawTheCaption: two reports that differ only in their value
// size draw the same charts with different captions under them; the
// charts are taller than the plot by the caption.
func TestPlotsDrawTheCaption(t *testing.T) {
	read := func(valueSize int) map[string]image.Image {
		files, err := captionReport(t, valueSize).WritePlots(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]image.Image{}
		for _, f := range files {
			r, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(f)] = img
		}
		return out
	}
	a, b := read(777), read(999)
	if len(a) != 2 {
		t.Fatalf("charts %v, want latency and throughput", a)
	}
	plotPixels := int(plotHeight.Dots(96))
	for name, ia := range a {
		ib := b[name]
		if ia.Bounds() != ib.Bounds() || ia.Bounds().Dy() <= plotPixels+20 {
			t.Fatalf("%s: %v and %v, want the same size, taller than the %d px plot", name, ia.Bounds(), ib.Bounds(), plotPixels)
		}
		// The plot is the top of the image, the caption the strip under it.
		differ := func(y0, y1 int) int {
			n := 0
			for y := y0; y < y1; y++ {
				for x := 0; x < ia.Bounds().Dx(); x++ {
					if ia.At(x, y) != ib.At(x, y) {
						n++
					}
				}
			}
			return n
		}
		if n := differ(0, plotPixels); n != 0 {
			t.Errorf("%s: %d pixels of the plot differ between value sizes", name, n)
		}
		if n := differ(plotPixels, ia.Bounds().Dy()); n == 0 {
			t.Errorf("%s: the caption strip is the same for 777 B and 999 B values", name)
		}
	}
}
