package sim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/shard"
)

// What the watch checks hold the watches to. The truth is the clients'
// writes: every attempt of a write carries a revision from the run's
// oracle, unique in the run, so an event names the write it belongs to;
// an acknowledged write applied at the revision its result names; an
// abandoned one (every attempt surely refused) never applied; an
// ambiguous one may have applied at any of its revisions, once.
//
// Each answer of a watcher (events and progress, or an error and
// progress) is checked when it arrives:
//
//   - every event is above the progress its piece already reported (no
//     duplicate, no reordering across answers, no promise broken), and
//     the events of one answer are in revision order;
//   - every event belongs to the write stamped with its revision, which
//     is not abandoned, not acknowledged at another revision, and not seen
//     applying at another one (at most once); it is the write's own
//     change of that key (a put's or CAS's value, a delete), with the
//     version and create revision the key's state implies, and the
//     previous version (PrevKV) that state holds;
//   - the answer holds the whole write: every key of the piece the write
//     changes (a delete of a missing key changes nothing);
//   - progress is not below the answer's last event.
//
// The key's state is the session's: the list at its base revision, then
// every event delivered. When the run ends, every write applied at a
// revision a session covered (up to each piece's progress) shows in it:
// acknowledged writes and writes another watcher saw apply, so watchers
// agree on the ambiguous ones. And a session's state at a piece's
// progress equals a read of a replica at that revision, when it ends and
// at the end of the run (list at R, watch from R+1, and read at P agree).

// issued is one client write as the watch checks know it.
type issued struct {
	client int
	seq    uint64
	kind   opKind
	ops    []kvOp
	// revs are the revisions of its attempts, in order.
	revs []uint64
	// acked: it applied at ackRev (cas: a CAS's outcome).
	acked  bool
	ackRev uint64
	cas    casResult
	// ambiguous: it may have applied; failed: it surely did not.
	ambiguous, failed bool
	// seenAt is the revision a watcher saw it apply at (0: none did).
	seenAt uint64
}

func (w *issued) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "c%d.%d %v", w.client, w.seq, w.kind)
	for _, o := range w.ops {
		switch o.op {
		case cmdPut:
			fmt.Fprintf(&b, " %s=%q", o.key, o.value)
		case cmdDelete:
			fmt.Fprintf(&b, " del(%s)", o.key)
		case cmdCAS:
			fmt.Fprintf(&b, " %s:%q->%q", o.key, o.expect, o.value)
		}
	}
	switch {
	case w.acked && w.kind == opCAS:
		fmt.Fprintf(&b, " acked at %d (ok=%v)", w.ackRev, w.cas.ok)
	case w.acked:
		fmt.Fprintf(&b, " acked at %d", w.ackRev)
	case w.ambiguous:
		b.WriteString(" ambiguous")
	case w.failed:
		b.WriteString(" abandoned")
	default:
		b.WriteString(" unfinished")
	}
	fmt.Fprintf(&b, " (stamped %v)", w.revs)
	return b.String()
}

// op returns w's operation on key.
func (w *issued) op(key string) (kvOp, bool) {
	for _, o := range w.ops {
		if o.key == key {
			return o, true
		}
	}
	return kvOp{}, false
}

// noteAttempt records the revision the client's write was just stamped
// with.
func (s *simulation) noteAttempt(c *client, p *pending) {
	ws := s.watch
	if ws == nil {
		return
	}
	rev := s.sm.(*shardBackend).rev
	if p.w == nil {
		p.w = &issued{client: c.id, seq: c.seq, kind: p.rec.kind, ops: p.rec.ops}
	}
	p.w.revs = append(p.w.revs, rev)
	ws.writes[rev] = p.w
	ws.attempts = append(ws.attempts, rev)
}

// noteAcked records that p's write applied, as res says.
func (s *simulation) noteAcked(p *pending, res any, cas casResult) {
	r, ok := res.(*shard.Result)
	if p.w == nil || !ok {
		return
	}
	w := p.w
	w.acked, w.ackRev, w.cas = true, r.Revision, cas
	if !slices.Contains(w.revs, r.Revision) {
		s.violation("watch: %v: acknowledged at a revision it was never stamped with", w)
	}
}

// noteFailed records that p's write surely never applied.
func (s *simulation) noteFailed(p *pending) {
	if p.w != nil {
		p.w.failed = true
	}
}

// keyModel is one key as a session knows it: its state at the session's
// base revision, then after every event delivered.
type keyModel struct {
	baseLive bool
	baseKV   shard.KeyValue
	live     bool
	kv       shard.KeyValue
	events   []shard.Event
}

