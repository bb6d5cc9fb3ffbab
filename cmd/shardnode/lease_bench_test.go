package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// BenchmarkLeaseKeepAlives measures the keepalives a node sustains for
// 100,000 leases: three shardnodes on loopback, one shard of 3 replicas
// holding every lease (so one node, its leader, counts them all), 100
// clients sending keepalives of random leases through one router for
// 10 s. It reports keepalives/s and the home leader's CPU per keepalive
// (the whole process: gRPC, the lease read barrier, the lessor's loop).
// Run: go test -run '^$' -bench LeaseKeepAlives -benchtime 1x -count 3 ./cmd/shardnode
func BenchmarkLeaseKeepAlives(b *testing.B) {
	const (
		leases   = 100_000
		clients  = 100
		duration = 10 * time.Second
	)
	ctx := testutil.Context(b, 10*time.Minute)
	f, rc := benchLeaseFleet(b, ctx)
	all := []uint64{1, 2, 3}
	testutil.Eventually(b, 30*time.Second, func() error {
		_, err := rc.Grant(ctx, 600)
		return err
	})
	ids := make([]uint64, leases)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < leases; i = next.Add(1) - 1 {
				l, err := rc.Grant(ctx, 600)
				if err != nil {
					b.Error(err)
					return
				}
				ids[i] = l.ID
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	var leader uint64
	for _, n := range all {
		info, err := pb.NewAdminClient(f.Nodes[n].Conn()).GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: 1})
		if err == nil && info.GetIsLeader() {
			leader = n
		}
	}
	if leader == 0 {
		b.Fatal("no leader of the shard")
	}
	b.ResetTimer()
	for range b.N {
		var done, errs atomic.Int64
		cpu0 := processCPU(b, f.Nodes[leader].PID())
		start := time.Now()
		for c := range clients {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(c), 7))
				for time.Since(start) < duration {
					if _, err := rc.KeepAliveOnce(ctx, ids[rng.IntN(leases)]); err != nil {
						errs.Add(1)
						continue
					}
					done.Add(1)
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		cpu := processCPU(b, f.Nodes[leader].PID()) - cpu0
		b.ReportMetric(float64(done.Load())/elapsed.Seconds(), "keepalives/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(max(done.Load(), 1)), "leader-cpu-µs/keepalive")
		b.ReportMetric(float64(errs.Load()), "errors")
	}
}

// processCPU returns the user and system CPU time process pid has used.
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): utime and
	// stime are the 12th and 13th, in clock ticks of 1/100 s.
	rest := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseInt(rest[11], 10, 64)
	stime, _ := strconv.ParseInt(rest[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// benchLeaseFleet starts three shardnodes holding one shard of 3 replicas,
// and a router to them.
func benchLeaseFleet(b *testing.B, ctx context.Context) (*fleet.Fleet, *router.Client) {
	f := fleet.New(b, 3)
	f.Start()
	all := []uint64{1, 2, 3}
	for _, node := range all {
		if _, err := pb.NewAdminClient(f.Nodes[node].Conn()).CreateReplica(ctx, &pb.CreateReplicaRequest{Shard: testutil.ShardDesc(1, 1, all)}); err != nil {
			b.Fatal(err)
		}
	}
	var addrs []string
	for _, n := range all {
		addrs = append(addrs, f.Nodes[n].Addr)
	}
	rc, err := router.New(ctx, router.Config{NodeAddresses: addrs})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rc.Close() })
	return f, rc
}

// BenchmarkLeaseRevoke measures how long the end of a lease with 1,000
// keys takes: Revoke returns once every key's conditional delete, every
// index key's delete and the record's applied (three shardnodes, one
// shard of 3 replicas). The same deletes follow an expiry. The keys were
// attached more than 2 s before, so the revoke does not wait for the
// attaches' promises.
// Run: go test -run '^$' -bench LeaseRevoke -benchtime 1x -count 3 ./cmd/shardnode
func BenchmarkLeaseRevoke(b *testing.B) {
	const keys = 1000
	ctx := testutil.Context(b, 10*time.Minute)
	_, rc := benchLeaseFleet(b, ctx)
	var l router.LeaseGrant
	testutil.Eventually(b, 30*time.Second, func() error {
		var err error
		l, err = rc.Grant(ctx, 600)
		return err
	})
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		var err error
		if l.ID == 0 {
			if l, err = rc.Grant(ctx, 600); err != nil {
				b.Fatal(err)
			}
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < keys; i = next.Add(1) - 1 {
					if _, err := rc.PutLease(ctx, fmt.Appendf(nil, "k%05d", i), []byte("v"), l.ID); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		// A revoke waits until the oracle passed the promises made to
		// the attaches (at most 2 s ahead): measure the deletes alone.
		time.Sleep(2 * time.Second)
		b.StartTimer()
		start := time.Now()
		if _, err := rc.Revoke(ctx, l.ID); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		b.StopTimer()
		if kvs, err := rc.Scan(ctx, []byte("k"), []byte("l"), 0); err != nil || len(kvs) != 0 {
			b.Fatalf("after the revoke: %d keys, %v", len(kvs), err)
		}
		b.ReportMetric(took.Seconds()*1000, "ms/revoke-of-1000-keys")
		l = router.LeaseGrant{}
		b.StartTimer()
	}
}
