package shard

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// Watching
//
// A Watcher streams the events of one key range of one shard replica, in
// revision order, from a start revision on. Each shard with watchers on
// this node has one feed: Apply records the events of every write while
// the feed exists, and Committed, once the engine committed them to
// Pebble, hands them to the feed with the shard's new resolved revision.
// The feed appends each event to the queue of every synced watcher whose
// range holds its key; there is no goroutine per watcher or per key, only
// the caller of Next (one per stream).
//
// A watcher is synced or catching up. A new watcher catches up: Next reads
// the events it has not seen from the shard's stored versions (every
// version of every key of its range, from its next revision up to the
// feed's published revision, which Pebble surely holds), and becomes
// synced once it has read up to the feed's latest publication (checked
// under the feed's lock, so no publication falls between the two). A
// synced watcher whose queue is full (a slow reader) goes back to
// catching up instead of growing its queue, and a snapshot installed on
// the replica (whose writes Apply never saw) sends every watcher back to
// it. So memory per watcher is bounded, a slow watcher is never dropped,
// and no event is skipped: every event at or above the start is read
// once, either from the queue or from storage, never both, because next
// (the revision below which everything was queued or returned) only
// grows.
//
// Events are ordered by revision, and a write's events share its revision,
// so "whole writes" means "every event of one revision": Next never
// splits them. Progress: once Next has returned every event below next,
// every event at or below next-1 has been sent, and since nothing at or
// below the shard's resolved revision can commit any more, that is a
// promise, not a guess.
//
// A split ends the watchers whose range the shard no longer holds, with
// EpochNotMatch, at the revision the shard had when it split: the range's
// new owners have no write at or below it. The removal of the replica ends
// every watcher with ErrShardNotFound.

// Event is one key changed by one write.
type Event struct {
	// Delete is set when the write deleted the key; KV then holds only Key
	// and ModRevision (the delete's revision).
	Delete bool
	// KV is the key after the write.
	KV KeyValue
	// PrevKV is the key's version before the write, when the watcher asked
	// for it and the key existed.
	PrevKV *KeyValue

	// split marks the point of a split among a round's events (Apply
	// records it; the feed consumes it); KV.ModRevision is the shard's
	// revision when it split.
	split bool
}

// Revision returns the revision of the write the event belongs to.
func (ev *Event) Revision() uint64 { return ev.KV.ModRevision }

const (
	// watchQueueEvents and watchQueueBytes (keys and values) bound the
	// queue of a synced watcher: past either, the watcher catches up from
	// storage instead.
	watchQueueEvents = 4096
	watchQueueBytes  = 8 << 20
	// watchBatchEvents and watchBatchBytes (keys and values, previous
	// values not counted) are about how much Next returns at once, and
	// one catch-up read at most: it returns whole writes, so it may return
	// one write's events more, and always at least one write. The bytes
	// keep a batch, which the node sends as one message, within what a
	// router accepts (64 MiB) with room for the previous values: a batch
	// of 1,024 events of 1 MiB values was a 1 GiB message.
	watchBatchEvents = 1024
	watchBatchBytes  = 4 << 20
)

// feed is the watch fan-out of one shard on this node.
type feed struct {
	shard ShardID
	mu    sync.Mutex
	// published is the shard's resolved revision as of the last
	// publication: Pebble holds every write at or below it.
	published uint64
	watchers  map[*Watcher]struct{}
}

// publish hands the events of the writes up to rev (the shard's resolved
// revision now) to the synced watchers. sm is the publishing state
// machine; events are read only.
func (f *feed) publish(sm *StateMachine, events []Event, rev uint64) {
	desc := sm.descriptor()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = max(f.published, rev)
	for w := range f.watchers {
		if !w.synced || w.err != nil {
			continue
		}
		queued, queuedBytes := len(w.queue), w.queueBytes
		for i := range events {
			ev := &events[i]
			if ev.split {
				if err := w.stillHeld(desc); err != nil {
					// A watch that started above the split (on a replica
					// that lagged) keeps its start: its progress never
					// goes back.
					w.next, w.err = max(w.next, ev.KV.ModRevision+1), err
					break
				}
				continue
			}
			if ev.KV.ModRevision < w.next || !w.holds(ev.KV.Key) {
				continue
			}
			size := len(ev.KV.Key) + len(ev.KV.Value)
			if len(w.queue) == watchQueueEvents || w.queueBytes+size > watchQueueBytes {
				// Too slow: read this publication and what follows from
				// storage, from next on.
				clear(w.queue[queued:])
				w.queue, w.queueBytes = w.queue[:queued], queuedBytes
				w.synced = false
				break
			}
			w.queue = append(w.queue, *ev)
			w.queueBytes += size
		}
		if w.synced && w.err == nil {
			w.next = max(w.next, rev+1)
		}
		if len(w.queue) > queued || !w.synced || w.err != nil {
			w.wake()
		}
	}
}

