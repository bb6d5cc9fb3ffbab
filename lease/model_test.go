package lease

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/shard"
)

// The model test runs the lessors of three nodes over the shards holding
// eight leases' records (one at first), with clocks running at different
// rates (within the factor of two the package doc assumes), under
// changes of a shard's leader with gaps without one (half the time the
// old leader goes on believing it leads for a while, and clients still
// reach it), and splits of a home between two leases' records, and
// checks the guarantees of the package doc from what the clients saw:
//
//   - a lease kept alive in time never ends, and its key stays; no
//     keepalive is told it does not exist, no read that it ended;
//   - a lease let lapse ends, no earlier than its TTL on the fastest clock
//     and no later than its TTL plus, per change of its home's leader or
//     split of its home in its life, its checkpoint interval and the gap,
//     on the slowest clock;
//   - no read is told a lease was alive at a revision at or above the
//     revision at which it ended (every promise is below the end);
//   - every key of an ended lease is deleted exactly once, and a put
//     carrying a promise is never stamped past it.
//
// Time is simulated (the clocks and the oracle read it); the lessors'
// ends run on goroutines of their own, as in a node, so a run is not
// replayed exactly by its seed, but every property is checked on every
// interleaving. go test ./lease -run Model -args -model.seeds=N runs
// more; MODEL_LOG=1 prints the lessors' debug logs of every run.

var modelSeeds = flag.Int("model.seeds", 30, "seeds of the lease model test")

type mworld struct {
	mu     sync.Mutex
	t0     time.Time
	now    time.Duration // true time since t0
	rates  []float64     // per node (index 1..n)
	lastTS uint64
	keys   versions
	shards []*mshard
}

// mshard is one shard of the model: its range, and who leads it in
// which term (leader 0: none).
type mshard struct {
	id         shard.ShardID
	start, end []byte
	leader     int
	term       uint64
	// stale, when not 0, is a node deposed without knowing it (cut off
	// from the others), which believes it leads in staleTerm until
	// staleUntil: its engine says it leads, but no quorum answers it, so
	// its read barriers and writes fail.
	stale      int
	staleTerm  uint64
	staleUntil time.Duration
}

func (w *mworld) shardLocked(id shard.ShardID) *mshard {
	for _, sh := range w.shards {
		if sh.id == id {
			return sh
		}
	}
	return nil
}

// homeLocked returns the shard owning key.
func (w *mworld) homeLocked(key []byte) *mshard {
	for _, sh := range w.shards {
		if inSpan(key, sh.start, sh.end) {
			return sh
		}
	}
	panic("no shard")
}

func (w *mworld) clockOf(node int) func() time.Time {
	return func() time.Time {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.t0.Add(time.Duration(float64(w.now) * w.rates[node]))
	}
}

func (w *mworld) stampLocked() uint64 {
	w.lastTS = max(w.lastTS+1, uint64(tso.Compose(w.t0.Add(w.now).UnixMilli(), 0)))
	return w.lastTS
}

func (w *mworld) Next(context.Context, int) (tso.Timestamp, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return tso.Timestamp(w.stampLocked()), nil
}

// mnode is one node's view of the world: its store and engine answer
// only while it leads the home shard.
type mnode struct {
	w  *mworld
	id int
}

// leadsLocked refuses a request to shard id unless this node leads it
// and the keys are in its range.
func (n mnode) leadsLocked(id shard.ShardID, keys ...[]byte) error {
	sh := n.w.shardLocked(id)
	if sh == nil || sh.leader != n.id {
		return &multiraft.NotLeaderError{}
	}
	for _, k := range keys {
		if k != nil && !inSpan(k, sh.start, sh.end) {
			return fmt.Errorf("%w: %q", shard.ErrKeyNotInShard, k)
		}
	}
	return nil
}

