package shard

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// Engine is what a Store needs of the multiraft engine. *multiraft.Engine
// implements it; see its methods for their contracts. Propose must not
// retain cmd after it returns.
type Engine interface {
	DB() *pebble.DB
	CreateGroup(group multiraft.GroupID, replica multiraft.ReplicaID, m multiraft.Membership, init func(b *pebble.Batch) error) error
	ProposeFuture(group multiraft.GroupID, cmd []byte) *multiraft.Future
	CheckLeader(group multiraft.GroupID) error
	ReadFuture(group multiraft.GroupID, mode multiraft.ReadMode) *multiraft.Future
}

var _ Engine = (*multiraft.Engine)(nil)

// Store serves the key-value API of every shard replica hosted on one node,
// over the engine. There is one per node. Its construction has two phases,
// because the engine needs the Store's state machine constructor before it
// opens and the Store needs the engine to serve:
//
//	store, err := shard.NewStore(cfg)
//	engine, err := multiraft.Open(multiraft.Config{..., NewStateMachine: store.StateMachineFunc()})
//	store.SetEngine(engine)
//
// Until SetEngine, requests fail with ErrNotReady. The Store keeps a
// registry of the live state machines (filled as the engine builds them)
// to read descriptors. All methods are safe for concurrent use.
//
// Writes return the engine's errors unchanged besides this package's: a
// *multiraft.NotLeaderError or multiraft.ErrProposalDropped means the write
// surely did not apply; multiraft.ErrAmbiguous or a context error means it
// may have (retry only with the same ClientID and Seq).
type Store struct {
	cfg   Config // defaults applied
	stamp stamper

	// layout counts the changes of the registry and of its replicas'
	// descriptors: a replica registered or unregistered, a descriptor
	// replaced. Each change is made before it is counted.
	layout atomic.Uint64
	// overlapCache holds DescriptorsOverlapping's last answer: which
	// state machines overlapped span as of layout gen.
	overlapCache struct {
		sync.Mutex
		gen        uint64
		start, end []byte
		sms        []*StateMachine
	}

	mu struct {
		sync.RWMutex
		engine Engine
		shards map[ShardID]*StateMachine
		// creating holds the descriptors of shards CreateShard is
		// bootstrapping, for the overlap check.
		creating map[ShardID]*Descriptor
		// feeds holds the watch feeds of the shards with watchers here.
		feeds map[ShardID]*feed
	}
	// resolving holds the Resolve in flight per shard (see Resolve).
	resolving struct {
		sync.Mutex
		calls map[ShardID]*resolveCall
	}
	// gc holds, per shard, where the next collection pass resumes (see
	// CollectGarbage).
	gc struct {
		sync.Mutex
		cursors map[ShardID]GCCursor
	}
}

// NewStore returns a Store using cfg, which must be valid and must be the
// same on every node, stamping writes with revisions from oracle (see
// Oracle).
func NewStore(cfg Config, oracle Oracle) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if oracle == nil {
		return nil, errors.New("shard: a store needs an oracle for its revisions")
	}
	s := &Store{cfg: cfg.withDefaults(), stamp: stamper{oracle: oracle}}
	s.mu.shards = make(map[ShardID]*StateMachine)
	s.mu.creating = make(map[ShardID]*Descriptor)
	s.mu.feeds = make(map[ShardID]*feed)
	s.resolving.calls = make(map[ShardID]*resolveCall)
	s.gc.cursors = make(map[ShardID]GCCursor)
	return s, nil
}

// StateMachineFunc returns the constructor to set as the engine's
// Config.NewStateMachine. Every state machine it builds is registered with
// the Store (replacing an earlier one of the same shard, as after a
// snapshot) and unregistered when destroyed.
func (s *Store) StateMachineFunc() multiraft.NewStateMachineFunc {
	return func(group multiraft.GroupID, replica multiraft.ReplicaID, r pebble.Reader) (multiraft.StateMachine, error) {
		sm, err := NewStateMachine(s.cfg, group, replica, r)
		if err != nil {
			return nil, err
		}
		sm.onDestroy = s.unregister
		sm.onDescriptor = s.layoutChanged
		s.mu.Lock()
		s.mu.shards[group] = sm
		s.layoutChanged()
		if f := s.mu.feeds[group]; f != nil {
			// A snapshot replaced the replica's state: its watchers catch
			// up from the new state.
			sm.feed.Store(f)
			f.reset(sm.Published())
		}
		s.mu.Unlock()
		return sm, nil
	}
}

