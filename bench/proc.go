package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-kv/flotilla/internal/cpustat"
)

// clockTick is the unit of the CPU times in /proc: USER_HZ, 100 per second
// on every Linux architecture Go supports.
const clockTick = time.Second / 100

// Proc names a server process whose CPU the bench measures.
type Proc struct {
	Name string
	PID  int
}

// ProcStat is what /proc/PID/stat says about a process.
type ProcStat struct {
	// CPU is utime + stime: the CPU time the process used since it
	// started, in user and kernel mode.
	CPU time.Duration
	// KernelCPU is stime: the part of CPU spent in kernel mode.
	KernelCPU time.Duration
	// RSSBytes is its resident set size.
	RSSBytes int64
}

// ReadProcStat reads /proc/PID/stat.
func ReadProcStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, err
	}
	return parseProcStat(string(b))
}

// parseProcStat parses the content of /proc/PID/stat. The second field,
// the command name in parentheses, may hold spaces and parentheses, so
// fields are counted from the last ')'.
func parseProcStat(s string) (ProcStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ProcStat{}, fmt.Errorf("bench: malformed /proc stat %q", s)
	}
	// After ')': field 3 (state) onwards; utime and stime are fields 14
	// and 15, rss (pages) field 24.
	f := strings.Fields(s[i+1:])
	const base = 3
	if len(f) < 24-base+1 {
		return ProcStat{}, fmt.Errorf("bench: short /proc stat %q", s)
	}
	num := func(field int) (int64, error) { return strconv.ParseInt(f[field-base], 10, 64) }
	utime, err1 := num(14)
	stime, err2 := num(15)
	rss, err3 := num(24)
	if err1 != nil || err2 != nil || err3 != nil {
		return ProcStat{}, fmt.Errorf("bench: malformed /proc stat %q", s)
	}
	return ProcStat{CPU: time.Duration(utime+stime) * clockTick, KernelCPU: time.Duration(stime) * clockTick,
		RSSBytes: rss * int64(pageSize())}, nil
}

// ThreadSwitches is how many times each thread of a process, by thread
// ID, has given up its CPU: voluntarily (it blocked on a futex, a socket,
// a disk sync, a sleep) or not (preempted).
type ThreadSwitches map[int]uint64

// ReadThreadSwitches reads the voluntary_ctxt_switches and
// nonvoluntary_ctxt_switches of every thread of process pid, from
// /proc/PID/task/*/status.
func ReadThreadSwitches(pid int) (ThreadSwitches, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	sw := ThreadSwitches{}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "status"))
		if err != nil {
			continue // the thread exited since the listing
		}
		n, err := parseContextSwitches(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, t.Name()), err)
		}
		sw[tid] = n
	}
	return sw, nil
}

// Since returns the context switches of the threads of sw made after
// before was read: a thread born since counts whole, a thread that
// exited since is missing from sw and its switches are lost (Go's threads
// rarely exit).
func (sw ThreadSwitches) Since(before ThreadSwitches) uint64 {
	var n uint64
	for tid, c := range sw {
		if c0 := before[tid]; c >= c0 {
			n += c - c0
		}
	}
	return n
}

// parseContextSwitches adds up the voluntary and nonvoluntary context
// switches of a /proc/.../status file.
func parseContextSwitches(status []byte) (uint64, error) {
	var total uint64
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "voluntary_ctxt_switches" && name != "nonvoluntary_ctxt_switches") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: malformed %s %q", name, value)
		}
		total += n
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("bench: no context switch counts in /proc status")
	}
	return total, nil
}

// loadAverage returns the 1-minute load average, or 0 where unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// cpuWindow measures the CPU used between its start and its end by the
// server processes, by this process (the clients) and by everything else
// on the machine.
type cpuWindow struct {
	procs    []Proc
	start    map[string]ProcStat
	switches map[string]ThreadSwitches
	own      time.Duration
	host     time.Duration
	wall     time.Time
	load     float64
}

// CPUUse is the CPU used during a measured window.
type CPUUse struct {
	// Servers is the CPU time of each server process, by name.
	Servers map[string]time.Duration
	// Server is their sum, ServerKernel the part of it in kernel mode.
	Server, ServerKernel time.Duration
	// ServerSwitches is how many times the server processes' threads gave
	// up their CPU (ReadThreadSwitches), summed: each is a thread put to
	// sleep or preempted, and most are woken again later. On a virtual
	// machine whose wake-ups are costly, it explains CPU per operation
	// that Go's CPU profiles show only in part (see bench/README.md,
	// "Wake-ups").
	ServerSwitches uint64
	// Client is the bench process's own CPU time (the clients).
	Client time.Duration
	// Others is the CPU time of every other process of the machine:
	// other tenants, whose load disturbs the figures.
	Others time.Duration
	// Wall is the window's length.
	Wall time.Duration
	// LoadStart and LoadEnd are the 1-minute load averages at the ends.
	LoadStart, LoadEnd float64
	// Errors lists the processes whose CPU could not be read (they died).
	Errors []string
}

func startCPUWindow(procs []Proc) *cpuWindow {
	w := &cpuWindow{procs: procs, start: map[string]ProcStat{}, switches: map[string]ThreadSwitches{}}
	for _, p := range procs {
		if st, err := ReadProcStat(p.PID); err == nil {
			w.start[p.Name] = st
		}
		if sw, err := ReadThreadSwitches(p.PID); err == nil {
			w.switches[p.Name] = sw
		}
	}
	w.own, w.host, w.wall, w.load = cpustat.Process(), cpustat.Host(), time.Now(), loadAverage()
	return w
}

func (w *cpuWindow) end() CPUUse {
	u := CPUUse{Servers: map[string]time.Duration{}, Wall: time.Since(w.wall), LoadStart: w.load, LoadEnd: loadAverage()}
	for _, p := range w.procs {
		st, err := ReadProcStat(p.PID)
		begin, ok := w.start[p.Name]
		if err != nil || !ok {
			u.Errors = append(u.Errors, p.Name)
			continue
		}
		u.Servers[p.Name] = st.CPU - begin.CPU
		u.Server += st.CPU - begin.CPU
		u.ServerKernel += st.KernelCPU - begin.KernelCPU
		if sw, err := ReadThreadSwitches(p.PID); err == nil {
			if before, ok := w.switches[p.Name]; ok {
				u.ServerSwitches += sw.Since(before)
			}
		}
	}
	u.Client = cpustat.Process() - w.own
	if h := cpustat.Host(); h > 0 {
		u.Others = max(0, h-w.host-u.Server-u.Client)
	}
	return u
}

func pageSize() int { return os.Getpagesize() }
