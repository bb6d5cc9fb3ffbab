package lease

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/shard"
)

// Store is what a Lessor needs of the node's *shard.Store.
type Store interface {
	// Descriptor returns the descriptor of this node's replica of a
	// shard, or an error wrapping shard.ErrShardNotFound.
	Descriptor(id shard.ShardID) (shard.Descriptor, error)
	// DescriptorsOverlapping returns the descriptors of this node's
	// replicas whose range overlaps [start, end), in ShardID order.
	DescriptorsOverlapping(start, end []byte) []shard.Descriptor
	Execute(ctx context.Context, id shard.ShardID, cmd *shard.Command) (*shard.Result, error)
	Scan(ctx context.Context, id shard.ShardID, epoch shard.Epoch, start, end []byte, limit int, mode multiraft.ReadMode) ([]shard.KeyValue, bool, uint64, error)
	GetAt(ctx context.Context, id shard.ShardID, epoch shard.Epoch, key []byte, rev uint64) (shard.KeyValue, bool, error)
}

// Engine is what a Lessor needs of the node's *multiraft.Engine: which
// groups it leads, in which term, and a check of its leadership.
type Engine interface {
	// Summary returns group's summary, false if this node has no
	// replica of it.
	Summary(group multiraft.GroupID) (multiraft.GroupSummary, bool)
	CheckLeader(group multiraft.GroupID) error
	LeaseHeld(group multiraft.GroupID) bool
	ReadBarrier(ctx context.Context, group multiraft.GroupID, mode multiraft.ReadMode) error
}

// Fleet is the node's client of the whole fleet (a router): a lease's
// keys and index keys may be on any shard.
type Fleet interface {
	// Put writes key (an index key) with an empty value.
	Put(ctx context.Context, key []byte) error
	// Delete deletes key; with a non-zero lease only if key is attached
	// to it. It reports whether a version was deleted.
	Delete(ctx context.Context, key []byte, lease uint64) (bool, error)
	// Keys returns every key in [start, end), read at the latest state.
	Keys(ctx context.Context, start, end []byte) ([][]byte, error)
	// LeaseOf returns the lease key is attached to (0: none or absent).
	LeaseOf(ctx context.Context, key []byte) (uint64, error)
	// Status asks lease id's home whether it was alive at rev.
	Status(ctx context.Context, id, rev uint64) (Status, error)
}

// Oracle hands out the fleet's timestamps (a shard.Oracle).
type Oracle = shard.Oracle

// Status is what a lease's home says of it at a revision.
type Status struct {
	// Alive: the lease was alive at the revision asked about.
	Alive bool
	// Until, when non-zero: the lease is alive at every revision up to
	// it (a promise: its end gets a revision above).
	Until uint64
	// Ended, when non-zero: the revision at which the lease ended.
	Ended uint64
}

// Config configures a Lessor. A zero field takes its default.
type Config struct {
	// Interval is how often the lessor looks for leases to expire and
	// checkpoint, and for shards it began or ceased to lead. Default
	// 100ms: a lease outlives its deadline by at most about this much
	// before its end is decided.
	Interval time.Duration
	// CheckpointInterval bounds how much a change of home leader can
	// extend a lease: a lease's remaining TTL is written through Raft once
	// it has fallen its checkpoint interval below the value last written.
	// A lease's checkpoint interval is the larger of this and a quarter of
	// its TTL (checkpoint), so a lease is written at most about four times
	// a TTL by checkpoints and as often by the keepalives after them,
	// however many leases a node holds; a lease whose TTL is not above it
	// is never checkpointed. Default 5s.
	CheckpointInterval time.Duration
	// MinTTL is the shortest TTL granted; a shorter request is raised to
	// it (as etcd does). Default 2s.
	MinTTL time.Duration
	// Now is the clock (default time.Now; its monotonic reading is what
	// counts). Tests inject one.
	Now func() time.Time
	// TTLUnit is the unit TTLs are counted in: a TTL of n is n TTLUnits,
	// in requests, answers and records alike. Default time.Second, as
	// etcd counts them; the simulator shortens it so that leases end
	// within its runs. Every node of a fleet must use the same.
	TTLUnit time.Duration
	// Runtime runs the lessor's goroutines and waits (default: real
	// goroutines and the wall clock). See Runtime.
	Runtime Runtime
	// Logger gets the lessor's events. Default slog.Default().
	Logger *slog.Logger
}

// MaxTTL is the longest TTL, in seconds, a lease may be granted (etcd's).
const MaxTTL = 9_000_000_000

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = 100 * time.Millisecond
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 5 * time.Second
	}
	if c.MinTTL <= 0 {
		c.MinTTL = 2 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TTLUnit <= 0 {
		c.TTLUnit = time.Second
	}
	if c.Runtime == nil {
		c.Runtime = goRuntime{}
	}
	return c
}

// Errors of a Lessor (shard's, so that the rpc layer maps them to gRPC
// statuses without importing this package).
var (
	ErrNotFound = shard.ErrLeaseNotFound
	ErrExists   = shard.ErrLeaseExists
	ErrBadTTL   = shard.ErrBadTTL
	ErrNotReady = shard.ErrLeaseNotReady
)

