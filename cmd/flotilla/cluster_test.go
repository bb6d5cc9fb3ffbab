package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestStatusAndNodesShowLeases: flotilla status prints the fleet's lease
// total, flotilla nodes each node's count (0 for a node that never
// reported one), and --json carries both, as numbers.
func TestStatusAndNodesShowLeases(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, &pb.ClusterStatus{Bootstrapped: true, NodesUp: 2, Shards: 4, Leases: 7})
	if !strings.Contains(out.String(), "shards: 4   leases: 7   under-replicated: 0") {
		t.Errorf("flotilla status does not show 7 leases:\n%s", &out)
	}
	out.Reset()
	printNodes(&out, []*pb.Node{
		{NodeId: 1, Address: "a:1", Replicas: 4, Leaders: 2, Leases: 7, LastHeartbeatMsAgo: 251_200},
		// An older node, not heard from by this placement leader yet.
		{NodeId: 2, Address: "b:1", Replicas: 4, Leaders: 2},
	})
	lines := strings.Split(out.String(), "\n")
	if !regexp.MustCompile(`^NODE +ADDRESS +STATE +ZONE +REPLICAS +LEADERS +LEASES +LAST HEARTBEAT$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^1 +a:1 +up +4 +2 +7 +4 min 11 s ago$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^2 +b:1 +up +4 +2 +0 +never$`).MatchString(lines[2]) {
		t.Errorf("flotilla nodes does not show the leases per node:\n%s", &out)
	}
	out.Reset()
	if err := printProto(&out, &pb.ListNodesResponse{Nodes: []*pb.Node{{NodeId: 2}}}); err != nil {
		t.Fatal(err)
	}
	// IDs and counts are JSON numbers, not protojson's strings.
	if !regexp.MustCompile(`"leases": 0\b`).MatchString(out.String()) || !regexp.MustCompile(`"node_id": 2\b`).MatchString(out.String()) {
		t.Errorf("flotilla nodes --json lacks the node's leases:\n%s", &out)
	}
	out.Reset()
	if err := printProto(&out, &pb.ClusterStatus{Leases: 7}); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`"leases": 7\b`).MatchString(out.String()) {
		t.Errorf("flotilla status --json lacks the lease total:\n%s", &out)
	}
}
