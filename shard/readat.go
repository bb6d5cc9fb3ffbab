package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// Reads at a revision
//
// A shard's resolved revision on a replica (StateMachine.Resolved) is the
// revision of the last write, or Resolve, it applied; Apply refuses every
// later write whose revision is not above it. So once a replica has
// resolved past r, the shard's data at r is final: every write at or
// below r has applied there, and none can commit any more. Any replica
// that resolved past r answers a read at r, with no read barrier, and
// every replica answers it alike.
//
// A read at a revision the replica has not resolved goes to the leader,
// which resolves the shard: it takes a fresh timestamp t from the oracle
// and commits a Resolve at t (Store.Resolve). A timestamp from a call
// that began after the read arrived is above every revision handed out
// before; so if t is not above r, r was not handed out yet, and the read
// is refused (FutureRevisionError) rather than answered before it is
// decided. The Resolve also raises the shard's floor: writes stamped at
// or below t that had not applied yet are refused (ErrStaleRevision, a
// retry gets a new revision), which is what makes two reads at r agree.
//
// A read of the latest state reads at the replica's resolved revision,
// once its read barrier passed (ReadIndex or lease), and says so: it saw
// every write at or below that revision and none above, exactly what a
// watch from the next revision continues with.
//
// Compaction: a write at w prunes versions of its key that no read at w
// minus the retention can see, and raises the shard's compaction point
// above that horizon (see pruneVersions); Compact raises it to an
// operator's revision. Reads and watches below the point are refused with
// a CompactedError naming it; a shard that never pruned refuses none. The
// point lives in the shard's state, so every replica has the same.

// resolveTimeout bounds a Resolve that no caller waits for any more.
const resolveTimeout = 10 * time.Second

// resolveCall is a Resolve of one shard in flight, shared by the callers
// that join it.
type resolveCall struct {
	done chan struct{}
	rev  uint64
	err  error
}

// Resolve raises shard's resolved revision to a fresh timestamp of the
// oracle, on the shard's leader (a follower refuses with
// *multiraft.NotLeaderError), and returns the resolved revision after it
// applied: nothing at or below it can commit on the shard any more. A
// caller joins a Resolve of the same shard already in flight.
func (s *Store) Resolve(ctx context.Context, shard ShardID) (uint64, error) {
	return s.resolve(ctx, shard, true)
}

