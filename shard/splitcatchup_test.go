package shard

import (
	"fmt"
	"testing"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// threeNodeShard bootstraps shard 1 over the whole key space with replica
// i on node i, elects n1 and writes keys a..z.
func threeNodeShard(t *testing.T) (*cluster, Descriptor) {
	t.Helper()
	c := newCluster(t, 3)
	desc := Descriptor{ShardID: 1, Epoch: Epoch{ConfVer: 1, Version: 1}, Replicas: []multiraft.Replica{
		{ReplicaID: 1, NodeID: 1}, {ReplicaID: 2, NodeID: 2}, {ReplicaID: 3, NodeID: 3},
	}}
	for _, r := range desc.Replicas {
		if err := c.stores[r.NodeID].CreateShard(desc, r.ReplicaID); err != nil {
			t.Fatal(err)
		}
	}
	c.elect(1, 1)
	for k := 'a'; k <= 'z'; k++ {
		c.propose(1, 1, put(hdr(0, 0), string(k), "v1"))
	}
	return c, desc
}

// until drives the cluster (deliver, then one tick of every engine) until
// cond holds, at most rounds times.
func (c *cluster) until(rounds int, what string, cond func() error) {
	c.t.Helper()
	var err error
	for range rounds {
		c.deliver()
		if err = cond(); err == nil {
			return
		}
		for _, e := range c.engines {
			e.Tick()
		}
	}
	c.t.Fatalf("after %d rounds, %s: %v", rounds, what, err)
}

// caughtUp reports whether node n hosts an initialised replica of shard
// whose applied index reached the commit index of the shard's leader on
// node lead.
func (c *cluster) caughtUp(shard ShardID, n, lead multiraft.NodeID) error {
	st, err := c.status(n, shard)
	if err != nil {
		return fmt.Errorf("n%d: %w", n, err)
	}
	if _, err := c.stores[n].Descriptor(shard); err != nil {
		return fmt.Errorf("n%d: %w", n, err)
	}
	ls, err := c.status(lead, shard)
	if err != nil {
		return fmt.Errorf("leader n%d: %w", lead, err)
	}
	if a, commit := st.Applied, ls.Commit; a < commit {
		return fmt.Errorf("n%d applied %d of shard %d, leader committed %d", n, a, shard, commit)
	}
	return nil
}

// status returns the status of shard's replica on node n, processing n's
// engine (in manual mode) so that the request is answered.
func (c *cluster) status(n multiraft.NodeID, shard ShardID) (multiraft.Status, error) {
	f := c.engines[n].StatusFuture(shard)
	c.engines[n].Process()
	select {
	case <-f.Done():
	default:
		return multiraft.Status{}, fmt.Errorf("status of shard %d on n%d not answered", shard, n)
	}
	v, err := f.Result()
	if err != nil {
		return multiraft.Status{}, err
	}
	return v.(multiraft.Status), nil
}

// TestSplitWhileFollowerDownCreatesRightHandReplica is issue 13's bug 3:
// shard 1 splits twice while n3 is cut off, the leader truncates its log
// so that n3 catches up on shard 1 by snapshot, which restores the state
// after the splits without running them. The right-hand shards must still
// get their replicas on n3: their leaders' messages create them empty and
// snapshots fill them, each waiting until n3's shard 1 no longer spans
// their range.
func TestSplitWhileFollowerDownCreatesRightHandReplica(t *testing.T) {
	c, desc := threeNodeShard(t)
	c.sameEverywhere(1, 1, 2, 3)
	c.drop = func(m multiraft.Message) bool { return m.ToNode == 3 || m.FromNode == 3 }

	r := c.propose(1, 1, splitCmd(Header{Epoch: desc.Epoch}, "h", 2,
		SplitReplica{Old: 1, New: 21}, SplitReplica{Old: 2, New: 22}, SplitReplica{Old: 3, New: 23}))
	c.elect(1, 2)
	r2 := c.propose(1, 2, splitCmd(Header{Epoch: r.Right.Epoch}, "p", 3,
		SplitReplica{Old: 21, New: 31}, SplitReplica{Old: 22, New: 32}, SplitReplica{Old: 23, New: 33}))
	c.elect(1, 3)
	for k := 'a'; k <= 'z'; k++ {
		shard := ShardID(1)
		switch {
		case k >= 'p':
			shard = 3
		case k >= 'h':
			shard = 2
		}
		c.propose(1, shard, put(hdr(0, 0), string(k), "v2"))
	}
	for _, shard := range []ShardID{1, 2, 3} {
		if _, err := c.wait(c.engines[1].CompactLogFuture(shard, true /* force */)); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.engines[3].Groups()) != 1 {
		t.Fatalf("n3 hosts %v while cut off", c.engines[3].Groups())
	}

	c.drop = nil
	for _, shard := range []ShardID{1, 2, 3} {
		c.until(300, fmt.Sprintf("shard %d caught up on n3", shard), func() error { return c.caughtUp(shard, 3, 1) })
	}
	m := c.engines[3].Metrics()
	if m.ReplicasCreated.Load() != 2 || m.SnapshotsApplied.Load() != 3 {
		t.Fatalf("n3 created %d replicas and applied %d snapshots, want 2 and 3 (shard 1 skipped both splits)",
			m.ReplicasCreated.Load(), m.SnapshotsApplied.Load())
	}
	if got := c.sameEverywhere(3, 1, 2, 3); !got.Equal(r2.Right) {
		t.Fatalf("shard 3 is %s, split made %s", &got, r2.Right)
	}
	c.sameEverywhere(2, 1, 2, 3)
	c.sameEverywhere(1, 1, 2, 3)
	for k := 'a'; k <= 'z'; k++ {
		if v, _ := get(t, c.dbs[3], string(k)); v != "v2" {
			t.Fatalf("n3: %c = %q", k, v)
		}
	}
	// The right-hand replicas on n3 are full members: with n1 cut off,
	// n2 and n3 elect a leader and commit.
	c.drop = func(m multiraft.Message) bool { return m.ToNode == 1 || m.FromNode == 1 }
	c.engines[2].NodeDown(1) // what the transport does: quiesced groups led there wake
	c.engines[3].NodeDown(1)
	var lead multiraft.NodeID
	c.until(300, "n2 or n3 leads shard 3", func() error {
		for _, n := range []multiraft.NodeID{2, 3} {
			if st, err := c.status(n, 3); err == nil && st.IsLeader {
				lead = n
				return nil
			}
		}
		return fmt.Errorf("no leader")
	})
	c.propose(lead, 3, put(hdr(0, 0), "q", "without n1"))
	c.until(10, "n3 applied the write", func() error {
		if v, _ := get(t, c.dbs[3], "q"); v != "without n1" {
			return fmt.Errorf("q = %q", v)
		}
		return nil
	})
}

// TestSplitInitialisesReplicaCreatedByMessage: the right-hand shard's
// leader reaches n3 before n3's replica of the parent applies the split.
// Its message creates an empty replica, whose snapshot is refused while
// the parent on n3 still spans its range; then the parent applies the
// split from its log and initialises that replica from the split's state,
// with no snapshot at all.
func TestSplitInitialisesReplicaCreatedByMessage(t *testing.T) {
	c, desc := threeNodeShard(t)
	c.sameEverywhere(1, 1, 2, 3)
	// n3 hears nothing of shard 1 (the split entry does not reach it).
	c.drop = func(m multiraft.Message) bool {
		return m.Group == 1 && (m.ToNode == 3 || m.FromNode == 3)
	}
	r := c.propose(1, 1, splitCmd(Header{Epoch: desc.Epoch}, "m", 2,
		SplitReplica{Old: 1, New: 21}, SplitReplica{Old: 2, New: 22}, SplitReplica{Old: 3, New: 23}))
	c.elect(1, 2)
	c.propose(1, 2, put(hdr(0, 0), "x", "right"))
	m := c.engines[3].Metrics()
	c.until(100, "n3 refuses shard 2's snapshot", func() error {
		if m.SnapshotsOverlapping.Load() == 0 {
			return fmt.Errorf("%d replicas created, no snapshot refused yet", m.ReplicasCreated.Load())
		}
		return nil
	})
	if m.ReplicasCreated.Load() != 1 {
		t.Fatalf("n3 created %d replicas, want 1", m.ReplicasCreated.Load())
	}
	if _, err := c.stores[3].Descriptor(2); err == nil {
		t.Fatal("n3's replica of shard 2 is initialised before its split applied")
	}

	c.drop = nil
	c.until(300, "shard 2 caught up on n3", func() error { return c.caughtUp(2, 3, 1) })
	if m.ReplicasInitializedBySplit.Load() != 1 || m.SnapshotsApplied.Load() != 0 {
		t.Fatalf("n3: %d replicas initialised by the split, %d snapshots applied; want 1 and 0",
			m.ReplicasInitializedBySplit.Load(), m.SnapshotsApplied.Load())
	}
	if got := c.sameEverywhere(2, 1, 2, 3); got.Epoch != r.Right.Epoch {
		t.Fatalf("shard 2 is %s, split made %s", &got, r.Right)
	}
	c.sameEverywhere(1, 1, 2, 3)
	c.propose(1, 2, put(hdr(0, 0), "y", "after"))
	c.sameEverywhere(2, 1, 2, 3)
}