// SetEngine connects the Store to the engine that was opened with its
// StateMachineFunc. Call it once, before serving; it panics when e is nil
// or an engine is set already. The two steps are a real cycle (the
// engine needs the Store's constructor before it opens), so they cannot
// be one constructor.
func (s *Store) SetEngine(e Engine) {
	if e == nil {
		panic("shard: Store.SetEngine with a nil Engine")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.engine != nil {
		panic("shard: Store.SetEngine called twice")
	}
	s.mu.engine = e
}

func (s *Store) unregister(sm *StateMachine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.shards[sm.shard] == sm {
		delete(s.mu.shards, sm.shard)
		s.layoutChanged()
		if f := s.mu.feeds[sm.shard]; f != nil {
			f.fail(fmt.Errorf("%w: shard %d was removed from this node", ErrShardNotFound, sm.shard))
		}
	}
}

// lookup returns the engine and the initialised state machine of shard,
// with its current descriptor.
func (s *Store) lookup(shard ShardID) (Engine, *StateMachine, *Descriptor, error) {
	s.mu.RLock()
	e, sm := s.mu.engine, s.mu.shards[shard]
	s.mu.RUnlock()
	if e == nil {
		return nil, nil, nil, ErrNotReady
	}
	if sm == nil {
		return nil, nil, nil, fmt.Errorf("%w: %d", ErrShardNotFound, shard)
	}
	d := sm.descriptor()
	if d == nil || sm.destroyed.Load() {
		return nil, nil, nil, fmt.Errorf("%w: %d is not initialised on this node", ErrShardNotFound, shard)
	}
	return e, sm, d, nil
}

// stillServes reports whether sm is still the shard's live state machine
// and its descriptor still covers [start, end) (a point read passes
// end = nil and point = true).
func (s *Store) stillServes(sm *StateMachine, start, end []byte, point bool) error {
	s.mu.RLock()
	live := s.mu.shards[sm.shard] == sm
	s.mu.RUnlock()
	d := sm.descriptor()
	if !live || d == nil || sm.destroyed.Load() {
		return fmt.Errorf("%w: %d was removed during the read", ErrShardNotFound, sm.shard)
	}
	if point && !d.ContainsKey(start) || !point && !d.ContainsRange(start, end) {
		return fmt.Errorf("%w: shard %d changed to %s during the read", ErrKeyNotInShard, sm.shard, d)
	}
	return nil
}

// Descriptor returns a copy of the descriptor of shard's replica on this
// node, or ErrShardNotFound.
func (s *Store) Descriptor(shard ShardID) (Descriptor, error) {
	s.mu.RLock()
	sm := s.mu.shards[shard]
	s.mu.RUnlock()
	if sm == nil {
		return Descriptor{}, fmt.Errorf("%w: %d", ErrShardNotFound, shard)
	}
	d, ok := sm.Descriptor()
	if !ok {
		return Descriptor{}, fmt.Errorf("%w: %d is not initialised on this node", ErrShardNotFound, shard)
	}
	return d, nil
}

// DescriptorsOverlapping returns copies of the descriptors of the
// initialised shard replicas on this node whose range overlaps [start,
// end) (an empty end is +inf), sorted by ShardID. Only those are copied:
// a caller that asks often about a small span (the lessor, about its
// lease records, ten times a second) pays a pointer load and two key
// comparisons for each other replica, where Descriptors would copy every
// descriptor of the node.
//
// While no replica is registered or unregistered and no descriptor
// changes, a call with the span of the call before reuses its list of
// replicas instead of going over every one: the answer can then miss only
// a change made during the call, as any answer might.
func (s *Store) DescriptorsOverlapping(start, end []byte) []Descriptor {
	span := Descriptor{Start: start, End: end}
	c := &s.overlapCache
	c.Lock()
	if gen := s.layout.Load(); c.sms == nil || gen != c.gen || !bytes.Equal(start, c.start) || !bytes.Equal(end, c.end) {
		// gen is read before the registry: a change counted after it
		// makes the next call look again.
		c.gen, c.start, c.end = gen, bytes.Clone(start), bytes.Clone(end)
		c.sms = c.sms[:0]
		s.mu.RLock()
		for _, sm := range s.mu.shards {
			if d := sm.descriptor(); d != nil && d.Overlaps(&span) {
				c.sms = append(c.sms, sm)
			}
		}
		s.mu.RUnlock()
		slices.SortFunc(c.sms, func(a, b *StateMachine) int { return cmp.Compare(a.shard, b.shard) })
		if c.sms == nil {
			c.sms = []*StateMachine{} // an answer of none is cached too
		}
	}
	var ds []Descriptor
	for _, sm := range c.sms {
		if d := sm.descriptor(); d != nil && d.Overlaps(&span) {
			ds = append(ds, d.Clone())
		}
	}
	c.Unlock()
	return ds
}

// layoutChanged counts a change of the registry or of a descriptor.
func (s *Store) layoutChanged() { s.layout.Add(1) }

// Descriptors returns copies of the descriptors of every initialised shard
// replica on this node, sorted by ShardID.
func (s *Store) Descriptors() []Descriptor {
	s.mu.RLock()
	sms := make([]*StateMachine, 0, len(s.mu.shards))
	for _, sm := range s.mu.shards {
		sms = append(sms, sm)
	}
	s.mu.RUnlock()
	ds := make([]Descriptor, 0, len(sms))
	for _, sm := range sms {
		if d, ok := sm.Descriptor(); ok {
			ds = append(ds, d)
		}
	}
	slices.SortFunc(ds, func(a, b Descriptor) int { return cmp.Compare(a.ShardID, b.ShardID) })
	return ds
}

// CreateShard bootstraps this node's replica of a new shard described by
// desc (every replica in desc.Replicas must be created the same way). It
// fails with ErrRangeOverlap if another replica on this node owns part of
// desc's range.
func (s *Store) CreateShard(desc Descriptor, replica multiraft.ReplicaID) error {
	if err := desc.Validate(); err != nil {
		return err
	}
	s.mu.RLock()
	e := s.mu.engine
	s.mu.RUnlock()
	if e == nil {
		return ErrNotReady
	}
	// Concurrent bootstraps see each other's ranges; the engine runs init
	// under its layout lock, so no snapshot installs a range between this
	// check and the commit.
	s.mu.Lock()
	s.mu.creating[desc.ShardID] = &desc
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.creating, desc.ShardID)
		s.mu.Unlock()
	}()
	initial := InitialState(desc)
	return e.CreateGroup(desc.ShardID, replica, desc.Membership(), func(b *pebble.Batch) error {
		if o := s.overlapping(&desc); o != nil {
			return fmt.Errorf("%w: shard %s overlaps the replica of %s on this node", ErrRangeOverlap, &desc, o)
		}
		return initial(b)
	})
}

