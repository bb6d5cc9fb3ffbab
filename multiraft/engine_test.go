package multiraft

import (
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

func TestSingleReplicaProposeAndRead(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.createGroup(1, 1)
	c.leader(1)
	res, err := c.propose(1, 1, "a=1")
	if err != nil || res != "" {
		t.Fatalf("propose: %v %v", res, err)
	}
	res, err = c.propose(1, 1, "a=2")
	if err != nil || res != "1" {
		t.Fatalf("propose: %v %v, want previous value 1", res, err)
	}
	for _, mode := range []ReadMode{ReadLinearizable, ReadLease, ReadStale} {
		if _, err := c.wait(c.engines[1].ReadFuture(1, mode)); err != nil {
			t.Fatalf("%v read: %v", mode, err)
		}
	}
	if v, _ := getKey(t, c.dbs[1], 1, "a"); v != "2" {
		t.Fatalf("a = %q, want 2", v)
	}
}

func TestThreeReplicasReplicateAndSurviveCrash(t *testing.T) {
	c := newCluster(t, 3, nil)
	for g := GroupID(1); g <= 4; g++ {
		c.createGroup(g, 1, 2, 3)
	}
	for g := GroupID(1); g <= 4; g++ {
		lead := c.leader(g)
		for i := range 20 {
			if _, err := c.propose(lead, g, fmt.Sprintf("k%d=v%d", i, i)); err != nil {
				t.Fatalf("group %d propose %d: %v", g, i, err)
			}
		}
	}
	c.tick(5)
	for n := NodeID(1); n <= 3; n++ {
		for g := GroupID(1); g <= 4; g++ {
			if v, _ := getKey(t, c.dbs[n], g, "k19"); v != "v19" {
				t.Fatalf("node %d group %d: k19 = %q", n, g, v)
			}
		}
	}
	// Crash the leader of group 1: the others elect a new one and keep
	// every acknowledged write.
	lead := c.leader(1)
	c.crash(lead)
	for _, e := range c.engines {
		e.NodeDown(lead)
	}
	c.tick(30)
	newLead := c.leader(1)
	if _, err := c.propose(newLead, 1, "after=crash"); err != nil {
		t.Fatal(err)
	}
	c.tick(5)
	for n := NodeID(1); n <= 3; n++ {
		for _, k := range []string{"k0", "k19", "after"} {
			if _, ok := getKey(t, c.dbs[n], 1, k); !ok {
				t.Fatalf("node %d lost %s", n, k)
			}
		}
	}
}

func TestProposeOnFollowerFailsWithLeaderHint(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.createGroup(7, 1, 2, 3)
	lead := c.leader(7)
	c.tick(3)
	follower := NodeID(lead%3 + 1)
	_, err := c.propose(follower, 7, "x=1")
	var nle *NotLeaderError
	if !errors.As(err, &nle) || !errors.Is(err, ErrNotLeader) {
		t.Fatalf("err = %v, want NotLeaderError", err)
	}
	if nle.Node != lead {
		t.Fatalf("hint node %d, want %d", nle.Node, lead)
	}
	_, err = c.wait(c.engines[follower].ReadFuture(7, ReadLinearizable))
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("read on follower: %v", err)
	}
	if _, err := c.wait(c.engines[follower].ReadFuture(7, ReadStale)); err != nil {
		t.Fatalf("stale read on follower: %v", err)
	}
}

func TestQuiescence(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	if _, err := c.propose(lead, 1, "a=1"); err != nil {
		t.Fatal(err)
	}
	c.tick(10)
	for n, e := range c.engines {
		if !e.lookup(1).quiesced.Load() {
			t.Fatalf("node %d not quiesced after idle ticks", n)
		}
	}
	// A proposal wakes the group and commits.
	if _, err := c.propose(lead, 1, "a=2"); err != nil {
		t.Fatal(err)
	}
	// Killing the quiesced leader: NodeDown wakes the followers, which elect.
	c.tick(10)
	c.stop(lead)
	for _, e := range c.engines {
		e.NodeDown(lead)
	}
	c.cut[lead] = true
	newLead := c.leader(1)
	if newLead == lead {
		t.Fatal("dead node still leads")
	}
}

