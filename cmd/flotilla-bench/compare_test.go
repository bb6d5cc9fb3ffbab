package main

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBenchCompareValidationListsEveryProblem checks that bad flags are
// reported together, each naming its flag.
func TestBenchCompareValidationListsEveryProblem(t *testing.T) {
	fs, c := newCompareFlags()
	fs.SetOutput(new(strings.Builder))
	args := []string{"--workload", "write,bogus,write", "--systems", "etcd,mongo", "--clients", "0", "--value-size", "-3",
		"--key-size", "2", "--preload", "maybe", "--runs", "0", "--conns", "0", "--distribution", "pareto",
		"--duration", "5s", "--ops", "10", "--warmup", "-1s", "--fsync-samples", "0", "--etcd-target", "followers"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.workloadConfigs()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`--workload: "write" given twice`, `--workload "bogus"`, `unknown system "mongo"`,
		"--clients", "--value-size", "--key-size", "--preload", "--runs", "--conns", "--distribution", "--duration (5s) and --ops (10)",
		"--warmup", "--fsync-samples", `--etcd-target "followers"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not report %q:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "--clients"); n != 1 {
		t.Errorf("--clients reported %d times:\n%v", n, err)
	}

	// The watch workload's own flags.
	fs, c = newCompareFlags()
	if err := fs.Parse([]string{"--workload", "write,watch", "--value-size", "8", "--watchers", "300", "--watch-drain", "-1s"}); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.workloadConfigs()
	for _, want := range []string{"--value-size must be at least 16 bytes for the watch workload", "--watchers must be in [1, 256], got 300",
		"--watch-drain must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not report %q:\n%v", want, err)
		}
	}
	fs, c = newCompareFlags()
	if err := fs.Parse([]string{"--workload", "watch", "--watchers", "16"}); err != nil {
		t.Fatal(err)
	}
	if cfgs, _, err := c.workloadConfigs(); err != nil || cfgs[0].Workload != "watch" || cfgs[0].Watchers != 16 {
		t.Errorf("watch flags: %+v, %v", cfgs, err)
	}

	fs, c = newCompareFlags()
	if err := fs.Parse([]string{"--workload", "read, ycsb-b", "--systems", "flotilla"}); err != nil {
		t.Fatal(err)
	}
	cfgs, systems, err := c.workloadConfigs()
	if err != nil || len(cfgs) != 2 || cfgs[1].Workload != "ycsb-b" || len(systems) != 1 {
		t.Errorf("valid flags: %v, %v, %v", cfgs, systems, err)
	}
}

// TestBenchHelpExplainsEveryFlag checks that --help of every subcommand
// documents each of its flags.
func TestBenchHelpExplainsEveryFlag(t *testing.T) {
	fs, _ := newCompareFlags()
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Usage) < 10 {
			t.Errorf("--%s has no real explanation: %q", f.Name, f.Usage)
		}
	})
}

func TestBenchCurveFlags(t *testing.T) {
	fs, cf := newCurveFlags()
	fs.SetOutput(new(strings.Builder))
	if err := fs.Parse([]string{"--clients", "1,x,0", "--workload", "write,nope", "--runs", "0", "--out", ""}); err != nil {
		t.Fatal(err)
	}
	_, err := cf.curveOptions()
	for _, want := range []string{`--clients: "x"`, `--clients: "0"`, `--workload "nope"`, "--runs must be at least 1", "--out"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("curve validation does not report %q:\n%v", want, err)
		}
	}

	fs, cf = newCurveFlags()
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	o, err := cf.curveOptions()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(o.Clients) != "[1 10 100 1000]" || strings.Join(o.Workloads, ",") != "write,read" || o.Compare.Runs != 3 ||
		o.Workload.Duration != 3*time.Second || o.Workload.Keys != 1000 || o.Compare.EtcdTarget != "auto" {
		t.Errorf("curve defaults: clients %v, workloads %v, runs %d, duration %s, keys %d, etcd target %q",
			o.Clients, o.Workloads, o.Compare.Runs, o.Workload.Duration, o.Workload.Keys, o.Compare.EtcdTarget)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Usage) < 10 {
			t.Errorf("--%s has no real explanation: %q", f.Name, f.Usage)
		}
	})
}
