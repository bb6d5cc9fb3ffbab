// Command recheck checks saved chaos histories again: the JSON-lines files
// (cycleNNNN-history.jsonl) that TestChaos writes beside the text history
// of every cycle with a violation, a lost write or a watch violation
// (the operations, and the watchers' records when the file has them). Use it to decide a key
// the run's check left undecided (a longer -timeout), or to try a changed
// checker on a history from an earlier run.
//
//	go run ./internal/chaos/recheck [-timeout 10m] [-viz DIR] FILE...
//
// It prints one summary line per file and every violation, lost write and
// watch violation, and exits 1 if any file has one, 2 if a file cannot be
// read.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flotilla-kv/flotilla/internal/chaos"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("recheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", chaos.CheckTimeout, "how long porcupine may search each key before the key counts as undecided (a violation)")
	viz := fs.String("viz", "", "directory for porcupine visualizations of keys that are not linearizable (none when empty)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: recheck [flags] HISTORY.jsonl...\n\nChecks saved chaos histories again for linearizability, lost writes and the watchers' records.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "recheck: -timeout must be positive")
		return 2
	}
	chaos.CheckTimeout = *timeout
	status := 0
	for _, path := range fs.Args() {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(stderr, "recheck: %v\n", err)
			return 2
		}
		run, err := chaos.ReadRun(f)
		_ = f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "recheck: %s: %v\n", path, err)
			return 2
		}
		start := time.Now()
		name := strings.TrimSuffix(filepath.Base(path), ".jsonl")
		r := chaos.CheckRun(run, *viz, name)
		fmt.Fprintf(stdout, "%s: ops=%d unknown=%d failed=%d keys=%d events=%d violations=%d lost=%d watch=%d (%s)\n",
			path, r.Ops, r.Unknown, r.Failed, r.Keys, r.Events, len(r.Violations), len(r.Lost), len(r.Watch), time.Since(start).Round(time.Millisecond))
		for _, v := range r.Violations {
			fmt.Fprintf(stdout, "VIOLATION %s\n", v)
		}
		for _, l := range r.Lost {
			fmt.Fprintf(stdout, "LOST %s\n", l)
		}
		for _, v := range r.Watch {
			fmt.Fprintf(stdout, "WATCH %s\n", v)
		}
		if len(r.Violations) > 0 || len(r.Lost) > 0 || len(r.Watch) > 0 {
			status = 1
		}
	}
	return status
}
