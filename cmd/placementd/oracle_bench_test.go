package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// BenchmarkOracle measures the fleet's timestamp oracle as shardnodes use
// it: three placementd processes on loopback, and 8 clients, each with one
// request out at a time for 5 s, on the leader: by GetTimestamps (unary)
// and on StreamTimestamps (a stream per client), one timestamp per
// request. It reports per mode:
//
//	calls/s    requests answered per second (each one timestamp)
//	p50-us     the median latency of a request, in microseconds
//	p99-us     its 99th percentile
//
// Each request is answered only after the leader confirmed its lead
// (fencing), so this is the rate and latency of the whole path. A
// shardnode asks for a batch of timestamps per request (every write that
// arrived during the previous one), so timestamps per second grow with
// the batch while the calls per second stay the bound. Run it with
//
//	go test -run '^$' -bench Oracle -benchtime=1x -count=3 ./cmd/placementd/
func BenchmarkOracle(b *testing.B) {
	for range b.N {
		f := fleet.New(b, 0, "--log-level", "warn")
		f.AddPlacement(3, "--log-level", "warn")
		f.StartPlacement()
		var leader pb.PlacementClient
		testutil.Eventually(b, 30*time.Second, func() error {
			for _, p := range f.Placement {
				c := pb.NewPlacementClient(p.Conn())
				st, err := c.GetClusterStatus(testutil.Context(b, 2*time.Second), &pb.ClusterStatusRequest{})
				if err == nil && st.GetPlacementLeaderAddress() == p.Addr {
					leader = c
					return nil
				}
			}
			return fmt.Errorf("no placement leader yet")
		})
		for _, mode := range []string{"unary", "stream"} {
			calls, lat := driveOracle(b, leader, mode == "stream", 8, 5*time.Second)
			b.ReportMetric(float64(calls)/5, mode+"-calls/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), mode+"-p50-us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), mode+"-p99-us")
		}
	}
}

// driveOracle runs clients requests in a closed loop for d and returns how
// many were answered and their latencies, sorted.
func driveOracle(b *testing.B, c pb.PlacementClient, stream bool, clients int, d time.Duration) (int, []time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu  sync.Mutex
		all []time.Duration
		wg  sync.WaitGroup
	)
	for range clients {
		wg.Go(func() {
			var lat []time.Duration
			defer func() { mu.Lock(); all = append(all, lat...); mu.Unlock() }()
			var st pb.Placement_StreamTimestampsClient
			if stream {
				var err error
				if st, err = c.StreamTimestamps(ctx); err != nil {
					b.Error(err)
					return
				}
			}
			for ctx.Err() == nil {
				start := time.Now()
				var err error
				if stream {
					if err = st.Send(&pb.GetTimestampsRequest{Count: 1}); err == nil {
						_, err = st.Recv()
					}
				} else {
					_, err = c.GetTimestamps(ctx, &pb.GetTimestampsRequest{Count: 1})
				}
				if err != nil {
					// The window's end can reach gRPC's own deadline timer
					// a moment before the context's.
					if ctx.Err() == nil && status.Code(err) != codes.DeadlineExceeded {
						b.Error(err)
					}
					return
				}
				lat = append(lat, time.Since(start))
			}
		})
	}
	wg.Wait()
	if len(all) == 0 {
		b.Fatal("no request answered")
	}
	slices.Sort(all)
	return len(all), all
}