func (n mnode) Descriptor(id shard.ShardID) (shard.Descriptor, error) {
	n.w.mu.Lock()
	defer n.w.mu.Unlock()
	for _, sh := range n.w.shards {
		if sh.id == id {
			return shard.Descriptor{ShardID: sh.id, Start: sh.start, End: sh.end}, nil
		}
	}
	return shard.Descriptor{}, fmt.Errorf("%w: %d", shard.ErrShardNotFound, id)
}

func (n mnode) DescriptorsOverlapping(start, end []byte) []shard.Descriptor {
	n.w.mu.Lock()
	defer n.w.mu.Unlock()
	span := shard.Descriptor{Start: start, End: end}
	var ds []shard.Descriptor
	for _, sh := range n.w.shards {
		if d := (shard.Descriptor{ShardID: sh.id, Start: sh.start, End: sh.end}); d.Overlaps(&span) {
			ds = append(ds, d)
		}
	}
	slices.SortFunc(ds, func(a, b shard.Descriptor) int { return cmp.Compare(a.ShardID, b.ShardID) })
	return ds
}

func (n mnode) Execute(_ context.Context, id shard.ShardID, c *shard.Command) (*shard.Result, error) {
	w := n.w
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := [][]byte{c.Key}
	for _, op := range c.Ops {
		keys = append(keys, op.Key)
	}
	if err := n.leadsLocked(id, keys...); err != nil {
		return nil, err
	}
	rev := w.stampLocked()
	res := &shard.Result{Succeeded: true, Revision: rev}
	put := func(k, v []byte) {
		w.keys[string(k)] = append(w.keys[string(k)], version{rev: rev, value: append([]byte{}, v...)})
	}
	switch c.Kind {
	case shard.KindPut:
		put(c.Key, c.Value)
	case shard.KindCompareAndSwap:
		if _, found := w.keys.latest(c.Key); found == c.ExpectAbsent {
			res.Succeeded = false
			return res, nil
		}
		put(c.Key, c.Value)
	case shard.KindDelete:
		if _, found := w.keys.latest(c.Key); found {
			w.keys[string(c.Key)] = append(w.keys[string(c.Key)], version{rev: rev})
			res.Found = true
		}
	case shard.KindBatch:
		for _, op := range c.Ops {
			put(op.Key, op.Value)
		}
	}
	return res, nil
}

func (n mnode) Scan(_ context.Context, id shard.ShardID, _ shard.Epoch, start, end []byte, _ int, _ multiraft.ReadMode) ([]shard.KeyValue, bool, uint64, error) {
	w := n.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := n.leadsLocked(id, start); err != nil {
		return nil, false, 0, err
	}
	return w.keys.scan(start, end), false, w.lastTS, nil
}

func (n mnode) GetAt(_ context.Context, id shard.ShardID, _ shard.Epoch, key []byte, rev uint64) (shard.KeyValue, bool, error) {
	w := n.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := n.leadsLocked(id, key); err != nil {
		return shard.KeyValue{}, false, err
	}
	w.lastTS = max(w.lastTS, rev) // the home resolves rev
	v, ok := w.keys.at(key, rev)
	return shard.KeyValue{Key: key, Value: v.value, ModRevision: v.rev}, ok, nil
}

func (n mnode) Summary(id multiraft.GroupID) (multiraft.GroupSummary, bool) {
	n.w.mu.Lock()
	defer n.w.mu.Unlock()
	sh := n.w.shardLocked(id)
	switch {
	case sh == nil:
		return multiraft.GroupSummary{}, false
	case n.deposedLocked(id):
		return multiraft.GroupSummary{Group: sh.id, Leading: true, Term: sh.staleTerm}, true
	}
	return multiraft.GroupSummary{Group: sh.id, Leading: sh.leader == n.id, Term: sh.term}, true
}

// deposedLocked reports whether this node was deposed as leader of shard
// id without knowing it.
func (n mnode) deposedLocked(id shard.ShardID) bool {
	sh := n.w.shardLocked(id)
	return sh != nil && sh.stale == n.id
}

