package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// FsyncProbe is the disk's write+fsync latency, measured in the data
// directory before a run.
type FsyncProbe struct {
	Samples       int
	P50, P99, Max time.Duration
}

// ProbeFsync writes n 4 KiB blocks, one after the other, to a new file in
// dir, calling fsync after each, and returns the distribution of the
// write+fsync latencies. The file is removed.
func ProbeFsync(dir string, n int) (FsyncProbe, error) {
	if n < 1 {
		return FsyncProbe{}, fmt.Errorf("bench: fsync probe needs at least 1 sample, got %d", n)
	}
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return FsyncProbe{}, err
	}
	defer os.Remove(filepath.Clean(f.Name()))
	defer f.Close()
	block := make([]byte, 4096)
	for i := range block {
		block[i] = byte(i * 7)
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := f.Write(block); err != nil {
			return FsyncProbe{}, err
		}
		if err := f.Sync(); err != nil {
			return FsyncProbe{}, err
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return FsyncProbe{Samples: n, P50: quantile(lat, 0.50), P99: quantile(lat, 0.99), Max: lat[len(lat)-1]}, nil
}

// quantile returns the q-quantile of sorted (nearest rank), 0 if empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(len(sorted)-1, i))]
}
