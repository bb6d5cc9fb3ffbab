package multiraft

import (
	"errors"
	"strings"
	"testing"
)

func TestLeaseReads(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	if _, err := c.propose(lead, 1, "a=1"); err != nil {
		t.Fatal(err)
	}
	e := c.engines[lead]
	// Without a lease the first lease read takes a quorum round...
	before := e.Metrics().ReadBatches.Load()
	if _, err := c.wait(e.ReadFuture(1, ReadLease)); err != nil {
		t.Fatal(err)
	}
	if got := e.Metrics().ReadBatches.Load() - before; got != 1 {
		t.Fatalf("first lease read used %d read batches, want 1", got)
	}
	// ...and the next one is served from the lease, without one.
	before = e.Metrics().ReadBatches.Load()
	f := e.ReadFuture(1, ReadLease)
	e.Process()
	if _, err := f.Result(); !isDone(f) || err != nil {
		t.Fatalf("lease read not served at once: done=%v err=%v", isDone(f), err)
	}
	if got := e.Metrics().ReadBatches.Load() - before; got != 0 {
		t.Fatalf("lease read used %d read batches, want 0", got)
	}
	// Isolate the leader. Once its lease has run out it must never serve a
	// lease read again: the majority may have elected someone else.
	c.cut[lead] = true
	for _, o := range c.engines {
		o.NodeDown(lead)
	}
	c.tick(c.engines[lead].cfg.LeaseTicks + 1)
	f = e.ReadFuture(1, ReadLease)
	c.tick(30)
	if _, err := f.Result(); isDone(f) && err == nil {
		t.Fatal("isolated leader served a lease read after its lease expired")
	}
	if newLead := c.leader(1); newLead == lead {
		t.Fatal("isolated node still leads")
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := Config{ElectionTicks: 2, HeartbeatTicks: 3, LeaseTicks: 5}.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"NodeID", "DB", "Transport", "NewStateMachine", "ElectionTicks", "LeaseTicks"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestRequestsToUnknownGroup(t *testing.T) {
	c := newCluster(t, 1, nil)
	e := c.engines[1]
	for name, f := range map[string]*Future{
		"propose": e.ProposeFuture(9, []byte("a=1")),
		"read":    e.ReadFuture(9, ReadLinearizable),
		"status":  e.StatusFuture(9),
	} {
		if _, err := f.Result(); !errors.Is(err, ErrGroupNotFound) {
			t.Errorf("%s: err = %v, want ErrGroupNotFound", name, err)
		}
	}
}