// CheckLeader answers from what the node believes, as the engine's does:
// a node deposed without knowing it still leads.
func (n mnode) CheckLeader(id multiraft.GroupID) error {
	n.w.mu.Lock()
	defer n.w.mu.Unlock()
	if n.deposedLocked(id) {
		return nil
	}
	return n.leadsLocked(id)
}

func (n mnode) LeaseHeld(multiraft.GroupID) bool { return false }

// ReadBarrier confirms leadership with a quorum: a node deposed without
// knowing it waits in vain for one.
func (n mnode) ReadBarrier(_ context.Context, id multiraft.GroupID, _ multiraft.ReadMode) error {
	n.w.mu.Lock()
	defer n.w.mu.Unlock()
	if n.deposedLocked(id) {
		return context.DeadlineExceeded
	}
	return n.leadsLocked(id)
}

// mfleet is the rest of the fleet: the attached keys and index keys,
// written through whichever leader (always reachable here).
type mfleet struct{ w *mworld }

func (f mfleet) Put(_ context.Context, key []byte) error {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.keys[string(key)] = append(f.w.keys[string(key)], version{rev: f.w.stampLocked(), value: []byte{}})
	return nil
}

func (f mfleet) Delete(_ context.Context, key []byte, lease uint64) (bool, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	v, ok := f.w.keys.latest(key)
	if !ok || lease != 0 && v.lease != lease {
		return false, nil
	}
	f.w.keys[string(key)] = append(f.w.keys[string(key)], version{rev: f.w.stampLocked()})
	return true, nil
}

func (f mfleet) Keys(_ context.Context, start, end []byte) ([][]byte, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	var out [][]byte
	for _, kv := range f.w.keys.scan(start, end) {
		out = append(out, kv.Key)
	}
	return out, nil
}

func (f mfleet) LeaseOf(_ context.Context, key []byte) (uint64, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	v, _ := f.w.keys.latest(key)
	return v.lease, nil
}

