package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Tests of the default RouteSource when placement does not answer: routes
// from the shardnodes (KV.LocalRoutes), or an error at once naming every
// address tried.

// descRoute is a route of shard id over [start, end) at epoch
// version.confVer with replicas on nodes (replica ID node*100+id), and an
// address per node.
func descRoute(id uint64, start, end string, version, confVer uint64, nodes ...uint64) *pb.Route {
	d := &pb.Descriptor{ShardId: id, Start: []byte(start), End: []byte(end), Epoch: &pb.Epoch{Version: version, ConfVer: confVer}}
	rt := &pb.Route{Shard: d, Addresses: map[uint64]string{}}
	for _, n := range nodes {
		d.Replicas = append(d.Replicas, &pb.Replica{ReplicaId: n*100 + id, NodeId: n})
		rt.Addresses[n] = fmt.Sprintf("n%d:1", n)
	}
	return rt
}

func TestMergeRoutes(t *testing.T) {
	show := func(routes []*pb.Route) string {
		var parts []string
		for _, rt := range routes {
			parts = append(parts, fmt.Sprintf("%s %v", newRoute(rt.GetShard(), 0, 0), rt.GetAddresses()))
		}
		return strings.Join(parts, "\n")
	}
	for _, c := range []struct {
		name string
		in   []*pb.Route
		want string
	}{
		{"disjoint answers, in key order", []*pb.Route{descRoute(2, "m", "", 1, 1, 2), descRoute(1, "", "m", 1, 1, 1)},
			"s1 [-inf, m) v1.1 replicas=n1 map[1:n1:1]\ns2 [m, +inf) v1.1 replicas=n2 map[2:n2:1]"},
		{"a lagging node's parent loses to the split halves", []*pb.Route{
			descRoute(1, "", "", 1, 1, 1, 2), descRoute(1, "", "m", 2, 1, 2), descRoute(2, "m", "", 2, 1, 2)},
			"s1 [-inf, m) v1.2 replicas=n2 map[2:n2:1]\ns2 [m, +inf) v1.2 replicas=n2 map[2:n2:1]"},
		{"a removed replica's membership loses to the current one", []*pb.Route{
			descRoute(1, "", "", 1, 3, 1, 2, 3), descRoute(1, "", "", 1, 4, 2, 3, 4)},
			"s1 [-inf, +inf) v4.1 replicas=n2,n3,n4 map[2:n2:1 3:n3:1 4:n4:1]"},
		{"addresses are pooled across answers", []*pb.Route{
			{Shard: descRoute(1, "", "", 1, 1, 1, 2).GetShard(), Addresses: map[uint64]string{1: "n1:1"}},
			{Shard: descRoute(1, "", "", 1, 1, 1, 2).GetShard(), Addresses: map[uint64]string{2: "n2:1"}}},
			"s1 [-inf, +inf) v1.1 replicas=n1,n2 map[1:n1:1 2:n2:1]"},
		{"nothing", nil, ""},
	} {
		if got := show(mergeRoutes(c.in)); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// TestRoutesFromNodesWhenPlacementIsDown: with every placement address
// refusing connections, the Client asks the node it was given, learns the
// other node from that node's routes, and serves requests in both
// shards, a Scan across them included.
func TestRoutesFromNodesWhenPlacementIsDown(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	left, right := fakeRoute(1, "", "m", 1, n1, n2), fakeRoute(2, "m", "", 2, n2)
	left.LeaderNodeId, right.LeaderNodeId = 0, 0 // nodes do not say who leads
	n1.routes = newStaticSource(left)
	n2.routes = newStaticSource(left, right)
	c := newTestClient(t, nil, func(cfg *Config) {
		cfg.RouteSource = nil
		cfg.PlacementAddresses = []string{fleet.FreePort(t), fleet.FreePort(t)}
		cfg.NodeAddresses = []string{n1.addr}
	})
	ctx := context.Background()
	for _, k := range []string{"a", "x"} {
		if err := c.Put(ctx, []byte(k), []byte("v-"+k)); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	kvs, err := c.Scan(ctx, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keysOf(kvs), ","); got != "a,x" {
		t.Fatalf("scan: %s", got)
	}
	if n2.calls.Load() == 0 {
		t.Fatal("node 2, learned from node 1's routes, was never asked")
	}
}

// TestNothingReachableFailsAtOnce: when neither placement nor any node
// can be connected to, a call fails at once, not at its Timeout, with an
// error that names every address tried; when placement answers (here:
// it knows no route), the call retries as before.
func TestNothingReachableFailsAtOnce(t *testing.T) {
	p1, p2, node := fleet.FreePort(t), fleet.FreePort(t), fleet.FreePort(t)
	for _, c := range []struct {
		nodes []string
		want  []string
	}{
		{nil, []string{p1, p2, "no shardnode address is known"}},
		{[]string{node}, []string{p1, p2, node}},
	} {
		cl := newTestClient(t, nil, func(cfg *Config) {
			cfg.PlacementAddresses, cfg.NodeAddresses, cfg.Timeout = []string{p1, p2}, c.nodes, 5*time.Second
		})
		start := time.Now()
		err := cl.Put(context.Background(), []byte("k"), []byte("v"))
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("failed after %s, want at once", el)
		}
		if !errors.Is(err, ErrNoRoute) || errors.Is(err, ErrAmbiguous) || errors.Is(err, ErrRetriesExhausted) {
			t.Errorf("want ErrNoRoute alone, got %v", err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error does not name %s: %v", w, err)
			}
		}
	}
	// Placement answers, without a route: that is worth retrying.
	src := newStaticSource()
	cl := newTestClient(t, nil, func(cfg *Config) {
		cfg.PlacementAddresses, cfg.MaxRetries = []string{servePlacement(t, src)}, 3
	})
	if err := cl.Put(context.Background(), []byte("k"), []byte("v")); !errors.Is(err, ErrNoRoute) || !errors.Is(err, ErrRetriesExhausted) {
		t.Fatalf("placement without routes: want ErrNoRoute after retries, got %v", err)
	}
	if got := src.gets.Load(); got != 4 {
		t.Fatalf("placement asked %d times, want 4", got)
	}
}

// TestHungPlacementReplicaIsPassedOver: a placement replica that takes a
// call and never answers (a follower forwarding to a paused leader does)
// holds a route load up for placementCallTimeout, not for the whole load.
func TestHungPlacementReplicaIsPassedOver(t *testing.T) {
	n := newFakeNode(t, 1)
	hung := newStaticSource() // knows no routes; its GetRoute never answers
	hung.block = make(chan struct{})
	good := newStaticSource(fakeRoute(1, "", "", 1, n))
	c := newTestClient(t, nil, func(cfg *Config) {
		cfg.PlacementAddresses, cfg.Timeout = []string{servePlacement(t, hung), servePlacement(t, good)}, 8*time.Second
	})
	start := time.Now()
	if err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < placementCallTimeout || el > placementCallTimeout+2*time.Second {
		t.Fatalf("put took %s, want about placementCallTimeout (%s)", el, placementCallTimeout)
	}
}
