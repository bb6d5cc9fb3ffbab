package rpc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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
