package bench

import (
	"fmt"
	"os"
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
	return ProcStat{CPU: time.Duration(utime+stime) * clockTick, RSSBytes: rss * int64(pageSize())}, nil
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
	procs []Proc
	start map[string]time.Duration
	own   time.Duration
	host  time.Duration
	wall  time.Time
	load  float64
}

// CPUUse is the CPU used during a measured window.
type CPUUse struct {
	// Servers is the CPU time of each server process, by name.
	Servers map[string]time.Duration
	// Server is their sum.
	Server time.Duration
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
	w := &cpuWindow{procs: procs, start: map[string]time.Duration{}}
	for _, p := range procs {
		if st, err := ReadProcStat(p.PID); err == nil {
			w.start[p.Name] = st.CPU
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
		u.Servers[p.Name] = st.CPU - begin
		u.Server += st.CPU - begin
	}
	u.Client = cpustat.Process() - w.own
	if h := cpustat.Host(); h > 0 {
		u.Others = max(0, h-w.host-u.Server-u.Client)
	}
	return u
}

func pageSize() int { return os.Getpagesize() }