// overlapping returns the descriptor of a replica on this node (or being
// bootstrapped on it), of another shard than d's, whose range overlaps
// d's, or nil.
func (s *Store) overlapping(d *Descriptor) *Descriptor {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id, sm := range s.mu.shards {
		if o := sm.descriptor(); id != d.ShardID && o != nil && !sm.destroyed.Load() && o.Overlaps(d) {
			return o
		}
	}
	for id, o := range s.mu.creating {
		if id != d.ShardID && o.Overlaps(d) {
			return o
		}
	}
	return nil
}

// Execute proposes cmd to shard and waits until it applied. It fails fast,
// before anything enters the log, if cmd breaks a limit or does not fit
// this replica's descriptor (range, epoch, split validity); Apply checks
// again against the descriptor current when the command applies. The
// returned Result is read-only and may be shared.
func (s *Store) Execute(ctx context.Context, shard ShardID, cmd *Command) (*Result, error) {
	p := s.Start(shard, cmd)
	return p.Wait(ctx)
}

// Start is Execute without the wait: it makes the same checks, proposes
// cmd, and returns at once. A server with many commands in hand (a batch
// of client requests) starts them all, then waits for each, with no
// goroutine per command. A write (Put, Delete, CompareAndSwap, Batch) is
// proposed once the stamper gave it its revision (see Oracle); Start
// overwrites cmd.Revision's encoding, not cmd.
func (s *Store) Start(shard ShardID, cmd *Command) Pending {
	if err := cmd.checkLimits(&s.cfg); err != nil {
		return Pending{err: err}
	}
	e, _, d, err := s.lookup(shard)
	if err != nil {
		return Pending{err: err}
	}
	if err := cmd.checkAgainst(d); err != nil {
		return Pending{err: err}
	}
	if !cmd.Kind.stamped() {
		return Pending{f: e.ProposeFuture(shard, cmd.AppendEncoded(nil)), shard: shard, kind: cmd.Kind}
	}
	// A follower refuses at once, without asking the oracle for a revision.
	if err := e.CheckLeader(shard); err != nil {
		return Pending{err: err}
	}
	w := &stampedWrite{shard: shard, e: e, cmd: cmd.AppendEncoded(nil), done: make(chan struct{})}
	s.stamp.add(w)
	return Pending{w: w, shard: shard, kind: cmd.Kind}
}

