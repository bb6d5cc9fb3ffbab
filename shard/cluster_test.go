package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// cluster runs several nodes (Store + engine in manual mode, no workers)
// over an in-memory network, driven step by step by the test: it is
// deterministic and needs no sleeps.
type cluster struct {
	t       testing.TB
	dbs     map[multiraft.NodeID]*pebble.DB
	stores  map[multiraft.NodeID]*Store
	engines map[multiraft.NodeID]*multiraft.Engine
	msgs    []multiraft.Message
	snaps   []*multiraft.OutgoingSnapshot
	// oracle stamps the writes of every node (and of propose).
	oracle counterOracle
	// restored counts snapshots that receivers accepted.
	restored int
	// drop, if set, loses the messages and snapshots it reports true for
	// (a snapshot's sender learns that it failed).
	drop func(m multiraft.Message) bool
}

type clusterNet struct{ c *cluster }

func (n clusterNet) Send(msgs []multiraft.Message)              { n.c.msgs = append(n.c.msgs, msgs...) }
func (n clusterNet) SendSnapshot(s *multiraft.OutgoingSnapshot) { n.c.snaps = append(n.c.snaps, s) }

func newCluster(t testing.TB, nodes int) *cluster {
	c := &cluster{t: t, dbs: map[multiraft.NodeID]*pebble.DB{}, stores: map[multiraft.NodeID]*Store{}, engines: map[multiraft.NodeID]*multiraft.Engine{}}
	for i := 1; i <= nodes; i++ {
		id := multiraft.NodeID(i)
		store, err := NewStore(Config{SnapshotChunkBytes: 128}, &c.oracle)
		if err != nil {
			t.Fatal(err)
		}
		db := newDB(t)
		eng, err := multiraft.Open(multiraft.Config{
			NodeID: id, DB: db, Transport: clusterNet{c}, NewStateMachine: store.StateMachineFunc(),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Workers: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
		// Past the engine's first election timeout, in which replicas
		// created by vote requests withhold their votes (see
		// multiraft/create.go), as on a node that has been up a while.
		for range multiraft.DefaultElectionTicks {
			eng.Tick()
		}
		store.SetEngine(eng)
		c.dbs[id], c.stores[id], c.engines[id] = db, store, eng
	}
	return c
}

// deliver processes every engine and delivers messages and snapshots
// until nothing moves.
func (c *cluster) deliver() {
	for range 1000 {
		work := 0
		for i := 1; i <= len(c.engines); i++ {
			work += c.engines[multiraft.NodeID(i)].Process()
		}
		msgs, snaps := c.msgs, c.snaps
		c.msgs, c.snaps = nil, nil
		for _, m := range msgs {
			if c.drop == nil || !c.drop(m) {
				c.engines[m.ToNode].Step([]multiraft.Message{m})
			}
		}
		for _, s := range snaps {
			c.transfer(s)
		}
		if work+len(msgs)+len(snaps) == 0 {
			return
		}
	}
	c.t.Fatal("cluster does not settle")
}

func (c *cluster) transfer(s *multiraft.OutgoingSnapshot) {
	defer s.Close()
	var body bytes.Buffer
	err := s.WriteTo(context.Background(), &body)
	if err == nil && c.drop != nil && c.drop(s.Message) {
		err = errors.New("unreachable")
	}
	if err == nil {
		dst := c.engines[s.ToNode]
		f := dst.ReceiveSnapshotFuture(s.Message, body.Bytes())
		dst.Process()
		select {
		case <-f.Done():
			_, err = f.Result()
		default:
			err = errors.New("snapshot not processed")
		}
		if err == nil {
			c.restored++
		}
	}
	for id, st := range c.stores {
		st.mu.RLock()
		sm := st.mu.shards[s.Group]
		st.mu.RUnlock()
		if sm != nil && uint64(sm.replica) == s.Msg.GetFrom() {
			c.engines[id].ReportSnapshot(s.Message, err)
		}
	}
}

// wait drives the cluster, ticking when it is idle, until f resolves.
func (c *cluster) wait(f *multiraft.Future) (any, error) {
	c.t.Helper()
	for range 200 {
		c.deliver()
		select {
		case <-f.Done():
			return f.Result()
		default:
		}
		for _, e := range c.engines {
			e.Tick()
		}
	}
	c.t.Fatal("future did not resolve")
	return nil, nil
}

func (c *cluster) propose(n multiraft.NodeID, shard ShardID, cmd Command) *Result {
	c.t.Helper()
	if cmd.Kind.writesData() && cmd.Revision == 0 {
		rev, _ := c.oracle.Next(context.Background(), 1)
		cmd.Revision = uint64(rev)
	}
	res, err := c.wait(c.engines[n].ProposeFuture(shard, cmd.AppendEncoded(nil)))
	if err != nil {
		c.t.Fatalf("%s on shard %d: %v", cmd.Kind, shard, err)
	}
	r, ok := res.(*Result)
	if !ok {
		c.t.Fatalf("%s on shard %d: %v", cmd.Kind, shard, res)
	}
	return r
}

func (c *cluster) elect(n multiraft.NodeID, shard ShardID) {
	c.t.Helper()
	if _, err := c.wait(c.engines[n].Campaign(shard)); err != nil {
		c.t.Fatal(err)
	}
	for range 100 {
		st, err := c.wait(c.engines[n].StatusFuture(shard))
		if err != nil {
			c.t.Fatal(err)
		}
		if st.(multiraft.Status).IsLeader {
			return
		}
	}
	c.t.Fatalf("n%d did not become leader of shard %d", n, shard)
}

// sameEverywhere checks that every node hosting shard holds the same
// descriptor, client table and user data for it, and returns the
// descriptor.
func (c *cluster) sameEverywhere(shard ShardID, nodes ...multiraft.NodeID) Descriptor {
	c.t.Helper()
	// Followers learn the latest commit index from the leader's next
	// heartbeat (the engine sends no append for the commit alone), so tick
	// once between deliveries.
	c.deliver()
	for _, e := range c.engines {
		e.Tick()
	}
	c.deliver()
	var want string
	var desc Descriptor
	for i, n := range nodes {
		d, err := c.stores[n].Descriptor(shard)
		if err != nil {
			c.t.Fatalf("n%d: %v", n, err)
		}
		got := shardState(c.t, c.dbs[n], &d)
		if i == 0 {
			want, desc = got, d
			continue
		}
		if !d.Equal(&desc) || got != want {
			c.t.Fatalf("shard %d on n%d differs from n%d:\n%s %s\nvs\n%s %s", shard, n, nodes[0], &d, got, &desc, want)
		}
	}
	return desc
}

// TestClusterSnapshotSplitMembership runs the state machine on three real
// engines: writes replicate, a learner catches up through a snapshot of
// this package's format, the membership change bumps ConfVer everywhere,
// and a split creates identical right-hand shards on every node.
func TestClusterSnapshotSplitMembership(t *testing.T) {
	c := newCluster(t, 3)
	desc := Descriptor{ShardID: 1, Epoch: Epoch{ConfVer: 1, Version: 1}, Replicas: []multiraft.Replica{
		{ReplicaID: 1, NodeID: 1}, {ReplicaID: 2, NodeID: 2},
	}}
	for _, r := range desc.Replicas {
		if err := c.stores[r.NodeID].CreateShard(desc, r.ReplicaID); err != nil {
			t.Fatal(err)
		}
	}
	c.elect(1, 1)
	for i := range 30 {
		c.propose(1, 1, put(hdr(uint64(i%4+1), uint64(i+1)), fmt.Sprintf("k%02d", i), fmt.Sprint(i)))
	}
	if r := c.propose(1, 1, cas(hdr(9, 1), "k00", nil, "x")); r.Succeeded {
		t.Fatal("cas on an existing key succeeded")
	}
	c.sameEverywhere(1, 1, 2)

	// Add n3 as a learner: it starts empty and catches up by snapshot.
	if err := c.engines[3].JoinGroup(1, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := c.stores[3].Descriptor(1); !errors.Is(err, ErrShardNotFound) {
		t.Fatalf("empty replica has a descriptor: %v", err)
	}
	if _, err := c.wait(c.engines[1].ChangeReplicasFuture(1, []multiraft.ReplicaChange{
		{Op: multiraft.AddLearner, Replica: multiraft.Replica{ReplicaID: 3, NodeID: 3, Learner: true}},
	})); err != nil {
		t.Fatal(err)
	}
	c.propose(1, 1, put(hdr(0, 0), "after", "membership"))
	d := c.sameEverywhere(1, 1, 2, 3)
	if c.restored != 1 {
		t.Fatalf("%d snapshots restored, want 1", c.restored)
	}
	if d.Epoch != (Epoch{ConfVer: 2, Version: 1}) || len(d.Replicas) != 3 || !d.Replicas[2].Learner {
		t.Fatalf("after adding a learner: %s", &d)
	}
	// The learner's copy of the client table deduplicates like the others.
	if r := c.propose(1, 1, cas(hdr(9, 1), "k00", nil, "x")); r.Succeeded || string(r.Value) != "0" {
		t.Fatalf("retry after the snapshot: %+v", r)
	}

	left, right := func() (*Descriptor, *Descriptor) {
		r := c.propose(1, 1, splitCmd(Header{ClientID: 10, Seq: 1, Epoch: d.Epoch}, "k15", 2,
			SplitReplica{Old: 1, New: 11}, SplitReplica{Old: 2, New: 12}, SplitReplica{Old: 3, New: 13}))
		return r.Left, r.Right
	}()
	if got := c.sameEverywhere(1, 1, 2, 3); !got.Equal(left) {
		t.Fatalf("left after split %s, result said %s", &got, left)
	}
	if got := c.sameEverywhere(2, 1, 2, 3); !got.Equal(right) {
		t.Fatalf("right after split %s, result said %s", &got, right)
	}
	c.elect(1, 2)
	c.propose(1, 2, put(Header{ClientID: 11, Seq: 1, Epoch: right.Epoch}, "z", "right"))
	// A pre-split write retried on the right-hand shard is recognised.
	c.propose(1, 2, put(hdr(4, 28), "k27", "must not apply"))
	c.sameEverywhere(2, 1, 2, 3)
	if v, _ := get(t, c.dbs[3], "k27"); v != "27" {
		t.Fatalf("k27 on the learner = %q", v)
	}
}
