package cpustat

import (
	"runtime"
	"testing"
	"time"
)

// TestCounters: both counters grow while this process spins, the
// process's by at least most of the spin, the host's by at least as much
// (the host includes this process; it counts in 10 ms ticks).
func TestCounters(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/stat")
	}
	own, host := Process(), Host()
	if own == 0 || host == 0 {
		t.Fatalf("Process %v, Host %v: want both above 0", own, host)
	}
	start := time.Now()
	for time.Since(start) < 200*time.Millisecond {
	}
	dOwn, dHost := Process()-own, Host()-host
	if dOwn < 100*time.Millisecond {
		t.Fatalf("the process spun 200 ms and used %v", dOwn)
	}
	if dHost < dOwn-20*time.Millisecond {
		t.Fatalf("the host used %v while this process alone used %v", dHost, dOwn)
	}
}
