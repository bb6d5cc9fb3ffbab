package multiraft

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// caughtUp fails unless node n hosts replica of group with the whole
// log of the group's leader applied.
func (c *cluster) caughtUp(n NodeID, group GroupID, replica ReplicaID) error {
	g := c.engines[n].lookup(group)
	if g == nil || g.replica != replica {
		return fmt.Errorf("n%d does not host replica %d of group %d", n, replica, group)
	}
	lead := c.engines[c.leader(group)].lookup(group)
	if g.st.applied.index < lead.st.hardState.GetCommit() {
		return fmt.Errorf("n%d applied %d, leader committed %d", n, g.st.applied.index, lead.st.hardState.GetCommit())
	}
	return nil
}

// settle ticks until cond holds, at most n ticks.
func (c *cluster) settle(n int, what string, cond func() error) {
	c.t.Helper()
	var err error
	for range n {
		if err = cond(); err == nil {
			return
		}
		c.tick(1)
	}
	c.t.Fatalf("%s: %v", what, err)
}

// TestLeaderMessageCreatesReplica: a learner added without JoinGroup is
// created, empty, by the leader's first message, then filled by a
// snapshot.
func TestLeaderMessageCreatesReplica(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.createGroup(1, 1, 2)
	lead := c.leader(1)
	if _, err := c.propose(lead, 1, "a=1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.wait(c.engines[lead].ChangeReplicasFuture(1, []ReplicaChange{{Op: AddLearner, Replica: Replica{ReplicaID: 103, NodeID: 3}}})); err != nil {
		t.Fatal(err)
	}
	c.settle(50, "learner caught up", func() error { return c.caughtUp(3, 1, 103) })
	if v, _ := getKey(t, c.dbs[3], 1, "a"); v != "1" {
		t.Fatalf("learner has a=%q", v)
	}
	if m := c.engines[3].Metrics(); m.ReplicasCreated.Load() != 1 || m.SnapshotsApplied.Load() != 1 {
		t.Fatalf("created %d replicas, applied %d snapshots; want 1 and 1", m.ReplicasCreated.Load(), m.SnapshotsApplied.Load())
	}
	// It survives a crash once filled.
	c.crash(3)
	c.settle(50, "learner caught up after a crash", func() error { return c.caughtUp(3, 1, 103) })
}

