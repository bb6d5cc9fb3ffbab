package multiraft

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// walFault fails every write and sync of Pebble's WAL files while it is on,
// and counts the failures it injected.
type walFault struct {
	on       atomic.Bool
	injected atomic.Int64
}

var errInjected = errors.New("injected disk error")

func (f *walFault) String() string { return "walFault" }

func (f *walFault) MaybeError(op errorfs.Op) error {
	if !f.on.Load() || !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData,
		errorfs.OpFileSyncTo, errorfs.OpFileFlush:
		f.injected.Add(1)
		return errInjected
	}
	return nil
}

// recordingTransport passes messages on and remembers what node sent once
// armed.
type recordingTransport struct {
	Transport
	mu    sync.Mutex
	armed bool
	sent  []Message
}

func (t *recordingTransport) Send(msgs []Message) {
	t.mu.Lock()
	if t.armed {
		t.sent = append(t.sent, msgs...)
	}
	t.mu.Unlock()
	t.Transport.Send(msgs)
}

// startFaulty replaces node n of c by an engine whose Pebble runs over
// errorfs on top of n's crashable filesystem.
func startFaulty(c *cluster, n NodeID, fault errorfs.Injector, tr Transport) {
	c.t.Helper()
	c.stop(n)
	db, err := pebble.Open("", &pebble.Options{FS: errorfs.Wrap(c.fs[n], fault), Logger: quietLogger{}})
	if err != nil {
		c.t.Fatal(err)
	}
	e, err := Open(Config{
		NodeID:    n,
		DB:        db,
		Transport: tr,
		Workers:   -1,
		NewStateMachine: func(g GroupID, _ ReplicaID, _ pebble.Reader) (StateMachine, error) {
			return &testSM{group: g}, nil
		},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.dbs[n], c.engines[n] = db, e
}

// groupData reads every key of group from db.
func groupData(t *testing.T, db *pebble.DB, group GroupID) map[string]string {
	t.Helper()
	lo, hi := (&testSM{group: group}).span()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	m := map[string]string{}
	for it.First(); it.Valid(); it.Next() {
		m[string(it.Key())] = string(it.Value())
	}
	return m
}

// closeFailedDB closes a Pebble instance whose WAL failed. Pebble may
// panic or block on such a close; neither may hang the test.
func closeFailedDB(db *pebble.DB) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		_ = db.Close()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// TestDiskFaultFailStop: one node of three loses its disk (WAL writes and
// syncs fail). It stops at its first failed write without acknowledging
// anything, reports ErrDiskFailure, and the other two keep serving every
// group, including the one it led. Once the fault clears and the node
// restarts over what it had synced, it rejoins and its data matches.
func TestDiskFaultFailStop(t *testing.T) {
	const faulty = NodeID(3)
	c := newCluster(t, 3, nil)
	fault := &walFault{}
	rec := &recordingTransport{Transport: clusterTransport{c}}
	startFaulty(c, faulty, fault, rec)

	// Group g is led by node g: the faulty node leads group 3.
	groups := []GroupID{1, 2, 3}
	for _, g := range groups {
		c.createGroup(g, 1, 2, 3)
	}
	for _, g := range groups {
		if _, err := c.wait(c.engines[NodeID(g)].Campaign(g)); err != nil {
			t.Fatalf("campaign group %d: %v", g, err)
		}
		if lead := c.leader(g); lead != NodeID(g) {
			t.Fatalf("group %d: leader n%d, want n%d", g, lead, g)
		}
	}
	acked := map[GroupID]map[string]string{}
	write := func(n NodeID, g GroupID, k, v string) error {
		_, err := c.propose(n, g, k+"="+v)
		if err == nil {
			if acked[g] == nil {
				acked[g] = map[string]string{}
			}
			acked[g][k] = v
		}
		return err
	}
	for _, g := range groups {
		for i := range 20 {
			if err := write(NodeID(g), g, fmt.Sprintf("k%d", i), "before"); err != nil {
				t.Fatalf("group %d before the fault: %v", g, err)
			}
		}
	}

	// The disk of node 3 fails. Its next writes are a proposal to the group
	// it leads, which must not be acknowledged, and, as a follower, the
	// append of a proposal to group 1, which it must not acknowledge to
	// the leader (group 1 commits with node 2's acknowledgement).
	fault.on.Store(true)
	rec.mu.Lock()
	rec.armed = true
	rec.mu.Unlock()
	f1 := c.engines[1].ProposeFuture(1, []byte("k0=during-fault"))
	c.engines[1].Process()
	// Hand node 1's appends over now, so that node 3 writes them in the
	// same round as its own proposal.
	q := c.queue
	c.queue = nil
	for _, m := range q {
		c.engines[m.ToNode].Step([]Message{m})
	}
	f := c.engines[faulty].ProposeFuture(3, []byte("lost=never-acked"))
	c.deliver(100)
	if _, err := c.wait(f1); err != nil {
		t.Fatalf("group 1 with one follower failed: %v", err)
	}
	acked[1]["k0"] = "during-fault"
	if !isDone(f) {
		t.Fatal("the proposal to the failed node is still pending after its engine stopped")
	}
	if _, err := f.Result(); err == nil || !errors.Is(err, ErrDiskFailure) {
		t.Fatalf("proposal on the failed node: err = %v, want one wrapping ErrDiskFailure", err)
	} else if !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("proposal on the failed node: err = %v, want it ambiguous (it was appended)", err)
	}
	if fault.injected.Load() == 0 {
		t.Fatal("no fault was injected")
	}
	e3 := c.engines[faulty]
	select {
	case <-e3.Failed():
	default:
		t.Fatal("Failed() not closed after a disk failure")
	}
	if err := e3.Err(); !errors.Is(err, ErrDiskFailure) {
		t.Fatalf("Err() = %v, want ErrDiskFailure", err)
	}
	if _, err := e3.Propose(context.Background(), 1, []byte("x=y")); !errors.Is(err, ErrStopped) || !errors.Is(err, ErrDiskFailure) {
		t.Fatalf("proposal after the failure: err = %v, want ErrStopped wrapping ErrDiskFailure", err)
	}
	if err := e3.ReadBarrier(context.Background(), 1, ReadStale); !errors.Is(err, ErrStopped) {
		t.Fatalf("stale read after the failure: err = %v, want ErrStopped", err)
	}

	// The two healthy nodes keep serving all three groups; group 3 elects
	// a new leader among them.
	for _, e := range c.engines {
		e.NodeDown(faulty)
	}
	for _, g := range groups {
		var lead NodeID
		for range 50 {
			if lead = c.leader(g); lead != faulty {
				break
			}
			c.tick(1)
		}
		if lead == faulty {
			t.Fatalf("group %d: the failed node still leads", g)
		}
		for i := range 20 {
			if err := write(lead, g, fmt.Sprintf("k%d", i), "during"); err != nil {
				t.Fatalf("group %d during the fault (leader n%d): %v", g, lead, err)
			}
		}
	}

	// Fail-stop: after its failed write the node promised nothing.
	rec.mu.Lock()
	for _, m := range rec.sent {
		switch m.Msg.GetType() {
		case raftpb.MsgAppResp, raftpb.MsgVoteResp, raftpb.MsgPreVoteResp:
			if !m.Msg.GetReject() {
				t.Errorf("the failed node sent %v to n%d for group %d", m.Msg.GetType(), m.ToNode, m.Group)
			}
		}
	}
	sentAfter := len(rec.sent)
	rec.mu.Unlock()
	if sentAfter > 10 {
		t.Errorf("the failed node sent %d messages after the fault; it should have stopped", sentAfter)
	}
	if n := e3.Process(); n != 0 {
		t.Errorf("the failed engine still processes groups: %d", n)
	}

	// The fault clears; the node restarts over what it synced.
	crashed := c.fs[faulty].CrashClone(vfs.CrashCloneCfg{})
	fault.on.Store(false)
	_ = e3.Close()
	closeFailedDB(c.dbs[faulty])
	delete(c.engines, faulty)
	delete(c.dbs, faulty)
	c.fs[faulty] = crashed
	c.start(faulty)

	// It rejoins: more writes everywhere, then every replica holds the
	// same data, which includes every acknowledged write.
	for _, g := range groups {
		lead := c.leader(g)
		if err := write(lead, g, "after", "rejoined"); err != nil {
			t.Fatalf("group %d after the restart: %v", g, err)
		}
	}
	for _, g := range groups {
		var want map[string]string
		for try := 0; ; try++ {
			want = groupData(t, c.dbs[1], g)
			if maps.Equal(want, groupData(t, c.dbs[2], g)) && maps.Equal(want, groupData(t, c.dbs[faulty], g)) {
				break
			}
			if try == 200 {
				t.Fatalf("group %d: replicas differ after the restart:\nn1 %v\nn2 %v\nn3 %v", g,
					want, groupData(t, c.dbs[2], g), groupData(t, c.dbs[faulty], g))
			}
			c.tick(1)
		}
		sm := &testSM{group: g}
		for k, v := range acked[g] {
			if got := want[string(sm.key(k))]; got != v {
				t.Fatalf("group %d: %s=%q, acknowledged %q", g, k, got, v)
			}
		}
		if len(acked[g]) != 21 {
			t.Fatalf("group %d: %d keys acknowledged, want 21", g, len(acked[g]))
		}
	}
}

// TestDiskFaultFailStopWorkers: with worker goroutines, a failed sync
// closes the engine by itself: the proposer gets ErrDiskFailure, Failed
// fires, later requests get ErrStopped, nothing hangs, and a restart over
// the synced state keeps every acknowledged write.
func TestDiskFaultFailStopWorkers(t *testing.T) {
	mem := vfs.NewCrashableMem()
	fault := &walFault{}
	db, err := pebble.Open("", &pebble.Options{FS: errorfs.Wrap(mem, fault), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	open := func(db *pebble.DB) *Engine {
		e, err := Open(Config{
			NodeID: 1, DB: db, Transport: nopTransport{}, Workers: 2,
			NewStateMachine: func(g GroupID, _ ReplicaID, _ pebble.Reader) (StateMachine, error) {
				return &testSM{group: g}, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := open(db)
	m := Membership{Replicas: []Replica{{ReplicaID: 1, NodeID: 1}}}
	if err := e.CreateGroup(1, 1, m, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acked := map[string]string{}
	for i := range 50 {
		k := fmt.Sprintf("k%d", i)
		// The single voter campaigns at once; until its first round it
		// refuses or drops proposals.
		testutil.Eventually(t, 30*time.Second, func() error {
			_, err := e.Propose(ctx, 1, []byte(k+"=v"))
			if err == nil {
				acked[k] = "v"
				return nil
			}
			if ctx.Err() != nil {
				t.Fatalf("write before the fault: %v", err)
			}
			var nl *NotLeaderError
			if !errors.As(err, &nl) && !errors.Is(err, ErrProposalDropped) {
				t.Fatalf("write before the fault: %v", err)
			}
			return err
		})
	}
	fault.on.Store(true)
	// Concurrent writers: none may succeed once the fault is on, and none
	// may hang.
	var wg sync.WaitGroup
	var succeeded atomic.Int64
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.Propose(ctx, 1, []byte(fmt.Sprintf("w%d=x", w)))
			if err == nil {
				succeeded.Add(1)
				return
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	if n := succeeded.Load(); n != 0 {
		t.Fatalf("%d writes acknowledged after the WAL failed", n)
	}
	for err := range errs {
		if !errors.Is(err, ErrDiskFailure) {
			t.Fatalf("write after the fault: err = %v, want ErrDiskFailure", err)
		}
	}
	select {
	case <-e.Failed():
	case <-ctx.Done():
		t.Fatal("Failed() not closed")
	}
	if _, err := e.Propose(ctx, 1, []byte("late=x")); !errors.Is(err, ErrStopped) {
		t.Fatalf("write after fail-stop: err = %v, want ErrStopped", err)
	}
	_ = e.Close()

	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	closeFailedDB(db)
	db2, err := pebble.Open("", &pebble.Options{FS: crashed, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	e2 := open(db2)
	defer e2.Close()
	// The restarted single voter campaigns in its first round.
	testutil.Eventually(t, 30*time.Second, func() error {
		err := e2.ReadBarrier(ctx, 1, ReadLinearizable)
		if err != nil && (!errors.Is(err, ErrNotLeader) || ctx.Err() != nil) {
			t.Fatalf("read after restart: %v", err)
		}
		return err
	})
	for k, v := range acked {
		if got, _ := getKey(t, db2, 1, k); got != v {
			t.Fatalf("after restart %s=%q, acknowledged %q", k, got, v)
		}
	}
}

type nopTransport struct{}

func (nopTransport) Send([]Message)                   {}
func (nopTransport) SendSnapshot(s *OutgoingSnapshot) { s.Close() }
