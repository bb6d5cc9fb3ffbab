package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// BenchmarkProcessPuts measures 3 shardnode processes on loopback holding
// 16 shards of 3 replicas, with 100 concurrent clients sending 256-byte
// puts straight to the leaders for 10 s. It reports writes/s, p50 and p99
// latency, the disk's fsync p50, and the transport's messages and bytes per
// batch. Run: go test -run '^$' -bench ProcessPuts -benchtime 1x -count 3 ./cmd/shardnode
func BenchmarkProcessPuts(b *testing.B) {
	const (
		clients  = 100
		duration = 10 * time.Second
	)
	f := fleet.New(b, 3, "--pprof")
	f.Start()
	all := []uint64{1, 2, 3}
	ctx := testutil.Context(b, time.Minute)
	for i := 1; i <= testShards; i++ {
		for _, node := range all {
			if _, err := pb.NewAdminClient(f.Nodes[node].Conn()).CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: testutil.ShardDesc(i, testShards, all)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Find every shard's leader once; clients write straight to it.
	leaders := make([]pb.KVClient, testShards+1)
	testutil.Eventually(b, 30*time.Second, func() error {
		for i := 1; i <= testShards; i++ {
			if leaders[i] != nil {
				continue
			}
			for _, n := range all {
				info, err := pb.NewAdminClient(f.Nodes[n].Conn()).GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: uint64(i)})
				if err == nil && info.GetIsLeader() {
					leaders[i] = pb.NewKVClient(f.Nodes[n].Conn())
				}
			}
			if leaders[i] == nil {
				return fmt.Errorf("shard %d has no leader yet", i)
			}
		}
		return nil
	})
	fsync := fsyncP50(b, f.Dir)
	before := transportTotals(b, f, all)
	value := make([]byte, 256)
	b.ResetTimer()
	for range b.N {
		var mu sync.Mutex
		var lat []time.Duration
		errs := 0
		start := time.Now()
		var wg sync.WaitGroup
		if dir := os.Getenv("FLOTILLA_PROFILE_DIR"); dir != "" {
			// Profile node 1 during the run: the profile's story goes in the
			// notes of whoever optimises.
			wg.Go(func() {
				saveProfile(b, f.Nodes[1].HTTP, filepath.Join(dir, "shardnode1.cpu.pprof"), duration-2*time.Second)
			})
		}
		for c := range clients {
			wg.Go(func() {
				var mine []time.Duration
				bad := 0
				for i := 0; time.Since(start) < duration; i++ {
					shard := (c+i)%testShards + 1
					key := keyFor(shard, testShards, fmt.Sprintf("c%d-%d", c, i))
					t0 := time.Now()
					_, err := leaders[shard].Put(ctx, &pb.PutRequest{Header: &pb.RequestHeader{ShardId: uint64(shard)}, Key: key, Value: value})
					if err != nil {
						bad++
						continue
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				errs += bad
				mu.Unlock()
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		slices.Sort(lat)
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "writes/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(errs), "errors")
	}
	b.StopTimer()
	after := transportTotals(b, f, all)
	batches := after.GetBatches() - before.GetBatches()
	if batches > 0 {
		b.ReportMetric(float64(after.GetMessages()-before.GetMessages())/float64(batches), "msgs/batch")
		b.ReportMetric(float64(after.GetBytes()-before.GetBytes())/float64(batches), "bytes/batch")
	}
	b.ReportMetric(fsync, "fsync-p50-ms")
}

// transportTotals sums the transport counters of the nodes.
func transportTotals(b *testing.B, f *fleet.Fleet, nodes []uint64) *pb.TransportStats {
	sum := &pb.TransportStats{}
	for _, n := range nodes {
		info, err := pb.NewAdminClient(f.Nodes[n].Conn()).GetNodeInfo(testutil.Context(b, 30*time.Second), &pb.NodeInfoRequest{})
		if err != nil {
			b.Fatal(err)
		}
		ts := info.GetTransport()
		sum.Batches += ts.GetBatches()
		sum.Messages += ts.GetMessages()
		sum.Bytes += ts.GetBytes()
	}
	return sum
}

// fsyncP50 measures the median latency, in ms, of writing 4 KiB and
// fsyncing it in dir.
func fsyncP50(b *testing.B, dir string) float64 {
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var lat []time.Duration
	for range 200 {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return float64(lat[len(lat)/2].Microseconds()) / 1000
}

// saveProfile fetches a CPU profile of d from a node's /debug/pprof.
func saveProfile(b *testing.B, httpAddr, path string, d time.Duration) {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", httpAddr, int(d.Seconds())))
	if err != nil {
		b.Error(err)
		return
	}
	defer resp.Body.Close()
	out, err := os.Create(path)
	if err != nil {
		b.Error(err)
		return
	}
	defer out.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		b.Error(err)
	}
}
