package lease

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/shard"
)

// The Lessor's tests drive its loop by hand (step) over fakes: one shard
// holding the whole key space, versioned in memory, a clock the test
// moves, and an oracle reading that clock.

type version struct {
	rev   uint64
	value []byte // nil: deleted
	lease uint64
}

// world is the fake fleet: one shard's versioned keys, the oracle and
// the clock.
type world struct {
	mu      sync.Mutex
	now     time.Time
	lastTS  uint64
	keys    versions
	leading bool
	term    uint64
	// onBarrier, if set, runs (once) when a read barrier is asked for;
	// failDeletes refuses that many of the fleet's deletes.
	onBarrier   func()
	failDeletes int
}

func newWorld() *world {
	return &world{now: time.Unix(1_700_000_000, 0), keys: versions{}, leading: true, term: 1}
}

func (w *world) clock() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.now }

func (w *world) advance(d time.Duration) { w.mu.Lock(); w.now = w.now.Add(d); w.mu.Unlock() }

// Next implements Oracle: timestamps from the fake clock.
func (w *world) Next(context.Context, int) (tso.Timestamp, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastTS = max(w.lastTS+1, uint64(tso.Compose(w.now.UnixMilli(), 0)))
	return tso.Timestamp(w.lastTS), nil
}

func (w *world) stampLocked() uint64 {
	w.lastTS = max(w.lastTS+1, uint64(tso.Compose(w.now.UnixMilli(), 0)))
	return w.lastTS
}

// versions are a fake shard's keys, each with its versions oldest first
// (a nil value is a deletion).
type versions map[string][]version

// latest returns key's newest version, if it exists.
func (vs versions) latest(key []byte) (version, bool) {
	v := vs[string(key)]
	if len(v) == 0 || v[len(v)-1].value == nil {
		return version{}, false
	}
	return v[len(v)-1], true
}

// at returns key's version as of revision rev, if it existed then.
func (vs versions) at(key []byte, rev uint64) (version, bool) {
	v := vs[string(key)]
	for i := len(v) - 1; i >= 0; i-- {
		if v[i].rev <= rev {
			return v[i], v[i].value != nil
		}
	}
	return version{}, false
}

// scan returns the keys of [start, end) that exist, in key order.
func (vs versions) scan(start, end []byte) []shard.KeyValue {
	var out []shard.KeyValue
	for _, k := range sortedKeys(vs) {
		if bytes.Compare([]byte(k), start) < 0 || len(end) > 0 && bytes.Compare([]byte(k), end) >= 0 {
			continue
		}
		if v, ok := vs.latest([]byte(k)); ok {
			out = append(out, shard.KeyValue{Key: []byte(k), Value: v.value, ModRevision: v.rev, Lease: v.lease})
		}
	}
	return out
}

func (w *world) putLocked(key, value []byte, lease, rev uint64) {
	w.keys[string(key)] = append(w.keys[string(key)], version{rev: rev, value: append([]byte{}, value...), lease: lease})
}

func (w *world) delLocked(key []byte, rev uint64) {
	w.keys[string(key)] = append(w.keys[string(key)], version{rev: rev})
}

// store is the fake Store.
type store struct{ w *world }

// The fake node holds one shard, 1, of the whole key space.
func (s store) Descriptor(id shard.ShardID) (shard.Descriptor, error) {
	if id != 1 {
		return shard.Descriptor{}, fmt.Errorf("%w: %d", shard.ErrShardNotFound, id)
	}
	return shard.Descriptor{ShardID: 1}, nil
}

func (s store) DescriptorsOverlapping([]byte, []byte) []shard.Descriptor {
	return []shard.Descriptor{{ShardID: 1}}
}

