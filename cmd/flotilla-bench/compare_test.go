package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/launch"
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

// TestBenchCompareEndpointsNeedOneSystem: --endpoints are one running
// fleet's, so they go with one system.
func TestBenchCompareEndpointsNeedOneSystem(t *testing.T) {
	fs, c := newCompareFlags()
	if err := fs.Parse([]string{"--endpoints", "127.0.0.1:7000"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.workloadConfigs(); err == nil || !strings.Contains(err.Error(), "--endpoints are one running fleet's") {
		t.Errorf("--endpoints with both systems: %v", err)
	}
	fs, c = newCompareFlags()
	if err := fs.Parse([]string{"--endpoints", "127.0.0.1:7000", "--systems", "etcd"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.workloadConfigs(); err != nil {
		t.Errorf("--endpoints with --systems etcd: %v", err)
	}
}

// TestBenchCompareAgainstRunningFleet starts a Flotilla fleet, then runs
// flotilla-bench compare --endpoints against it twice: both runs drive
// that fleet (writes succeed, no server CPU is charged to processes the
// bench did not start), and the JSON records the endpoints, the bench's
// version and Go version, and the runs' spread beside the median.
func TestBenchCompareAgainstRunningFleet(t *testing.T) {
	bin := fleetBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := launch.Start(ctx, launch.Options{Dir: t.TempDir(), BinDir: filepath.Dir(bin), Nodes: 3, LogLevel: "warn",
		PlacementReplicas: 1, Shards: 4, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.WaitLeaders(ctx, 4); err != nil {
		t.Fatal(err)
	}
	endpoints := strings.Join(f.PlacementAddrs(), ",")
	jsonPath := filepath.Join(t.TempDir(), "out.json")
	out, err := exec.CommandContext(ctx, bin, "compare", "--systems", "flotilla", "--endpoints", endpoints, "--workload", "write",
		"--clients", "4", "--duration", "1s", "--warmup", "0s", "--runs", "2", "--fsync-samples", "5", "--json", jsonPath).CombinedOutput()
	if err != nil {
		t.Fatalf("compare --endpoints: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "flotilla: the running fleet at "+endpoints) || !strings.Contains(string(out), "min-max") {
		t.Errorf("the table does not name the running fleet or lacks the spread:\n%s", out)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[2]["stat"] != "median" || recs[2]["spread"] == nil {
		t.Fatalf("want 2 runs and a median with its spread, got:\n%s", b)
	}
	for _, r := range recs {
		eps, _ := r["endpoints"].([]any)
		if len(eps) != 1 || eps[0] != endpoints {
			t.Errorf("record endpoints %v, want [%s]", r["endpoints"], endpoints)
		}
		if ops, _ := r["ops"].(float64); ops <= 0 || r["errors"].(float64) != 0 {
			t.Errorf("%s %v: %v ops, %v errors", r["stat"], r["run"], r["ops"], r["errors"])
		}
		if cpu, _ := r["server_cpu_s"].(float64); cpu != 0 {
			t.Errorf("%s %v: server CPU %v s charged, but the bench started no server", r["stat"], r["run"], cpu)
		}
		if v, _ := r["go_version"].(string); !strings.HasPrefix(v, "go") || r["flotilla_version"] == "" {
			t.Errorf("record versions: flotilla %v, go %v", r["flotilla_version"], r["go_version"])
		}
	}
}

// fleetBinaries skips a test that starts a fleet in -short mode; otherwise
// it builds flotilla-bench, shardnode and placementd (into one directory)
// and returns flotilla-bench's path.
func fleetBinaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a fleet")
	}
	bin := flt.Binary(t, "flotilla-bench")
	flt.Binary(t, "shardnode")
	flt.Binary(t, "placementd")
	return bin
}
