package multiraft

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// sstReadFault fails every read of Pebble's tables while it is on.
type sstReadFault struct {
	on       atomic.Bool
	injected atomic.Int64
}

func (f *sstReadFault) String() string { return "sstReadFault" }

func (f *sstReadFault) MaybeError(op errorfs.Op) error {
	if !f.on.Load() || !strings.HasSuffix(op.Path, ".sst") {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileRead, errorfs.OpFileReadAt, errorfs.OpOpen:
		f.injected.Add(1)
		return errInjected
	}
	return nil
}

// TestDiskReadFaultFailStop: a state machine's read of Pebble fails while
// it applies (the table holding the key cannot be read). The engine stops
// as after a failed write, instead of crashing the process or applying
// half a batch: the proposer gets an ambiguous error wrapping
// ErrDiskFailure, Failed fires, and nothing the round applied was
// committed. The other replicas keep serving.
func TestDiskReadFaultFailStop(t *testing.T) {
	const faulty = NodeID(3)
	c := newCluster(t, 3, nil)
	fault := &sstReadFault{}
	startFaulty(c, faulty, fault, clusterTransport{c})
	c.createGroup(1, 1, 2, 3)
	c.createGroup(3, 1, 2, 3)
	for _, g := range []GroupID{1, 3} {
		if _, err := c.wait(c.engines[NodeID(g)].Campaign(g)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.propose(3, 3, "k=before"); err != nil {
		t.Fatal(err)
	}
	c.deliver(100)
	// Move everything node 3 holds into tables, then make them unreadable.
	db := c.dbs[faulty]
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	fault.on.Store(true)

	f := c.engines[faulty].ProposeFuture(3, []byte("k=after"))
	c.deliver(100)
	if !isDone(f) {
		t.Fatal("the proposal is still pending after a failed read")
	}
	_, err := f.Result()
	if !errors.Is(err, ErrDiskFailure) || !errors.Is(err, ErrAmbiguous) && !errors.Is(err, ErrStopped) {
		t.Fatalf("proposal whose apply failed to read: %v", err)
	}
	if fault.injected.Load() == 0 {
		t.Fatal("no read fault was injected")
	}
	e3 := c.engines[faulty]
	select {
	case <-e3.Failed():
	default:
		t.Fatal("Failed() not closed after a failed read")
	}
	if err := e3.Err(); !errors.Is(err, ErrDiskFailure) {
		t.Fatalf("Err() = %v", err)
	}
	// Group 1, led by node 1, goes on with nodes 1 and 2.
	if _, err := c.propose(1, 1, "k=still"); err != nil {
		t.Fatalf("group 1 after node 3 stopped: %v", err)
	}
}
