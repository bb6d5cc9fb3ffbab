package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
)

// TestBenchCompareSmoke runs `flotilla bench compare` (flotilla running
// flotilla-bench) against Flotilla only (no etcd build) for a second and
// checks the table, the JSON and the plots.
func TestBenchCompareSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet")
	}
	bin := flt.Binary(t, "flotilla")
	flt.Binary(t, "flotilla-bench")
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

// TestBenchWithoutTheBenchBinary: a flotilla with no flotilla-bench beside
// it nor on $PATH says what is missing and how to get it, with exit
// status 1.
func TestBenchWithoutTheBenchBinary(t *testing.T) {
	b, err := os.ReadFile(flt.Binary(t, "flotilla"))
	if err != nil {
		t.Fatal(err)
	}
	alone := filepath.Join(t.TempDir(), "flotilla")
	if err := os.WriteFile(alone, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(alone, "bench", "compare", "--help")
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("flotilla bench without flotilla-bench: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"flotilla bench:", "flotilla-bench", "make build"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error does not say %q:\n%s", want, out)
		}
	}
}