// A learner whose every commit-carrying message was lost, the leader's
// quiescing heartbeat included, must still learn the commit index: a
// learner never campaigns, so without its poke the leader would sleep on
// and the learner would never apply the entry (simulator seed 3070, where
// the replica was a voter whose promotion was that very entry).
func TestQuiescedLeaderWokenByFollowerThatMissedCommit(t *testing.T) {
	c := newCluster(t, 4, nil)
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	if err := c.engines[4].JoinGroup(1, 104); err != nil {
		t.Fatal(err)
	}
	if _, err := c.wait(c.engines[lead].ChangeReplicasFuture(1, []ReplicaChange{{Op: AddLearner, Replica: Replica{ReplicaID: 104, NodeID: 4}}})); err != nil {
		t.Fatal(err)
	}
	c.tick(10)
	learner := c.engines[4].lookup(1)
	last := learner.st.lastIndex
	if learner.st.applied.index != last {
		t.Fatalf("learner applied %d of %d before the test began", learner.st.applied.index, last)
	}

	// The next entry reaches the learner, but nothing telling it the entry
	// committed does.
	c.drop = func(m Message) bool {
		t := m.Msg.GetType()
		return m.ToNode == 4 && (t == raftpb.MsgApp || t == raftpb.MsgHeartbeat) && m.Msg.GetCommit() > last
	}
	if _, err := c.propose(lead, 1, "a=1"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		c.tick(1)
		if c.engines[lead].lookup(1).quiesced.Load() {
			break
		}
	}
	if !c.engines[lead].lookup(1).quiesced.Load() {
		t.Fatal("leader did not quiesce")
	}
	if got := learner.st.lastIndex; got != last+1 {
		t.Fatalf("learner's log ends at %d, want %d", got, last+1)
	}
	if got := learner.st.hardState.GetCommit(); got != last {
		t.Fatalf("learner's commit index is %d, want %d: the test lost nothing", got, last)
	}

	// The pokes carry term 0 and index 0, so they can never raise a term
	// or a Match (see round.pokeLeader). Every other MsgAppResp of the
	// learner acknowledges an index. (The simulator's seed 141 found a
	// deposed leader counting a poke that carried the commit index.)
	pokes := 0
	c.drop = func(m Message) bool {
		if m.FromNode == 4 && m.Msg.GetType() == raftpb.MsgAppResp && m.Msg.GetIndex() == 0 {
			pokes++
			if m.Msg.GetTerm() != 0 {
				t.Errorf("poke carries term %d, want 0", m.Msg.GetTerm())
			}
		}
		return false
	}
	for range 3 * DefaultElectionTicks {
		c.tick(1)
		if learner.st.applied.index == last+1 {
			break
		}
	}
	if got := learner.st.applied.index; got != last+1 {
		t.Fatalf("learner applied %d, want %d: the quiesced leader never told it the commit index", got, last+1)
	}
	if v, _ := getKey(t, c.dbs[4], 1, "a"); v != "1" {
		t.Fatalf("learner has a=%q, want 1", v)
	}
	if c.engines[4].Metrics().LeaderPokes.Load() == 0 || pokes == 0 {
		t.Fatalf("the learner caught up without poking its leader (%d pokes seen)", pokes)
	}
}