// reset sends every watcher back to catching up: the replica's state was
// replaced (a snapshot), and Apply did not see the writes in between.
func (f *feed) reset(resolved uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = max(f.published, resolved)
	for w := range f.watchers {
		w.synced = false
		w.wake()
	}
}

// fail ends every watcher with err.
func (f *feed) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		if w.err == nil {
			w.err = err
		}
		w.wake()
	}
}

// Watcher is one watch of a key range of one shard replica (see Watch).
// Next is called by one goroutine at a time; Close may be called from any.
type Watcher struct {
	s          *Store
	f          *feed
	shard      ShardID
	epoch      Epoch
	start, end []byte
	prevKV     bool
	notify     chan struct{} // a token when the state below changed

	// Guarded by f.mu.
	synced bool
	// next: every event below next was queued or returned.
	next       uint64
	queue      []Event
	queueBytes int // of the keys and values in queue
	err        error
}

// holds reports whether key is in w's range.
func (w *Watcher) holds(key []byte) bool {
	return bytes.Compare(key, w.start) >= 0 && (len(w.end) == 0 || bytes.Compare(key, w.end) < 0)
}

func (w *Watcher) wake() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// stillHeld returns nil if the shard, at descriptor desc, still holds w's
// range, else the error that ends w.
func (w *Watcher) stillHeld(desc *Descriptor) error {
	if desc == nil {
		return fmt.Errorf("%w: shard %d lost its descriptor", ErrShardNotFound, w.shard)
	}
	if !desc.ContainsRange(w.start, w.end) {
		return &EpochNotMatchError{Requested: w.epoch, Current: desc.Clone()}
	}
	return nil
}

// stillServed returns nil if this node's replica of w's shard still holds
// w's range, else the error that ends w.
func (w *Watcher) stillServed() error {
	_, _, d, err := w.s.lookup(w.shard)
	if err != nil {
		return err
	}
	return w.stillHeld(d)
}

// Range returns the key range w watches: the range asked for, clamped to
// the shard.
func (w *Watcher) Range() (start, end []byte) { return w.start, w.end }