// lease is one lease its home leader counts time for.
type lease struct {
	id   uint64
	home shard.ShardID
	ttl  time.Duration
	// deadline is when the lease expires unless kept alive.
	deadline time.Time
	// stored is the remaining TTL the record holds. Invariant: stored is
	// never below deadline minus now, so a new home leader, which gives
	// the lease stored from when it takes over, never cuts it short.
	stored time.Duration
	// writing is closed when a record write in flight ends (nil: none).
	writing chan struct{}
	// decided: the lease's end is decided (its deadline passed, it was
	// revoked, or its record says it ended); it accepts no keepalive or
	// attach, for good. ending: an end is under way; when one fails part
	// way ending is cleared and the loop's next round starts another.
	// revoked: a revoke decided the end, which then (retried too) waits
	// only for the promises made to attaches. maxPromise is the highest
	// Until this leader promised, maxAttach the highest it promised to an
	// attach.
	decided, ending, revoked bool
	maxPromise, maxAttach    uint64
}

// home is a shard this node leads whose range holds lease records.
type home struct {
	term       uint64
	start, end []byte
}

// Lessor counts time for the leases whose home shards this node leads.
// See the package doc. Safe for concurrent use.
type Lessor struct {
	cfg    Config
	store  Store
	engine Engine
	fleet  Fleet
	oracle Oracle
	log    *slog.Logger

	mu     sync.Mutex
	homes  map[shard.ShardID]*home
	leases map[uint64]*lease
	// base is a recent oracle timestamp and the local time before the
	// call that returned it began, from which promises are computed.
	base     tso.Timestamp
	baseTime time.Time

	metrics metrics
	// runCtx ends when Close is called; done is closed when Run returns.
	runCtx  context.Context
	stopRun context.CancelFunc
	done    chan struct{}
}

// metrics counts what a Lessor did.
type metrics struct {
	granted, expired, revoked, kept, checkpoints atomic.Uint64
}

// Counters are a Lessor's counts since it started: leases granted,
// expired and revoked, keepalives acknowledged, and leases checkpointed.
type Counters struct {
	Granted, Expired, Revoked, KeptAlive, Checkpointed uint64
}

// New returns a Lessor over the node's store, engine, fleet client and
// oracle. Run starts it.
func New(cfg Config, store Store, engine Engine, fleet Fleet, oracle Oracle) *Lessor {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Lessor{cfg: cfg, store: store, engine: engine, fleet: fleet, oracle: oracle, log: cfg.Logger,
		homes: map[shard.ShardID]*home{}, leases: map[uint64]*lease{}, runCtx: ctx, stopRun: cancel, done: make(chan struct{})}
}

// Run runs the lessor's loop until Close: a round (Step) every
// Config.Interval on the Runtime's clock.
func (ls *Lessor) Run() {
	defer close(ls.done)
	for {
		ls.Step()
		if ls.cfg.Runtime.Sleep(ls.runCtx, ls.cfg.Interval) != nil {
			return
		}
	}
}

// Close stops the loop and waits for it (Run must have been started).
func (ls *Lessor) Close() {
	ls.stopRun()
	<-ls.done
}

// Count returns how many leases this node counts time for.
func (ls *Lessor) Count() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.leases)
}

// Holds reports whether this lessor counts lease id's time (it leads
// the lease's home and loaded its leases, and the lease has not ended).
func (ls *Lessor) Holds(id uint64) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.leases[id]
	return l != nil && !l.decided
}

// Counters returns the lessor's counters.
func (ls *Lessor) Counters() Counters {
	m := &ls.metrics
	return Counters{Granted: m.granted.Load(), Expired: m.expired.Load(), Revoked: m.revoked.Load(),
		KeptAlive: m.kept.Load(), Checkpointed: m.checkpoints.Load()}
}

// Step is one round of Run's loop: refresh the timestamp base, follow the
// shards this node leads, start the end of every lease whose deadline
// passed, and checkpoint. It returns once the round's checkpoints were
// written; the ends run on goroutines of the Runtime. Run calls it every
// Config.Interval; a caller driving the lessor itself (instead of Run)
// calls it as often, from one goroutine at a time.
func (ls *Lessor) Step() {
	ctx, cancel := ls.cfg.Runtime.WithTimeout(context.Background(), 10*ls.cfg.Interval+time.Second)
	defer cancel()
	before := ls.cfg.Now()
	if ts, err := ls.oracle.Next(ctx, 1); err == nil {
		ls.mu.Lock()
		ls.base, ls.baseTime = ts, before
		ls.mu.Unlock()
	}
	ls.followHomes(ctx)
	now := ls.cfg.Now()
	var due []*lease
	checkpoints := map[shard.ShardID][]*lease{}
	ls.mu.Lock()
	for _, l := range ls.leases {
		switch {
		case l.ending:
		case l.decided || !now.Before(l.deadline):
			l.decided, l.ending = true, true
			due = append(due, l)
		case l.writing == nil && l.ttl > ls.cfg.CheckpointInterval && l.stored-l.deadline.Sub(now) >= ls.checkpoint(l):
			checkpoints[l.home] = append(checkpoints[l.home], l)
		}
	}
	ls.mu.Unlock()
	// In ID order, so that a deterministic Runtime replays the round.
	slices.SortFunc(due, func(a, b *lease) int { return cmp.Compare(a.id, b.id) })
	for _, l := range due {
		ls.cfg.Runtime.Go("lease expire", func() { ls.expire(l) })
	}
	for _, id := range slices.Sorted(maps.Keys(checkpoints)) {
		ll := checkpoints[id]
		slices.SortFunc(ll, func(a, b *lease) int { return cmp.Compare(a.id, b.id) })
		ls.writeCheckpoints(ctx, id, ll)
	}
}