// Pending is a command Start proposed (or refused).
type Pending struct {
	f     *multiraft.Future
	w     *stampedWrite // a write, until it is stamped and proposed
	err   error
	shard ShardID
	kind  CommandKind
}

// Wait waits until the command applied, or ctx ends, and returns what
// Execute would have.
func (p Pending) Wait(ctx context.Context) (*Result, error) {
	if p.err != nil {
		return nil, p.err
	}
	if p.w != nil {
		select {
		case <-p.w.done:
		case <-ctx.Done():
			// It may still be stamped and proposed: ambiguous, like any
			// write whose wait ended early.
			return nil, ctx.Err()
		}
		if p.w.err != nil {
			return nil, p.w.err
		}
		p.f = p.w.f
	}
	res, err := p.f.Wait(ctx)
	if err != nil {
		return nil, err
	}
	switch r := res.(type) {
	case *Result:
		return r, nil
	case error:
		return nil, r
	}
	panic(fmt.Sprintf("shard: applying a %s to shard %d returned %T", p.kind, p.shard, res))
}

// Put sets key to value in shard.
func (s *Store) Put(ctx context.Context, shard ShardID, h Header, key, value []byte) error {
	_, err := s.Execute(ctx, shard, &Command{Kind: KindPut, Header: h, Key: key, Value: value})
	return err
}

// Delete deletes key from shard; deleting an absent key succeeds.
func (s *Store) Delete(ctx context.Context, shard ShardID, h Header, key []byte) error {
	_, err := s.Execute(ctx, shard, &Command{Kind: KindDelete, Header: h, Key: key})
	return err
}

// CompareAndSwap sets key to value if it currently holds expected, or, with
// expectAbsent (and a nil expected), if it does not exist. A comparison
// that fails is not an error: the Result says Succeeded false and carries
// the current value (Found, Value).
func (s *Store) CompareAndSwap(ctx context.Context, shard ShardID, h Header, key, expected []byte, expectAbsent bool, value []byte) (Result, error) {
	res, err := s.Execute(ctx, shard, &Command{
		Kind: KindCompareAndSwap, Header: h, Key: key, Expected: expected, ExpectAbsent: expectAbsent, Value: value,
	})
	if err != nil {
		return Result{}, err
	}
	return *res, nil
}

// Batch applies ops atomically and in order; every key must be in shard.
func (s *Store) Batch(ctx context.Context, shard ShardID, h Header, ops []Op) error {
	_, err := s.Execute(ctx, shard, &Command{Kind: KindBatch, Header: h, Ops: ops})
	return err
}

// Split splits shard at key: the shard keeps [Start, key) and a new shard
// newShard gets [key, End), with one replica per current replica on the
// same node, named by newReplicas. The caller allocates the new IDs. It
// returns copies of both descriptors after the split.
func (s *Store) Split(ctx context.Context, shard ShardID, h Header, key []byte, newShard ShardID, newReplicas []SplitReplica) (left, right Descriptor, err error) {
	res, err := s.Execute(ctx, shard, &Command{
		Kind: KindSplit, Header: h, Key: key, NewShard: newShard, NewReplicas: newReplicas,
	})
	if err != nil {
		return Descriptor{}, Descriptor{}, err
	}
	if res.Left == nil || res.Right == nil {
		panic(fmt.Sprintf("shard: split of shard %d returned no descriptors", shard))
	}
	return res.Left.Clone(), res.Right.Clone(), nil
}

