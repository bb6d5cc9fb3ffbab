package multiraft

import "testing"

// TestSplitVoteBrokenEarly loses the leader of a three-replica group and
// makes both survivors campaign at once, so each votes for itself and
// rejects the other: a split vote neither can win alone. The lower
// candidate must campaign again after splitVoteTicks and win, instead of
// both waiting a randomized election timeout (ElectionTicks or more).
func TestSplitVoteBrokenEarly(t *testing.T) {
	c := newCluster(t, 3, nil)
	const g = GroupID(1)
	c.createGroup(g, 1, 2, 3)
	lead := c.leader(g)
	if _, err := c.propose(lead, g, "k=v"); err != nil {
		t.Fatal(err)
	}
	c.stop(lead)
	var survivors []NodeID
	for n := NodeID(1); n <= 3; n++ {
		if n != lead {
			survivors = append(survivors, n)
		}
	}
	low, high := survivors[0], survivors[1]
	for _, n := range survivors {
		c.engines[n].Campaign(g)
	}
	c.deliver(100)
	for _, n := range survivors {
		grp := c.engines[n].lookup(g)
		if grp.isLead {
			t.Fatalf("node %d won an election both survivors started at once: no split vote to test", n)
		}
		if grp.split.term == 0 {
			t.Fatalf("node %d saw no split vote", n)
		}
	}

	ticks := 0
	for ; ticks < 2*DefaultElectionTicks; ticks++ {
		if c.engines[low].lookup(g).isLead || c.engines[high].lookup(g).isLead {
			break
		}
		c.tick(1)
	}
	if !c.engines[low].lookup(g).isLead {
		t.Fatalf("after %d ticks node %d (the lower candidate) does not lead; node %d leads: %v",
			ticks, low, high, c.engines[high].lookup(g).isLead)
	}
	if ticks > splitVoteTicks {
		t.Errorf("the split vote ended after %d ticks, want %d", ticks, splitVoteTicks)
	}
	if n := c.engines[low].Metrics().SplitVotesBroken.Load(); n != 1 {
		t.Errorf("node %d broke %d split votes, want 1", low, n)
	}
	if n := c.engines[high].Metrics().SplitVotesBroken.Load(); n != 0 {
		t.Errorf("node %d broke %d split votes, want 0: only the lower candidate campaigns again", high, n)
	}
	// The new leader commits: the group serves writes again.
	if _, err := c.propose(low, g, "k=w"); err != nil {
		t.Fatal(err)
	}
}