// checkpoint returns lease l's checkpoint interval: the most a change of
// home leader may extend it (see Config.CheckpointInterval).
func (ls *Lessor) checkpoint(l *lease) time.Duration {
	return max(ls.cfg.CheckpointInterval, l.ttl/4)
}

// followHomes loads the leases of every shard this node began to lead
// (or leads in a new term, or whose range changed), and forgets those of
// shards it ceased to lead.
//
// It runs every Config.Interval, so it looks only at the replicas whose
// range holds lease records (one shard, or a few after splits), never at
// every replica of the node: a node holding 10,000 idle replicas used 16%
// of a core, 70% of it here, when this copied every descriptor and every
// group's summary ten times a second.
func (ls *Lessor) followHomes(ctx context.Context) {
	recStart, recEnd := syskeys.LeaseRecordSpan()
	want := map[shard.ShardID]*home{}
	for _, d := range ls.store.DescriptorsOverlapping(recStart, recEnd) {
		if s, ok := ls.engine.Summary(d.ShardID); ok && s.Leading {
			want[d.ShardID] = &home{term: s.Term, start: d.Start, end: d.End}
		}
	}
	ls.mu.Lock()
	var load []shard.ShardID
	for id, h := range ls.homes {
		if w, ok := want[id]; !ok || w.term != h.term || !bytes.Equal(w.start, h.start) || !bytes.Equal(w.end, h.end) {
			ls.dropLocked(id)
		}
	}
	for id := range want {
		if ls.homes[id] == nil {
			load = append(load, id)
		}
	}
	ls.mu.Unlock()
	slices.Sort(load)
	for _, id := range load {
		if err := ls.load(ctx, id, want[id]); err != nil {
			ls.log.Info("lease: loading the leases of a shard", "shard", id, "err", err)
		}
	}
}

// dropLocked forgets home id and its leases. Their end, if under way,
// goes on and fails at its next write if this node no longer leads.
func (ls *Lessor) dropLocked(id shard.ShardID) {
	delete(ls.homes, id)
	for lid, l := range ls.leases {
		if l.home == id {
			delete(ls.leases, lid)
		}
	}
}

