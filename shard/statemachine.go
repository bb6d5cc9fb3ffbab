package shard

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// StateMachine is the replicated state of one shard replica: it implements
// multiraft.StateMachine. The engine calls Apply, ApplyMembership, Restore
// and Destroy from the one worker that owns the group; Snapshot from a
// sender goroutine, reading only its pebble.Reader. Descriptor and
// Initialized may be called from any goroutine.
//
// A StateMachine whose shard has no descriptor in Pebble (an empty replica
// waiting for its first snapshot) is uninitialised: it refuses requests
// until the engine restores a snapshot and rebuilds it.
type StateMachine struct {
	cfg     Config // defaults applied
	shard   ShardID
	replica multiraft.ReplicaID

	// desc is the current descriptor, nil while uninitialised. Apply
	// replaces it (never mutates it) and other goroutines load it.
	desc atomic.Pointer[Descriptor]
	// destroyed is set by Destroy.
	destroyed atomic.Bool
	// resolved is lastRev as Pebble holds it: Committed publishes it once
	// the engine committed the batch that wrote it (see Resolved).
	resolved atomic.Uint64
	// feed, when set, is the shard's watch feed: Apply records the events
	// of its writes and Committed hands them over (see watch.go).
	feed atomic.Pointer[feed]
	// published is the revision through which the shard's data is final
	// for watchers: resolved, or just below the lowest lock's prewrite
	// revision (see percolator.go). Committed sets it.
	published atomic.Uint64
	// lockView is the shard's locks as Committed last published them.
	lockView atomic.Pointer[lockView]

	// Owned by the applying worker.
	clients    *clientTable
	descKey    []byte
	clientPref []byte // keys.ShardClientPrefix start; a client key is it + 8-byte ID
	cmd        Command
	// metas holds the metas of keys this replica wrote or read recently,
	// exactly as Pebble holds them once the engine commits its apply batch
	// (it always does, or the engine fail-stops and this state machine is
	// dropped): every write of a meta goes through it. A snapshot or a
	// restart builds a new state machine, with an empty map.
	metas map[string]keyMeta
	// lastRev is the revision of the shard's last write (stored under
	// revKey by FinishApply; revDirty says it changed since): a write
	// must come with a higher one.
	lastRev  uint64
	revDirty bool
	// metaIt reads metas through metaItBatch, the round's apply batch
	// (see metaIter); nil between rounds.
	metaIt      *pebble.Iterator
	metaItBatch *pebble.Batch
	// locks are the shard's transaction locks by key, as Pebble holds
	// them once the apply batch commits; locksChanged says the readers'
	// view is behind them.
	locks        map[string]TxnLock
	locksChanged bool
	// held are events above the published revision, which Committed
	// hands to the feed once the locks below them are gone; gapRev, if
	// not 0, is the revision of the last write whose events nobody
	// recorded (no feed was there, or this state machine did not apply
	// it): until the published revision reaches it, Committed sends the
	// feed's watchers to catch up from storage instead.
	held   []Event
	gapRev uint64
	// compactRev is the revision the shard was compacted to (stored under
	// keys.ShardCompacted; see Store.Compact).
	compactRev uint64
	// watched is feed != nil, as loaded at the start of Apply, and events
	// the events of the writes applied since the last Committed;
	// unwatched says that some Apply since then ran without a feed, so
	// events may lack some of them.
	watched, unwatched bool
	events             []Event
	revKey             []byte
	revBuf             []byte
	valBuf             []byte
	metaKey            []byte
	metaBuf            []byte
	iterBuf            []byte
	keyBuf             []byte
	ckeyBuf            []byte
	recBuf             []byte

	// createGroup is ac.CreateGroup; tests replace it to run splits
	// without an engine.
	createGroup func(ac *multiraft.ApplyContext, group multiraft.GroupID, replica multiraft.ReplicaID, m multiraft.Membership) bool
	// onDestroy, if set, runs at the end of Destroy (the Store unregisters).
	onDestroy func(*StateMachine)
	// onDescriptor, if set, runs after Apply replaced the descriptor (the
	// Store counts the change of its layout).
	onDescriptor func()
}

