package bench

import (
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

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