// load reads the lease records of shard id (led in h.term) and starts
// counting their time: each gets at least its stored remaining TTL from
// now. Records of ended leases resume their end.
func (ls *Lessor) load(ctx context.Context, id shard.ShardID, h *home) error {
	recStart, recEnd := syskeys.LeaseRecordSpan()
	start, end := clip(h.start, h.end, recStart, recEnd)
	var found []*lease
	var ended []uint64
	for {
		kvs, more, _, err := ls.store.Scan(ctx, id, shard.Epoch{}, start, end, 1000, multiraft.ReadLinearizable)
		if err != nil {
			return err
		}
		now := ls.cfg.Now()
		for _, kv := range kvs {
			lid, ok := syskeys.LeaseFromRecordKey(kv.Key)
			if !ok {
				continue
			}
			r, err := syskeys.DecodeLeaseRecord(kv.Value)
			if err != nil {
				ls.log.Error("lease: a malformed lease record", "lease", lid, "err", err)
				continue
			}
			rem := time.Duration(r.RemainingMs) * time.Millisecond
			l := &lease{id: lid, home: id, ttl: time.Duration(r.TTL) * ls.cfg.TTLUnit, deadline: now.Add(rem), stored: rem, decided: r.Ended, ending: r.Ended}
			found = append(found, l)
			if r.Ended {
				ended = append(ended, lid)
			}
		}
		if !more || len(kvs) == 0 {
			break
		}
		start = append(bytes.Clone(kvs[len(kvs)-1].Key), 0)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.homes[id] != nil {
		return nil
	}
	ls.homes[id] = h
	for _, l := range found {
		if ls.leases[l.id] == nil {
			ls.leases[l.id] = l
		}
	}
	for _, lid := range ended {
		l := ls.leases[lid]
		ls.cfg.Runtime.Go("lease finish", func() { ls.finish(l) })
	}
	return nil
}

// leaseOf returns lease id if this node counts its time in home shard.
// A node that does not hold the home's leases answers NotLeader (with the
// leader it knows, so the router follows it) unless it leads the shard,
// having just become its leader: then ErrNotReady, retried shortly.
func (ls *Lessor) leaseOf(shardID shard.ShardID, id uint64) (*lease, error) {
	h, err := ls.homeLocked(shardID)
	if err != nil {
		return nil, err
	}
	if !inSpan(syskeys.LeaseRecordKey(id), h.start, h.end) {
		// The shard split (or the router's route is stale): the router
		// reloads the route and finds the lease's home.
		return nil, fmt.Errorf("%w: lease %d's record, shard %d [%q, %q)", shard.ErrKeyNotInShard, id, shardID, h.start, h.end)
	}
	l := ls.leases[id]
	if l == nil || l.home != shardID || l.decided {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	return l, nil
}

// homeLocked returns home shardID if this node counts the time of its
// leases now: it leads the shard in the term in which it loaded them.
// Otherwise it answers as leaseOf does: not leader, or not ready.
//
// Leading the shard is not enough. A node that lost the lead and won it
// back between two rounds of followHomes still holds the leases it
// loaded in its earlier term, while the leader between may have granted,
// kept alive, checkpointed or ended any of them: answering from them told
// a client that a lease granted by the leader between did not exist
// (found by the simulator, seed 600 of its fleet runs), and could
// acknowledge a keepalive without writing the full TTL to a record the
// leader between had checkpointed lower. Until followHomes reloads the
// home in the new term it is not ready.
func (ls *Lessor) homeLocked(shardID shard.ShardID) (*home, error) {
	if h := ls.homes[shardID]; h != nil {
		if s, ok := ls.engine.Summary(shardID); ok && s.Leading && s.Term == h.term {
			return h, nil
		}
	}
	if err := ls.engine.CheckLeader(shardID); err != nil {
		return nil, err
	}
	return nil, ErrNotReady
}

// leaseConfirmed returns lease id as leaseOf does, but answers ErrNotFound
// only once a read barrier confirmed, after the call arrived, that this
// node still leads the home: a leader deposed without knowing it (cut off
// from the others) does not hold the leases its successor granted, and
// told a client keeping one alive that it did not exist (found by the
// simulator, seed 600 of its fleet runs). Finding the lease needs no
// barrier: the caller confirms what it does with it.
func (ls *Lessor) leaseConfirmed(ctx context.Context, shardID shard.ShardID, id uint64) (*lease, error) {
	ls.mu.Lock()
	l, err := ls.leaseOf(shardID, id)
	ls.mu.Unlock()
	if !errors.Is(err, ErrNotFound) {
		return l, err
	}
	if err := ls.confirmLeader(ctx, shardID); err != nil {
		return nil, err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.leaseOf(shardID, id)
}

// confirmLeader returns once this node's leadership of shardID was
// confirmed after the call (by its Raft leader lease, or a read barrier).
func (ls *Lessor) confirmLeader(ctx context.Context, shardID shard.ShardID) error {
	if ls.engine.LeaseHeld(shardID) {
		return nil
	}
	return ls.engine.ReadBarrier(ctx, shardID, multiraft.ReadLease)
}

// inSpan reports whether key is in [start, end) (an empty end is +inf).
func inSpan(key, start, end []byte) bool {
	return bytes.Compare(key, start) >= 0 && (len(end) == 0 || bytes.Compare(key, end) < 0)
}

// checkHome refuses a request for lease id sent to a shard that is not
// its home.
func (ls *Lessor) checkHome(shardID shard.ShardID, id uint64) error {
	key := syskeys.LeaseRecordKey(id)
	d, err := ls.store.Descriptor(shardID)
	if err != nil {
		return err
	}
	if !d.ContainsKey(key) {
		return fmt.Errorf("%w: lease %d's record %q, shard %s", shard.ErrKeyNotInShard, id, key, &d)
	}
	return nil
}

// writeRecord writes lease id's record through its home shard.
func (ls *Lessor) writeRecord(ctx context.Context, home shard.ShardID, id uint64, r syskeys.LeaseRecord) (uint64, error) {
	res, err := ls.store.Execute(ctx, home, &shard.Command{Kind: shard.KindPut, Key: syskeys.LeaseRecordKey(id), Value: r.AppendEncoded(nil)})
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// Grant grants a lease of ttl seconds in home shard shardID, with ID id
// (0: a fresh one). If the fresh ID's home is another shard it returns
// the ID and redirect true, granting nothing.
func (ls *Lessor) Grant(ctx context.Context, shardID shard.ShardID, id uint64, ttlSeconds int64) (gotID uint64, ttl int64, redirect bool, rev uint64, err error) {
	if ttlSeconds <= 0 || ttlSeconds > MaxTTL {
		return 0, 0, false, 0, fmt.Errorf("%w: %d seconds (1 to %d)", ErrBadTTL, ttlSeconds, int64(MaxTTL))
	}
	if minS := int64((ls.cfg.MinTTL + ls.cfg.TTLUnit - 1) / ls.cfg.TTLUnit); ttlSeconds < minS {
		ttlSeconds = minS
	}
	if id == 0 {
		ts, err := ls.oracle.Next(ctx, 1)
		if err != nil {
			return 0, 0, false, 0, err
		}
		id = uint64(ts)
		if err := ls.checkHome(shardID, id); err != nil {
			return id, ttlSeconds, true, 0, nil
		}
	}
	if err := ls.checkHome(shardID, id); err != nil {
		return 0, 0, false, 0, err
	}
	ls.mu.Lock()
	if _, err := ls.homeLocked(shardID); err != nil {
		ls.mu.Unlock()
		return 0, 0, false, 0, err
	}
	if ls.leases[id] != nil {
		ls.mu.Unlock()
		return 0, 0, false, 0, fmt.Errorf("%w: %d", ErrExists, id)
	}
	ls.mu.Unlock()
	ttlD := time.Duration(ttlSeconds) * ls.cfg.TTLUnit
	rec := syskeys.LeaseRecord{TTL: ttlSeconds, RemainingMs: ttlD.Milliseconds()}
	res, err := ls.store.Execute(ctx, shardID, &shard.Command{Kind: shard.KindCompareAndSwap, Key: syskeys.LeaseRecordKey(id), ExpectAbsent: true, Value: rec.AppendEncoded(nil)})
	if err != nil {
		return 0, 0, false, 0, err
	}
	if !res.Succeeded {
		return 0, 0, false, 0, fmt.Errorf("%w: %d", ErrExists, id)
	}
	ls.mu.Lock()
	if ls.homes[shardID] != nil && ls.leases[id] == nil {
		ls.leases[id] = &lease{id: id, home: shardID, ttl: ttlD, deadline: ls.cfg.Now().Add(ttlD), stored: ttlD}
	}
	ls.mu.Unlock()
	ls.metrics.granted.Add(1)
	return id, ttlSeconds, false, res.Revision, nil
}

// KeepAlive restarts lease id's TTL and returns it, in seconds. The
// home's leadership is confirmed first, so a deposed leader never
// acknowledges a keepalive its successor did not count.
func (ls *Lessor) KeepAlive(ctx context.Context, shardID shard.ShardID, id uint64) (int64, error) {
	l, err := ls.leaseConfirmed(ctx, shardID, id)
	if err != nil {
		return 0, err
	}
	if err := ls.confirmLeader(ctx, shardID); err != nil {
		return 0, err
	}
	for {
		ls.mu.Lock()
		if l.decided {
			ls.mu.Unlock()
			return 0, fmt.Errorf("%w: %d", ErrNotFound, id)
		}
		if ls.leases[id] != l || !ls.countsLocked(l) {
			// The lease was dropped with its home while the barrier ran
			// (this node's leadership or the home's range changed, as a
			// split does), or reloaded, or is about to be (this node
			// leads its home in a later term than it loaded it in): it
			// did not end. Answer as a call arriving now would (not
			// leader, not ready, key not in shard: the router retries),
			// or keep the reloaded lease alive. Answering ErrNotFound
			// here told a client keeping a live lease alive that it had
			// ended (found by the simulator: a split of the home under a
			// keepalive).
			_, err := ls.leaseOf(shardID, id)
			ls.mu.Unlock()
			if err != nil {
				return 0, err
			}
			return ls.KeepAlive(ctx, shardID, id)
		}
		if w := l.writing; w != nil {
			// A checkpoint is being written: it may store less than the
			// TTL this keepalive restarts, so reset after it.
			ls.mu.Unlock()
			if err := ls.cfg.Runtime.WaitClosed(ctx, w); err != nil {
				return 0, err
			}
			continue
		}
		l.deadline = ls.cfg.Now().Add(l.ttl)
		if l.stored >= l.ttl {
			ls.mu.Unlock()
			ls.metrics.kept.Add(1)
			return int64(l.ttl / ls.cfg.TTLUnit), nil
		}
		// The record holds less than the TTL restarted now: write the
		// full TTL before answering, or a leader change could cut the
		// lease short.
		w := make(chan struct{})
		l.writing = w
		ls.mu.Unlock()
		_, err := ls.writeRecord(ctx, shardID, id, syskeys.LeaseRecord{TTL: int64(l.ttl / ls.cfg.TTLUnit), RemainingMs: l.ttl.Milliseconds()})
		ls.mu.Lock()
		if err == nil {
			l.stored = l.ttl
		}
		l.writing = nil
		ls.mu.Unlock()
		close(w)
		if err != nil {
			return 0, err
		}
		ls.metrics.kept.Add(1)
		return int64(l.ttl / ls.cfg.TTLUnit), nil
	}
}

// writeCheckpoints writes the remaining TTL of leases ll, all of home id, in
// batches of one Raft command each.
func (ls *Lessor) writeCheckpoints(ctx context.Context, id shard.ShardID, ll []*lease) {
	const perBatch = 128
	for len(ll) > 0 {
		n := min(len(ll), perBatch)
		part := ll[:n]
		ll = ll[n:]
		ops := make([]shard.Op, 0, n)
		stored := make([]time.Duration, 0, n)
		var waits []chan struct{}
		ls.mu.Lock()
		now := ls.cfg.Now()
		var mine []*lease
		for _, l := range part {
			if l.decided || l.writing != nil || ls.leases[l.id] != l {
				continue
			}
			rem := max(l.deadline.Sub(now), 0).Round(time.Millisecond) + time.Millisecond
			w := make(chan struct{})
			l.writing = w
			waits = append(waits, w)
			mine = append(mine, l)
			stored = append(stored, rem)
			ops = append(ops, shard.Op{Key: syskeys.LeaseRecordKey(l.id), Value: syskeys.LeaseRecord{TTL: int64(l.ttl / ls.cfg.TTLUnit), RemainingMs: rem.Milliseconds()}.AppendEncoded(nil)})
		}
		ls.mu.Unlock()
		if len(ops) == 0 {
			continue
		}
		_, err := ls.store.Execute(ctx, id, &shard.Command{Kind: shard.KindBatch, Ops: ops})
		ls.mu.Lock()
		for i, l := range mine {
			if err == nil {
				l.stored = stored[i]
			}
			l.writing = nil
		}
		ls.mu.Unlock()
		for _, w := range waits {
			close(w)
		}
		if err != nil {
			ls.log.Debug("lease: checkpoint", "shard", id, "err", err)
			return
		}
		ls.metrics.checkpoints.Add(uint64(len(mine)))
	}
}

// promiseLocked returns the revision through which l is surely alive:
// the timestamp base plus half the time l has left. Its end is decided
// no earlier than its deadline on this node's clock and gets a revision
// from the oracle after that, so with the oracle's clock running at
// least half as fast as this one the end's revision is above the
// promise (see the package doc); for this leader's own promises the end
// also waits until the oracle passed the highest (see end).
//
// A promise to an attach is at most attachPromise ahead: Revoke waits
// for those (a put carrying one may still arrive), not for the promises
// to reads.
func (ls *Lessor) promiseLocked(l *lease, attach bool) uint64 {
	if ls.base == 0 {
		return 0
	}
	left := l.deadline.Sub(ls.cfg.Now()) / promiseShare
	if attach {
		left = min(left, attachPromise)
	}
	if left <= time.Millisecond {
		return 0
	}
	p := uint64(ls.base) + uint64(left.Milliseconds())<<tso.LogicalBits
	l.maxPromise = max(l.maxPromise, p)
	if attach {
		l.maxAttach = max(l.maxAttach, p)
	}
	return p
}

// promiseShare is the share of a lease's remaining time a promise
// reaches ahead (1/promiseShare): 2 tolerates the oracle's clock running
// at half the rate of the home leader's. A variable so that the model
// test can plant a promise too long.
var promiseShare time.Duration = 2

// attachPromise caps how far ahead a promise to an attach reaches: the
// put carrying it must be stamped within about this long, and a Revoke
// right after an attach waits up to this long.
const attachPromise = 2 * time.Second

// Attach records that key may be attached to lease id (an index key the
// lease's end finds) and returns the revision through which the lease is
// promised alive: a put attaching key carries it, and is refused if
// stamped above it.
func (ls *Lessor) Attach(ctx context.Context, shardID shard.ShardID, id uint64, key []byte) (uint64, error) {
	if _, err := ls.leaseConfirmed(ctx, shardID, id); err != nil {
		return 0, err
	}
	if err := ls.fleet.Put(ctx, syskeys.LeaseIndexKey(id, key)); err != nil {
		return 0, err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l, err := ls.leaseOf(shardID, id)
	if err != nil {
		return 0, err
	}
	p := ls.promiseLocked(l, true)
	if p == 0 {
		return 0, fmt.Errorf("%w: %d is about to expire", ErrNotFound, id)
	}
	return p, nil
}

// Status says whether lease id was alive at rev.
func (ls *Lessor) Status(ctx context.Context, shardID shard.ShardID, id, rev uint64) (Status, error) {
	ls.mu.Lock()
	if l, err := ls.leaseOf(shardID, id); err == nil {
		if p := ls.promiseLocked(l, false); p != 0 && rev <= p {
			ls.mu.Unlock()
			return Status{Alive: true, Until: p}, nil
		}
	}
	ls.mu.Unlock()
	if err := ls.checkHome(shardID, id); err != nil {
		return Status{}, err
	}
	// The record at rev decides: the home resolves rev first, so no end
	// can commit at or below it afterwards.
	kv, found, err := ls.store.GetAt(ctx, shardID, shard.Epoch{}, syskeys.LeaseRecordKey(id), rev)
	if err != nil {
		return Status{}, err
	}
	if !found {
		return Status{Ended: rev}, nil
	}
	r, err := syskeys.DecodeLeaseRecord(kv.Value)
	if err != nil {
		return Status{}, err
	}
	if r.Ended {
		return Status{Ended: kv.ModRevision}, nil
	}
	return Status{Alive: true}, nil
}

// TimeToLive returns lease id's remaining and granted TTL in seconds,
// and with keys the keys attached to it.
func (ls *Lessor) TimeToLive(ctx context.Context, shardID shard.ShardID, id uint64, keys bool) (remaining, granted int64, attached [][]byte, err error) {
	// Confirmed first, as a keepalive is: a deposed leader's count of a
	// lease its successor revoked, or kept alive, is not the lease's, and
	// it lacks the leases its successor granted.
	if err := ls.confirmLeader(ctx, shardID); err != nil {
		return 0, 0, nil, err
	}
	ls.mu.Lock()
	l, err := ls.leaseOf(shardID, id)
	if err == nil {
		left := max(l.deadline.Sub(ls.cfg.Now()), 0)
		remaining = int64((left + ls.cfg.TTLUnit - 1) / ls.cfg.TTLUnit)
		granted = int64(l.ttl / ls.cfg.TTLUnit)
	}
	ls.mu.Unlock()
	if err != nil || !keys {
		return remaining, granted, nil, err
	}
	start, end := syskeys.LeaseIndexSpan(id)
	idx, err := ls.fleet.Keys(ctx, start, end)
	if err != nil {
		return 0, 0, nil, err
	}
	for _, k := range idx {
		key, ok := syskeys.KeyFromLeaseIndex(k)
		if !ok {
			continue
		}
		if at, err := ls.fleet.LeaseOf(ctx, key); err != nil {
			return 0, 0, nil, err
		} else if at == id {
			attached = append(attached, key)
		}
	}
	return remaining, granted, attached, nil
}

// Revoke ends lease id now and deletes its keys before returning the
// revision at which it ended and how many keys it deleted.
//
// A lease whose end is decided but not finished (it expired, or a revoke
// failed part way, as one whose delete was refused does) is not found, but
// only once its keys are gone: Revoke waits for the loop to finish the
// end (or ctx to end). So a client retrying a revoke that failed is told
// ErrNotFound when, as etcd promises, the lease's keys are deleted, not
// while they may still be read.
func (ls *Lessor) Revoke(ctx context.Context, shardID shard.ShardID, id uint64) (uint64, uint64, error) {
	for {
		_, err := ls.leaseConfirmed(ctx, shardID, id)
		if errors.Is(err, ErrNotFound) && ls.endUnderWay(shardID, id) {
			if err := ls.cfg.Runtime.Sleep(ctx, ls.cfg.Interval); err != nil {
				return 0, 0, err
			}
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		break
	}
	ls.mu.Lock()
	l, err := ls.leaseOf(shardID, id)
	if err == nil {
		l.decided, l.ending, l.revoked = true, true, true
	}
	ls.mu.Unlock()
	if err != nil {
		return 0, 0, err
	}
	rev, deleted, err := ls.end(ctx, l, false)
	if err != nil {
		// The loop ends it again (its end is decided: no keepalive
		// revives it). Without this a revoke that failed part way (its
		// record written ended, a delete refused) left the lease ending
		// for good, its keys undeleted until the home's leader changed
		// (found by the simulator).
		ls.retryLater(l)
		return 0, 0, err
	}
	ls.metrics.revoked.Add(1)
	return rev, deleted, err
}

// endUnderWay reports whether this node holds lease id of home shardID
// with its end decided and not finished.
func (ls *Lessor) endUnderWay(shardID shard.ShardID, id uint64) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.leases[id]
	return l != nil && l.home == shardID && l.decided
}

// expire ends lease l, whose deadline passed (or whose revoke failed part
// way), in the background.
func (ls *Lessor) expire(l *lease) {
	ctx, cancel := ls.cfg.Runtime.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ls.mu.Lock()
	revoked := l.revoked
	ls.mu.Unlock()
	if _, _, err := ls.end(ctx, l, !revoked); err != nil {
		ls.log.Debug("lease: ending a lease", "lease", l.id, "revoked", revoked, "err", err)
		ls.retryLater(l)
		return
	}
	if revoked {
		ls.metrics.revoked.Add(1)
	} else {
		ls.metrics.expired.Add(1)
	}
}

// end ends lease l (marked ending): it waits until the oracle passed
// every promise made for l (an expiry), or every promise made to an
// attach (a revoke: a read at a revision between the revoke and the
// deletes is concurrent with the revoke, and may see the keys), writes
// the record as ended at a revision above them, then deletes the attached
// keys and the record.
func (ls *Lessor) end(ctx context.Context, l *lease, expiry bool) (uint64, uint64, error) {
	for {
		if w := func() chan struct{} { ls.mu.Lock(); defer ls.mu.Unlock(); return l.writing }(); w != nil {
			if err := ls.cfg.Runtime.WaitClosed(ctx, w); err != nil {
				return 0, 0, err
			}
			continue
		}
		break
	}
	ls.mu.Lock()
	promised := l.maxAttach
	if expiry {
		promised = l.maxPromise
	}
	ls.mu.Unlock()
	for {
		ts, err := ls.oracle.Next(ctx, 1)
		if err != nil {
			return 0, 0, err
		}
		if uint64(ts) > promised {
			break
		}
		// Ask again at least every 10 ms: the wait is in the oracle's
		// time, which need not run at this clock's rate.
		wait := min(time.Duration(tso.Physical(tso.Timestamp(promised))-tso.Physical(ts)+1)*time.Millisecond, 10*time.Millisecond)
		if err := ls.cfg.Runtime.Sleep(ctx, wait); err != nil {
			return 0, 0, err
		}
	}
	// An end begun under an earlier leadership of this node must not
	// write under a later one, which loaded the lease afresh (with a later
	// deadline, and promises of its own).
	if !ls.current(l) {
		return 0, 0, fmt.Errorf("%w: lease %d: this node's leadership of its home changed", ErrNotFound, l.id)
	}
	rev, err := ls.writeRecord(ctx, l.home, l.id, syskeys.LeaseRecord{TTL: int64(l.ttl / ls.cfg.TTLUnit), Ended: true})
	if err != nil {
		return 0, 0, err
	}
	deleted, err := ls.deleteKeys(ctx, l.home, l.id)
	return rev, deleted, err
}

// current reports whether l is still the lease this node counts (not
// dropped with a leadership it lost, nor replaced by a reload, nor loaded
// in an earlier term than the one in which this node leads its home).
func (ls *Lessor) current(l *lease) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.leases[l.id] == l && ls.countsLocked(l)
}

// countsLocked reports whether this node counts l's time now: the home l
// was loaded with is the one homeLocked answers for.
func (ls *Lessor) countsLocked(l *lease) bool {
	_, err := ls.homeLocked(l.home)
	return err == nil
}

// finish resumes the end of a lease whose record says it ended (found
// by load after a change of home leader). If it fails, the lease is
// handed back to the loop, which ends it again (its deadline is now).
func (ls *Lessor) finish(l *lease) {
	if l == nil {
		return
	}
	ctx, cancel := ls.cfg.Runtime.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := ls.deleteKeys(ctx, l.home, l.id); err != nil {
		ls.log.Debug("lease: finishing an ended lease", "lease", l.id, "err", err)
		ls.retryLater(l)
	}
}

// retryLater hands lease l, whose end failed part way, back to the loop
// if this node still counts its time: the next step ends it again (its
// end stays decided).
func (ls *Lessor) retryLater(l *lease) {
	ls.mu.Lock()
	if ls.leases[l.id] == l {
		l.ending = false
	}
	ls.mu.Unlock()
}

// deleteKeys deletes every key still attached to lease id, its index
// keys, and its record (through home), and forgets the lease. It returns
// how many attached keys it deleted.
func (ls *Lessor) deleteKeys(ctx context.Context, home shard.ShardID, id uint64) (uint64, error) {
	start, end := syskeys.LeaseIndexSpan(id)
	idx, err := ls.fleet.Keys(ctx, start, end)
	if err != nil {
		return 0, err
	}
	// Each key's delete, then its index key's, on endParallelism
	// workers: the keys are on any shards, and each delete waits for its
	// own commit.
	var (
		deleted  atomic.Uint64
		next     atomic.Int64
		firstErr error
		errMu    sync.Mutex
	)
	workers := min(endParallelism, len(idx))
	var running atomic.Int64
	running.Store(int64(workers))
	allDone := make(chan struct{})
	if workers == 0 {
		close(allDone)
	}
	for range workers {
		ls.cfg.Runtime.Go("lease delete", func() {
			defer func() {
				if running.Add(-1) == 0 {
					close(allDone)
				}
			}()
			for i := next.Add(1) - 1; i < int64(len(idx)); i = next.Add(1) - 1 {
				k := idx[i]
				key, ok := syskeys.KeyFromLeaseIndex(k)
				if !ok {
					continue
				}
				did, err := ls.fleet.Delete(ctx, key, id)
				if err == nil {
					if did {
						deleted.Add(1)
					}
					_, err = ls.fleet.Delete(ctx, k, 0)
				}
				if err != nil {
					errMu.Lock()
					firstErr = cmp.Or(firstErr, err)
					errMu.Unlock()
					return
				}
			}
		})
	}
	// The workers end on their own (ctx bounds their calls): wait for
	// all of them whatever ctx says, as they share this call's state.
	_ = ls.cfg.Runtime.WaitClosed(context.Background(), allDone)
	if firstErr != nil {
		return deleted.Load(), firstErr
	}
	if _, err := ls.store.Execute(ctx, home, &shard.Command{Kind: shard.KindDelete, Key: syskeys.LeaseRecordKey(id)}); err != nil {
		return deleted.Load(), err
	}
	ls.mu.Lock()
	if l := ls.leases[id]; l != nil && l.home == home {
		delete(ls.leases, id)
	}
	ls.mu.Unlock()
	return deleted.Load(), nil
}

// endParallelism is how many of an ending lease's keys are deleted at
// once.
const endParallelism = 32

// clip returns [s1, e1) ∩ [s2, e2), which must intersect.
func clip(s1, e1, s2, e2 []byte) (start, end []byte) {
	start = s1
	if bytes.Compare(s2, start) > 0 {
		start = s2
	}
	end = e1
	if len(end) == 0 || len(e2) != 0 && bytes.Compare(e2, end) < 0 {
		end = e2
	}
	return start, end
}
