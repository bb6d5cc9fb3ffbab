// Package cpustat reads how much CPU time this process and the whole
// machine have used, for benchmarks that report CPU per operation and
// the load of everything else on the machine. It is a leaf: it imports
// nothing of Flotilla's.
package cpustat

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process returns the user and system CPU time this process has used so
// far, or 0 if the kernel does not say.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Host returns the CPU time every process of the machine has used (user,
// nice, system, irq, softirq and steal of /proc/stat's cpu line), or 0
// where /proc/stat is unreadable.
func Host() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0
		}
		ticks += v
	}
	// The kernel counts in USER_HZ ticks, 100 per second on Linux.
	return time.Duration(ticks) * 10 * time.Millisecond
}