var (
	_ multiraft.StateMachine  = (*StateMachine)(nil)
	_ multiraft.Spanner       = (*StateMachine)(nil)
	_ multiraft.Committer     = (*StateMachine)(nil)
	_ multiraft.ApplyFinisher = (*StateMachine)(nil)
)

func createGroupViaEngine(ac *multiraft.ApplyContext, group multiraft.GroupID, replica multiraft.ReplicaID, m multiraft.Membership) bool {
	return ac.CreateGroup(group, replica, m)
}

// NewStateMachine builds the state machine of replica of shard, loading its
// descriptor and client table from r. A shard without a descriptor yields
// an uninitialised state machine. It fails if cfg is invalid or the stored
// state does not decode.
func NewStateMachine(cfg Config, shard ShardID, replica multiraft.ReplicaID, r pebble.Reader) (*StateMachine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	clientPref, _ := keys.ShardClientPrefix(uint64(shard))
	sm := &StateMachine{
		cfg:         cfg,
		shard:       shard,
		replica:     replica,
		clients:     newClientTable(cfg.MaxClients, cfg.ClientTTLEntries),
		descKey:     keys.ShardKey(uint64(shard), keys.ShardDescriptor),
		revKey:      keys.ShardKey(uint64(shard), keys.ShardRevision),
		clientPref:  clientPref,
		createGroup: createGroupViaEngine,
		metas:       make(map[string]keyMeta),
		locks:       make(map[string]TxnLock),
	}
	v, closer, err := r.Get(sm.descKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return sm, nil
	}
	if err != nil {
		return nil, fmt.Errorf("shard: loading descriptor of shard %d: %w", shard, err)
	}
	desc, err := DecodeDescriptor(v)
	closer.Close()
	if err != nil {
		return nil, fmt.Errorf("shard: loading descriptor of shard %d: %w", shard, err)
	}
	if desc.ShardID != shard {
		return nil, fmt.Errorf("%w: shard %d stores the descriptor of shard %d", ErrBadDescriptor, shard, desc.ShardID)
	}
	if sm.lastRev, err = loadRevision(r, shard); err != nil {
		return nil, err
	}
	sm.resolved.Store(sm.lastRev)
	if sm.locks, err = loadLocks(r, shard); err != nil {
		return nil, fmt.Errorf("shard: loading the locks of shard %d: %w", shard, err)
	}
	sm.locksChanged = true
	sm.publishLocks()
	sm.published.Store(sm.publishedBound())
	sm.gapRev = sm.lastRev
	if sm.compactRev, err = loadUint64(r, keys.ShardKey(uint64(shard), keys.ShardCompacted)); err != nil {
		return nil, fmt.Errorf("shard: loading the compaction revision of shard %d: %w", shard, err)
	}
	recs, err := loadClientRecords(r, shard)
	if err != nil {
		return nil, err
	}
	sm.clients.load(recs)
	sm.desc.Store(&desc)
	return sm, nil
}

// NewStateMachineFunc returns a multiraft.NewStateMachineFunc building
// StateMachines with cfg. It may be called concurrently.
func NewStateMachineFunc(cfg Config) multiraft.NewStateMachineFunc {
	return func(group multiraft.GroupID, replica multiraft.ReplicaID, r pebble.Reader) (multiraft.StateMachine, error) {
		sm, err := NewStateMachine(cfg, group, replica, r)
		if err != nil {
			return nil, err
		}
		return sm, nil
	}
}

// loadRevision reads the revision of shard's last write from r (0 if it
// has none).
func loadRevision(r pebble.Reader, shard ShardID) (uint64, error) {
	rev, err := loadUint64(r, keys.ShardKey(uint64(shard), keys.ShardRevision))
	if err != nil {
		return 0, fmt.Errorf("shard: loading the revision of shard %d: %w", shard, err)
	}
	return rev, nil
}

// loadUint64 reads the 8-byte big-endian number stored under key in r (0
// if there is none).
func loadUint64(r pebble.Reader, key []byte) (uint64, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %x under %x", ErrBadDescriptor, v, key)
	}
	return binary.BigEndian.Uint64(v), nil
}