// checkReadEpoch checks a read's epoch (Version only; zero skips) against d.
func checkReadEpoch(d *Descriptor, epoch Epoch) error {
	if !epoch.IsZero() && epoch.Version != d.Epoch.Version {
		return &EpochNotMatchError{Requested: epoch, Current: d.Clone()}
	}
	return nil
}

// Get returns the value of key in shard, read at the consistency of mode.
// found is false if the key does not exist. The caller owns value.
func (s *Store) Get(ctx context.Context, shard ShardID, epoch Epoch, key []byte, mode multiraft.ReadMode) (value []byte, found bool, err error) {
	return s.StartGet(shard, epoch, key, mode).Wait(ctx)
}

// StartGet is Get without the wait: it makes Get's checks and starts the
// read's barrier (a ReadIndex round or a lease check), then returns.
func (s *Store) StartGet(shard ShardID, epoch Epoch, key []byte, mode multiraft.ReadMode) PendingRead {
	return s.StartGetIn(nil, shard, epoch, key, mode)
}

// ReadBarriers lets the point reads of one batch (the Gets of a KV Multi
// call) share their barriers: the reads of one shard at one consistency
// wait on one ReadIndex round (or lease check) instead of one each. That
// is linearizable for each of them: every read of the batch was received
// before the batch's first barrier started, so a barrier started then
// orders each read after every write acknowledged before it began, as
// one of its own would. Not safe for concurrent use; the zero value is
// ready.
type ReadBarriers struct {
	list []sharedBarrier
}

type sharedBarrier struct {
	shard ShardID
	mode  multiraft.ReadMode
	f     *multiraft.Future
}

// future returns the batch's barrier of shard at mode, starting it on e
// if it is the first.
func (b *ReadBarriers) future(e Engine, shard ShardID, mode multiraft.ReadMode) *multiraft.Future {
	for _, s := range b.list {
		if s.shard == shard && s.mode == mode {
			return s.f
		}
	}
	f := e.ReadFuture(shard, mode)
	b.list = append(b.list, sharedBarrier{shard: shard, mode: mode, f: f})
	return f
}

// StartGetIn is StartGet with the barrier shared among the reads of b
// (nil: a barrier of its own).
func (s *Store) StartGetIn(b *ReadBarriers, shard ShardID, epoch Epoch, key []byte, mode multiraft.ReadMode) PendingRead {
	if err := checkKey(&s.cfg, key); err != nil {
		return PendingRead{err: err}
	}
	e, sm, d, err := s.lookup(shard)
	if err != nil {
		return PendingRead{err: err}
	}
	if err := checkReadEpoch(d, epoch); err != nil {
		return PendingRead{err: err}
	}
	if !d.ContainsKey(key) {
		return PendingRead{err: fmt.Errorf("%w: key %q, shard %s", ErrKeyNotInShard, key, d)}
	}
	var f *multiraft.Future
	if b != nil {
		f = b.future(e, shard, mode)
	} else {
		f = e.ReadFuture(shard, mode)
	}
	return PendingRead{f: f, s: s, e: e, sm: sm, shard: shard, key: key}
}

// PendingRead is a read StartGet began (or refused).
type PendingRead struct {
	f     *multiraft.Future
	err   error
	s     *Store
	e     Engine
	sm    *StateMachine
	shard ShardID
	key   []byte
	rev   uint64 // set by Barrier
}

// Wait waits for the read's barrier, or for ctx to end, then reads, and
// returns what Get would have.
func (p PendingRead) Wait(ctx context.Context) (value []byte, found bool, err error) {
	kv, found, _, err := p.WaitKV(ctx)
	return kv.Value, found, err
}

