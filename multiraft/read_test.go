package multiraft

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

// TestLeaseEndsInRealTimeWhenTicksStop: a leader whose ticks stopped (its
// process was paused: a ticker drops the ticks its reader misses) must not
// resume serving lease reads once the lease's real time has passed, even
// though its tick count says the lease still runs. The chaos test found
// the bug: a resumed leader answered lease reads from before its pause,
// after the others had elected a new leader and acknowledged writes.
func TestLeaseEndsInRealTimeWhenTicksStop(t *testing.T) {
	var clock atomic.Int64 // nanoseconds on the injected clock
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	const interval = 100 * time.Millisecond
	c := newCluster(t, 3, func(cfg *Config) { cfg.TickInterval, cfg.Clock = interval, now })
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	e := c.engines[lead]
	if _, err := c.wait(e.ReadFuture(1, ReadLease)); err != nil {
		t.Fatal(err)
	}
	// The lease holds while the clock and the ticks agree...
	before := e.Metrics().ReadBatches.Load()
	f := e.ReadFuture(1, ReadLease)
	e.Process()
	if _, err := f.Result(); !isDone(f) || err != nil || e.Metrics().ReadBatches.Load() != before {
		t.Fatalf("lease read within the lease: done=%v err=%v, read batches %d -> %d",
			isDone(f), err, before, e.Metrics().ReadBatches.Load())
	}
	// ...then the process "pauses" for longer than the lease: the clock
	// moves, no tick is delivered.
	clock.Add(int64(time.Duration(e.cfg.LeaseTicks+1) * interval))
	before = e.Metrics().ReadBatches.Load()
	f = e.ReadFuture(1, ReadLease)
	e.Process()
	if got := e.Metrics().ReadBatches.Load() - before; got != 1 {
		t.Fatalf("lease read after the lease's time ran out used %d read batches, want 1 (a quorum round)", got)
	}
	if _, err := c.wait(f); err != nil {
		t.Fatalf("the read, confirmed by a quorum: %v", err)
	}
}

// TestLeaseHeld: LeaseHeld says yes only while the leader holds a lease
// with half of it left, by ticks and by the clock, and never on a
// follower, after the lease's time ran out, or once a transfer began.
func TestLeaseHeld(t *testing.T) {
	var clock atomic.Int64
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	const interval = 100 * time.Millisecond
	c := newCluster(t, 3, func(cfg *Config) { cfg.TickInterval, cfg.Clock = interval, now })
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	e := c.engines[lead]
	if e.LeaseHeld(1) {
		t.Fatal("a lease held before any lease read confirmed one")
	}
	if _, err := c.wait(e.ReadFuture(1, ReadLease)); err != nil {
		t.Fatal(err)
	}
	if !e.LeaseHeld(1) {
		t.Fatal("no lease held right after a lease read")
	}
	for id, o := range c.engines {
		if id != lead && o.LeaseHeld(1) {
			t.Fatalf("follower %d holds the lease", id)
		}
	}
	// Past half the lease on the clock (ticks stopped): no.
	clock.Add(int64(time.Duration(e.cfg.LeaseTicks/2+1) * interval))
	if e.LeaseHeld(1) {
		t.Fatal("lease held with less than half of its time left on the clock")
	}
	// The ticks catch up: a lease read is still served from the lease, and
	// renews it since it is half spent.
	c.tick(e.cfg.LeaseTicks/2 + 1)
	// A lease read renews it.
	if _, err := c.wait(e.ReadFuture(1, ReadLease)); err != nil {
		t.Fatal(err)
	}
	if !e.LeaseHeld(1) {
		t.Fatal("no lease held after a lease read renewed it")
	}
	// A transfer ends it for the rest of the term.
	var to NodeID
	for id := range c.engines {
		if id != lead {
			to = id
			break
		}
	}
	if _, err := c.wait(e.TransferLeadershipFuture(1, ReplicaID(100+uint64(to)))); err != nil {
		t.Fatal(err)
	}
	if e.LeaseHeld(1) {
		t.Fatal("the old leader holds a lease after handing over")
	}
}