func (f mfleet) Status(context.Context, uint64, uint64) (Status, error) {
	return Status{}, fmt.Errorf("mfleet: no status")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// mlease is what the model's client knows of one lease.
type mlease struct {
	id        uint64
	ttl       time.Duration
	kept      bool
	key       string
	granted   time.Duration // true time
	nextKeep  time.Duration
	lastAck   time.Duration
	changes   int      // leader changes in its life
	alives    []uint64 // revisions a read was told it was alive at
	promises  []uint64 // Untils promised
	keyPutRev uint64
}

func TestModel(t *testing.T) {
	var total modelStats
	for seed := range *modelSeeds {
		st, err := runModel(uint64(seed + 1))
		if err != nil {
			t.Fatalf("seed %d: %v", seed+1, err)
		}
		total.changes += st.changes
		total.stale += st.stale
		total.splits += st.splits
		total.ended += st.ended
		total.kept += st.kept
	}
	t.Logf("%d seeds: %d leader changes (%d with the old leader unaware), %d splits; %d leases kept alive throughout, %d ended",
		*modelSeeds, total.changes, total.stale, total.splits, total.kept, total.ended)
	if total.splits == 0 || total.changes == 0 || total.stale == 0 || total.ended == 0 {
		t.Fatal("the model exercised nothing")
	}
}

// errViolation marks what breaks a guarantee, among a grant's errors.
var errViolation = errors.New("violation")

// modelStats counts what one run of the model did.
type modelStats struct{ changes, stale, splits, ended, kept int }

// TestModelCatchesPlantedBugs: the same model fails with a promise of all
// the remaining time instead of half (clock rates then matter) within a
// few seeds.
func TestModelCatchesPlantedBugs(t *testing.T) {
	defer func(s time.Duration) { promiseShare = s }(promiseShare)
	promiseShare = 1
	for seed := range 60 {
		if _, err := runModel(uint64(seed + 1)); err != nil {
			t.Logf("planted promise of the whole remaining time: seed %d: %v", seed+1, err)
			return
		}
	}
	t.Fatal("60 seeds with promises of the whole remaining time, and no violation")
}

func runModel(seed uint64) (st modelStats, err error) {
	rng := rand.New(rand.NewPCG(seed, 17))
	const nodes = 3
	w := &mworld{t0: time.Unix(1_700_000_000, 0), keys: versions{}, rates: make([]float64, nodes+1),
		shards: []*mshard{{id: 1, leader: 1, term: 1}}}
	minRate, maxRate := 1.0, 1.0
	for i := 1; i <= nodes; i++ {
		w.rates[i] = 0.75 + rng.Float64()*0.55 // within [0.75, 1.3]: a factor under 2
		minRate, maxRate = min(minRate, w.rates[i]), max(maxRate, w.rates[i])
	}
	const checkpoint = time.Second
	ls := make([]*Lessor, nodes+1)
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	for i := 1; i <= nodes; i++ {
		n := mnode{w, i}
		logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logBuf}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", i)
		ls[i] = New(Config{CheckpointInterval: checkpoint, MinTTL: time.Second, Now: w.clockOf(i), Logger: logger}, n, n, mfleet{w}, w)
	}
	defer func() {
		if os.Getenv("MODEL_LOG") != "" {
			logMu.Lock()
			fmt.Println(logBuf.String())
			logMu.Unlock()
		}
	}()
	ctx := context.Background()
	// A step moves time and steps every lessor, then gives the ends they
	// began a moment of real time to finish (an end takes milliseconds in
	// a node, so it must not see simulated seconds pass); an end waiting
	// for the oracle to pass a promise waits across steps.
	step := func() {
		w.mu.Lock()
		w.now += 100 * time.Millisecond
		w.mu.Unlock()
		for i := 1; i <= nodes; i++ {
			ls[i].Step()
		}
		for range 50 {
			busy := false
			for i := 1; i <= nodes; i++ {
				ls[i].mu.Lock()
				for _, l := range ls[i].leases {
					// A deposed leader's ends wait in vain until it
					// learns it was.
					w.mu.Lock()
					sh := w.shardLocked(l.home)
					led := sh != nil && sh.leader == i
					w.mu.Unlock()
					busy = busy || led && (l.ending || l.decided)
				}
				ls[i].mu.Unlock()
			}
			if !busy {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	// homeOf returns lease id's home shard and the lessor of its leader
	// (nil while it has none), as a router would find them: one time in
	// three, while a deposed leader does not know it, the router's cache
	// still names that one.
	homeOf := func(id uint64) (shard.ShardID, *Lessor) {
		w.mu.Lock()
		defer w.mu.Unlock()
		sh := w.homeLocked(syskeys.LeaseRecordKey(id))
		if sh.stale != 0 && rng.IntN(3) == 0 {
			return sh.id, ls[sh.stale]
		}
		if sh.leader == 0 {
			return sh.id, nil
		}
		return sh.id, ls[sh.leader]
	}
	now := func() time.Duration { w.mu.Lock(); defer w.mu.Unlock(); return w.now }
	step()

	// grant grants the i-th lease (kept alive when i is even) and
	// attaches its key. It fails, and grants nothing, when the home it
	// finds refuses the grant (no leader, or a deposed one).
	var leases []*mlease
	grant := func(i int) error {
		ttl := time.Duration(4+rng.IntN(7)) * time.Second
		home, lead := homeOf(uint64(i+1) << 40)
		if lead == nil {
			return fmt.Errorf("grant: shard %d has no leader", home)
		}
		id, _, _, _, err := lead.Grant(ctx, home, uint64(i+1)<<40, int64(ttl/time.Second))
		if err != nil {
			return fmt.Errorf("grant: %w", err)
		}
		l := &mlease{id: id, ttl: ttl, kept: i%2 == 0, key: fmt.Sprintf("key-%d", i), granted: now(), lastAck: now()}
		l.nextKeep = l.granted + ttl/3
		leases = append(leases, l)
		until, err := lead.Attach(ctx, home, id, []byte(l.key))
		if err != nil {
			return fmt.Errorf("%w: attach to lease %d, right after its grant by the same leader: %w", errViolation, id, err)
		}
		l.promises = append(l.promises, until)
		w.mu.Lock()
		defer w.mu.Unlock()
		rev := w.stampLocked()
		if rev > until {
			return fmt.Errorf("%w: the put of %s was stamped %d, past its promise %d at once", errViolation, l.key, rev, until)
		}
		w.keys[l.key] = append(w.keys[l.key], version{rev: rev, value: []byte("v"), lease: id})
		l.keyPutRev = rev
		return nil
	}
	for i := range 8 {
		if err := grant(i); err != nil {
			return st, err
		}
	}

	// 40 s of true time: keepalives, reads, leader changes (a shard
	// without a leader for a gap, then a new one; half the time the old
	// leader does not know it was deposed for up to 5 s), splits of a
	// home between two leases' records (both sides led by the parent's
	// leader, each in a term of its own), and 16 more leases granted in
	// the first 30 s, which a deposed leader that loaded its leases before
	// never heard of. A kept lease is kept alive at random within a third
	// of its TTL.
	gapUntil := map[shard.ShardID]time.Duration{}
	var maxGap time.Duration
	nextShard := shard.ShardID(2)
	for now() < 40*time.Second {
		step()
		t := now()
		w.mu.Lock()
		for _, sh := range w.shards {
			if until, ok := gapUntil[sh.id]; ok && t >= until {
				sh.leader, sh.term = rng.IntN(nodes)+1, sh.term+1
				delete(gapUntil, sh.id)
			}
			if sh.stale != 0 && (t >= sh.staleUntil || sh.stale == sh.leader) {
				sh.stale = 0 // it hears of the new term
			}
		}
		switch r := rng.IntN(60); {
		case r == 0:
			sh := w.shards[rng.IntN(len(w.shards))]
			if _, gapping := gapUntil[sh.id]; !gapping {
				gap := time.Duration(rng.IntN(15)) * 100 * time.Millisecond
				maxGap = max(maxGap, gap)
				if rng.IntN(2) == 0 {
					sh.stale, sh.staleTerm = sh.leader, sh.term
					sh.staleUntil = t + time.Duration(1+rng.IntN(50))*100*time.Millisecond
					st.stale++
				}
				sh.leader = 0
				gapUntil[sh.id] = t + gap + 100*time.Millisecond
				st.changes++
				for _, l := range leases {
					if inSpan(syskeys.LeaseRecordKey(l.id), sh.start, sh.end) {
						l.changes++
					}
				}
			}
		case r == 1 && len(w.shards) < 4:
			at := syskeys.LeaseRecordKey(leases[rng.IntN(len(leases))].id)
			sh := w.homeLocked(at)
			if _, gapping := gapUntil[sh.id]; !gapping && sh.stale == 0 && !bytes.Equal(at, sh.start) {
				right := &mshard{id: nextShard, start: at, end: sh.end, leader: sh.leader, term: 1}
				nextShard++
				sh.end = at
				w.shards = append(w.shards, right)
				st.splits++
				for _, l := range leases {
					if inSpan(syskeys.LeaseRecordKey(l.id), sh.start, right.end) {
						l.changes++ // each side's leader loads its leases afresh
					}
				}
			}
		}
		w.mu.Unlock()
		if len(leases) < 24 && t < 30*time.Second && rng.IntN(8) == 0 {
			if err := grant(len(leases)); errors.Is(err, errViolation) {
				return st, err
			}
		}
		for _, l := range leases {
			home, lead := homeOf(l.id)
			if lead == nil {
				continue
			}
			if l.kept && t >= l.nextKeep {
				_, err := lead.KeepAlive(ctx, home, l.id)
				if err == nil {
					l.lastAck, l.nextKeep = t, t+time.Duration(rng.Int64N(int64(l.ttl/3)))
				}
				if errors.Is(err, ErrNotFound) {
					return st, fmt.Errorf("lease %d, kept alive (last ack at %v), was told at %v it does not exist: %v", l.id, l.lastAck, t, err)
				}
			}
			// A read of the lease's key at the current timestamp.
			ts, _ := w.Next(ctx, 1)
			if status, err := lead.Status(ctx, home, l.id, uint64(ts)); err == nil {
				if l.kept && status.Ended != 0 {
					return st, fmt.Errorf("lease %d, kept alive (last ack at %v), was read as ended at %d", l.id, l.lastAck, status.Ended)
				}
				if status.Alive {
					l.alives = append(l.alives, uint64(ts))
				}
				if status.Until != 0 {
					l.promises = append(l.promises, status.Until)
				}
			}
		}
	}
	// Let the lapsed leases' ends finish, with leaders and no faults.
	w.mu.Lock()
	for _, sh := range w.shards {
		if sh.leader == 0 {
			sh.leader, sh.term = rng.IntN(nodes)+1, sh.term+1
		}
	}
	w.mu.Unlock()
	for range 600 {
		step()
		done := true
		for _, l := range leases {
			w.mu.Lock()
			_, rec := w.keys.latest(syskeys.LeaseRecordKey(l.id))
			w.mu.Unlock()
			if !l.kept && rec {
				done = false
			}
		}
		if done {
			break
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range leases {
		recVersions := w.keys[string(syskeys.LeaseRecordKey(l.id))]
		var ended uint64
		for _, v := range recVersions {
			if v.value == nil {
				continue
			}
			if r, err := syskeys.DecodeLeaseRecord(v.value); err == nil && r.Ended && ended == 0 {
				ended = v.rev
			}
		}
		_, keyThere := w.keys.latest([]byte(l.key))
		if l.kept {
			st.kept++
			if ended != 0 || !keyThere {
				return st, fmt.Errorf("lease %d (TTL %v) was kept alive (last ack at %v) but ended at %d; key there: %v", l.id, l.ttl, l.lastAck, ended, keyThere)
			}
			continue
		}
		if ended == 0 || keyThere {
			return st, fmt.Errorf("lease %d (TTL %v, granted at %v) never ended (key there: %v)", l.id, l.ttl, l.granted, keyThere)
		}
		for _, p := range l.promises {
			if p >= ended {
				return st, fmt.Errorf("lease %d ended at %d, below a promise of %d (rates %v)", l.id, ended, p, w.rates[1:])
			}
		}
		for _, a := range l.alives {
			if a >= ended {
				return st, fmt.Errorf("lease %d ended at %d, but a read was told it was alive at %d", l.id, ended, a)
			}
		}
		endedAt := time.Duration(tso.Physical(tso.Timestamp(ended))-w.t0.UnixMilli()) * time.Millisecond
		life := endedAt - l.granted
		cp := max(checkpoint, l.ttl/4)
		lo := time.Duration(float64(l.ttl) / maxRate)
		hi := time.Duration(float64(l.ttl+time.Duration(l.changes)*(cp+maxGap+time.Second))/minRate) + time.Second
		if life < lo || life > hi {
			var hist []string
			for _, v := range recVersions {
				at := time.Duration(tso.Physical(tso.Timestamp(v.rev))-w.t0.UnixMilli()) * time.Millisecond
				r, _ := syskeys.DecodeLeaseRecord(v.value)
				hist = append(hist, fmt.Sprintf("%v: %+v", at, r))
			}
			return st, fmt.Errorf("lease %d (TTL %v, %d leader changes) ended %v after its grant, want within [%v, %v]; its record: %v; rates %v",
				l.id, l.ttl, l.changes, life, lo, hi, hist, w.rates[1:])
		}
		st.ended++
		deletes := 0
		for _, v := range w.keys[l.key] {
			if v.value == nil {
				deletes++
			}
		}
		if deletes != 1 {
			return st, fmt.Errorf("lease %d's key was deleted %d times", l.id, deletes)
		}
	}
	return st, nil
}
