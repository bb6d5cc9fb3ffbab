package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

var (
	spreadShards  = flag.Int("spread.shards", 5000, "BenchmarkLeaderSpread: shards created at bootstrap")
	spreadNodes   = flag.Int("spread.nodes", 3, "BenchmarkLeaderSpread: shardnodes")
	spreadTol     = flag.Float64("spread.tolerance", 0.10, "BenchmarkLeaderSpread: leaders per node must be within this fraction of the mean")
	spreadTimeout = flag.Duration("spread.timeout", 5*time.Minute, "BenchmarkLeaderSpread: give up after this long")
)

// BenchmarkLeaderSpread measures how long a fresh fleet (real placementd and
// shardnode processes, default flags, --initial-shards -spread.shards) takes
// from the start of its processes until every shard has a leader and every
// node leads within -spread.tolerance of the mean. It logs the leaders per
// node every 2 s (on stderr) and reports:
//
//	s-to-spread   seconds from the start until the leaders were spread
//	s-to-leaders  seconds until every shard had a leader
//	max-share     the largest share of the leaderships one node held when
//	              every shard first had a leader (1/nodes is perfect)
//
// Each iteration starts its own fleet; run it with -benchtime=1x, e.g.
//
//	go test -run '^$' -bench LeaderSpread -benchtime=1x -count=3 ./cmd/placementd/
//
// A fleet of 5,000 shards is heavy: on two cores it needs them both.
func BenchmarkLeaderSpread(b *testing.B) {
	for range b.N {
		measureLeaderSpread(b)
	}
}

func measureLeaderSpread(b *testing.B) {
	f := fleet.New(b, *spreadNodes, "--log-level", "warn")
	f.AddPlacement(1, "--initial-shards", fmt.Sprint(*spreadShards))
	start := time.Now()
	f.StartPlacement()
	f.Start()
	pc := pb.NewPlacementClient(f.Placement[1].Conn())
	var toLeaders time.Duration
	maxShare := 0.0
	var last string
	// Sample every 500 ms (a sampling period, not a wait for a condition),
	// print every 2 s, until spread or out of time.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(*spreadTimeout)
	nextLog := time.Time{}
	for {
		select {
		case <-tick.C:
		case <-deadline:
			b.Fatalf("leaders not within %.0f%% of the mean after %s: %s (placement log in %s)",
				100**spreadTol, *spreadTimeout, last, f.Placement[1].LogPath)
		}
		resp, err := pc.ListNodes(testutil.Context(b, 10*time.Second), &pb.ListNodesRequest{})
		if err != nil {
			continue
		}
		total, most := 0, 0
		var counts []string
		for _, n := range resp.GetNodes() {
			l := int(n.GetLeaders())
			total += l
			most = max(most, l)
			counts = append(counts, fmt.Sprintf("n%d=%d", n.GetNodeId(), l))
		}
		last = strings.Join(counts, " ")
		elapsed := time.Since(start)
		if time.Now().After(nextLog) {
			fmt.Fprintf(os.Stderr, "%5.1fs leaders %s (total %d)\n", elapsed.Seconds(), last, total)
			nextLog = time.Now().Add(2 * time.Second)
		}
		if total < *spreadShards {
			continue
		}
		if toLeaders == 0 {
			toLeaders, maxShare = elapsed, float64(most)/float64(total)
		}
		if spreadWithin(resp.GetNodes(), total, *spreadTol) {
			break
		}
	}
	spread := time.Since(start)
	fmt.Fprintf(os.Stderr, "spread after %.1fs: %s; every shard had a leader after %.1fs, max share then %.2f\n",
		spread.Seconds(), last, toLeaders.Seconds(), maxShare)
	b.ReportMetric(spread.Seconds(), "s-to-spread")
	b.ReportMetric(toLeaders.Seconds(), "s-to-leaders")
	b.ReportMetric(maxShare, "max-share")
	b.ReportMetric(0, "ns/op")
}

// spreadWithin reports whether every node leads within tol (a fraction)
// of the mean of total leaderships over nodes.
func spreadWithin(nodes []*pb.Node, total int, tol float64) bool {
	mean := float64(total) / float64(len(nodes))
	for _, n := range nodes {
		if l := float64(n.GetLeaders()); l < mean*(1-tol) || l > mean*(1+tol) {
			return false
		}
	}
	return true
}