func (m *keyModel) apply(ev shard.Event) {
	m.events = append(m.events, ev)
	m.live = !ev.Delete
	m.kv = ev.KV
}

// at returns the key's state at rev (at or above the base), as the
// session knows it.
func (m *keyModel) at(rev uint64) (bool, shard.KeyValue) {
	for i := len(m.events) - 1; i >= 0; i-- {
		if ev := &m.events[i]; ev.KV.ModRevision <= rev {
			return !ev.Delete, ev.KV
		}
	}
	return m.baseLive, m.baseKV
}

// event returns the session's event of the key at rev.
func (m *keyModel) event(rev uint64) (shard.Event, bool) {
	for i := range m.events {
		if m.events[i].KV.ModRevision == rev {
			return m.events[i], true
		}
	}
	return shard.Event{}, false
}

// watchViolation reports a broken watch promise and stops checking ss.
func (s *simulation) watchViolation(ss *watchSession, p *watchPiece, format string, args ...any) {
	where := ""
	if p.n != nil {
		where = fmt.Sprintf(" (n%d g%d)", p.n.id, p.shard)
	}
	s.violation("watch %d [%q, %q) listed at %d, piece [%q, %q)%s: %s", ss.id, ss.start, ss.end, ss.base, p.start, p.end, where, fmt.Sprintf(format, args...))
	ss.broken = true
}

func evString(ev *shard.Event) string {
	if ev.Delete {
		return fmt.Sprintf("del(%s)@%d", ev.KV.Key, ev.KV.ModRevision)
	}
	return fmt.Sprintf("%s=%q@%d(v%d c%d)", ev.KV.Key, ev.KV.Value, ev.KV.ModRevision, ev.KV.Version, ev.KV.CreateRevision)
}

func evsString(evs []shard.Event) string {
	ss := make([]string, len(evs))
	for i := range evs {
		ss[i] = evString(&evs[i])
	}
	return strings.Join(ss, " ")
}

// watchAnswer checks one answer of p's watcher: events evs (possibly
// none) and progress.
func (s *simulation) watchAnswer(ss *watchSession, p *watchPiece, evs []shard.Event, progress uint64) {
	if ss.broken {
		return
	}
	var last uint64
	for i := 0; i < len(evs); {
		r := evs[i].KV.ModRevision
		j := i + 1
		for j < len(evs) && evs[j].KV.ModRevision == r {
			j++
		}
		switch {
		case r <= p.progress:
			s.watchViolation(ss, p, "events %s at or below the progress %d already reported", evsString(evs[i:j]), p.progress)
			return
		case r <= last:
			s.watchViolation(ss, p, "events out of order in one answer: %s", evsString(evs))
			return
		}
		if !s.checkWrite(ss, p, r, evs[i:j]) {
			return
		}
		last, i = r, j
	}
	s.stats.WatchEvents += len(evs)
	if len(evs) > 0 {
		s.tracef("watch %d: n%d g%d: %d events %d..%d, progress %d", ss.id, p.n.id, p.shard, len(evs), evs[0].KV.ModRevision, last, progress)
	}
	if progress < last {
		s.watchViolation(ss, p, "progress %d below the answer's last event %d", progress, last)
		return
	}
	if progress < p.progress {
		// The watcher reports less than the piece already had (a watcher
		// resumed on a replica behind the piece, then ended by a split
		// that replica applied): the piece keeps its progress.
		s.stats.WatchRegressions++
	}
	if progress > p.progress {
		p.progress = progress
		p.movedAt = s.step
	}
}