func (s store) Execute(_ context.Context, id shard.ShardID, c *shard.Command) (*shard.Result, error) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.leading {
		return nil, &multiraft.NotLeaderError{}
	}
	rev := w.stampLocked()
	res := &shard.Result{Succeeded: true, Revision: rev}
	switch c.Kind {
	case shard.KindPut:
		w.putLocked(c.Key, c.Value, c.Lease, rev)
	case shard.KindCompareAndSwap:
		if _, found := w.keys.latest(c.Key); found == c.ExpectAbsent {
			res.Succeeded = false
			return res, nil
		}
		w.putLocked(c.Key, c.Value, 0, rev)
	case shard.KindDelete:
		if _, found := w.keys.latest(c.Key); found {
			w.delLocked(c.Key, rev)
			res.Found = true
		}
	case shard.KindBatch:
		for _, op := range c.Ops {
			w.putLocked(op.Key, op.Value, 0, rev)
		}
	default:
		return nil, fmt.Errorf("fake store: %s", c.Kind)
	}
	return res, nil
}

func (s store) Scan(_ context.Context, _ shard.ShardID, _ shard.Epoch, start, end []byte, limit int, _ multiraft.ReadMode) ([]shard.KeyValue, bool, uint64, error) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.leading {
		return nil, false, 0, &multiraft.NotLeaderError{}
	}
	return w.keys.scan(start, end), false, w.lastTS, nil
}

func (s store) GetAt(_ context.Context, _ shard.ShardID, _ shard.Epoch, key []byte, rev uint64) (shard.KeyValue, bool, error) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastTS = max(w.lastTS, rev) // resolving the shard at rev
	v, ok := w.keys.at(key, rev)
	return shard.KeyValue{Key: key, Value: v.value, ModRevision: v.rev, Lease: v.lease}, ok, nil
}

func sortedKeys(m versions) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// engine is the fake Engine.
type engine struct{ w *world }

func (e engine) Summary(id multiraft.GroupID) (multiraft.GroupSummary, bool) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if id != 1 {
		return multiraft.GroupSummary{}, false
	}
	return multiraft.GroupSummary{Group: 1, Leading: e.w.leading, Term: e.w.term}, true
}

func (e engine) CheckLeader(multiraft.GroupID) error {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if !e.w.leading {
		return &multiraft.NotLeaderError{}
	}
	return nil
}

func (e engine) LeaseHeld(multiraft.GroupID) bool { return false }

func (e engine) ReadBarrier(context.Context, multiraft.GroupID, multiraft.ReadMode) error {
	e.w.mu.Lock()
	hook := e.w.onBarrier
	e.w.onBarrier = nil
	e.w.mu.Unlock()
	if hook != nil {
		hook()
	}
	return e.CheckLeader(1)
}

// fleet is the fake Fleet, over the same keys.
type fleet struct{ w *world }

func (f fleet) Put(_ context.Context, key []byte) error {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.putLocked(key, nil, 0, f.w.stampLocked())
	f.w.keys[string(key)][len(f.w.keys[string(key)])-1].value = []byte{}
	return nil
}

func (f fleet) Delete(_ context.Context, key []byte, lease uint64) (bool, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	if f.w.failDeletes > 0 {
		f.w.failDeletes--
		return false, multiraft.ErrProposalDropped
	}
	v, ok := f.w.keys.latest(key)
	if !ok || lease != 0 && v.lease != lease {
		return false, nil
	}
	f.w.delLocked(key, f.w.stampLocked())
	return true, nil
}

func (f fleet) Keys(_ context.Context, start, end []byte) ([][]byte, error) {
	kvs, _, _, err := store(f).Scan(context.Background(), 1, shard.Epoch{}, start, end, 0, multiraft.ReadLinearizable)
	var keys [][]byte
	for _, kv := range kvs {
		keys = append(keys, kv.Key)
	}
	return keys, err
}

func (f fleet) LeaseOf(_ context.Context, key []byte) (uint64, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	v, _ := f.w.keys.latest(key)
	return v.lease, nil
}

func (f fleet) Status(context.Context, uint64, uint64) (Status, error) {
	return Status{}, errors.New("fake fleet: no status")
}

// putLeased writes key attached to lease as a shard would: refused if
// stamped past until.
func (w *world) putLeased(t *testing.T, key string, lease, until uint64) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	rev := w.stampLocked()
	if rev > until {
		t.Fatalf("put of %q stamped %d, past the promise %d", key, rev, until)
	}
	w.putLocked([]byte(key), []byte("v"), lease, rev)
}

