package bench

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/buildinfo"
)

// fakeReport is a comparison at one client count: per system, figures
// are ops/s, the latency of every operation (µs) and the server CPU per
// operation (µs) of the median run; the two other runs have half and
// twice its throughput and latency.
func fakeReport(t *testing.T, clients int, figures map[string][3]float64) *Report {
	t.Helper()
	rep := &Report{Systems: []string{"flotilla", "etcd"}, Workloads: []string{"write"}, EtcdVersion: "v3.6.16",
		Configs: map[string]Config{"write": Config{Workload: "write", Clients: clients}.withDefaults()},
		Runs:    map[string]map[string][]*Result{"write": {}}, Fsync: FsyncProbe{Samples: 10, P50: time.Duration(clients) * 100 * time.Microsecond}}
	for _, s := range rep.Systems {
		for _, scale := range []float64{1, 0.5, 2} { // the median run is the first
			f := figures[s]
			h := NewHistogram()
			for range 100 {
				if err := h.RecordValue(int64(f[1] * scale)); err != nil {
					t.Fatal(err)
				}
			}
			ops := int64(f[0] * scale)
			res := &Result{System: s, Config: rep.Configs["write"], Latency: h, Ops: ops, Elapsed: time.Second,
				CPU: CPUUse{Server: time.Duration(f[2] * float64(ops) * float64(time.Microsecond))}}
			if s == "etcd" {
				res.EtcdTarget = EtcdTargetLeader
			}
			rep.Runs["write"][s] = append(rep.Runs["write"][s], res)
		}
	}
	return rep
}

func TestCurveAssemblesMediansByClientCount(t *testing.T) {
	cv := &Curve{Workloads: []string{"write"}, Clients: []int{1, 10}}
	cv.add(fakeReport(t, 1, map[string][3]float64{"flotilla": {600, 1500, 2000}, "etcd": {500, 1700, 2200}}))
	cv.add(fakeReport(t, 10, map[string][3]float64{"flotilla": {3000, 3000, 900}, "etcd": {1500, 6000, 800}}))
	p, ok := cv.Point("write", 10, "flotilla")
	if !ok || p.Median.OpsPerSec != 3000 || p.Median.Runs != 3 {
		t.Fatalf("point write/10/flotilla: %+v, %v", p.Median, ok)
	}
	if e, _ := cv.Point("write", 1, "etcd"); e.Median.EtcdVersion != "v3.6.16" || e.Median.EtcdTarget != EtcdTargetLeader {
		t.Errorf("etcd point lost its version or target: %+v", e.Median)
	}
	if cv.Runs != 3 || len(cv.FsyncProbes) != 2 || cv.FsyncP50Ms != 0.55 {
		t.Errorf("runs %d, probes %d, fsync p50 %.2f ms; want 3, 2, 0.55", cv.Runs, len(cv.FsyncProbes), cv.FsyncP50Ms)
	}
	var b strings.Builder
	cv.WriteMarkdown(&b)
	md := b.String()
	for _, want := range []string{
		"| clients | flotilla ops/s | etcd ops/s | flotilla/etcd | p50 ms (flotilla / etcd) | p99 ms | server CPU µs/op | errors |",
		"| 1 | 600 | 500 | 1.20x | 1.50 / 1.70 |",
		"| 10 | 3000 | 1500 | 2.00x | 3.00 / 6.00 | 3.00 / 6.00 | 900 / 800 | 0 / 0 | 0.00 / 0.00 |",
		"closed loop, 10000 uniform keys of 16 bytes, 256-byte values",
		"fsync p50 0.55 ms (median of 2 probes, one per client count)",
		"write: leader",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}

	dir := t.TempDir()
	// The JSON reads back into the same markdown.
	if err := cv.WriteJSON(filepath.Join(dir, "curve.json")); err != nil {
		t.Fatal(err)
	}
	back, err := ReadCurve(filepath.Join(dir, "curve.json"))
	if err != nil {
		t.Fatal(err)
	}
	var again strings.Builder
	back.WriteMarkdown(&again)
	if again.String() != md {
		t.Errorf("markdown of the JSON read back differs:\n%s\nwant:\n%s", again.String(), md)
	}
	files, err := cv.WritePlots(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0] != filepath.Join(dir, "curve-throughput.png") || files[1] != filepath.Join(dir, "curve-cpu.png") {
		t.Fatalf("plots: %v", files)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil || img.Bounds().Dx() < 100 {
			t.Errorf("%s: not a PNG chart: %v", f, err)
		}
	}
	if _, err := (&Curve{}).WritePlots(dir); err == nil {
		t.Error("an empty curve was plotted")
	}
}

// TestCurvePlotCaption: the curve's charts carry a caption made from its
// JSON: the cores, the fsync probes' median, the build each comparison
// recorded, the workloads, client counts and key and value settings, and
// the runs per point; a curve read back from its JSON draws the same
// charts, byte for byte.
func TestCurvePlotCaption(t *testing.T) {
	cv := &Curve{Workloads: []string{"write"}, Clients: []int{1, 10}}
	for _, n := range cv.Clients {
		rep := fakeReport(t, n, map[string][3]float64{"flotilla": {600, 1500, 2000}, "etcd": {500, 1700, 2200}})
		rep.Build = buildinfo.Info{Version: "v9.8.7", Revision: "fedcba9876543210fedcba9876543210fedcba98", GoVersion: "go1.99.1"}
		cv.add(rep)
	}
	got := strings.Join(cv.plotCaption(), "\n")
	for _, want := range []string{
		fmt.Sprintf("machine: %d cores", runtime.NumCPU()),
		"disk write+fsync p50 0.55 ms (median of 2 probes, one per client count)",
		"build: flotilla v9.8.7, commit fedcba987654, go1.99.1; etcd v3.6.16",
		"settings: workloads write at 1, 10 clients, closed loop; 10000 uniform keys of 16 B, 256 B values; warm-up",
		"3 runs per point, each on a fresh fleet, their medians drawn",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("caption lacks %q:\n%s", want, got)
		}
	}
	dir := t.TempDir()
	if err := cv.WriteJSON(filepath.Join(dir, "curve.json")); err != nil {
		t.Fatal(err)
	}
	back, err := ReadCurve(filepath.Join(dir, "curve.json"))
	if err != nil {
		t.Fatal(err)
	}
	if again := strings.Join(back.plotCaption(), "\n"); again != got {
		t.Fatalf("caption of the JSON read back:\n%s\nwant:\n%s", again, got)
	}
	plots := func(cv *Curve) [][]byte {
		files, err := cv.WritePlots(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		var out [][]byte
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	orig, fromJSON := plots(cv), plots(back)
	for i := range orig {
		if !bytes.Equal(orig[i], fromJSON[i]) {
			t.Errorf("chart %d of the curve read back from its JSON differs", i)
		}
	}
	back.FsyncP50Ms = 9.87
	for i, b := range plots(back) {
		if bytes.Equal(orig[i], b) {
			t.Errorf("chart %d is the same with another fsync p50: the caption is not drawn from the curve", i)
		}
	}
}
