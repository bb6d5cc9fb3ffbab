package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// End-to-end tests of placement with real placementd and shardnode
// processes on loopback.

type cluster struct {
	t *testing.T
	f *fleet.Fleet
}

// newCluster starts placement replicas and nodes shardnodes.
func newCluster(t *testing.T, placements, nodes int, placementArgs ...string) *cluster {
	f := fleet.New(t, nodes, "--heartbeat-interval", "250ms")
	f.AddPlacement(placements, append([]string{"--heartbeat-interval", "250ms", "--schedule-interval", "250ms"}, placementArgs...)...)
	f.StartPlacement()
	f.Start()
	return &cluster{t: t, f: f}
}

// placement returns a client to a live placement replica (any: followers
// forward to the leader).
func (c *cluster) placement() pb.PlacementClient {
	for i := uint64(1); i <= uint64(len(c.f.Placement)); i++ {
		if p := c.f.Placement[i]; p.Running() {
			return pb.NewPlacementClient(p.Conn())
		}
	}
	c.t.Fatal("no placement replica running")
	return nil
}

func (c *cluster) shards() ([]*pb.ShardStatus, error) {
	resp, err := c.placement().ListShards(testutil.Context(c.t, 5*time.Second), &pb.ListShardsRequest{})
	return resp.GetShards(), err
}

// waitHealthy waits until there are want shards (at least, with atLeast),
// each with a leader and rf voters, none on a node in dead.
func (c *cluster) waitHealthy(timeout time.Duration, want int, atLeast bool, rf int, dead ...uint64) []*pb.ShardStatus {
	var out []*pb.ShardStatus
	testutil.Eventually(c.t, timeout, func() error {
		shards, err := c.shards()
		if err != nil {
			return err
		}
		if len(shards) != want && !(atLeast && len(shards) > want) {
			return fmt.Errorf("%d shards, want %d", len(shards), want)
		}
		for _, s := range shards {
			d := s.GetRoute().GetShard()
			if s.GetRoute().GetLeaderNodeId() == 0 {
				return fmt.Errorf("shard %d has no leader", d.GetShardId())
			}
			voters := 0
			for _, r := range d.GetReplicas() {
				for _, x := range dead {
					if r.GetNodeId() == x {
						return fmt.Errorf("shard %d still has replica %d on dead node %d", d.GetShardId(), r.GetReplicaId(), x)
					}
				}
				if !r.GetLearner() {
					voters++
				}
			}
			if voters != rf || len(d.GetReplicas()) != rf {
				return fmt.Errorf("shard %d has %d replicas (%d voters), want %d", d.GetShardId(), len(d.GetReplicas()), voters, rf)
			}
		}
		out = shards
		return nil
	})
	return out
}

// kv returns a KV client to a node address.
func (c *cluster) kv(addr string) pb.KVClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return pb.NewKVClient(conn)
}

// put writes key through its shard's leader as placement reports it,
// retrying until the deadline.
func (c *cluster) put(key, value string) {
	c.t.Helper()
	testutil.Eventually(c.t, 30*time.Second, func() error {
		r, err := c.placement().GetRoute(testutil.Context(c.t, 5*time.Second), &pb.GetRouteRequest{Key: []byte(key)})
		if err != nil {
			return err
		}
		route := r.GetRoute()
		addr := route.GetAddresses()[route.GetLeaderNodeId()]
		_, err = c.kv(addr).Put(testutil.Context(c.t, 5*time.Second), &pb.PutRequest{
			Header: &pb.RequestHeader{ShardId: route.GetShard().GetShardId()}, Key: []byte(key), Value: []byte(value)})
		return err
	})
}

// get reads key linearizably through its leader.
func (c *cluster) get(key string) string {
	c.t.Helper()
	var v string
	testutil.Eventually(c.t, 30*time.Second, func() error {
		r, err := c.placement().GetRoute(testutil.Context(c.t, 5*time.Second), &pb.GetRouteRequest{Key: []byte(key)})
		if err != nil {
			return err
		}
		route := r.GetRoute()
		addr := route.GetAddresses()[route.GetLeaderNodeId()]
		resp, err := c.kv(addr).Get(testutil.Context(c.t, 5*time.Second), &pb.GetRequest{
			Header: &pb.RequestHeader{ShardId: route.GetShard().GetShardId()}, Key: []byte(key)})
		if err != nil {
			return err
		}
		v = string(resp.GetValue())
		return nil
	})
	return v
}

// counts returns replicas and leaders per live node from placement.
func (c *cluster) counts() (replicas, leaders map[uint64]int) {
	resp, err := c.placement().ListNodes(testutil.Context(c.t, 5*time.Second), &pb.ListNodesRequest{})
	if err != nil {
		c.t.Fatal(err)
	}
	replicas, leaders = map[uint64]int{}, map[uint64]int{}
	for _, n := range resp.GetNodes() {
		if n.GetState() == pb.NodeState_NODE_STATE_UP {
			replicas[n.GetNodeId()], leaders[n.GetNodeId()] = int(n.GetReplicas()), int(n.GetLeaders())
		}
	}
	return replicas, leaders
}