func (w *world) exists(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.keys.latest([]byte(key))
	return ok
}

func (w *world) record(t *testing.T, id uint64) (syskeys.LeaseRecord, bool) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.keys.latest(syskeys.LeaseRecordKey(id))
	if !ok {
		return syskeys.LeaseRecord{}, false
	}
	r, err := syskeys.DecodeLeaseRecord(v.value)
	if err != nil {
		t.Fatal(err)
	}
	return r, true
}

func newLessor(w *world, checkpoint time.Duration) *Lessor {
	return New(Config{CheckpointInterval: checkpoint, MinTTL: time.Second, Now: w.clock}, store{w}, engine{w}, fleet{w}, w)
}

// run steps the lessor every 100 ms of fake time for d.
func run(ls *Lessor, w *world, d time.Duration) {
	for t := time.Duration(0); t < d; t += 100 * time.Millisecond {
		w.advance(100 * time.Millisecond)
		ls.Step()
	}
}

func grant(t *testing.T, ls *Lessor, ttl int64) uint64 {
	t.Helper()
	ctx := context.Background()
	id, _, redirect, _, err := ls.Grant(ctx, 1, 0, ttl)
	if err != nil || redirect {
		t.Fatalf("grant: %v (redirect %v)", err, redirect)
	}
	return id
}

// leaderChange makes the home's leadership pass to a new term, as a new
// leader on another node would start: it loads the records afresh.
func leaderChange(w *world) *Lessor {
	w.mu.Lock()
	w.term++
	w.mu.Unlock()
	return newLessor(w, 2*time.Second)
}

// ending reports whether the lessor decided lease id's end.
func (ls *Lessor) ending(id uint64) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.leases[id]
	return l != nil && l.decided
}

// TestKeepAliveAfterCheckpointSurvivesLeaderChange: a lease of 10 s is
// checkpointed (its record falls to about 7 s), then kept alive; a new
// home leader right after must give it the full TTL again, not the
// checkpoint's 7 s. (Plant: skip the keepalive's write of the full TTL
// and the lease ends 3 s early on the new leader.)
func TestKeepAliveAfterCheckpointSurvivesLeaderChange(t *testing.T) {
	w := newWorld()
	ls := newLessor(w, 2*time.Second)
	ls.Step()
	id := grant(t, ls, 10)
	run(ls, w, 3*time.Second)
	if r, _ := w.record(t, id); r.RemainingMs > 8500 {
		t.Fatalf("no checkpoint after 3 s of a 10 s lease: record %+v", r)
	}
	if _, err := ls.KeepAlive(context.Background(), 1, id); err != nil {
		t.Fatal(err)
	}
	if r, _ := w.record(t, id); r.RemainingMs != 10_000 {
		t.Fatalf("record after a keepalive: %+v, want the full TTL", r)
	}
	kept := w.clock()
	next := leaderChange(w)
	next.Step()
	run(next, w, 9500*time.Millisecond)
	if _, ok := w.record(t, id); !ok || next.Count() != 1 {
		t.Fatalf("the lease kept alive at %v ended before its TTL on the new leader", kept)
	}
}

// TestCheckpointBoundsExtension: a lease never kept alive, whose home
// leader changes 5 s into its 10 s, ends on the new leader no later than
// its deadline plus the checkpoint interval (2 s), and never before it.
func TestCheckpointBoundsExtension(t *testing.T) {
	w := newWorld()
	ls := newLessor(w, 2*time.Second)
	ls.Step()
	granted := w.clock()
	id := grant(t, ls, 10)
	run(ls, w, 5*time.Second)
	next := leaderChange(w)
	next.Step()
	// The end is decided in the step that marks the lease ending; the
	// end itself may be done before the test looks (the record ended or
	// gone), the clock having not moved since.
	var ended time.Time
	for range 200 {
		w.advance(100 * time.Millisecond)
		next.Step()
		r, ok := w.record(t, id)
		if next.ending(id) || !ok || r.Ended {
			ended = w.clock()
			break
		}
	}
	if ended.IsZero() {
		t.Fatal("the lease never ended")
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, ok := w.record(t, id); ok {
			return fmt.Errorf("lease %d's record is still there", id)
		}
		return nil
	})
	took := ended.Sub(granted)
	t.Logf("granted 10 s, leader changed at 5 s, ended at %v", took)
	// The bound: the TTL, plus one checkpoint interval (the larger of the
	// configured 2 s and a quarter of the TTL), plus two steps of the loop.
	const ttl = 10 * time.Second
	hi := ttl + max(2*time.Second, ttl/4) + 200*time.Millisecond
	if took < ttl || took > hi {
		t.Fatalf("the lease ended %v after its grant, want within [%v, %v]", took, ttl, hi)
	}
}

