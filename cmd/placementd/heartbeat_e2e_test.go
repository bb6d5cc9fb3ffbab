package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestHeartbeatsTellTheTruth: on a real fleet with one shard (so two of
// the three nodes lead nothing), every node's used bytes count the data of
// the replicas it follows too; every node reports a capacity (its
// filesystem's size by default, --capacity when given); and the node
// serving the writes reports a request p99 and the CPU it used. Then
// both binaries' /metrics are scraped for Pebble's, the process's, the Go
// runtime's and the build's metrics.
func TestHeartbeatsTellTheTruth(t *testing.T) {
	c := newCluster(t, 1, 3, "--initial-shards", "1", "--split-size", "1GiB")
	c.waitHealthy(60*time.Second, 1, false, 3)
	extra := c.f.Add("--heartbeat-interval", "250ms", "--capacity", "5GiB")
	extra.Start()
	extra.WaitReady(30 * time.Second)
	r, err := router.New(testutil.Context(t, 10*time.Second), router.Config{PlacementAddresses: []string{c.f.PlacementAddrs()}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Values large enough that Pebble's 4 MiB memtables flush within a
	// few hundred writes: disk usage is estimated from tables on disk.
	value := []byte(strings.Repeat("v", 32<<10))
	written, start := 0, time.Now()
	var last []*pb.Node
	testutil.Eventually(t, 120*time.Second, func() error {
		for range 20 {
			if err := r.Put(testutil.Context(t, 20*time.Second), fmt.Appendf(nil, "k%05d", written), value); err != nil {
				t.Fatalf("write %d: %v", written, err)
			}
			written++
		}
		resp, err := c.placement().ListNodes(testutil.Context(t, 5*time.Second), &pb.ListNodesRequest{})
		if err != nil {
			return err
		}
		last = resp.GetNodes()
		if len(last) != 4 {
			return fmt.Errorf("%d nodes listed, want 4", len(last))
		}
		servedP99 := false
		for _, n := range last {
			id := n.GetNodeId()
			switch {
			case id == extra.ID && n.GetCapacityBytes() != 5<<30:
				return fmt.Errorf("node %d (--capacity 5GiB) reports capacity %d", id, n.GetCapacityBytes())
			case n.GetCapacityBytes() == 0:
				return fmt.Errorf("node %d reports no capacity", id)
			case id != extra.ID && n.GetUsedBytes() == 0:
				return fmt.Errorf("node %d (%d leaderships, %d replicas) reports %d bytes used after %d writes of 32 KiB",
					id, n.GetLeaders(), n.GetReplicas(), n.GetUsedBytes(), written)
			case n.GetLeaders() > 0 && n.GetCpuCores() <= 0:
				return fmt.Errorf("node %d serves the writes but reports no CPU", id)
			}
			if n.GetLeaders() > 0 && n.GetRequestP99Seconds() > 0 {
				servedP99 = true
			}
		}
		if !servedP99 {
			return fmt.Errorf("no node leading the shard reports a request p99: %v", last)
		}
		return nil
	})
	t.Logf("%d writes in %s", written, time.Since(start).Round(time.Millisecond))

	// Both binaries' /metrics serve Pebble's, the process's and the Go
	// runtime's metrics and what build runs.
	scrape := func(service, url string) {
		t.Helper()
		resp, err := http.Get("http://" + url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s/metrics: %d %v", url, resp.StatusCode, err)
		}
		for _, re := range []string{
			`(?m)^flotilla_pebble_flushes_total \d`, `(?m)^flotilla_pebble_l0_files \d`, `(?m)^flotilla_pebble_read_amplification \d`,
			`(?m)^flotilla_pebble_memtable_bytes [1-9]`, `(?m)^flotilla_pebble_wal_written_bytes_total [1-9]`, `(?m)^flotilla_pebble_compactions_total \d`,
			`(?m)^process_cpu_seconds_total \d`, `(?m)^process_resident_memory_bytes [1-9]`, `(?m)^process_open_fds [1-9]`, `(?m)^go_goroutines [1-9]`,
			`(?m)^flotilla_build_info\{goversion="go[^"]+",modified="(true|false)",revision="[^"]+",service="` + service + `",version="[^"]+"\} 1$`,
		} {
			if !regexp.MustCompile(re).Match(body) {
				t.Errorf("%s's /metrics has no line matching %s", service, re)
			}
		}
	}
	scrape("shardnode", c.f.Nodes[1].HTTP)
	scrape("placementd", c.f.Placement[1].HTTP)
	for _, n := range last {
		t.Logf("node %d: leaders %d, used %d bytes, capacity %d, p99 %.4fs, cpu %.2f cores",
			n.GetNodeId(), n.GetLeaders(), n.GetUsedBytes(), n.GetCapacityBytes(), n.GetRequestP99Seconds(), n.GetCpuCores())
	}
}