// Watch starts a watch of the keys of [start, end) in shard (clamped to
// the shard's range; an empty end is +inf) for writes at revision from or
// later, read from this replica. from 0 means from now: the replica's
// resolved revision plus one, which Watch returns as startRev. A shard
// with an epoch other than epoch (zero skips the check) is refused with
// EpochNotMatch; a from below the shard's compaction point fails the
// first Next with a *CompactedError.
func (s *Store) Watch(shard ShardID, epoch Epoch, start, end []byte, from uint64, prevKV bool) (w *Watcher, startRev uint64, err error) {
	_, sm, d, err := s.lookup(shard)
	if err != nil {
		return nil, 0, err
	}
	if err := checkReadEpoch(d, epoch); err != nil {
		return nil, 0, err
	}
	if bytes.Compare(start, d.Start) < 0 {
		start = d.Start
	}
	if len(d.End) != 0 && (len(end) == 0 || bytes.Compare(end, d.End) > 0) {
		end = d.End
	}
	if len(end) != 0 && bytes.Compare(start, end) >= 0 {
		return nil, 0, fmt.Errorf("%w: watch of [%q, %q) outside shard %s", ErrKeyNotInShard, start, end, d)
	}
	w = &Watcher{
		s: s, shard: shard, epoch: d.Epoch, start: bytes.Clone(start), end: bytes.Clone(end),
		prevKV: prevKV, notify: make(chan struct{}, 1),
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.shards[shard] != sm {
		return nil, 0, fmt.Errorf("%w: shard %d was replaced while starting a watch", ErrShardNotFound, shard)
	}
	f := s.mu.feeds[shard]
	if f == nil {
		f = &feed{shard: shard, watchers: make(map[*Watcher]struct{})}
		s.mu.feeds[shard] = f
		sm.feed.Store(f)
	}
	w.f = f
	f.mu.Lock()
	defer f.mu.Unlock()
	// The worker stores the resolved revision before it looks for the
	// feed, so either it published to f already or f sees its revision.
	f.published = max(f.published, sm.Published())
	if from == 0 {
		from = f.published + 1
	}
	w.next = from
	f.watchers[w] = struct{}{}
	return w, from, nil
}

// Close ends the watch and releases what it holds. Next returns
// ErrWatchClosed afterwards.
func (w *Watcher) Close() {
	s, f := w.s, w.f
	s.mu.Lock()
	defer s.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.watchers[w]; !ok {
		return
	}
	delete(f.watchers, w)
	w.queue, w.queueBytes = nil, 0
	if w.err == nil {
		w.err = ErrWatchClosed
	}
	w.wake()
	if len(f.watchers) == 0 && s.mu.feeds[w.shard] == f {
		delete(s.mu.feeds, w.shard)
		if sm := s.mu.shards[w.shard]; sm != nil {
			sm.feed.CompareAndSwap(f, nil)
		}
	}
}

// ErrWatchClosed: the Watcher was closed.
var ErrWatchClosed = errors.New("shard: watch closed")

// Next returns the next events of the watch, whole writes in revision
// order, waiting until there are some or ctx ends, and the watch's
// progress: every event at or below progress has now been returned. It
// returns an error when the watch ended (see Watch and the notes above);
// progress then says how far it got: the caller resumes from progress+1
// elsewhere. The caller owns the events.
func (w *Watcher) Next(ctx context.Context) (events []Event, progress uint64, err error) {
	f := w.f
	for {
		f.mu.Lock()
		if n := len(w.queue); n > 0 {
			cut := wholeWrites(w.queue, watchBatchEvents, watchBatchBytes)
			events = slices.Clone(w.queue[:cut])
			if cut == n {
				clear(w.queue)
				w.queue, w.queueBytes = w.queue[:0], 0
				progress = w.next - 1
			} else {
				for i := range cut {
					w.queueBytes -= len(w.queue[i].KV.Key) + len(w.queue[i].KV.Value)
				}
				w.queue = slices.Delete(w.queue, 0, cut)
				progress = events[cut-1].KV.ModRevision
			}
			f.mu.Unlock()
			if err := w.fillPrev(events); err != nil {
				// The events are off the queue but not returned: the watch
				// ends below them, and whoever resumes it from its progress
				// reads them again.
				progress = events[0].KV.ModRevision - 1
				f.mu.Lock()
				w.err, w.next = err, progress+1
				clear(w.queue)
				w.queue, w.queueBytes = w.queue[:0], 0
				f.mu.Unlock()
				return nil, progress, err
			}
			return events, progress, nil
		}
		if w.err != nil {
			err, progress = w.err, w.next-1
			f.mu.Unlock()
			return nil, progress, err
		}
		if !w.synced {
			from, to := w.next, f.published
			f.mu.Unlock()
			if from > to {
				// Nothing to catch up: sync, unless the shard no longer
				// holds the range (a snapshot that skipped a split sends
				// its watchers here, and no split marker follows).
				err := w.stillServed()
				f.mu.Lock()
				if err != nil && w.err == nil {
					w.err = err
				} else if err == nil && w.next == from && from > f.published {
					w.synced = true
				}
				f.mu.Unlock()
				continue
			}
			events, upto, err := w.catchUp(from, to)
			if err != nil {
				f.mu.Lock()
				if w.err == nil {
					w.err = err
				}
				f.mu.Unlock()
				return nil, from - 1, err
			}
			f.mu.Lock()
			if w.err == nil && w.next == from {
				w.next = upto + 1
				w.synced = upto == f.published
			}
			progress = w.next - 1
			f.mu.Unlock()
			if len(events) > 0 {
				return events, progress, nil
			}
			continue
		}
		f.mu.Unlock()
		select {
		case <-w.notify:
		case <-ctx.Done():
			return nil, w.Progress(), ctx.Err()
		}
	}
}

// Progress returns the watch's progress: every event at or below it has
// been returned by Next.
func (w *Watcher) Progress() uint64 {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	if len(w.queue) > 0 {
		return w.queue[0].KV.ModRevision - 1
	}
	return w.next - 1
}

// Resolved returns the shard's resolved revision as this replica's watch
// feed knows it.
func (w *Watcher) Resolved() uint64 {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	return w.f.published
}

// wholeWrites returns how many of evs (in revision order) to take to take
// about n of them and about maxBytes of their keys and values, without
// splitting a write: the writes that start within both bounds, and at
// least the first write.
func wholeWrites(evs []Event, n, maxBytes int) int {
	return cutWrites(len(evs), n, maxBytes, func(i int) (uint64, int) {
		return evs[i].KV.ModRevision, len(evs[i].KV.Key) + len(evs[i].KV.Value)
	})
}

// cutWrites is wholeWrites over count events in revision order, event i
// having the revision and size at(i) returns.
func cutWrites(count, n, maxBytes int, at func(i int) (rev uint64, bytes int)) int {
	size := 0
	var prev uint64
	for i := range count {
		rev, bytes := at(i)
		if i > 0 && rev != prev && (i >= n || size >= maxBytes) {
			return i
		}
		size, prev = size+bytes, rev
	}
	return count
}

// catchUp reads the events of w's range at revisions [from, to] from the
// shard's stored versions, in revision order; upto says how far they go
// (to, or less when there were more than one batch). It fails with a
// *CompactedError when from is below the compaction point.
//
// It reads the range twice: first only the revisions and sizes of its
// events, keeping the smallest batch's worth (catchUpCut), to find where
// the batch ends; then the events up to there. So it holds one batch in
// memory, not every event since from: a watch from far back over a busy
// range would otherwise read the range's whole retained history at once.
func (w *Watcher) catchUp(from, to uint64) (events []Event, upto uint64, err error) {
	e, _, _, err := w.s.lookup(w.shard)
	if err != nil {
		return nil, 0, err
	}
	snap := e.DB().NewSnapshot()
	defer snap.Close()
	// After the snapshot: a split that applied since then made the new
	// owners' first writes after it too, so if the shard still holds the
	// range now, the snapshot holds the range's writes from this shard
	// only. If it does not, the watch ends here; its new owners' stored
	// versions hold the range's history from before the split as well.
	if err := w.stillServed(); err != nil {
		return nil, 0, err
	}
	if err := w.s.checkCompacted(snap, w.shard, from); err != nil {
		return nil, 0, err
	}
	lo, hi := keys.UserSpan(w.start, w.end)
	if to, err = catchUpCut(snap, lo, hi, from, to); err != nil {
		return nil, 0, err
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, 0, err
	}
	// A key's versions come newest first, so the version after an event's
	// in this iteration is its previous one: waiting is the index of the
	// event still waiting for it (-1: none).
	waiting := -1
	for valid := it.First(); valid; valid = it.Next() {
		k, rev, ok := keys.DecodeMVCCKey(it.Key())
		if !ok {
			waiting = -1 // a key's meta: the next version is another key's
			continue
		}
		if waiting >= 0 && !bytes.Equal(events[waiting].KV.Key, k) {
			waiting = -1
		}
		inRange := rev >= from && rev <= to
		if !inRange && waiting < 0 {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, 0, err
		}
		live, m, value, err := decodeVersion(v)
		if err != nil {
			it.Close()
			return nil, 0, fmt.Errorf("%w: %s", err, keys.FormatKey(it.Key()))
		}
		kv := KeyValue{Key: k, ModRevision: rev}
		if live {
			kv.Value, kv.CreateRevision, kv.Version, kv.Lease = value, m.create, m.version, m.lease
		}
		if waiting >= 0 {
			if live {
				prev := kv.clone()
				events[waiting].PrevKV = &prev
			}
			waiting = -1
		}
		if !inRange {
			continue
		}
		ev := Event{Delete: !live, KV: kv.clone()}
		if !live {
			ev.KV.Value = nil
		}
		events = append(events, ev)
		if w.prevKV {
			waiting = len(events) - 1
		}
	}
	if err := it.Close(); err != nil {
		return nil, 0, err
	}
	slices.SortFunc(events, func(a, b Event) int {
		if c := cmp.Compare(a.KV.ModRevision, b.KV.ModRevision); c != 0 {
			return c
		}
		return bytes.Compare(a.KV.Key, b.KV.Key)
	})
	upto = to
	if cut := wholeWrites(events, watchBatchEvents, watchBatchBytes); cut < len(events) {
		events, upto = events[:cut], events[cut-1].KV.ModRevision
	}
	return events, upto, nil
}

// catchUpCut returns the last revision of the first batch (wholeWrites)
// of the events at revisions [from, to] among the versions in [lo, hi) of
// r: to when they all fit in one. It keeps the revision and size of at
// most about twice a batch's events at a time.
func catchUpCut(r pebble.Reader, lo, hi []byte, from, to uint64) (uint64, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	type sized struct {
		rev   uint64
		bytes int
	}
	keep := watchBatchEvents + 1 // the smallest revisions, enough to cut at
	var evs []sized
	trim := func() {
		slices.SortFunc(evs, func(a, b sized) int { return cmp.Compare(a.rev, b.rev) })
		if len(evs) > keep {
			evs = evs[:keep]
		}
	}
	dropped := false
	for valid := it.First(); valid; valid = it.Next() {
		k, rev, ok := keys.DecodeMVCCKey(it.Key())
		if !ok || rev < from || rev > to {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return 0, err
		}
		evs = append(evs, sized{rev: rev, bytes: len(k) + len(v)})
		if len(evs) >= 2*keep {
			trim()
			dropped = true
		}
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	trim()
	dropped = dropped || len(evs) == keep
	// The cut among the smallest revisions, as wholeWrites makes it.
	if cut := cutWrites(len(evs), watchBatchEvents, watchBatchBytes, func(i int) (uint64, int) {
		return evs[i].rev, evs[i].bytes
	}); cut < len(evs) {
		return evs[cut-1].rev, nil
	}
	if dropped && len(evs) > 0 {
		// Every kept event shares the last kept revision's write or
		// precedes it: the batch runs to the end of that write.
		return evs[len(evs)-1].rev, nil
	}
	return to, nil
}

// fillPrev sets the PrevKV of events from this replica's Pebble, when w
// asked for them.
//
// It reads Pebble as it is now, not as it was when the events were
// queued, and the previous version of a queued event may be gone since:
// pruned past a compaction point that rose above the event, or replaced
// with the range's data when the range was split off and the new owner's
// replica here installed a snapshot compacted past the event (found by
// the simulator, seed 2738 of its fleet runs: an event delivered without
// the PrevKV its watch asked for). An event whose key existed before it
// (a delete, or a put of a version after the first) but whose previous
// version is gone ends the watch below it instead, as a catch-up from its
// revision would: not served here any more (the router resumes the watch
// at the range's owners), or compacted.
func (w *Watcher) fillPrev(events []Event) error {
	if !w.prevKV {
		return nil
	}
	e, _, _, err := w.s.lookup(w.shard)
	if err != nil {
		return err
	}
	for i := range events {
		ev := &events[i]
		if err := fillPrevFrom(e.DB(), ev); err != nil {
			return err
		}
		if ev.PrevKV != nil || !ev.Delete && ev.KV.Version <= 1 {
			continue
		}
		if err := w.stillServed(); err != nil {
			return err
		}
		if err := w.s.checkCompacted(e.DB(), w.shard, ev.KV.ModRevision); err != nil {
			return err
		}
		// The event is at the compaction point itself, which keeps no
		// version below it: sent without its previous version, as etcd
		// does.
	}
	return nil
}

// fillPrevFrom sets ev.PrevKV to its key's newest version below the
// event's revision, read from r, if there is one. It is kept as long as
// the event's revision is at or above the compaction point.
func fillPrevFrom(r pebble.Reader, ev *Event) error {
	if ev.KV.ModRevision <= 1 {
		return nil
	}
	kv, found, err := getAt(r, ev.KV.Key, ev.KV.ModRevision-1)
	if err != nil {
		return err
	}
	if found {
		ev.PrevKV = &kv
	}
	return nil
}
