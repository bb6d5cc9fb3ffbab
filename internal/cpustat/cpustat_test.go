package cpustat

import (
	"runtime"
	"testing"
	"time"
)

// TestCounters: both counters grow while this process spins: the
// process's reaches 100 ms of CPU (on a loaded machine the spin may take
// longer than that in wall time, so it spins until then, within a
// deadline), and the host's grows at least as much (the host includes
// this process; it counts in 10 ms ticks).
func TestCounters(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/stat")
	}
	own, host := Process(), Host()
	if own == 0 || host == 0 {
		t.Fatalf("Process %v, Host %v: want both above 0", own, host)
	}
	deadline := time.Now().Add(30 * time.Second)
	for Process()-own < 100*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("the process spun 30 s and its counter grew by %v", Process()-own)
		}
		for spin := time.Now(); time.Since(spin) < 10*time.Millisecond; {
		}
	}
	dOwn, dHost := Process()-own, Host()-host
	if dHost < dOwn-20*time.Millisecond {
		t.Fatalf("the host used %v while this process alone used %v", dHost, dOwn)
	}
}