func TestMembershipChangeWithSnapshot(t *testing.T) {
	c := newCluster(t, 4, func(cfg *Config) { cfg.LogTruncateEntries = 20 })
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	for i := range 100 {
		if _, err := c.propose(lead, 1, fmt.Sprintf("k%d=v%d", i, i)); err != nil {
			t.Fatal(err)
		}
	}
	c.tick(3)
	st, err := c.wait(c.engines[lead].StatusFuture(1))
	if err != nil {
		t.Fatal(err)
	}
	if st.(Status).FirstIndex <= initialIndex+1 {
		t.Fatalf("log was not truncated: %+v", st)
	}
	// Add node 4 as a learner: it needs a snapshot since the log is truncated.
	if err := c.engines[4].JoinGroup(1, 104); err != nil {
		t.Fatal(err)
	}
	if _, err := c.wait(c.engines[lead].ChangeReplicasFuture(1, []ReplicaChange{{Op: AddLearner, Replica: Replica{ReplicaID: 104, NodeID: 4}}})); err != nil {
		t.Fatal(err)
	}
	c.tick(10)
	if v, _ := getKey(t, c.dbs[4], 1, "k99"); v != "v99" {
		t.Fatalf("learner has k99=%q", v)
	}
	// Promote it and remove replica 101 in one joint transition.
	lead = c.leader(1)
	changes := []ReplicaChange{{Op: AddVoter, Replica: Replica{ReplicaID: 104, NodeID: 4}}}
	if lead != 1 {
		changes = append(changes, ReplicaChange{Op: RemoveReplica, Replica: Replica{ReplicaID: 101}})
	} else {
		changes = append(changes, ReplicaChange{Op: RemoveReplica, Replica: Replica{ReplicaID: 102}})
	}
	if _, err := c.wait(c.engines[lead].ChangeReplicasFuture(1, changes)); err != nil {
		t.Fatal(err)
	}
	c.tick(10)
	st, err = c.wait(c.engines[c.leader(1)].StatusFuture(1))
	if err != nil {
		t.Fatal(err)
	}
	m := st.(Status).Members
	if m.Joint || len(m.Replicas) != 3 {
		t.Fatalf("membership after change: %+v", m)
	}
	if _, ok := m.Lookup(104); !ok {
		t.Fatalf("104 missing from %+v", m)
	}
	// The removed replica destroyed itself.
	removed := NodeID(1)
	if lead == 1 {
		removed = 2
	}
	if c.engines[removed].lookup(1) != nil {
		t.Fatalf("removed replica on node %d still exists", removed)
	}
	// A transfer to the new voter works.
	lead = c.leader(1)
	if _, err := c.wait(c.engines[lead].TransferLeadershipFuture(1, 104)); err != nil {
		t.Fatal(err)
	}
	if c.leader(1) != 4 {
		t.Fatalf("leader is %d after transfer to node 4", c.leader(1))
	}
}

func TestDrainMovesLeadershipsAway(t *testing.T) {
	c := newCluster(t, 3, nil)
	for g := GroupID(1); g <= 6; g++ {
		c.createGroup(g, 1, 2, 3)
		c.leader(g)
	}
	c.tick(5)
	c.engines[1].SetDraining(true)
	for range 100 {
		if c.engines[1].Leaders() == 0 {
			break
		}
		c.tick(1)
	}
	if n := c.engines[1].Leaders(); n != 0 {
		t.Fatalf("draining node still leads %d groups", n)
	}
	for g := GroupID(1); g <= 6; g++ {
		lead := c.leader(g)
		if lead == 1 {
			t.Fatalf("group %d led by the draining node", g)
		}
		if _, err := c.propose(lead, g, "after=drain"); err != nil {
			t.Fatalf("group %d: %v", g, err)
		}
	}
}

