package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Issue 13, bug 4: a replica left behind on a node blocked re-adding its
// shard there. These tests run the steps placement takes (create an empty
// replica, have the leader add it, remove the replaced one), by hand.

// fastGC makes the nodes look for stale replicas every 100 ms and check
// one after a second without a leader or in the empty state.
var fastGC = []string{"--replica-gc-interval=100ms", "--replica-gc-leaderless-after=1s", "--replica-gc-empty-after=1s"}

// notHosted waits until node no longer hosts a replica of shard.
func (h *harness) notHosted(node uint64, shard uint64, within time.Duration) {
	h.t.Helper()
	testutil.Eventually(h.t, within, func() error {
		info, err := h.admin(node).GetShardInfo(testutil.Context(h.t, 2*time.Second), &pb.ShardInfoRequest{ShardId: shard})
		if status.Code(err) == codes.NotFound {
			return nil
		}
		return fmt.Errorf("node %d still hosts replica %d of shard %d (%v)", node, info.GetReplicaId(), shard, err)
	})
}

// addReplica does what placement's executor does to add replica of shard
// on node: create it empty there (AlreadyExists is fine, as a retry would
// get), then have the leader add it as a learner, wait until it caught up
// and promote it. It waits for a leader before creating the replica: an
// empty replica that no leader names for a second (fastGC) is collected,
// and an election after a kill can take that long.
func (h *harness) addReplica(shard, replica, node uint64, members ...uint64) error {
	h.leader(int(shard), members...)
	_, err := h.admin(node).CreateReplica(testutil.Context(h.t, 20*time.Second), &pb.CreateReplicaRequest{
		Shard: &pb.Descriptor{ShardId: shard}, Join: true, ReplicaId: replica})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create replica %d on node %d: %w", replica, node, err)
	}
	// A leader just elected, or one with a membership change still
	// applying, drops the proposal (RESOURCE_EXHAUSTED, surely not
	// applied); an election under way is UNAVAILABLE. Both are retried.
	deadline := time.Now().Add(30 * time.Second)
	for {
		lead := h.leader(int(shard), members...)
		_, err = h.admin(lead).AddReplica(testutil.Context(h.t, 30*time.Second), &pb.AddReplicaRequest{ShardId: shard,
			Replica: &pb.Replica{ReplicaId: replica, NodeId: node}})
		if c := status.Code(err); (c == codes.ResourceExhausted || c == codes.Unavailable) && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			return fmt.Errorf("add replica %d on node %d: %w", replica, node, err)
		}
		return nil
	}
}

// removeReplica has shard's leader remove replica from the group.
func (h *harness) removeReplica(shard, replica uint64, members ...uint64) {
	h.t.Helper()
	lead := h.leader(int(shard), members...)
	if _, err := h.admin(lead).ChangeReplicas(testutil.Context(h.t, 10*time.Second), &pb.ChangeReplicasRequest{ShardId: shard,
		Changes: []*pb.ReplicaChange{{Type: pb.ChangeType_CHANGE_TYPE_REMOVE, Replica: &pb.Replica{ReplicaId: replica}}}}); err != nil {
		h.t.Fatalf("remove replica %d of shard %d: %v", replica, shard, err)
	}
}

// caughtUpOn waits until a stale read of key on node returns value.
func (h *harness) caughtUpOn(node uint64, shard int, key []byte, value string) {
	h.t.Helper()
	testutil.Eventually(h.t, 30*time.Second, func() error {
		resp, err := h.kv(node).Get(testutil.Context(h.t, 2*time.Second), &pb.GetRequest{
			Header: &pb.RequestHeader{ShardId: uint64(shard), Consistency: pb.ReadConsistency_READ_CONSISTENCY_STALE}, Key: key})
		if err != nil {
			return err
		}
		if string(resp.GetValue()) != value {
			return fmt.Errorf("node %d: %q = %q, want %q", node, key, resp.GetValue(), value)
		}
		return nil
	})
}

