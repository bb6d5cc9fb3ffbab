package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"testing/cryptotest"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// These tests reproduce engine bugs the simulator found, each in a few
// deterministic steps, and stay as regression tests now that they are
// fixed. See doc.go, "Engine bugs found".

type discardTransport struct{}

func (discardTransport) Send([]multiraft.Message) {}
func (discardTransport) SendSnapshot(s *multiraft.OutgoingSnapshot) {
	s.Close()
}

// TestEngineDropsMisaddressedMessage: after a reconfiguration replaced
// replica 4 of a group by replica 5 on the same node, a heartbeat still in
// flight to replica 4 (commit index 12) reached the new, empty replica 5,
// and raft panicked ("tocommit(12) is out of range [lastIndex(0)]"),
// taking the whole node down. Found by the simulator's reconfigurations;
// fixed by dropping messages not addressed to the local replica.
func TestEngineDropsMisaddressedMessage(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e, err := multiraft.Open(multiraft.Config{
		NodeID: 1, DB: db, Transport: discardTransport{}, NewStateMachine: newKVSM,
		Logger: slog.New(slog.DiscardHandler), Workers: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// The node's new, empty replica 5 of group 1, waiting for a snapshot.
	if err := e.JoinGroup(1, 5); err != nil {
		t.Fatal(err)
	}
	e.Process()
	// A heartbeat the leader (replica 9 on node 2) sent to the replica 4
	// this node hosted before.
	e.Step([]multiraft.Message{{Group: 1, ToNode: 1, FromNode: 2, Msg: &raftpb.Message{
		Type: raftpb.MsgHeartbeat.Enum(), To: proto.Uint64(4), From: proto.Uint64(9),
		Term: proto.Uint64(6), Commit: proto.Uint64(12),
	}}})
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("the engine panicked on a message addressed to another replica: %v", fmt.Sprint(r))
			}
		}()
		e.Process()
	}()
}

// TestEngineCloseResolvesQueuedOps: Close failed pending proposals and
// reads but dropped queued operations (StatusFuture,
// ChangeReplicasFuture, RemoveGroupFuture, TransferLeadershipFuture,
// Campaign) without resolving their futures, so a reconfiguration that
// asked a node just before it crashed waited forever. Found by the
// simulator; fixed by failing them with ErrStopped.
func TestEngineCloseResolvesQueuedOps(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e, err := multiraft.Open(multiraft.Config{
		NodeID: 1, DB: db, Transport: discardTransport{}, NewStateMachine: newKVSM,
		Logger: slog.New(slog.DiscardHandler), Workers: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := multiraft.Membership{Replicas: []multiraft.Replica{{ReplicaID: 1, NodeID: 1}}}
	if err := e.CreateGroup(1, 1, m, nil); err != nil {
		t.Fatal(err)
	}
	e.Process()
	f := e.StatusFuture(1) // queued, not yet processed
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if !isDone(f) {
		t.Fatal("a status request queued before Close never resolves (want ErrStopped)")
	}
	if _, err := f.Result(); !errors.Is(err, multiraft.ErrStopped) {
		t.Fatalf("status request queued before Close: %v, want ErrStopped", err)
	}
}

// waitFuture advances s until f resolves (at most max steps).
func waitFuture(t *testing.T, s *simulation, f *multiraft.Future, max int) (any, error) {
	t.Helper()
	for range max {
		if isDone(f) {
			return f.Result()
		}
		s.advance(false)
	}
	t.Fatalf("future did not resolve within %d steps", max)
	return nil, nil
}

// TestEngineLeaseReadAfterFollowerRestart: a lease read could be stale
// when a follower restarted during the leader's lease. The lease (read.go)
// relies on no follower voting for another candidate within the election
// timeout after it last heard from the leader (CheckQuorum). A follower
// that restarted had forgotten its leader (raft's "in lease" check needs a
// known leader) and granted votes at once. Fixed: a replica recovered at
// Open withholds its votes for an election timeout. So: F2 is cut off from
// leader L (it campaigns every election timeout; F1, in lease, refuses);
// L's lease is confirmed by F1; F1 crashes and restarts at once; L is cut
// off from F1 too; F2's timer fires (at once here, with Campaign, to hit
// the lease window deterministically), it wins with F1's vote and commits
// a write; L, still inside its lease, serves the old value.
func TestEngineLeaseReadAfterFollowerRestart(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	s := newSim(Config{Seed: 1, Groups: 1, NoFaults: true, Backend: "kv"})
	s.prof.quiesceAfterTicks = -1
	s.net.cfg = netConfig{}
	defer s.shutdown()
	if !s.boot() {
		t.Fatal(s.violations)
	}
	li := -1
	for range 400 {
		s.advance(false)
		if li = leaderOf(s.groupStatuses(1)); li >= 0 {
			break
		}
	}
	if li < 0 {
		t.Fatal("no leader")
	}
	l, f1, f2 := s.nodes[li], s.nodes[(li+1)%3], s.nodes[(li+2)%3]
	key := groupKey(1, 0)
	put := func(n *node, v string) {
		t.Helper()
		if _, err := waitFuture(t, s, n.e.ProposeFuture(1, encodeCmd([]kvOp{{op: cmdPut, key: key, value: v}})), 100); err != nil {
			t.Fatalf("put %s on n%d: %v", v, n.id, err)
		}
	}
	put(l, "old")
	s.block(l.id, f2.id)
	s.block(f2.id, l.id)
	for range 3 * 2 * multiraft.DefaultElectionTicks * stepsPerTick {
		s.advance(false) // f2 campaigns in vain: f1 hears from l
	}
	if _, err := waitFuture(t, s, l.e.ReadFuture(1, multiraft.ReadLease), 100); err != nil {
		t.Fatalf("lease read: %v", err)
	}
	start := s.step
	s.crash(f1, 1)
	s.block(l.id, f1.id)
	s.block(f1.id, l.id)
	s.advance(false) // f1 restarts
	if _, err := waitFuture(t, s, f2.e.Campaign(1), 10); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if st := s.groupStatuses(1)[f2.id-1]; st != nil && st.IsLeader {
			break
		}
		s.advance(false)
	}
	// With the fix f1 withholds its vote for an election timeout after its
	// restart, so f2 wins only once l's lease has run out.
	for i := 0; ; i++ {
		if _, err := waitFuture(t, s, f2.e.ProposeFuture(1, encodeCmd([]kvOp{{op: cmdPut, key: key, value: "new"}})), 100); err == nil {
			break
		}
		if _, err := waitFuture(t, s, f1.e.ProposeFuture(1, encodeCmd([]kvOp{{op: cmdPut, key: key, value: "new"}})), 100); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("the majority side never committed the new value")
		}
		for range stepsPerTick {
			s.advance(false)
		}
	}
	f := l.e.ReadFuture(1, multiraft.ReadLease)
	l.e.Process()
	if _, err := f.Result(); isDone(f) && err == nil {
		if v := s.sm.read(l.db, key); v != "new" {
			t.Fatalf("n%d served a lease read of %q after n%d committed %q (%d steps = %d ticks after the lease was confirmed)",
				l.id, v, f2.id, "new", s.step-start, (s.step-start)/stepsPerTick)
		}
	}
}