// WaitKV is Wait returning the key's revisions with its value, and the
// revision the read saw: the replica's resolved revision once the barrier
// passed (see readat.go).
func (p PendingRead) WaitKV(ctx context.Context) (kv KeyValue, found bool, rev uint64, err error) {
	if err := p.Barrier(ctx); err != nil {
		return KeyValue{}, false, 0, err
	}
	return p.Read(nil)
}

// Barrier waits for the read's barrier, or for ctx to end, and fixes the
// revision the read will see (the replica's resolved revision then),
// refusing a key a transaction's lock covers at it. The read itself is
// Read's: a PendingRead waits at most once.
func (p *PendingRead) Barrier(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	if _, err := p.f.Wait(ctx); err != nil {
		return err
	}
	p.rev = p.sm.Resolved()
	return p.sm.checkLocks(p.key, nil, true, p.rev)
}

// Read reads the key at the revision Barrier fixed, through r (nil: an
// iterator of its own), and returns what WaitKV would have. The
// revision is fixed before r's iterator is made (see PointReader), so the
// iterator holds every write at or below it.
func (p PendingRead) Read(r *PointReader) (kv KeyValue, found bool, rev uint64, err error) {
	db := p.e.DB()
	if r == nil || r.r != nil && r.r != pebble.Reader(db) {
		kv, found, err = getAt(db, p.key, p.rev)
	} else {
		kv, found, err = r.get(db, p.key, p.rev)
	}
	if err != nil {
		return KeyValue{}, false, 0, fmt.Errorf("shard: reading shard %d: %w", p.shard, err)
	}
	if err := p.s.stillServes(p.sm, p.key, nil, true); err != nil {
		return KeyValue{}, false, 0, err
	}
	return kv, found, p.rev, nil
}

// A PointReader serves the point reads of one batch of requests (the Gets
// of a KV Multi call) from one Pebble iterator, made at its first read,
// instead of an iterator each: making and closing an iterator cost about
// as much as the seek that reads the key. Every read it serves must have
// passed its Barrier before that first read: a barrier that passed later
// may need writes the iterator, a view of the store at its making, does
// not hold. Not safe for concurrent use; Close it when done.
type PointReader struct {
	r    pebble.Reader // what it reads, set at the first read
	it   *pebble.Iterator
	seek []byte
}

// get reads key's newest version at or below rev from src (which must be
// the same at every call), copying what it returns.
func (r *PointReader) get(src pebble.Reader, key []byte, rev uint64) (KeyValue, bool, error) {
	if r.it == nil {
		it, err := src.NewIter(nil)
		if err != nil {
			return KeyValue{}, false, err
		}
		r.r, r.it = src, it
	}
	kv, found, seek, err := readVersion(r.it, r.seek, key, rev)
	r.seek = seek
	if found {
		kv = kv.clone()
	}
	return kv, found && err == nil, err
}

// Close closes the reader's iterator, if it made one.
func (r *PointReader) Close() error {
	if r.it == nil {
		return nil
	}
	it := r.it
	r.it = nil
	return it.Close()
}

// Scan returns the pairs of [start, end) in shard in key order, at most
// limit of them (limit <= 0: no limit), read at the consistency of mode
// from one consistent view. An empty end means +inf. The range must lie in
// the shard. more reports that the limit stopped the scan before end: the
// next scan starts just after the last key returned. rev is the revision
// the scan saw, as for WaitKV: a scan continued at it (ScanAt) stays
// consistent. The caller owns the result.
func (s *Store) Scan(ctx context.Context, shard ShardID, epoch Epoch, start, end []byte, limit int, mode multiraft.ReadMode) (kvs []KeyValue, more bool, rev uint64, err error) {
	return s.ScanPage(ctx, shard, epoch, start, end, limit, mode)
}