func TestCompactLog(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.createGroup(1, 1)
	c.leader(1)
	for i := range 30 {
		if _, err := c.propose(1, 1, fmt.Sprintf("k%d=v", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.tick(1)
	// CompactLog blocks on the worker: run it beside the driver.
	done := make(chan uint64)
	go func() {
		first, err := c.engines[1].CompactLog(t.Context(), 1, false)
		if err != nil {
			t.Error(err)
		}
		done <- first
	}()
	for {
		select {
		case first := <-done:
			if first <= initialIndex+1 {
				t.Fatalf("first index %d after compaction", first)
			}
			return
		default:
			c.engines[1].Process()
		}
	}
}

// TestCommitOnlyAppendsHeldBack: a lone write costs one append and one
// acknowledgement per follower, not two. The append raft broadcasts to
// announce the new commit index is not sent to followers that have the
// entry; they learn the index from the next heartbeat and apply then. A
// membership change announces its commit at once.
func TestCommitOnlyAppendsHeldBack(t *testing.T) {
	c := newCluster(t, 4, nil)
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	c.tick(3)
	follower := NodeID(1)
	if follower == lead {
		follower = 2
	}
	f := c.engines[follower].lookup(1)

	var appends, acks int
	c.drop = func(m Message) bool {
		switch m.Msg.GetType() {
		case raftpb.MsgApp:
			appends++
		case raftpb.MsgAppResp:
			acks++
		}
		return false
	}
	held := c.engines[lead].Metrics().CommitsHeldBack.Load()
	if _, err := c.propose(lead, 1, "a=1"); err != nil {
		t.Fatal(err)
	}
	if appends != 2 || acks != 2 {
		t.Fatalf("a lone write took %d appends and %d acknowledgements, want 2 and 2", appends, acks)
	}
	if got := c.engines[lead].Metrics().CommitsHeldBack.Load() - held; got != 2 {
		t.Fatalf("%d commit-only appends held back, want 2", got)
	}
	last := f.st.lastIndex
	if f.st.applied.index == last {
		t.Fatalf("follower applied %d before any heartbeat: the commit was announced", last)
	}
	c.tick(1)
	if f.st.applied.index != last {
		t.Fatalf("follower applied %d of %d after a heartbeat", f.st.applied.index, last)
	}
	if v, ok := getKey(t, c.dbs[follower], 1, "a"); !ok || v != "1" {
		t.Fatalf("follower has a=%q (%v), want 1", v, ok)
	}

	// A membership change is announced with its commit: every member
	// applies it without a tick.
	if err := c.engines[4].JoinGroup(1, 104); err != nil {
		t.Fatal(err)
	}
	fut := c.engines[lead].ChangeReplicasFuture(1, []ReplicaChange{{Op: AddLearner, Replica: Replica{ReplicaID: 104, NodeID: 4}}})
	for range 10 {
		c.deliver(100)
		if isDone(fut) {
			break
		}
	}
	if _, err := fut.Result(); !isDone(fut) || err != nil {
		t.Fatalf("membership change: done=%v err=%v", isDone(fut), err)
	}
	c.deliver(100)
	if got := f.st.applied.index; got != f.st.lastIndex {
		t.Fatalf("follower applied %d of %d: the membership change was not announced", got, f.st.lastIndex)
	}
}

// TestChangeReplicasFrom: a change decided from a membership proposes
// nothing, and fails with ErrMembershipChanged, once another change has
// applied since that membership was read; decided from the membership the
// group has, it applies.
func TestChangeReplicasFrom(t *testing.T) {
	c := newCluster(t, 4, nil)
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	st, err := c.wait(c.engines[lead].StatusFuture(1))
	if err != nil {
		t.Fatal(err)
	}
	read := st.(Status).Members // 101, 102, 103: voters
	// Meanwhile a learner joins.
	if err := c.engines[4].JoinGroup(1, 104); err != nil {
		t.Fatal(err)
	}
	if _, err := c.wait(c.engines[lead].ChangeReplicasFuture(1, []ReplicaChange{{Op: AddLearner, Replica: Replica{ReplicaID: 104, NodeID: 4}}})); err != nil {
		t.Fatal(err)
	}
	// A removal decided from the membership read before it.
	victim := ReplicaID(101)
	if lead == 1 {
		victim = 102
	}
	remove := []ReplicaChange{{Op: RemoveReplica, Replica: Replica{ReplicaID: victim}}}
	if _, err := c.wait(c.engines[lead].ChangeReplicasFromFuture(1, read, remove)); !errors.Is(err, ErrMembershipChanged) {
		t.Fatalf("a removal decided from %v after a learner joined: %v, want ErrMembershipChanged", read.Replicas, err)
	}
	c.tick(3)
	st, err = c.wait(c.engines[lead].StatusFuture(1))
	if err != nil {
		t.Fatal(err)
	}
	now := st.(Status).Members
	if _, ok := now.Lookup(victim); !ok || len(now.Replicas) != 4 {
		t.Fatalf("members %v after a refused removal of %d", now.Replicas, victim)
	}
	// Decided from the membership the group has, the same removal applies.
	if _, err := c.wait(c.engines[lead].ChangeReplicasFromFuture(1, now, remove)); err != nil {
		t.Fatalf("a removal decided from %v: %v", now.Replicas, err)
	}
	st, err = c.wait(c.engines[lead].StatusFuture(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.(Status).Members.Lookup(victim); ok {
		t.Fatalf("members %v: %d was not removed", st.(Status).Members.Replicas, victim)
	}
}
