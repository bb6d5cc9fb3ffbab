package placement

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestNodeLeasesShown: the lease count a node heartbeats is what
// ListNodes, the cluster status (their total) and the status page's
// /api/status show; a node that never reported leases (older than
// leases) shows 0, and the page has the column and the summary entry.
func TestNodeLeasesShown(t *testing.T) {
	svc, c := newTestPlacement(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ids []uint64
	for _, addr := range []string{"127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"} {
		reg, err := c.RegisterNode(ctx, &pb.RegisterNodeRequest{Address: addr})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, reg.GetNodeId())
	}
	want := map[uint64]uint64{ids[0]: 7, ids[1]: 3, ids[2]: 0}
	for _, req := range []*pb.HeartbeatRequest{
		{NodeId: ids[0], Leases: 7},
		{NodeId: ids[1], Leases: 3},
		{NodeId: ids[2]}, // an older node: no leases field
	} {
		if _, err := c.Heartbeat(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, nodes []*pb.Node, cs *pb.ClusterStatus) {
		t.Helper()
		if len(nodes) != len(want) {
			t.Fatalf("%s: %d nodes, want %d", what, len(nodes), len(want))
		}
		for _, n := range nodes {
			if n.GetLeases() != want[n.GetNodeId()] {
				t.Errorf("%s: node %d leases %d, want %d", what, n.GetNodeId(), n.GetLeases(), want[n.GetNodeId()])
			}
		}
		if cs.GetLeases() != 10 {
			t.Errorf("%s: cluster leases %d, want 10", what, cs.GetLeases())
		}
	}
	nodes, err := c.ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := c.GetClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	check("gRPC", nodes.GetNodes(), cs)

	mux := http.NewServeMux()
	RegisterHTTP(mux, svc)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v\n%s", path, resp.StatusCode, err, body)
		}
		return body
	}
	var page pb.StatusPage
	// DiscardUnknown: the answer has "health" beside the StatusPage fields.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(get("/api/status"), &page); err != nil {
		t.Fatal(err)
	}
	check("/api/status", page.GetNodes(), page.GetCluster())
	// What the page's script reads: every node's leases and the total,
	// present (as "0") even when zero.
	html := string(get("/"))
	for _, s := range []string{`<th>Leases</th>`, `cell(r, n.leases, "num")`, `["leases", c.leases]`} {
		if !strings.Contains(html, s) {
			t.Errorf("the status page lacks %s", s)
		}
	}
	raw := string(get("/api/status"))
	for _, s := range []string{`"leases":"7"`, `"leases":"3"`, `"leases":"0"`, `"leases":"10"`} {
		if !strings.Contains(raw, s) {
			t.Errorf("/api/status lacks %s: %s", s, raw)
		}
	}
}

// TestLeasesTotalLeavesDownNodesOut: the cluster's lease total counts the
// nodes that are up (draining ones too), not the stale count of a node
// gone silent; that node still shows its last count.
func TestLeasesTotalLeavesDownNodesOut(t *testing.T) {
	f := newHealthFixture(t, 3, Config{HeartbeatInterval: time.Second, DownAfter: time.Minute})
	for node, leases := range map[uint64]uint64{1: 7, 2: 5, 3: 2} {
		f.s.view.heartbeat(&pb.HeartbeatRequest{NodeId: node, Leases: leases}, f.now)
	}
	total := func() uint64 {
		t.Helper()
		cs, err := f.s.clusterStatus(context.Background(), &pb.ClusterStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return cs.GetLeases()
	}
	if got := total(); got != 14 {
		t.Fatalf("leases %d, want 14", got)
	}
	// Node 2 drains (still up); node 3 goes silent past the down threshold.
	c := f.s.cat.load()
	n2 := c.nodes[2]
	n2.Draining = true
	c.nodes[2] = n2
	f.now = f.now.Add(5 * time.Second)
	for _, node := range []uint64{1, 2} {
		f.s.view.heartbeat(&pb.HeartbeatRequest{NodeId: node, Leases: map[uint64]uint64{1: 7, 2: 5}[node]}, f.now)
	}
	if got := total(); got != 12 {
		t.Fatalf("leases %d with node 3 down, want 12 (7+5)", got)
	}
	for _, n := range f.s.nodeStatuses(f.now) {
		if n.GetNodeId() == 3 && (n.GetState() != pb.NodeState_NODE_STATE_DOWN || n.GetLeases() != 2) {
			t.Fatalf("node 3: %v with %d leases, want down with its last count 2", n.GetState(), n.GetLeases())
		}
	}
}