// checkWrite checks the events evs of revision r, all in one answer, and
// applies them to the session's state. It returns false after a
// violation.
func (s *simulation) checkWrite(ss *watchSession, p *watchPiece, r uint64, evs []shard.Event) bool {
	w := s.watch.writes[r]
	switch {
	case w == nil:
		s.watchViolation(ss, p, "events %s at revision %d, which no write was stamped with", evsString(evs), r)
		return false
	case w.failed:
		s.watchViolation(ss, p, "events %s of %v, which surely never applied", evsString(evs), w)
		return false
	case w.acked && w.ackRev != r:
		s.watchViolation(ss, p, "events %s at %d of %v", evsString(evs), r, w)
		return false
	case w.seenAt != 0 && w.seenAt != r:
		s.watchViolation(ss, p, "events %s at %d of %v, which a watch saw apply at %d: applied twice", evsString(evs), r, w, w.seenAt)
		return false
	}
	w.seenAt = r
	seen := make(map[string]bool, len(evs))
	for i := range evs {
		ev := &evs[i]
		k := string(ev.KV.Key)
		m := ss.models[k]
		o, ok := w.op(k)
		switch {
		case seen[k]:
			s.watchViolation(ss, p, "two events of %s in one write: %s", k, evsString(evs))
			return false
		case !p.holds(k) || m == nil:
			s.watchViolation(ss, p, "event %s outside the watched range", evString(ev))
			return false
		case !ok:
			s.watchViolation(ss, p, "event %s of %v, which does not write %s", evString(ev), w, k)
			return false
		}
		seen[k] = true
		if why := s.checkEvent(p, m, o, w, ev, ss.prevKV); why != "" {
			s.watchViolation(ss, p, "event %s of %v: %s", evString(ev), w, why)
			return false
		}
		m.apply(*ev)
	}
	for _, o := range w.ops {
		if !p.holds(o.key) || seen[o.key] {
			continue
		}
		if m := ss.models[o.key]; o.op == cmdDelete && (m == nil || !m.live) {
			continue // nothing to delete: no event
		}
		s.watchViolation(ss, p, "an answer holds part of %v at %d: %s, and no event of %s", w, r, evsString(evs), o.key)
		return false
	}
	return true
}

// checkEvent checks ev, the change of o (an operation of w) by w, against
// the key's state m before it; it returns what is wrong, or "".
func (s *simulation) checkEvent(p *watchPiece, m *keyModel, o kvOp, w *issued, ev *shard.Event, prevKV bool) string {
	r := ev.KV.ModRevision
	if o.op == cmdDelete {
		if !ev.Delete {
			return "a delete shows as a put"
		}
		if !m.live {
			return "a delete of a key the watch's state holds no version of"
		}
	} else {
		switch {
		case ev.Delete:
			return "a put shows as a delete"
		case string(ev.KV.Value) != o.value:
			return fmt.Sprintf("value %q, written %q", ev.KV.Value, o.value)
		case o.op == cmdCAS && w.acked && !w.cas.ok:
			return "the CAS failed"
		case o.op == cmdCAS && (m.live != (o.expect != "") || m.live && string(m.kv.Value) != o.expect):
			return fmt.Sprintf("the CAS expected %q, the key's state before is %s", o.expect, modelString(m.live, m.kv))
		}
		wantVer, wantCreate := uint64(1), r
		if m.live {
			wantVer, wantCreate = m.kv.Version+1, m.kv.CreateRevision
		}
		if ev.KV.Version != wantVer || ev.KV.CreateRevision != wantCreate {
			return fmt.Sprintf("version %d create %d; the key's state before is %s", ev.KV.Version, ev.KV.CreateRevision, modelString(m.live, m.kv))
		}
	}
	switch {
	case !prevKV && ev.PrevKV != nil:
		return "a PrevKV the watch did not ask for"
	case !prevKV:
	case !m.live && ev.PrevKV != nil:
		return fmt.Sprintf("PrevKV %q@%d; the key's state before is absent", ev.PrevKV.Value, ev.PrevKV.ModRevision)
	case m.live && ev.PrevKV == nil:
		// The previous version may be pruned once the event's revision
		// fell below the replica's compaction point.
		if r >= compactPoint(p.n.db, p.shard) {
			return fmt.Sprintf("no PrevKV; the key's state before is %s", modelString(m.live, m.kv))
		}
	case m.live && !sameKV(*ev.PrevKV, m.kv):
		return fmt.Sprintf("PrevKV %s; the key's state before is %s", modelString(true, *ev.PrevKV), modelString(m.live, m.kv))
	}
	return ""
}

func sameKV(a, b shard.KeyValue) bool {
	return bytes.Equal(a.Value, b.Value) && a.ModRevision == b.ModRevision && a.CreateRevision == b.CreateRevision && a.Version == b.Version
}

func modelString(live bool, kv shard.KeyValue) string {
	if !live {
		return "absent"
	}
	return fmt.Sprintf("%q@%d(v%d c%d)", kv.Value, kv.ModRevision, kv.Version, kv.CreateRevision)
}

// pieceOf returns the piece of ss that holds k.
func (ss *watchSession) pieceOf(k string) *watchPiece {
	for _, p := range ss.pieces {
		if p.holds(k) {
			return p
		}
	}
	return nil
}