// TestVoteRequestCreatesReplica: a group whose only initialised replica
// is the candidate (a split's right-hand group on the one node that
// applied the split) elects it: its vote requests create the other
// members' replicas, empty, which vote for it; the new leader fills them
// by snapshot.
func TestVoteRequestCreatesReplica(t *testing.T) {
	c := newCluster(t, 3, nil)
	m := Membership{Replicas: []Replica{{ReplicaID: 101, NodeID: 1}, {ReplicaID: 102, NodeID: 2}, {ReplicaID: 103, NodeID: 3}}}
	if err := c.engines[1].CreateGroup(1, 101, m, nil); err != nil {
		t.Fatal(err)
	}
	if lead := c.leader(1); lead != 1 {
		t.Fatalf("n%d leads, want n1, the only initialised replica", lead)
	}
	if _, err := c.propose(1, 1, "a=1"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []NodeID{2, 3} {
		c.settle(100, fmt.Sprintf("n%d caught up", n), func() error { return c.caughtUp(n, 1, ReplicaID(100+n)) })
		if v, _ := getKey(t, c.dbs[n], 1, "a"); v != "1" {
			t.Fatalf("n%d has a=%q", n, v)
		}
	}
}

// TestCreatedReplicaVotesAfterFirstTimeout: a replica a vote request
// creates in its engine's first election timeout withholds its vote until
// that timeout ends (it may be one a crash lost, which acknowledged a
// leader whose lease still runs); later it votes at once.
func TestCreatedReplicaVotesAfterFirstTimeout(t *testing.T) {
	c := newCluster(t, 2, nil)
	vote := func(term uint64) Message {
		return Message{Group: 1, ToNode: 2, FromNode: 1, Msg: &raftpb.Message{
			Type: raftpb.MsgVote.Enum(), To: proto.Uint64(102), From: proto.Uint64(101), Term: proto.Uint64(term),
		}}
	}
	granted := func() bool {
		for _, m := range c.queue {
			if m.Msg.GetType() == raftpb.MsgVoteResp && m.FromNode == 2 && !m.Msg.GetReject() {
				return true
			}
		}
		return false
	}
	e := c.engines[2]
	e.Step([]Message{vote(9)})
	for e.Process() > 0 {
	}
	if g := e.lookup(1); g == nil || g.replica != 102 {
		t.Fatal("the vote request created no replica")
	}
	if granted() || e.Metrics().VotesWithheld.Load() != 1 {
		t.Fatalf("vote granted %v, %d withheld; want it withheld in the first election timeout", granted(), e.Metrics().VotesWithheld.Load())
	}
	for range e.cfg.ElectionTicks {
		e.Tick()
	}
	e.Step([]Message{vote(10)})
	for e.Process() > 0 {
	}
	if !granted() {
		t.Fatal("no vote granted after the first election timeout")
	}
}

// TestTombstone: a replica removed from a node never comes back under its
// ID, not through a late message, JoinGroup or a restart; a newer ID may.
func TestTombstone(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	if lead == 3 {
		if _, err := c.wait(c.engines[3].TransferLeadershipFuture(1, 101)); err != nil {
			t.Fatal(err)
		}
		lead = c.leader(1)
	}
	if _, err := c.wait(c.engines[lead].ChangeReplicasFuture(1, []ReplicaChange{{Op: RemoveReplica, Replica: Replica{ReplicaID: 103}}})); err != nil {
		t.Fatal(err)
	}
	c.settle(20, "replica 103 destroyed itself", func() error {
		if c.engines[3].lookup(1) != nil {
			return errors.New("still hosted")
		}
		return nil
	})
	if got := c.engines[3].Tombstone(1); got != 103 {
		t.Fatalf("tombstone %d, want 103", got)
	}
	heartbeat := Message{Group: 1, ToNode: 3, FromNode: lead, Msg: &raftpb.Message{
		Type: raftpb.MsgHeartbeat.Enum(), To: proto.Uint64(103), From: proto.Uint64(uint64(100 + lead)), Term: proto.Uint64(50),
	}}
	c.engines[3].Step([]Message{heartbeat})
	if c.engines[3].lookup(1) != nil || c.engines[3].Metrics().DroppedTombstoned.Load() != 1 {
		t.Fatal("a late heartbeat recreated a removed replica")
	}
	if err := c.engines[3].JoinGroup(1, 103); !errors.Is(err, ErrReplicaRemoved) {
		t.Fatalf("JoinGroup of a removed replica: %v", err)
	}
	c.crash(3)
	if got := c.engines[3].Tombstone(1); got != 103 {
		t.Fatalf("tombstone after a crash %d, want 103", got)
	}
	if f := c.engines[3].ReceiveSnapshotFuture(Message{Group: 1, ToNode: 3, FromNode: lead, Msg: &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(), To: proto.Uint64(103), From: proto.Uint64(uint64(100 + lead)), Term: proto.Uint64(50),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(99), Term: proto.Uint64(50)}},
	}}, nil); !isDone(f) {
		t.Fatal("a snapshot for a removed replica was not refused at once")
	} else if _, err := f.Result(); !errors.Is(err, ErrSnapshotRejected) {
		t.Fatalf("snapshot for a removed replica: %v", err)
	}
	// A new incarnation, with a new ID, joins normally.
	if _, err := c.wait(c.engines[lead].ChangeReplicasFuture(1, []ReplicaChange{{Op: AddLearner, Replica: Replica{ReplicaID: 104, NodeID: 3}}})); err != nil {
		t.Fatal(err)
	}
	c.settle(50, "replica 104 caught up", func() error { return c.caughtUp(3, 1, 104) })
	if got := c.engines[3].Tombstone(1); got != 103 {
		t.Fatalf("tombstone %d after the new incarnation, want 103", got)
	}
}

