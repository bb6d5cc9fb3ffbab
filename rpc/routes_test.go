package rpc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestLocalRoutes: a node answers the routes of the shards it holds, in
// key order, cut to the range and the limit asked, with the addresses its
// resolver knows and no leader.
func TestLocalRoutes(t *testing.T) {
	s := newStack(t, stackConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.admin().Split(ctx, &pb.SplitRequest{ShardId: 1, SplitKey: []byte("m"), NewShardId: 2, NewReplicaIds: map[uint64]uint64{101: 201}}); err != nil {
		t.Fatal(err)
	}
	kv := NewKVServer(s.store, StaticResolver{1: "node1:7100"}, nil)
	show := func(resp *pb.ScanRoutesResponse) string {
		var parts []string
		for _, rt := range resp.GetRoutes() {
			d := rt.GetShard()
			parts = append(parts, fmt.Sprintf("s%d[%s,%s) v%d %v leader=%d", d.GetShardId(), d.GetStart(), d.GetEnd(),
				d.GetEpoch().GetVersion(), rt.GetAddresses(), rt.GetLeaderNodeId()))
		}
		return strings.Join(parts, " ")
	}
	for _, c := range []struct {
		start, end string
		limit      uint32
		want       string
	}{
		{"", "", 0, "s1[,m) v2 map[1:node1:7100] leader=0 s2[m,) v2 map[1:node1:7100] leader=0"},
		{"", "", 1, "s1[,m) v2 map[1:node1:7100] leader=0"},
		{"a", "b", 0, "s1[,m) v2 map[1:node1:7100] leader=0"},
		{"m", "", 0, "s2[m,) v2 map[1:node1:7100] leader=0"},
		{"l", "n", 0, "s1[,m) v2 map[1:node1:7100] leader=0 s2[m,) v2 map[1:node1:7100] leader=0"},
		{"k", "k", 0, ""},
	} {
		resp, err := kv.LocalRoutes(ctx, &pb.ScanRoutesRequest{Start: []byte(c.start), End: []byte(c.end), Limit: c.limit})
		if err != nil {
			t.Fatal(err)
		}
		if got := show(resp); got != c.want {
			t.Errorf("[%q, %q) limit %d:\n got %s\nwant %s", c.start, c.end, c.limit, got, c.want)
		}
	}
}

// TestEpochNotMatchNamesTheKeysShard: a request of the epoch before a
// split for a key now in the right-hand shard is refused with the
// descriptors of both halves, so that the router heals in one step.
func TestEpochNotMatchNamesTheKeysShard(t *testing.T) {
	s := newStack(t, stackConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, err := s.store.Descriptor(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin().Split(ctx, &pb.SplitRequest{ShardId: 1, SplitKey: []byte("m"), NewShardId: 2, NewReplicaIds: map[uint64]uint64{101: 201}}); err != nil {
		t.Fatal(err)
	}
	stale := &pb.Epoch{ConfVer: before.Epoch.ConfVer, Version: before.Epoch.Version}
	for key, want := range map[string]string{"x": "s1[,m) s2[m,)", "a": "s1[,m)"} {
		_, err := s.kv().Put(ctx, &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1, Epoch: stale}, Key: []byte(key), Value: []byte("v")})
		var got []string
		for _, d := range status.Convert(err).Details() {
			if enm, ok := d.(*pb.EpochNotMatch); ok {
				for _, c := range enm.GetCurrent() {
					got = append(got, fmt.Sprintf("s%d[%s,%s)", c.GetShardId(), c.GetStart(), c.GetEnd()))
				}
			}
		}
		if strings.Join(got, " ") != want {
			t.Errorf("a put of %q at the epoch before the split: %v, descriptors %v; want %s", key, err, got, want)
		}
	}
}