// ScanPage is Scan with options: MaxBytes bounds the page (KeysOnly is
// not taken: Scan reads whole pairs).
func (s *Store) ScanPage(ctx context.Context, shard ShardID, epoch Epoch, start, end []byte, limit int, mode multiraft.ReadMode, opts ...ScanOption) (kvs []KeyValue, more bool, rev uint64, err error) {
	var o scanOptions
	for _, f := range opts {
		f(&o)
	}
	o.keysOnly = false
	e, sm, d, err := s.lookup(shard)
	if err != nil {
		return nil, false, 0, err
	}
	if err := checkReadEpoch(d, epoch); err != nil {
		return nil, false, 0, err
	}
	if !d.ContainsRange(start, end) {
		return nil, false, 0, fmt.Errorf("%w: range [%q, %q), shard %s", ErrKeyNotInShard, start, end, d)
	}
	if _, err := e.ReadFuture(shard, mode).Wait(ctx); err != nil {
		return nil, false, 0, err
	}
	rev = sm.Resolved()
	if len(end) != 0 && bytes.Compare(start, end) >= 0 {
		return nil, false, rev, nil
	}
	if err := sm.checkLocks(start, end, false, rev); err != nil {
		return nil, false, 0, err
	}
	if kvs, more, err = collectKeys(e.DB(), start, end, limit, rev, o); err != nil {
		return nil, false, 0, fmt.Errorf("shard: scanning shard %d: %w", shard, err)
	}
	if err := s.stillServes(sm, start, end, false); err != nil {
		return nil, false, 0, err
	}
	return kvs, more, rev, nil
}

// MidKey returns a key that splits shard's stored keys in two halves by
// count, for a split at "the middle". It counts every key with a stored
// version, deleted keys whose history is still kept included: a shard's
// size counts every version, so a shard grown large with the history of
// deleted keys is split between them, as it is between live keys. It
// reads the local replica's data (two passes over the keys' metas), so
// call it on the leader. It fails with ErrInvalidSplit when the shard
// stores fewer than two keys: the versions of one key cannot be split.
func (s *Store) MidKey(shard ShardID) ([]byte, error) {
	e, _, desc, err := s.lookup(shard)
	if err != nil {
		return nil, err
	}
	snap := e.DB().NewSnapshot()
	defer snap.Close()
	n := 0
	if err := storedKeys(snap, desc, func([]byte) bool { n++; return true }); err != nil {
		return nil, err
	}
	if n < 2 {
		return nil, fmt.Errorf("%w: shard %d stores %d keys, too few to split", ErrInvalidSplit, shard, n)
	}
	var mid []byte
	i := 0
	err = storedKeys(snap, desc, func(k []byte) bool {
		if i == n/2 {
			mid = bytes.Clone(k)
			return false
		}
		i++
		return true
	})
	if err != nil {
		return nil, err
	}
	return mid, nil
}

// KeyCountLimit is how far a node's heartbeat counts the stored keys of a
// shard it leads (StoredKeys): a count below it is exact and reported as
// the shard's approximate_keys, and a shard with more reports 0, not
// counted. Placement needs only to know a shard of one key, which no split
// can divide, from the rest; counting further would cost a seek per key
// per heartbeat.
const KeyCountLimit = 8

// StoredKeys returns how many user keys shard stores (live or deleted, as
// MidKey counts them), counting no further than limit: a result below
// limit is exact. It costs one seek per key counted, however long each
// key's history, so heartbeats can tell a shard of one key (which no split
// can divide) from one that can be split.
func (s *Store) StoredKeys(shard ShardID, limit int) (int, error) {
	e, _, desc, err := s.lookup(shard)
	if err != nil {
		return 0, err
	}
	n := 0
	err = storedKeys(e.DB(), desc, func([]byte) bool { n++; return n < limit })
	return n, err
}

// storedKeys calls fn with every user key of desc's range that has a meta
// (a stored version, live or deleted), in key order, until fn returns
// false. The key passed is valid only during the call. It seeks past each
// key's versions rather than stepping through them.
func storedKeys(r pebble.Reader, desc *Descriptor, fn func(key []byte) bool) error {
	lo, hi := keys.UserSpan(desc.Start, desc.End)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	// Two buffers in turn: the key of one seek stays intact through the
	// next seek, in case the iterator compares the two.
	var bufs [2][]byte
	var next []byte
	for valid, turn := it.First(), 0; valid; valid, turn = it.SeekGE(next), turn^1 {
		if k, ok := keys.MVCCMeta(it.Key()); ok && !fn(k) {
			break
		}
		next = keys.ImmediateSuccessor(bufs[turn][:0], keys.MVCCPrefix(it.Key()))
		bufs[turn] = next
	}
	return it.Close()
}