// stranded is bug 4 (a): node 3 is down while placement repairs shard 1
// elsewhere (replica 104 on node 4 added, 103 removed); node 3 comes back
// still hosting replica 103, leaderless at its old epoch, which its group
// no longer talks to. It returns the harness with node 3 back.
func stranded(t *testing.T, node3Args ...string) *harness {
	h := newHarness(t, 4, 4, fastGC...)
	h.createShards(1, []uint64{1, 2, 3})
	if err := h.put(1, []byte("a"), "1", 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	h.caughtUpOn(3, 1, []byte("a"), "1")
	h.f.Nodes[3].Kill()
	if err := h.addReplica(1, 104, 4, 1, 2); err != nil {
		t.Fatal(err)
	}
	h.removeReplica(1, 103, 1, 2, 4)
	if err := h.put(1, []byte("b"), "2", 1, 2, 4); err != nil {
		t.Fatal(err)
	}
	// The leader's transport may still queue messages for node 3 sent
	// before the removal applied (the removal's own append among them):
	// it drops them at its next failed attempt to reach node 3, but a
	// node 3 restarted before that would receive them and apply its own
	// removal, and nothing would be stranded. So wait until no node queues
	// anything (no other shard lives on node 3 to queue more).
	testutil.Eventually(t, 20*time.Second, func() error {
		for _, n := range []uint64{1, 2, 4} {
			m, err := h.metrics(n)
			if err != nil {
				return err
			}
			q, ok := m["flotilla_transport_queue"]
			if !ok {
				return fmt.Errorf("node %d exports no flotilla_transport_queue", n)
			}
			if q != 0 {
				return fmt.Errorf("node %d's transport queues %v messages", n, q)
			}
		}
		return nil
	})
	h.f.Nodes[3].Args = append(h.f.Nodes[3].Args, node3Args...)
	h.f.Nodes[3].Restart()
	return h
}

// TestProcessRemovedReplicaIsCollected: the stale replica of bug 4 (a)
// learns from its peers that it was removed and deletes itself; adding the
// shard back to its node then works.
func TestProcessRemovedReplicaIsCollected(t *testing.T) {
	h := stranded(t)
	h.notHosted(3, 1, 20*time.Second)
	// The node logs the collection just after the replica is gone.
	testutil.Eventually(t, 10*time.Second, func() error {
		if log := h.f.Nodes[3].Log(); !lineWith(log, "replica GC: removed", "shard=1", "replica=103") {
			return fmt.Errorf("node 3 did not log the collection:\n%s", log)
		}
		return nil
	})
	if err := h.addReplica(1, 105, 3, 1, 2, 4); err != nil {
		t.Fatal(err)
	}
	h.caughtUpOn(3, 1, []byte("b"), "2")
	// The removed ID never comes back.
	_, err := h.admin(3).CreateReplica(testutil.Context(t, 10*time.Second), &pb.CreateReplicaRequest{
		Shard: &pb.Descriptor{ShardId: 1}, Join: true, ReplicaId: 103})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("re-creating removed replica 103: %v", err)
	}
}

// TestProcessReAddReplacesStaleReplica: with the node's collection off, a
// re-add of the shard to the node that still hosts the stale replica of
// bug 4 (a) replaces it: CreateReplica checks with the shard that replica
// 103 is no member and replaces it by 105, which the leader adds.
func TestProcessReAddReplacesStaleReplica(t *testing.T) {
	h := stranded(t, "--replica-gc-interval=0")
	info, err := h.admin(3).GetShardInfo(testutil.Context(t, 5*time.Second), &pb.ShardInfoRequest{ShardId: 1})
	if err != nil || info.GetReplicaId() != 103 {
		t.Fatalf("node 3 should still host stale replica 103: %v, %v", info, err)
	}
	// The leader refuses a second replica on a node holding a member.
	lead := h.leader(1, 1, 2, 4)
	_, err = h.admin(lead).AddReplica(testutil.Context(t, 10*time.Second), &pb.AddReplicaRequest{ShardId: 1,
		Replica: &pb.Replica{ReplicaId: 106, NodeId: 4}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("adding a second replica on node 4: %v", err)
	}
	if err := h.addReplica(1, 105, 3, 1, 2, 4); err != nil {
		t.Fatal(err)
	}
	h.caughtUpOn(3, 1, []byte("b"), "2")
}

// TestProcessEmptyReplicaIsCollected is bug 4 (b): an add that created the
// empty replica on its node and failed before the membership change leaves
// it there, empty, no member. The node collects it (asking every node it
// knows, since an empty replica knows no peer), and the shard can then be
// added there; a re-add that comes first replaces it instead.
func TestProcessEmptyReplicaIsCollected(t *testing.T) {
	h := newHarness(t, 4, 3, fastGC...)
	h.f.Nodes[4].Args = append(h.f.Nodes[4].Args, "--replica-gc-interval=0")
	h.f.Nodes[4].Start()
	h.f.Nodes[4].WaitReady(30 * time.Second)
	h.createShards(2, []uint64{1, 2, 3})
	for shard := 1; shard <= 2; shard++ {
		if err := h.put(shard, keyFor(shard, 2, "k"), "v", 1, 2, 3); err != nil {
			t.Fatal(err)
		}
	}
	orphan := func(shard, replica uint64) {
		t.Helper()
		if _, err := h.admin(4).CreateReplica(testutil.Context(t, 10*time.Second), &pb.CreateReplicaRequest{
			Shard: &pb.Descriptor{ShardId: shard}, Join: true, ReplicaId: replica}); err != nil {
			t.Fatal(err)
		}
	}
	// Replaced by a re-add, with the collection off.
	orphan(1, 104)
	if err := h.addReplica(1, 105, 4, 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	h.caughtUpOn(4, 1, keyFor(1, 2, "k"), "v")

	// Collected by the node.
	orphan(2, 204)
	h.f.Nodes[4].Kill()
	h.f.Nodes[4].Args = fastGC
	h.f.Nodes[4].Restart()
	h.notHosted(4, 2, 20*time.Second)
	if err := h.addReplica(2, 205, 4, 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	h.caughtUpOn(4, 2, keyFor(2, 2, "k"), "v")
}

// lineWith reports whether one line of log contains every sub.
func lineWith(log string, subs ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			return true
		}
	}
	return false
}