// checkWatches runs the end-of-run watch checks: every write that
// applied at a revision a session covered shows in it, once (see the
// notes above).
func (s *simulation) checkWatches() {
	ws := s.watch
	if ws == nil {
		return
	}
	for _, rev := range ws.attempts {
		if w := ws.writes[rev]; w.acked && w.seenAt != 0 && w.seenAt != w.ackRev && rev == w.revs[0] {
			s.violation("watch: %v seen applying at %d", w, w.seenAt)
		}
	}
	for _, ss := range ws.sessions {
		s.checkCovered(ss)
	}
}

// checkCovered checks that every write known to have applied at a
// revision ss covers shows in ss (see checkKeyCovered). Run when ss
// closes and again at the end of the run, when every write's outcome is
// known.
func (s *simulation) checkCovered(ss *watchSession) {
	for _, k := range ss.keys {
		if ss.broken || !s.checkKeyCovered(ss, k) {
			return
		}
	}
}

// checkKeyCovered checks that every write to k that applied at a
// revision ss covers (its base to the progress of k's piece) shows in
// ss. It returns false after a violation.
func (s *simulation) checkKeyCovered(ss *watchSession, k string) bool {
	ws := s.watch
	p, m := ss.pieceOf(k), ss.models[k]
	if p == nil {
		return true
	}
	lo := sort.Search(len(ws.attempts), func(i int) bool { return ws.attempts[i] > ss.base })
	for _, r := range ws.attempts[lo:] {
		if r > p.progress {
			break
		}
		w := ws.writes[r]
		o, ok := w.op(k)
		if !ok || !(w.acked && w.ackRev == r || w.seenAt == r) {
			continue
		}
		want := true
		switch {
		case o.op == cmdCAS && w.acked:
			want = w.cas.ok
		case o.op == cmdDelete:
			want, _ = m.at(r - 1)
		}
		_, got := m.event(r)
		switch {
		case want && !got:
			s.watchViolation(ss, p, "missed %v: no event of %s at %d, though the watch reached %d", w, k, r, p.progress)
			return false
		case !want && got:
			s.watchViolation(ss, p, "an event of %s at %d, which %v did not change", k, r, w)
			return false
		}
	}
	return true
}

// checkWatchAgainstReads compares ss's state of every key at its piece's
// progress with a read of a replica at that revision.
func (s *simulation) checkWatchAgainstReads(ss *watchSession) {
	if ss.broken {
		return
	}
	for _, k := range ss.keys {
		p, m := ss.pieceOf(k), ss.models[k]
		if p == nil {
			continue
		}
		kv, found, n, ok := s.readAtAny(k, p.progress)
		if !ok {
			continue
		}
		s.stats.ReadsAt++
		live, mkv := m.at(p.progress)
		if live != found || live && !sameKV(kv, mkv) {
			s.watchViolation(ss, p, "%s at %d: the watch's state is %s, n%d reads %s", k, p.progress, modelString(live, mkv), n.id, modelString(found, kv))
			return
		}
	}
}

// readAtAny reads k at rev on the first live replica that owns k and
// answers reads at rev (resolved past it, compacted below it); ok is
// false if none does.
func (s *simulation) readAtAny(k string, rev uint64) (kv shard.KeyValue, found bool, n *node, ok bool) {
	for _, n := range s.watchNodes() {
		for _, d := range n.store.Descriptors() {
			if !d.ContainsKey([]byte(k)) {
				continue
			}
			last := storedRevision(n.db, d.ShardID)
			if last < rev || compactPoint(n.db, d.ShardID) > rev {
				continue
			}
			kv, found, err := shard.ReadAt(n.db, []byte(k), rev)
			must(err)
			return kv, found, n, true
		}
	}
	return shard.KeyValue{}, false, nil, false
}

// storedRevision reads the revision of shard's last write from r: after
// Process, the replica's resolved revision (StateMachine.Resolved; the
// engine commits an apply batch before Committed publishes it, and builds
// a split's new state machine after the commit).
func storedRevision(r pebble.Reader, g shard.ShardID) uint64 {
	return storedUint64(r, keys.ShardKey(uint64(g), keys.ShardRevision))
}

// compactPoint reads shard's compaction point from r: the oldest revision
// its replica answers reads and watches at (raised by every prune to just
// above its horizon, and by Compact).
func compactPoint(r pebble.Reader, g shard.ShardID) uint64 {
	return storedUint64(r, keys.ShardKey(uint64(g), keys.ShardCompacted))
}

// storedUint64 reads the 8-byte number under key in r (0 if none).
func storedUint64(r pebble.Reader, key []byte) uint64 {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0
	}
	must(err)
	defer closer.Close()
	return binary.BigEndian.Uint64(v)
}