// loadClientRecords reads the index part of shard's client table from r.
func loadClientRecords(r pebble.Reader, shard ShardID) ([]clientRecord, error) {
	lo, hi := keys.ShardClientPrefix(uint64(shard))
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var recs []clientRecord
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("shard: loading client table of shard %d: %w", shard, err)
		}
		if len(k) != len(lo)+8 {
			it.Close()
			return nil, fmt.Errorf("%w: shard %d: malformed client key %x", ErrBadDescriptor, shard, k)
		}
		seq, stamp, _, err := decodeClientRecord(v)
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("%w: shard %d: client record %x: %w", ErrBadDescriptor, shard, k, err)
		}
		recs = append(recs, clientRecord{id: binary.BigEndian.Uint64(k[len(lo):]), seq: seq, stamp: stamp})
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("shard: loading client table of shard %d: %w", shard, err)
	}
	return recs, nil
}

// InitialState returns the init callback that bootstraps a new shard with
// desc, for Engine.CreateGroup: it writes the descriptor into the batch. It
// returns an error (wrapping ErrBadDescriptor) if desc is invalid.
func InitialState(desc Descriptor) func(b *pebble.Batch) error {
	desc = desc.Clone()
	return func(b *pebble.Batch) error {
		if err := desc.Validate(); err != nil {
			return err
		}
		return b.Set(keys.ShardKey(uint64(desc.ShardID), keys.ShardDescriptor), desc.AppendEncoded(nil), nil)
	}
}

// Committed publishes what the last Apply calls wrote, now that Pebble
// holds it: the resolved revision, and the events to the watch feed. See
// multiraft.Committer.
func (sm *StateMachine) Committed() {
	sm.publishLocks()
	sm.resolved.Store(sm.lastRev)
	bound := sm.publishedBound()
	sm.published.Store(bound)
	if sm.unwatched {
		sm.gapRev = max(sm.gapRev, sm.lastRev)
	}
	f := sm.feed.Load()
	switch {
	case f == nil:
		clear(sm.held)
		sm.held, sm.gapRev = sm.held[:0], sm.lastRev
	case sm.gapRev != 0:
		// Some writes' events were not recorded (the feed appeared during
		// the round, or the state machine is new): the watchers catch up
		// from Pebble, which holds them, up to what is final.
		f.reset(bound)
		sm.held = append(sm.held, sm.events...)
		sm.held = sm.dropHeld(bound)
		if bound >= sm.gapRev {
			sm.gapRev = 0
		}
	case len(sm.held) == 0 && bound == sm.lastRev && slices.IsSortedFunc(sm.events, eventOrder):
		f.publish(sm, sm.events, bound)
	default:
		sm.held = append(sm.held, sm.events...)
		// Stable: a write's events, and a split's mark after the writes
		// before it, keep their order.
		slices.SortStableFunc(sm.held, eventOrder)
		n := sort.Search(len(sm.held), func(i int) bool { return sm.held[i].KV.ModRevision > bound })
		f.publish(sm, sm.held[:n], bound)
		sm.held = sm.dropHeld(bound)
	}
	clear(sm.events)
	sm.events, sm.unwatched = sm.events[:0], false
}

// eventOrder orders events by revision.
func eventOrder(a, b Event) int { return cmp.Compare(a.KV.ModRevision, b.KV.ModRevision) }

// dropHeld removes the held events at or below bound, keeping the order
// of the others, and returns what remains.
func (sm *StateMachine) dropHeld(bound uint64) []Event {
	kept := sm.held[:0]
	for _, ev := range sm.held {
		if ev.KV.ModRevision > bound {
			kept = append(kept, ev)
		}
	}
	clear(sm.held[len(kept):])
	return kept
}

// Published returns the revision through which the shard's data on this
// replica is final for watchers: Resolved, or lower while a transaction's
// lock may still commit at or below it (see percolator.go).
func (sm *StateMachine) Published() uint64 { return sm.published.Load() }

