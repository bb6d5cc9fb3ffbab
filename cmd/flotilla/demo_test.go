package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
)

// TestDemoRunsAndExits runs `flotilla demo` as a user would and checks that
// it boots the fleet, serves the workload without errors, prints its
// tables and exits 0 at --duration.
func TestDemoRunsAndExits(t *testing.T) {
	bin := flt.Binary(t, "flotilla")
	flt.Binary(t, "shardnode")
	flt.Binary(t, "placementd")
	// A --dir that does not exist yet is created.
	dir := filepath.Join(t.TempDir(), "new", "fleet")
	cmd := exec.Command(bin, "demo", "--duration", "25s", "--workload", "2s", "--shards", "4", "--clients", "4",
		"--bin", filepath.Dir(bin), "--dir", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"fleet ready", "etcd API at 127.0.0.1:", "NODE  ADDRESS", "SHARD  RANGE", "OP   COUNT", "fleet stopped"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "placementd.log")); err != nil {
		t.Errorf("the fleet's logs are not in --dir: %v", err)
	}
	// The workload table: both operations ran and none failed.
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 7 && (f[0] == "put" || f[0] == "get") {
			if f[1] == "0" || f[6] != "0" {
				t.Errorf("workload row %q: want operations and no errors", line)
			}
		}
	}
}

// TestDemoRefusesDurationWithinWorkload: --duration bounds the whole demo,
// so one no longer than --workload is refused before anything starts.
func TestDemoRefusesDurationWithinWorkload(t *testing.T) {
	bin := flt.Binary(t, "flotilla")
	out, err := exec.Command(bin, "demo", "--duration", "3s", "--workload", "5s").CombinedOutput()
	if err == nil {
		t.Fatalf("demo accepted --duration 3s with --workload 5s:\n%s", out)
	}
	if !strings.Contains(string(out), "--duration (3s) bounds the whole demo") || strings.Contains(string(out), "starting placementd") {
		t.Fatalf("want a refusal before the fleet starts, got:\n%s", out)
	}
}