// resolve is Resolve; without join it starts its own call, whose
// timestamp is taken after resolve was called.
func (s *Store) resolve(ctx context.Context, shard ShardID, join bool) (uint64, error) {
	s.resolving.Lock()
	c := s.resolving.calls[shard]
	if c == nil || !join {
		c = &resolveCall{done: make(chan struct{})}
		if s.resolving.calls[shard] == nil {
			s.resolving.calls[shard] = c
		}
		p := s.Start(shard, &Command{Kind: KindResolve})
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
			defer cancel()
			res, err := p.Wait(ctx)
			if err == nil {
				c.rev = res.Revision
			}
			c.err = err
			s.resolving.Lock()
			if s.resolving.calls[shard] == c {
				delete(s.resolving.calls, shard)
			}
			s.resolving.Unlock()
			close(c.done)
		}()
	}
	s.resolving.Unlock()
	select {
	case <-c.done:
		return c.rev, c.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// checkCompacted refuses a read at rev from r (a snapshot of the node's
// Pebble) with a *CompactedError if rev is below shard's compaction point
// in r (see pruneVersions and Compact).
func (s *Store) checkCompacted(r pebble.Reader, shard ShardID, rev uint64) error {
	c, err := loadUint64(r, keys.ShardKey(uint64(shard), keys.ShardCompacted))
	if err != nil {
		return fmt.Errorf("shard: reading the compaction point of shard %d: %w", shard, err)
	}
	if rev < c {
		return &CompactedError{Shard: shard, Revision: rev, CompactRevision: c}
	}
	return nil
}

// Compact compacts shard to revision rev: from then on, reads and watches
// at revisions below rev are refused with a *CompactedError, on every
// replica, and writes prune the versions no read at rev or later can see
// (as they prune past the retention). A compaction revision only grows:
// compacting below the current one changes nothing. A rev above the
// shard's resolved revision is resolved first, on the leader; one above
// every timestamp the oracle handed out is refused with a
// *FutureRevisionError. It returns the shard's compaction revision after
// the command applied. Like the retention, it prunes a key's versions
// when the key is next written, not at once: compaction bounds what
// reads may see, and the space that old versions take is reclaimed as
// keys are written, and, for keys deleted below it, by the collector
// (CollectGarbage).
func (s *Store) Compact(ctx context.Context, shard ShardID, epoch Epoch, rev uint64) (uint64, error) {
	if rev == 0 {
		return 0, fmt.Errorf("%w: compact to revision 0", ErrBadCommand)
	}
	// No keys: a compaction reads nothing, and no lock stands in its way.
	snap, _, _, err := s.atRevision(ctx, shard, epoch, rev, nil, nil, true)
	var ce *CompactedError
	switch {
	case errors.As(err, &ce):
		// Compacted past rev already: nothing to do, but say how far.
	case err != nil:
		return 0, err
	default:
		snap.Close()
	}
	res, err := s.Execute(ctx, shard, &Command{Kind: KindCompact, Header: Header{Epoch: epoch}, Revision: rev})
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// atRevision prepares a read of [start, end) (just start, with point) in
// shard at rev: it resolves the shard past rev if this replica has not
// (on the leader), refuses with a *LockedError if a transaction's lock
// there may still commit at or below rev, and returns a snapshot of
// Pebble holding the shard's final data at rev, and the state machine
// that was live when it was taken. The caller closes the snapshot.
//
// The locks are checked before the snapshot is taken: a lock gone from
// the state machine's view was committed or rolled back in Pebble first,
// so the snapshot holds the commit's versions.
func (s *Store) atRevision(ctx context.Context, shard ShardID, epoch Epoch, rev uint64, start, end []byte, point bool) (*pebble.Snapshot, *StateMachine, *Descriptor, error) {
	e, sm, d, err := s.lookup(shard)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkReadEpoch(d, epoch); err != nil {
		return nil, nil, nil, err
	}
	if sm.Resolved() < rev {
		if err := e.CheckLeader(shard); err != nil {
			return nil, nil, nil, err
		}
		r, err := s.resolve(ctx, shard, true)
		if err == nil && r < rev {
			// The call joined may have taken its timestamp before this
			// read arrived; only one taken after it can say rev is
			// in the future.
			r, err = s.resolve(ctx, shard, false)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		if r < rev {
			return nil, nil, nil, &FutureRevisionError{Shard: shard, Revision: rev, Current: r}
		}
		// The Resolve applied here (this replica leads), so this
		// replica's state machine, or one restored since, resolved past
		// rev.
		if e, sm, d, err = s.lookup(shard); err != nil {
			return nil, nil, nil, err
		}
		if sm.Resolved() < rev {
			return nil, nil, nil, fmt.Errorf("%w: shard %d resolved to %d but this replica is at %d",
				multiraft.ErrProposalDropped, shard, r, sm.Resolved())
		}
	}
	if err := sm.checkLocks(start, end, point, rev); err != nil {
		return nil, nil, nil, err
	}
	snap := e.DB().NewSnapshot()
	if err := s.checkCompacted(snap, shard, rev); err != nil {
		snap.Close()
		return nil, nil, nil, err
	}
	return snap, sm, d, nil
}

// GetAt reads key in shard at revision rev (see the notes above), from
// this replica if it resolved past rev, else through the leader. It
// returns the key's version at rev, if it existed, and rev.
func (s *Store) GetAt(ctx context.Context, shard ShardID, epoch Epoch, key []byte, rev uint64) (KeyValue, bool, error) {
	if err := checkKey(&s.cfg, key); err != nil {
		return KeyValue{}, false, err
	}
	snap, sm, d, err := s.atRevision(ctx, shard, epoch, rev, key, nil, true)
	if err != nil {
		return KeyValue{}, false, err
	}
	defer snap.Close()
	if !d.ContainsKey(key) {
		return KeyValue{}, false, fmt.Errorf("%w: key %q, shard %s", ErrKeyNotInShard, key, d)
	}
	kv, found, err := getAt(snap, key, rev)
	if err != nil {
		return KeyValue{}, false, fmt.Errorf("shard: reading shard %d: %w", shard, err)
	}
	if err := s.stillServes(sm, key, nil, true); err != nil {
		return KeyValue{}, false, err
	}
	return kv, found, nil
}

// ScanOption adjusts what ScanAt returns.
type ScanOption func(*scanOptions)

type scanOptions struct {
	keysOnly bool
	maxBytes int
}

// MaxBytes ends a scan once the pairs it returns hold n bytes of keys and
// values (at least one pair), reporting more: a page that stays within
// the size of one message (n <= 0: no bound).
func MaxBytes(n int) ScanOption {
	return func(o *scanOptions) { o.maxBytes = n }
}

// KeysOnly makes a scan return its keys without their values: each
// KeyValue has every field but Value, which is nil. The versions are read
// as for a full scan (a key's liveness and lease are in its version), but
// no value is copied.
func KeysOnly() ScanOption {
	return func(o *scanOptions) { o.keysOnly = true }
}

// KeyCount is what a count of a range found (CountAt).
type KeyCount struct {
	// Keys is the number of keys counted: those of the range that existed
	// at the revision, up to the limit.
	Keys int64
	// Leased tallies, by lease, the counted keys attached to a lease
	// (nil if none is), so that a reader that fences keys of ended leases
	// can take them off Keys without reading the keys again.
	Leased map[uint64]int64
	// More reports that the limit stopped the count before the range's
	// end; Last is then the last key counted, and a count continued just
	// after it (at the same revision) counts the rest.
	More bool
	Last []byte
}

// ScanAt is Scan at revision rev: the pairs of [start, end) in shard as
// they were at rev, read as GetAt reads. With KeysOnly the pairs carry no
// values.
func (s *Store) ScanAt(ctx context.Context, shard ShardID, epoch Epoch, start, end []byte, limit int, rev uint64, opts ...ScanOption) (kvs []KeyValue, more bool, err error) {
	var o scanOptions
	for _, f := range opts {
		f(&o)
	}
	snap, sm, d, err := s.atRevision(ctx, shard, epoch, rev, start, end, false)
	if err != nil {
		return nil, false, err
	}
	defer snap.Close()
	if !d.ContainsRange(start, end) {
		return nil, false, fmt.Errorf("%w: range [%q, %q), shard %s", ErrKeyNotInShard, start, end, d)
	}
	if len(end) != 0 && bytes.Compare(start, end) >= 0 {
		return nil, false, nil
	}
	kvs, more, err = collectKeys(snap, start, end, limit, rev, o)
	if err != nil {
		return nil, false, fmt.Errorf("shard: scanning shard %d: %w", shard, err)
	}
	if err := s.stillServes(sm, start, end, false); err != nil {
		return nil, false, err
	}
	return kvs, more, nil
}

// CountAt counts the keys of [start, end) in shard that existed at
// revision rev, read as ScanAt reads (the same replica rules, compaction
// and epoch checks), at most limit of them (limit <= 0: all), without
// returning or copying any key or value. Counting costs a walk over the
// range's versions in Pebble, as a scan does, but no memory per key. The
// caller owns the result.
func (s *Store) CountAt(ctx context.Context, shard ShardID, epoch Epoch, start, end []byte, limit int, rev uint64) (KeyCount, error) {
	snap, sm, d, err := s.atRevision(ctx, shard, epoch, rev, start, end, false)
	if err != nil {
		return KeyCount{}, err
	}
	defer snap.Close()
	if !d.ContainsRange(start, end) {
		return KeyCount{}, fmt.Errorf("%w: range [%q, %q), shard %s", ErrKeyNotInShard, start, end, d)
	}
	if len(end) != 0 && bytes.Compare(start, end) >= 0 {
		return KeyCount{}, nil
	}
	c, err := countAt(snap, start, end, limit, rev)
	if err != nil {
		return KeyCount{}, fmt.Errorf("shard: counting shard %d: %w", shard, err)
	}
	if err := s.stillServes(sm, start, end, false); err != nil {
		return KeyCount{}, err
	}
	return c, nil
}

// LatestRevision passes shard's read barrier at mode, as Scan does before
// it reads, and returns the revision a read of the latest state would see
// there: this replica resolved it, so ScanAt or CountAt at it read
// locally, without a Resolve, exactly what Scan would have read. It is the
// latest-state path of the reads that Scan has no options for (keys only,
// counts).
func (s *Store) LatestRevision(ctx context.Context, shard ShardID, epoch Epoch, mode multiraft.ReadMode) (uint64, error) {
	e, sm, d, err := s.lookup(shard)
	if err != nil {
		return 0, err
	}
	if err := checkReadEpoch(d, epoch); err != nil {
		return 0, err
	}
	if _, err := e.ReadFuture(shard, mode).Wait(ctx); err != nil {
		return 0, err
	}
	return sm.Resolved(), nil
}

// collect returns the pairs of [start, end) at rev in r, at most limit
// (limit <= 0: all), and whether the limit cut them.
func collect(r pebble.Reader, start, end []byte, limit int, rev uint64) (kvs []KeyValue, more bool, err error) {
	return collectKeys(r, start, end, limit, rev, scanOptions{})
}

// collectKeys is collect with o: leaving the values out (KeysOnly), ending
// at o.maxBytes (MaxBytes).
func collectKeys(r pebble.Reader, start, end []byte, limit int, rev uint64, o scanOptions) (kvs []KeyValue, more bool, err error) {
	size := 0
	err = scanAt(r, start, end, rev, func(kv KeyValue) bool {
		if (limit > 0 && len(kvs) == limit) || (o.maxBytes > 0 && size >= o.maxBytes) {
			more = true
			return false
		}
		if o.keysOnly {
			kvs = append(kvs, kv.cloneKey())
			size += len(kv.Key)
		} else {
			kvs = append(kvs, kv.clone())
			size += len(kv.Key) + len(kv.Value)
		}
		return true
	})
	return kvs, more, err
}
