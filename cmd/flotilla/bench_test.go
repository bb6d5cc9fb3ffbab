package main

import (
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
)

// TestBenchCompareValidationListsEveryProblem checks that bad flags are
// reported together, each naming its flag.
func TestBenchCompareValidationListsEveryProblem(t *testing.T) {
	fs, c := newCompareFlags()
	fs.SetOutput(new(strings.Builder))
	args := []string{"--workload", "write,bogus,write", "--systems", "etcd,mongo", "--clients", "0", "--value-size", "-3",
		"--key-size", "2", "--preload", "maybe", "--runs", "0", "--conns", "0", "--distribution", "pareto",
		"--duration", "5s", "--ops", "10", "--warmup", "-1s", "--fsync-samples", "0"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.workloadConfigs()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`--workload: "write" given twice`, `--workload "bogus"`, `unknown system "mongo"`,
		"--clients", "--value-size", "--key-size", "--preload", "--runs", "--conns", "--distribution", "--duration (5s) and --ops (10)",
		"--warmup", "--fsync-samples"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not report %q:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "--clients"); n != 1 {
		t.Errorf("--clients reported %d times:\n%v", n, err)
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

// TestBenchCompareSmoke runs `flotilla bench compare` against Flotilla only
// (no etcd build) for a second and checks the table, the JSON and the
// plots.
func TestBenchCompareSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet")
	}
	bin := flt.Binary(t, "flotilla")
	flt.Binary(t, "shardnode")
	flt.Binary(t, "placementd")
	dir := t.TempDir()
	jsonPath, plots := filepath.Join(dir, "out.json"), filepath.Join(dir, "plots")
	cmd := exec.Command(bin, "bench", "compare", "--systems", "flotilla", "--workload", "ycsb-a", "--clients", "4",
		"--keys", "200", "--duration", "1s", "--warmup", "0s", "--shards", "4", "--fsync-samples", "20", "--balance-wait", "0",
		"--bin", filepath.Dir(bin), "--json", jsonPath, "--plot", plots)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench compare failed: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"disk: write+fsync", "SYSTEM", "flotilla", "workload ycsb-a"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0]["system"] != "flotilla" || recs[0]["workload"] != "ycsb-a" {
		t.Fatalf("JSON records: %s", b)
	}
	if ops, _ := recs[0]["ops_per_sec"].(float64); ops <= 0 {
		t.Errorf("ops_per_sec = %v", recs[0]["ops_per_sec"])
	}
	if e, _ := recs[0]["errors"].(float64); e != 0 {
		t.Errorf("errors = %v: %s", e, b)
	}
	for _, f := range []string{"ycsb-a-latency.png", "ycsb-a-throughput.png"} {
		if st, err := os.Stat(filepath.Join(plots, f)); err != nil || st.Size() == 0 {
			t.Errorf("plot %s: %v", f, err)
		}
	}
}