// TestEndDeletesAttachedKeys: an expiry deletes the keys still attached
// to the lease, not one re-attached to another lease, with revisions
// above every promise made; then the index and the record go.
func TestEndDeletesAttachedKeys(t *testing.T) {
	w := newWorld()
	ls := newLessor(w, 2*time.Second)
	ls.Step()
	a, b := grant(t, ls, 3), grant(t, ls, 60)
	ctx := context.Background()
	for _, k := range []string{"k1", "k2", "moved"} {
		until, err := ls.Attach(ctx, 1, a, []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		w.putLeased(t, k, a, until)
	}
	until, err := ls.Attach(ctx, 1, b, []byte("moved"))
	if err != nil {
		t.Fatal(err)
	}
	w.putLeased(t, "moved", b, until)
	st, err := ls.Status(ctx, 1, a, w.lastTS)
	if err != nil || !st.Alive || st.Until == 0 {
		t.Fatalf("status of a live lease: %+v, %v", st, err)
	}
	run(ls, w, 3*time.Second)
	testutil.Eventually(t, 10*time.Second, func() error {
		ls.Step()
		if _, ok := w.record(t, a); ok {
			return fmt.Errorf("lease %d's record is still there", a)
		}
		return nil
	})
	if w.exists("k1") || w.exists("k2") {
		t.Fatal("a key of the expired lease survived")
	}
	if !w.exists("moved") {
		t.Fatal("the key re-attached to another lease was deleted")
	}
	w.mu.Lock()
	for _, k := range []string{"k1", "k2"} {
		vs := w.keys[k]
		if del := vs[len(vs)-1]; del.value != nil || del.rev <= st.Until {
			t.Errorf("%s: deleted at %d, promised alive through %d", k, del.rev, st.Until)
		}
	}
	start, end := syskeys.LeaseIndexSpan(a)
	for k := range w.keys {
		if bytes.Compare([]byte(k), start) >= 0 && bytes.Compare([]byte(k), end) < 0 {
			if _, ok := w.keys.latest([]byte(k)); ok {
				t.Errorf("index key %q survived its lease", k)
			}
		}
	}
	w.mu.Unlock()
	if _, err := ls.KeepAlive(ctx, 1, a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("keepalive of an expired lease: %v", err)
	}
	if c := ls.Counters(); c.Expired != 1 || c.Granted != 2 {
		t.Fatalf("counters: %+v", c)
	}
}

// TestFollowerAnswersNotLeader: a node that does not lead the home shard
// answers a keepalive with NotLeader (so the router follows the leader),
// and forgets the leases it counted once it lost the leadership.
func TestFollowerAnswersNotLeader(t *testing.T) {
	w := newWorld()
	ls := newLessor(w, 2*time.Second)
	ls.Step()
	id := grant(t, ls, 10)
	w.mu.Lock()
	w.leading = false
	w.mu.Unlock()
	ls.Step()
	var nle *multiraft.NotLeaderError
	if _, err := ls.KeepAlive(context.Background(), 1, id); !errors.As(err, &nle) {
		t.Fatalf("keepalive on a follower: %v, want NotLeader", err)
	}
	if ls.Count() != 0 {
		t.Fatalf("a follower counts %d leases", ls.Count())
	}
}
