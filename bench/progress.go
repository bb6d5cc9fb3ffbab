package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ProgressPrinter renders the progress of runs. On a terminal it redraws
// one line with \r: the run, its phase, a bar, the current throughput and
// the errors so far. Elsewhere (a pipe, a CI log) it prints a line every
// Every and at the end of each phase. Safe for concurrent use.
type ProgressPrinter struct {
	w     io.Writer
	tty   bool
	every time.Duration
	mu    struct {
		sync.Mutex
		last    time.Time
		lastKey string
		width   int
	}
}

// NewProgressPrinter returns a printer writing to w; tty says whether w is
// a terminal. every (default 5 s) spaces the lines on a non-terminal.
func NewProgressPrinter(w io.Writer, tty bool, every time.Duration) *ProgressPrinter {
	if every <= 0 {
		every = 5 * time.Second
	}
	return &ProgressPrinter{w: w, tty: tty, every: every}
}

const barWidth = 24

// Print renders p of the run named label.
func (pp *ProgressPrinter) Print(label string, p Progress) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	key := label + "/" + p.Phase.String()
	line := formatProgress(label, p)
	if pp.tty {
		pad := max(0, pp.mu.width-len(line))
		fmt.Fprintf(pp.w, "\r%s%s", line, strings.Repeat(" ", pad))
		pp.mu.width = len(line)
		if p.Phase == PhaseDone {
			fmt.Fprint(pp.w, "\r"+strings.Repeat(" ", pp.mu.width)+"\r")
			pp.mu.width = 0
		}
		return
	}
	now := time.Now()
	if p.Phase == PhaseDone || key != pp.mu.lastKey || now.Sub(pp.mu.last) >= pp.every {
		if p.Phase != PhaseDone {
			fmt.Fprintln(pp.w, line)
		}
		pp.mu.last, pp.mu.lastKey = now, key
	}
}

// formatProgress returns the one-line progress of a run.
func formatProgress(label string, p Progress) string {
	frac, bound := -1.0, ""
	switch {
	case p.Target > 0:
		frac = float64(p.Done) / float64(p.Target)
		bound = fmt.Sprintf("%d/%d ops", p.Done, p.Target)
	case p.Total > 0:
		frac = p.Elapsed.Seconds() / p.Total.Seconds()
		bound = fmt.Sprintf("%s/%s", p.Elapsed.Truncate(time.Second), p.Total)
	default:
		bound = p.Elapsed.Truncate(time.Second).String()
	}
	bar := ""
	if frac >= 0 {
		n := int(min(1, frac) * barWidth)
		bar = "[" + strings.Repeat("#", n) + strings.Repeat(".", barWidth-n) + "] "
	}
	return fmt.Sprintf("%s %-7s %s%s  %.0f ops/s  %d errors", label, p.Phase, bar, bound, p.Rate, p.Errors)
}

// Log writes s (whole lines) above the progress line: on a terminal it
// clears the progress line first; the next Print redraws it.
func (pp *ProgressPrinter) Log(s string) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.tty && pp.mu.width > 0 {
		fmt.Fprint(pp.w, "\r"+strings.Repeat(" ", pp.mu.width)+"\r")
		pp.mu.width = 0
	}
	fmt.Fprint(pp.w, s)
}