// Resolved returns the shard's resolved revision on this replica: the
// revision of the last write or Resolve it applied and committed. Nothing
// at or below it can commit on the shard any more (Apply refuses a write
// whose revision is not above the last), so the replica's data at any
// revision up to it is final, and Pebble holds all of it.
func (sm *StateMachine) Resolved() uint64 { return sm.resolved.Load() }

// ShardID returns the ID of the state machine's shard. Safe for concurrent use.
func (sm *StateMachine) ShardID() ShardID { return sm.shard }

// ReplicaID returns the replica this state machine belongs to. Safe for
// concurrent use.
func (sm *StateMachine) ReplicaID() multiraft.ReplicaID { return sm.replica }

// Descriptor returns a copy of the current descriptor, and false if the
// state machine is uninitialised. Safe for concurrent use; the caller owns
// the result. The descriptor is updated as commands apply, which may be
// slightly before the engine commits them.
func (sm *StateMachine) Descriptor() (Descriptor, bool) {
	d := sm.desc.Load()
	if d == nil {
		return Descriptor{}, false
	}
	return d.Clone(), true
}

// descriptor returns the current descriptor, read-only, or nil.
func (sm *StateMachine) descriptor() *Descriptor { return sm.desc.Load() }

// setDescriptor replaces the descriptor (Apply's, on a split or a
// membership change) and tells the Store.
func (sm *StateMachine) setDescriptor(d *Descriptor) {
	sm.desc.Store(d)
	if sm.onDescriptor != nil {
		sm.onDescriptor()
	}
}

// Initialized reports whether the state machine has a descriptor. Safe for
// concurrent use.
func (sm *StateMachine) Initialized() bool { return sm.desc.Load() != nil }

// Span implements multiraft.Spanner: the shard's user key range, which no
// other replica on this node may overlap (the engine refuses a snapshot
// that would). ok is false while uninitialised. The slices are read-only.
// Safe for concurrent use.
func (sm *StateMachine) Span() (start, end []byte, ok bool) {
	d := sm.desc.Load()
	if d == nil || sm.destroyed.Load() {
		return nil, nil, false
	}
	return d.Start, d.End, true
}

// SnapshotSpan implements multiraft.Spanner: the key range of the
// descriptor in a snapshot image's header. The result does not alias image.
func (sm *StateMachine) SnapshotSpan(image []byte) (start, end []byte, err error) {
	d, err := imageDescriptor(image)
	if err != nil {
		return nil, nil, err
	}
	return d.Start, d.End, nil
}

// Destroy writes into b the deletion of the shard's user data, client table
// and descriptor. Called by the engine's worker when the replica is removed.
func (sm *StateMachine) Destroy(b *pebble.Batch) {
	if d := sm.desc.Load(); d != nil {
		lo, hi := keys.UserSpan(d.Start, d.End)
		mustWrite(b.DeleteRange(lo, hi, nil))
	}
	lo, hi := keys.ShardPrefix(uint64(sm.shard))
	mustWrite(b.DeleteRange(lo, hi, nil))
	sm.destroyed.Store(true)
	if sm.onDestroy != nil {
		sm.onDestroy(sm)
	}
}

// clientKey returns the key of client id's record in this shard's table,
// in a buffer reused by the next call.
func (sm *StateMachine) clientKey(id uint64) []byte {
	sm.ckeyBuf = binary.BigEndian.AppendUint64(append(sm.ckeyBuf[:0], sm.clientPref...), id)
	return sm.ckeyBuf
}

// mustRead panics on an error reading the shard's state during apply
// (Pebble failed to read its disk) with an error wrapping
// multiraft.ErrDiskFailure: the engine recovers it and fail-stops, as
// after a failed write, without committing the half-applied batch.
func mustRead(err error) {
	if err != nil {
		panic(fmt.Errorf("%w: shard: reading during apply: %w", multiraft.ErrDiskFailure, err))
	}
}

// mustWrite panics on an error writing into a batch: that only happens
// when the batch is misused (committed, closed), which is a bug.
func mustWrite(err error) {
	if err != nil {
		panic(fmt.Sprintf("shard: writing to apply batch: %v", err))
	}
}
