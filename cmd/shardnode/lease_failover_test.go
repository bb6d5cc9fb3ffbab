package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestLeaseSurvivesHomeLeaderKill: three shardnodes and placement, two
// leases of 8 s in one home shard, checkpointed every second. The home's
// leader is killed with -9. The lease kept alive throughout keeps its key
// for two TTLs after the kill (the new leader gives it at least its
// checkpointed remaining TTL, and the keepalives follow the new leader);
// the lease nobody keeps alive still ends, and its key is deleted, within
// its TTL plus the checkpoint interval, the election and the end's writes.
func TestLeaseSurvivesHomeLeaderKill(t *testing.T) {
	f := flt.New(t, 3, "--heartbeat-interval", "250ms", "--lease-checkpoint-interval", "1s")
	f.AddPlacement(1, "--heartbeat-interval", "250ms", "--schedule-interval", "250ms", "--initial-shards", "2")
	f.StartPlacement()
	f.Start()
	ctx := testutil.Context(t, 2*time.Minute)
	rc, err := router.New(ctx, router.Config{PlacementAddresses: strings.Split(f.PlacementAddrs(), ","), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()

	var kept router.LeaseGrant
	testutil.Eventually(t, time.Minute, func() error {
		var err error
		kept, err = rc.GrantID(ctx, 1<<40, 8)
		return err
	})
	// The second lease's ID sorts next to the first's: same home shard.
	lapsed, err := rc.GrantID(ctx, 1<<40+1, 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.PutLease(ctx, []byte("kept"), []byte("k"), kept.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.PutLease(ctx, []byte("lapsed"), []byte("l"), lapsed.ID); err != nil {
		t.Fatal(err)
	}
	put := time.Now()
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	ka, err := rc.KeepAlive(kctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	lost := make(chan struct{})
	go func() {
		for range ka {
		}
		close(lost)
	}()

	// Kill the home shard's leader.
	route, err := pb.NewPlacementClient(f.Placement[1].Conn()).GetRoute(ctx, &pb.GetRouteRequest{Key: syskeys.LeaseRecordKey(kept.ID)})
	if err != nil {
		t.Fatal(err)
	}
	home := route.GetRoute().GetShard().GetShardId()
	var leader uint64
	testutil.Eventually(t, 20*time.Second, func() error {
		for id, n := range f.Nodes {
			info, err := pb.NewAdminClient(n.Conn()).GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: home})
			if err == nil && info.GetIsLeader() {
				leader = id
				return nil
			}
		}
		return fmt.Errorf("no leader of shard %d", home)
	})
	// Wait until a checkpoint of the lapsing lease is written, so the new
	// leader starts from a checkpoint, not from the grant.
	testutil.Eventually(t, 10*time.Second, func() error {
		kvs, err := rc.ScanSystem(ctx, syskeys.LeaseRecordKey(lapsed.ID), syskeys.LeaseRecordKey(lapsed.ID+1))
		if err != nil || len(kvs) != 1 {
			return fmt.Errorf("the lapsing lease's record: %d, %v", len(kvs), err)
		}
		r, err := syskeys.DecodeLeaseRecord(kvs[0].Value)
		if err != nil || r.RemainingMs >= 8000 {
			return fmt.Errorf("the lapsing lease's record: %+v, %v", r, err)
		}
		return nil
	})
	f.Nodes[leader].Kill()
	killed := time.Now()
	t.Logf("killed node %d, the leader of home shard %d, %v after the puts", leader, home, killed.Sub(put).Round(time.Millisecond))

	testutil.Eventually(t, 30*time.Second, func() error {
		if _, found, err := rc.Get(ctx, []byte("lapsed")); err != nil || found {
			return fmt.Errorf("the lapsed lease's key: found %v, %v", found, err)
		}
		return nil
	})
	gone := time.Since(put)
	t.Logf("the lapsed lease's key read as absent %v after its put (TTL 8s)", gone.Round(time.Millisecond))
	if gone < 8*time.Second {
		t.Fatalf("the lapsed key went %v after its put, before its TTL", gone)
	}
	// The kept lease survives two TTLs after the kill.
	for time.Since(killed) < 16*time.Second {
		select {
		case <-lost:
			t.Fatalf("the kept lease was lost %v after the kill", time.Since(killed))
		case <-time.After(500 * time.Millisecond):
		}
		if _, found, err := rc.Get(ctx, []byte("kept")); err != nil || !found {
			t.Fatalf("the kept lease's key %v after the kill: found %v, %v", time.Since(killed), found, err)
		}
	}
	ttl, err := rc.TimeToLive(ctx, kept.ID, true)
	if err != nil || len(ttl.Keys) != 1 {
		t.Fatalf("ttl of the kept lease: %+v, %v", ttl, err)
	}
	// The surviving nodes' metrics tell the same story.
	sum := map[string]float64{}
	for id, n := range f.Nodes {
		if id == leader {
			continue
		}
		m, err := scrapeMetrics(n.HTTP)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	for _, series := range []string{"flotilla_lease_leases", "flotilla_lease_expired_total", "flotilla_lease_keepalives_total", "flotilla_lease_checkpoints_total"} {
		if sum[series] < 1 {
			t.Errorf("%s summed over the live nodes is %v, want at least 1", series, sum[series])
		}
	}
}