// TestNewerReplicaSupersedesStale is the engine's half of issue 13's bug
// 4: a node cut off while its replica was removed comes back still
// hosting that replica, which never learns of its removal. When the group
// adds the node again under a new replica ID, the leader's messages to the
// new ID destroy the stale replica (leaving its tombstone) and create the
// new one, which catches up. No JoinGroup or cleanup is needed.
func TestNewerReplicaSupersedesStale(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	if lead == 3 {
		if _, err := c.wait(c.engines[3].TransferLeadershipFuture(1, 101)); err != nil {
			t.Fatal(err)
		}
		lead = c.leader(1)
	}
	c.cut[3] = true
	if _, err := c.wait(c.engines[lead].ChangeReplicasFuture(1, []ReplicaChange{{Op: RemoveReplica, Replica: Replica{ReplicaID: 103}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.propose(lead, 1, "b=2"); err != nil {
		t.Fatal(err)
	}
	c.cut[3] = false
	c.tick(30)
	if g := c.engines[3].lookup(1); g == nil || g.replica != 103 {
		t.Fatal("the stale replica is gone before the test re-adds the node")
	}
	if _, err := c.wait(c.engines[lead].ChangeReplicasFuture(1, []ReplicaChange{{Op: AddLearner, Replica: Replica{ReplicaID: 104, NodeID: 3}}})); err != nil {
		t.Fatal(err)
	}
	c.settle(50, "replica 104 caught up", func() error { return c.caughtUp(3, 1, 104) })
	if v, _ := getKey(t, c.dbs[3], 1, "b"); v != "2" {
		t.Fatalf("new replica has b=%q", v)
	}
	m := c.engines[3].Metrics()
	if m.ReplicasSuperseded.Load() != 1 || c.engines[3].Tombstone(1) != 103 {
		t.Fatalf("%d replicas superseded, tombstone %d; want 1 and 103", m.ReplicasSuperseded.Load(), c.engines[3].Tombstone(1))
	}
}

// TestRemoveReplicaChecksWhatItRemoves: a garbage collector's removal
// names the replica it looked at, and removes nothing else.
func TestRemoveReplicaChecksWhatItRemoves(t *testing.T) {
	c := newCluster(t, 2, nil)
	c.createGroup(1, 1)
	c.leader(1)
	if err := c.engines[2].JoinGroup(1, 102); err != nil {
		t.Fatal(err)
	}
	if _, err := c.wait(c.engines[2].RemoveReplicaFuture(1, 101, true)); !errors.Is(err, ErrReplicaChanged) {
		t.Fatalf("removing another replica: %v", err)
	}
	if _, err := c.wait(c.engines[1].RemoveReplicaFuture(1, 101, true)); !errors.Is(err, ErrReplicaChanged) {
		t.Fatalf("removing an initialised replica as an empty one: %v", err)
	}
	if _, err := c.wait(c.engines[2].RemoveReplicaFuture(1, 102, true)); err != nil {
		t.Fatal(err)
	}
	if c.engines[2].lookup(1) != nil || c.engines[2].Tombstone(1) != 102 {
		t.Fatal("empty replica not removed")
	}
}

func TestSpans(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	for _, tc := range []struct {
		s1, e1, s2, e2 string
		want           bool
	}{
		{"a", "c", "c", "e", false},
		{"a", "c", "b", "", true},
		{"", "", "x", "y", true},
		{"m", "", "", "m", false},
		{"m", "", "", "n", true},
		{"", "a", "a", "", false},
	} {
		if got := spansOverlap(b(tc.s1), b(tc.e1), b(tc.s2), b(tc.e2)); got != tc.want {
			t.Errorf("[%q,%q) vs [%q,%q): %v", tc.s1, tc.e1, tc.s2, tc.e2, got)
		}
		if got := spansOverlap(b(tc.s2), b(tc.e2), b(tc.s1), b(tc.e1)); got != tc.want {
			t.Errorf("[%q,%q) vs [%q,%q) (swapped): %v", tc.s2, tc.e2, tc.s1, tc.e1, got)
		}
	}
	enc := appendSpan([]byte("x"), []byte("ab"), nil)
	if s, e, ok := decodeSpan(enc[1:]); !ok || string(s) != "ab" || len(e) != 0 {
		t.Fatalf("decodeSpan: %q %q %v", s, e, ok)
	}
	if _, _, ok := decodeSpan(enc[1 : len(enc)-1]); ok {
		t.Fatal("decodeSpan accepted a truncated span")
	}
}

// spanSM is testSM occupying a fixed span, as a Spanner.
type spanSM struct {
	testSM
	start, end []byte
}

func (s *spanSM) Span() ([]byte, []byte, bool) { return s.start, s.end, true }
func (s *spanSM) SnapshotSpan([]byte) ([]byte, []byte, error) {
	return s.start, s.end, nil
}

// TestPrecheckSnapshotRefusesOverlap: a snapshot whose sender's span
// overlaps another group of the node is refused before its body is read.
func TestPrecheckSnapshotRefusesOverlap(t *testing.T) {
	spans := map[GroupID][2]string{1: {"a", "m"}}
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.NewStateMachine = func(g GroupID, _ ReplicaID, _ pebble.Reader) (StateMachine, error) {
			sp := spans[g]
			return &spanSM{testSM: testSM{group: g}, start: []byte(sp[0]), end: []byte(sp[1])}, nil
		}
	})
	c.createGroup(1, 1)
	snap := func(start, end string) Message {
		return Message{Group: 2, ToNode: 1, FromNode: 2, Msg: &raftpb.Message{
			Type: raftpb.MsgSnap.Enum(), To: proto.Uint64(201), From: proto.Uint64(202), Term: proto.Uint64(7),
			Snapshot: &raftpb.Snapshot{Data: appendSpan(encodeMembership(nil, Membership{}), []byte(start), []byte(end))},
		}}
	}
	if err := c.engines[1].PrecheckSnapshot(snap("k", "")); !errors.Is(err, ErrSnapshotRejected) {
		t.Fatalf("overlapping snapshot: %v", err)
	}
	if err := c.engines[1].PrecheckSnapshot(snap("m", "")); err != nil {
		t.Fatalf("adjacent snapshot: %v", err)
	}
	if err := c.engines[1].PrecheckSnapshot(snap("", "a")); err != nil {
		t.Fatalf("snapshot below: %v", err)
	}
}
