package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/bench"
)

// TestBenchFailover runs the failover benchmark on a small fleet and
// checks what it reports: a node leading shards was killed, every shard it
// led took writes again, every shard is listed, and the CPU of the
// surviving servers is measured as theirs, not counted as other load.
func TestBenchFailover(t *testing.T) {
	const shards, after = 4, 8 * time.Second
	bin := fleetBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	jsonPath := filepath.Join(t.TempDir(), "failover.json")
	out, err := exec.CommandContext(ctx, bin, "failover", "--shards", strconv.Itoa(shards), "--writers-per-shard", "1",
		"--kill-after", "2s", "--after", after.String(), "--json", jsonPath).CombinedOutput()
	if err != nil {
		t.Fatalf("failover: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "the surviving servers used") {
		t.Errorf("the output does not give the survivors' CPU:\n%s", out)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var r bench.FailoverResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%v in:\n%s", err, b)
	}
	if r.Shards != shards || len(r.Outages) != shards {
		t.Fatalf("want %d shards and an outage line for each, got %d and %d:\n%s", shards, r.Shards, len(r.Outages), b)
	}
	if r.KilledLeaders < 1 {
		t.Fatalf("the killed node %d led no shard:\n%s", r.KilledNode, b)
	}
	affected := 0
	for _, o := range r.Outages {
		if !o.Affected {
			continue
		}
		affected++
		if o.UnavailableMs < 0 || o.Writes == 0 {
			t.Errorf("shard %d, whose leader was killed, took no write in the %s after: %+v", o.Shard, after, o)
		}
	}
	if affected != r.KilledLeaders || r.AffectedMaxMs < 0 {
		t.Errorf("%d shards marked affected, %d leaders killed, max unavailability %.0f ms", affected, r.KilledLeaders, r.AffectedMaxMs)
	}
	// The survivors served every write after the kill: their CPU is
	// measured, whatever else the machine runs.
	if r.ServerCPUCores <= 0 {
		t.Errorf("surviving servers' CPU %.3f cores: not measured", r.ServerCPUCores)
	}
}