// withinOne checks every count is within ±1 of the mean (rounded outward).
func withinOne(m map[uint64]int) error {
	total := 0
	for _, v := range m {
		total += v
	}
	mean := float64(total) / float64(len(m))
	for node, v := range m {
		if float64(v) < mean-1 || float64(v) > mean+1 {
			return fmt.Errorf("node %d has %d, mean %.2f (all: %v)", node, v, mean, m)
		}
	}
	return nil
}

func TestPlacementBootstrapsAndRepairsAfterKill(t *testing.T) {
	c := newCluster(t, 1, 4, "--initial-shards", "8", "--down-after", "3s")
	c.waitHealthy(60*time.Second, 8, false, 3)
	keys := map[string]string{}
	for i := range 40 {
		k := fmt.Sprintf("%c-key-%d", 'a'+i%26, i)
		c.put(k, "v")
		keys[k] = "v"
	}
	// kill -9 the node holding the most replicas.
	replicas, _ := c.counts()
	victim := uint64(1)
	for n, r := range replicas {
		if r > replicas[victim] {
			victim = n
		}
	}
	killed := time.Now()
	c.f.Nodes[victim].Kill()
	c.waitHealthy(60*time.Second, 8, false, 3, victim)
	t.Logf("every shard had 3 live replicas again %s after the kill of node %d (down-after 3s)", time.Since(killed).Round(time.Millisecond), victim)
	for k, v := range keys {
		if got := c.get(k); got != v {
			t.Fatalf("acknowledged write %q lost: got %q", k, got)
		}
	}
}

func TestPlacementBalancesANewNode(t *testing.T) {
	c := newCluster(t, 1, 3, "--initial-shards", "12")
	c.waitHealthy(60*time.Second, 12, false, 3)
	n := c.f.Add("--heartbeat-interval", "250ms")
	n.Start()
	n.WaitReady(30 * time.Second)
	testutil.Eventually(t, 90*time.Second, func() error {
		replicas, leaders := c.counts()
		if len(replicas) != 4 {
			return fmt.Errorf("%d nodes up", len(replicas))
		}
		if err := withinOne(replicas); err != nil {
			return fmt.Errorf("replicas: %w", err)
		}
		if err := withinOne(leaders); err != nil {
			return fmt.Errorf("leaders: %w", err)
		}
		return nil
	})
	c.waitHealthy(30*time.Second, 12, false, 3)
}

func TestPlacementLeaderFailover(t *testing.T) {
	c := newCluster(t, 3, 3, "--initial-shards", "4", "--down-after", "3s")
	c.waitHealthy(60*time.Second, 4, false, 3)
	cs, err := c.placement().GetClusterStatus(testutil.Context(t, 5*time.Second), &pb.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	lead := cs.GetLeaderNodeId()
	c.f.Placement[lead].Kill()
	// A new leader answers, with the catalogue intact.
	testutil.Eventually(t, 30*time.Second, func() error {
		cs, err := c.placement().GetClusterStatus(testutil.Context(t, 5*time.Second), &pb.ClusterStatusRequest{})
		if err != nil {
			return err
		}
		if cs.GetLeaderNodeId() == lead || !cs.GetBootstrapped() || cs.GetNodesUp() != 3 {
			return fmt.Errorf("status %v", cs)
		}
		return nil
	})
	// Scheduling resumed: a node added now gets replicas.
	n := c.f.Add("--heartbeat-interval", "250ms")
	n.Start()
	n.WaitReady(30 * time.Second)
	testutil.Eventually(t, 90*time.Second, func() error {
		replicas, _ := c.counts()
		if replicas[n.ID] == 0 {
			return fmt.Errorf("new node %d got no replica yet (%v)", n.ID, replicas)
		}
		return nil
	})
	if !strings.Contains(c.f.Placement[lead].Log(), "ready") {
		t.Fatal("the killed placement replica never started")
	}
}

// TestPlacementSplitsUnderLoad writes through the router until shards grow
// past --split-size: placement splits them, more shards appear, and no
// error reaches the writer while routes change under it.
func TestPlacementSplitsUnderLoad(t *testing.T) {
	c := newCluster(t, 1, 3, "--initial-shards", "2", "--split-size", "48KiB")
	c.waitHealthy(60*time.Second, 2, false, 3)
	r, err := router.New(testutil.Context(t, 10*time.Second), router.Config{PlacementAddresses: []string{c.f.PlacementAddrs()}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	value := []byte(strings.Repeat("x", 512))
	written := 0
	testutil.Eventually(t, 120*time.Second, func() error {
		// Write another batch of keys spread over the key space.
		for range 50 {
			key := []byte{byte(written * 37), byte(written)}
			key = fmt.Appendf(key, "/%06d", written)
			if err := r.Put(testutil.Context(t, 20*time.Second), key, value); err != nil {
				t.Fatalf("write %d reached the caller: %v", written, err)
			}
			written++
		}
		shards, err := c.shards()
		if err != nil {
			return err
		}
		if len(shards) < 4 {
			return fmt.Errorf("%d shards after %d writes", len(shards), written)
		}
		return nil
	})
	// Every write is still there, read through routes that changed.
	kvs, err := r.Scan(testutil.Context(t, 30*time.Second), nil, nil, written+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != written {
		t.Fatalf("scan found %d keys, %d written", len(kvs), written)
	}
	t.Logf("%d writes, %d shards", written, len(c.waitHealthy(60*time.Second, 4, true, 3)))
}
