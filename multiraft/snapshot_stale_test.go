package multiraft

import (
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestStaleSnapshotIsSteppedNotRefused: a snapshot at or below what a
// replica has applied must still reach raft, which answers it with the
// replica's commit index. A leader that lost track of a follower (an
// acknowledgement dropped, its log truncated past the follower's match)
// sends such snapshots; refusing them outside raft made it send the same
// one forever, and a group needing that follower for its quorum stalled
// (the simulator's seed 540).
func TestStaleSnapshotIsSteppedNotRefused(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	for _, cmd := range []string{"a=1", "b=2", "c=3"} {
		if _, err := c.propose(lead, 1, cmd); err != nil {
			t.Fatal(err)
		}
	}
	var follower NodeID
	for n := range c.engines {
		if n != lead {
			follower = n
			break
		}
	}
	f := c.engines[follower]
	var applied, term uint64
	var to ReplicaID
	for _, s := range f.Summaries() {
		if s.Group == 1 {
			applied, term, to = s.Applied, s.Term, s.Replica
			if one, ok := f.Summary(1); !ok || one != s {
				t.Fatalf("Summary(1) = %+v, %v; Summaries has %+v", one, ok, s)
			}
		}
	}
	if s, ok := f.Summary(99); ok {
		t.Fatalf("Summary of a group the node lacks: %+v", s)
	}
	if applied < 3 {
		t.Fatalf("follower applied %d, want the 3 writes", applied)
	}
	var from ReplicaID
	for _, s := range c.engines[lead].Summaries() {
		if s.Group == 1 {
			from = s.Replica
		}
	}
	snap, err := f.lookup(1).st.Snapshot() // manual mode: no worker runs now
	if err != nil {
		t.Fatal(err)
	}
	stale := func() Message {
		return Message{Group: 1, ToNode: follower, FromNode: lead, Msg: &raftpb.Message{
			Type: raftpb.MsgSnap.Enum(), From: proto.Uint64(uint64(from)), To: proto.Uint64(uint64(to)), Term: proto.Uint64(term),
			Snapshot: &raftpb.Snapshot{Data: snap.GetData(), Metadata: &raftpb.SnapshotMetadata{
				Index: proto.Uint64(applied - 1), Term: proto.Uint64(term), ConfState: snap.GetMetadata().GetConfState()}},
		}}
	}
	before := f.Metrics().SnapshotsRejected.Load()
	if _, err := c.wait(f.ReceiveSnapshotFuture(stale(), []byte("END!"))); err != nil {
		t.Fatalf("a valid snapshot below the applied index was refused: %v", err)
	}
	if got := f.Metrics().SnapshotsRejected.Load() - before; got != 0 {
		t.Fatalf("%d snapshots counted as rejected, want 0", got)
	}
	// A truncated body is still refused, stale or not.
	if _, err := c.wait(f.ReceiveSnapshotFuture(stale(), []byte("EN"))); !errors.Is(err, ErrSnapshotRejected) {
		t.Fatalf("a truncated stale snapshot: %v, want ErrSnapshotRejected", err)
	}
	// The group still serves: the stale snapshot restored nothing.
	if _, err := c.propose(lead, 1, "d=4"); err != nil {
		t.Fatal(err)
	}
}
