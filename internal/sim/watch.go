package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/shard"
)

// Watches (shard backend, engine and fleet runs). A few watch sessions run
// at any time, each as a client of the shard package's Watch would hold
// one through a router: list a key range at a revision R (Store.ScanAt on
// one replica), then watch it from R+1 (Store.Watch), and follow the
// range wherever it goes. A session's range is cut into pieces, each
// watched on one replica of the shard that holds it: when a watcher ends
// (EpochNotMatch after a split, ErrShardNotFound when its replica is
// removed, or its node crashes), the piece resumes from its progress + 1
// on any live replica of the shard that now holds its first key, and
// splits in two when that shard holds only part of it. Pieces also move
// to another replica now and then, and when their progress stalls, so
// that catching up from stored versions runs as often as the feed.
//
// The simulator polls every watcher every step with Next on a cancelled
// context: Next returns what is queued, or catches up from storage, and
// never blocks. Everything the sessions decide comes from their own PCG
// (seeded from the run's seed), and they propose nothing during the run,
// so the faults, workload and engines of a seed are those of a run
// without watches. See watchcheck.go for what is checked.

// Watch sessions: how many run at once, and how long each lives.
const (
	watchSessions    = 3
	watchLifeMin     = 150
	watchLifeSpread  = 350
	watchMoveOdds    = 150 // a piece moves to another replica with chance 1/watchMoveOdds per poll
	watchStallSteps  = 150 // a piece whose progress did not move for this long moves
	watchAnswersPoll = 16  // Next calls per piece and poll, at most
	watchFinishSteps = 600 // steps the healed cluster gets for the watches to catch up
	watchResolveWait = 200 // steps a Resolve gets to apply and show in every watch's progress
)

// watchState is the watch sessions of a run and what the checks know of
// the writes.
type watchState struct {
	rng *rand.Rand
	// ctx is cancelled: Next never waits.
	ctx context.Context
	// writes maps every revision a write was stamped with to the write;
	// attempts lists those revisions in order (the oracle hands them out
	// increasing).
	writes   map[uint64]*issued
	attempts []uint64
	// keys are the user keys clients write, sorted.
	keys     []string
	sessions []*watchSession
	nextAt   int
	// Planted bugs (bugs.go): answers counts the answers with events;
	// held and last are what the reordering and duplicating bugs keep.
	answers int
	held    *heldAnswer
	last    map[*watchPiece]shard.Event
}

type heldAnswer struct {
	p        *watchPiece
	evs      []shard.Event
	progress uint64
}

// watchSession is one list-then-watch of a key range.
type watchSession struct {
	id         int
	start, end []byte
	prevKV     bool
	// base is the revision of the list; the watch starts at base+1.
	base   uint64
	keys   []string
	models map[string]*keyModel
	pieces []*watchPiece
	endAt  int
	// every: the session polls its watchers every this many steps (a
	// slow reader lets events queue, and its replica change meanwhile).
	every  int
	closed bool
	// broken: the session reported a violation; its later answers are
	// not checked (one broken promise makes the rest noise).
	broken bool
}

// watchPiece is the part of a session's range one watcher serves.
type watchPiece struct {
	start, end []byte
	// progress: every event at or below it was delivered (the highest
	// progress any of the piece's watchers reported).
	progress uint64
	n        *node
	inc      int
	shard    shard.ShardID
	w        *shard.Watcher
	// movedAt is the step the piece's progress last moved or its watcher
	// opened.
	movedAt int
}

func (p *watchPiece) holds(k string) bool {
	return bytes.Compare([]byte(k), p.start) >= 0 && (len(p.end) == 0 || bytes.Compare([]byte(k), p.end) < 0)
}

func newWatchState(s *simulation) *watchState {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ws := &watchState{
		rng:    rand.New(rand.NewPCG(s.cfg.Seed^0x7761746368, s.cfg.Seed+0x5eed)),
		ctx:    ctx,
		writes: make(map[uint64]*issued),
		last:   make(map[*watchPiece]shard.Event),
	}
	return ws
}

// watchKeys returns the sorted user keys of the run, computed once.
func (s *simulation) watchKeys() []string {
	ws := s.watch
	if ws.keys == nil {
		if s.fleet != nil {
			ws.keys = slices.Clone(s.fleet.keys)
		} else {
			ws.keys = sortedKeys(s.owner)
		}
		slices.Sort(ws.keys)
	}
	return ws.keys
}

// keysIn returns the run's keys in [start, end) (empty end: +inf).
func (s *simulation) keysIn(start, end []byte) []string {
	ks := s.watchKeys()
	lo := sort.SearchStrings(ks, string(start))
	hi := len(ks)
	if len(end) > 0 {
		hi = sort.SearchStrings(ks, string(end))
	}
	if hi < lo {
		return nil
	}
	return ks[lo:hi]
}

// watchNodes returns the live shardnodes whose store can serve watches
// and reads now (a node whose disk failed is about to stop).
func (s *simulation) watchNodes() []*node {
	var out []*node
	for _, n := range s.nodes {
		if n.up() && n.store != nil && !n.disk.on.Load() {
			out = append(out, n)
		}
	}
	return out
}

// pollWatches runs the watch sessions for one step: starts and ends
// sessions during the workload, and polls every piece.
func (s *simulation) pollWatches(workload bool) {
	ws := s.watch
	if ws == nil {
		return
	}
	active := 0
	for _, ss := range ws.sessions {
		if ss.closed {
			continue
		}
		if workload && s.step >= ss.endAt {
			s.closeSession(ss, "lifetime over")
			continue
		}
		active++
		if (s.step+ss.id)%ss.every != 0 {
			continue
		}
		for i := 0; i < len(ss.pieces); i++ { // pieces may grow while polled
			s.pollPiece(ss, ss.pieces[i])
			if ss.closed {
				break
			}
		}
	}
	if workload && active < watchSessions && s.step >= ws.nextAt {
		ws.nextAt = s.step + 1 + ws.rng.IntN(20)
		s.startWatch()
	}
}

// startWatch starts a session on a random shard of a random node: a
// range of it listed at a revision (the replica's resolved revision, or
// up to 300 ms of revisions before it), then watched from the next.
func (s *simulation) startWatch() {
	ws := s.watch
	ns := s.watchNodes()
	if len(ns) == 0 {
		return
	}
	n := ns[ws.rng.IntN(len(ns))]
	ds := n.store.Descriptors()
	if len(ds) == 0 {
		return
	}
	d := ds[ws.rng.IntN(len(ds))]
	start, end := d.Start, d.End
	// The sessions watch the clients' keys, below the leased keys and
	// the system span (lease.go), whose writes their checks do not know.
	if bytes.Compare(start, leaseKeysStart) >= 0 {
		return
	}
	if len(end) == 0 || bytes.Compare(end, leaseKeysStart) > 0 {
		end = leaseKeysStart
	}
	if ks := s.keysIn(d.Start, d.End); len(ks) >= 2 && ws.rng.IntN(2) == 0 {
		i := ws.rng.IntN(len(ks))
		j := i + 1 + ws.rng.IntN(len(ks)-i)
		start = []byte(ks[i])
		if j < len(ks) {
			end = []byte(ks[j])
		}
	}
	last := storedRevision(n.db, d.ShardID)
	base := last
	if ws.rng.IntN(3) == 0 {
		base -= min(base, uint64(tso.Compose(int64(ws.rng.IntN(300)), 0)))
	}
	ss := &watchSession{
		id: len(ws.sessions) + 1, start: bytes.Clone(start), end: bytes.Clone(end), prevKV: ws.rng.IntN(2) == 0,
		base: base, endAt: s.step + watchLifeMin + ws.rng.IntN(watchLifeSpread), models: make(map[string]*keyModel),
		every: pick(ws.rng, 1, 1, 2, 5, 20),
	}
	listAt := base
	if s.cfg.bug == bugListStale {
		listAt -= min(listAt, uint64(tso.Compose(30, 0)))
	}
	kvs, _, err := n.store.ScanAt(ws.ctx, d.ShardID, shard.Epoch{}, start, end, 0, listAt)
	var ce *shard.CompactedError
	switch {
	case errors.As(err, &ce):
		s.stats.WatchCompacted++
		if cp := compactPoint(n.db, d.ShardID); ce.CompactRevision != cp || listAt >= cp {
			s.violation("watch: list of g%d at %d on n%d refused as compacted at %d, but its compaction point is %d (last write %d)",
				d.ShardID, listAt, n.id, ce.CompactRevision, cp, last)
		}
		s.tracef("watch: list of g%d at %d on n%d: %v", d.ShardID, listAt, n.id, err)
		return
	case err != nil:
		s.violation("watch: list of g%d [%q, %q) at %d on n%d (resolved %d): %v", d.ShardID, start, end, listAt, n.id, last, err)
		return
	}
	w, from, err := n.store.Watch(d.ShardID, shard.Epoch{}, start, end, base+1, ss.prevKV)
	if err != nil {
		s.violation("watch: watch of g%d [%q, %q) from %d on n%d: %v", d.ShardID, start, end, base+1, n.id, err)
		return
	}
	if from != base+1 {
		s.violation("watch: watch of g%d from %d on n%d starts at %d", d.ShardID, base+1, n.id, from)
	}
	ss.start, ss.end = w.Range()
	ss.keys = s.keysIn(ss.start, ss.end)
	for _, k := range ss.keys {
		ss.models[k] = &keyModel{}
	}
	for _, kv := range kvs {
		m := ss.models[string(kv.Key)]
		if m == nil {
			s.violation("watch: list of g%d at %d on n%d holds %q, which no client writes", d.ShardID, listAt, n.id, kv.Key)
			continue
		}
		m.live, m.kv = true, kv
		m.baseLive, m.baseKV = true, kv
	}
	ss.pieces = []*watchPiece{{start: ss.start, end: ss.end, progress: base, n: n, inc: n.incarnation, shard: d.ShardID, w: w, movedAt: s.step}}
	ws.sessions = append(ws.sessions, ss)
	s.stats.WatchSessions++
	s.tracef("watch %d: n%d g%d [%q, %q) listed at %d (resolved %d): %d keys, %d live; prevkv=%v, polled every %d steps", ss.id, n.id, d.ShardID,
		ss.start, ss.end, base, last, len(ss.keys), len(kvs), ss.prevKV, ss.every)
}

// pollPiece reads what p's watcher has, or opens one.
func (s *simulation) pollPiece(ss *watchSession, p *watchPiece) {
	ws := s.watch
	if p.w != nil && (!p.n.up() || p.n.incarnation != p.inc) {
		p.w = nil // its node went down (watchNodeDown closed it)
	}
	if p.w != nil && (ws.rng.IntN(watchMoveOdds) == 0 || s.step-p.movedAt > watchStallSteps) {
		s.tracef("watch %d: piece [%q, %q) leaves n%d at %d", ss.id, p.start, p.end, p.n.id, p.progress)
		p.w.Close()
		p.w = nil
		s.stats.WatchMoves++
	}
	if p.w == nil {
		s.resumePiece(ss, p)
		if p.w == nil {
			return
		}
	}
	if p.n.disk.on.Load() {
		return
	}
	for range watchAnswersPoll {
		evs, progress, err := p.w.Next(ws.ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			s.watchEnded(ss, p, progress, err)
			return
		}
		s.deliver(ss, p, evs, progress)
		if err != nil || ss.closed {
			return
		}
	}
}

// deliver checks one answer of p's watcher, through the planted bug if
// there is one.
func (s *simulation) deliver(ss *watchSession, p *watchPiece, evs []shard.Event, progress uint64) {
	ws := s.watch
	if len(evs) > 0 {
		ws.answers++
	}
	switch s.cfg.bug {
	case bugWatchDropsEvent:
		if len(evs) > 0 && ws.answers%4 == 0 {
			s.tracef("watch %d: planted bug drops %q at %d", ss.id, evs[0].KV.Key, evs[0].KV.ModRevision)
			evs = evs[1:]
		}
	case bugWatchDropsWrite:
		if len(evs) > 0 && ws.answers%3 == 0 {
			r := evs[len(evs)-1].KV.ModRevision
			i := len(evs)
			for i > 0 && evs[i-1].KV.ModRevision == r {
				i--
			}
			s.tracef("watch %d: planted bug drops the write at %d", ss.id, r)
			evs = evs[:i]
		}
	case bugWatchDuplicatesEvent:
		if len(evs) > 0 {
			last, ok := ws.last[p]
			ws.last[p] = evs[len(evs)-1]
			if ok && ws.answers%4 == 0 {
				evs = append([]shard.Event{last}, evs...)
			}
		}
	case bugWatchReorders:
		if len(evs) > 0 {
			if h := ws.held; h != nil && h.p == p {
				ws.held = nil
				s.watchAnswer(ss, p, evs, progress)
				evs, progress = h.evs, h.progress
			} else if h == nil && ws.answers%4 == 0 {
				ws.held = &heldAnswer{p: p, evs: evs, progress: progress}
				return
			}
		}
	case bugWatchSplitsWrite:
		if n := len(evs); n >= 2 && evs[n-1].KV.ModRevision == evs[n-2].KV.ModRevision {
			s.watchAnswer(ss, p, evs[:n-1], evs[n-1].KV.ModRevision-1)
			evs = evs[n-1:]
		}
	case bugWatchProgressAhead:
		progress += uint64(tso.Compose(50, 0))
	}
	s.watchAnswer(ss, p, evs, progress)
}

// watchEnded handles the error that ended p's watcher: resume elsewhere
// after a split or a removal, end the session when its history was
// compacted.
func (s *simulation) watchEnded(ss *watchSession, p *watchPiece, progress uint64, err error) {
	p.w.Close()
	p.w = nil
	s.watchAnswer(ss, p, nil, progress)
	var enm *shard.EpochNotMatchError
	var ce *shard.CompactedError
	switch {
	case errors.As(err, &enm), errors.Is(err, shard.ErrShardNotFound):
		s.stats.WatchResumes++
		s.tracef("watch %d: piece [%q, %q) on n%d g%d ended at %d: %v", ss.id, p.start, p.end, p.n.id, p.shard, progress, err)
	case errors.As(err, &ce):
		s.stats.WatchCompacted++
		last := storedRevision(p.n.db, ce.Shard)
		if cp := compactPoint(p.n.db, ce.Shard); ce.CompactRevision != cp || ce.Revision >= cp {
			s.violation("watch %d: n%d g%d refused a watch from %d as compacted at %d, but its compaction point is %d (last write %d)",
				ss.id, p.n.id, p.shard, ce.Revision, ce.CompactRevision, cp, last)
		}
		s.closeSession(ss, err.Error())
	default:
		s.violation("watch %d: watcher of [%q, %q) on n%d g%d failed: %v", ss.id, p.start, p.end, p.n.id, p.shard, err)
		s.closeSession(ss, "failed")
	}
}

// resumePiece opens a watcher for p from its progress + 1 on a random live
// replica of the newest shard holding p's first key, and splits p if that
// shard holds only part of it.
func (s *simulation) resumePiece(ss *watchSession, p *watchPiece) {
	ws := s.watch
	var best *shard.Descriptor
	type host struct {
		n *node
		d shard.Descriptor
	}
	var all []host
	for _, n := range s.watchNodes() {
		for _, d := range n.store.Descriptors() {
			if d.ContainsKey(p.start) {
				all = append(all, host{n, d})
			}
		}
	}
	for i := range all {
		if d := &all[i].d; best == nil || newerEpoch(d.Epoch, best.Epoch) {
			best = d
		}
	}
	if best == nil {
		return
	}
	var hosts []*node
	for _, h := range all {
		if h.d.ShardID == best.ShardID {
			hosts = append(hosts, h.n)
		}
	}
	n, g := hosts[ws.rng.IntN(len(hosts))], best.ShardID
	w, from, err := n.store.Watch(g, shard.Epoch{}, p.start, p.end, p.progress+1, ss.prevKV)
	if err != nil {
		s.tracef("watch %d: resume of [%q, %q) on n%d g%d: %v", ss.id, p.start, p.end, n.id, g, err)
		return
	}
	if from != p.progress+1 {
		s.violation("watch %d: watch of g%d from %d on n%d starts at %d", ss.id, g, p.progress+1, n.id, from)
	}
	a, b := w.Range()
	if !bytes.Equal(a, p.start) {
		s.violation("watch %d: watch of [%q, %q) on n%d g%d serves [%q, %q)", ss.id, p.start, p.end, n.id, g, a, b)
	}
	if !bytes.Equal(b, p.end) {
		// The shard holds only the start of the piece: the rest is another
		// piece, from the same progress.
		ss.pieces = append(ss.pieces, &watchPiece{start: bytes.Clone(b), end: p.end, progress: p.progress, movedAt: s.step})
		p.end = bytes.Clone(b)
	}
	p.w, p.n, p.inc, p.shard, p.movedAt = w, n, n.incarnation, g, s.step
	s.tracef("watch %d: piece [%q, %q) resumes on n%d g%d from %d", ss.id, p.start, p.end, n.id, g, from)
}

// closeSession ends ss: its watchers close, and its state is compared
// with a read at each piece's progress.
func (s *simulation) closeSession(ss *watchSession, why string) {
	if ss.closed {
		return
	}
	ss.closed = true
	for _, p := range ss.pieces {
		if p.w != nil {
			p.w.Close()
			p.w = nil
		}
	}
	s.tracef("watch %d: closed (%s)", ss.id, why)
	s.checkCovered(ss)
	s.checkWatchAgainstReads(ss)
}

// watchNodeDown closes the watchers on n, which is going down: they die
// with the process, and their pieces resume elsewhere.
func (s *simulation) watchNodeDown(n *node) {
	if s.watch == nil {
		return
	}
	for _, ss := range s.watch.sessions {
		for _, p := range ss.pieces {
			if p.w != nil && p.n == n {
				p.w.Close()
				p.w = nil
			}
		}
	}
}

// finishWatches lets the open sessions catch up once the healed cluster
// converged, then resolves their shards (a Resolve with a revision from
// the run's oracle, proposed to the leader) and requires every piece's
// progress to pass it: progress moves while no write comes.
func (s *simulation) finishWatches() {
	if s.watch == nil {
		return
	}
	behind := s.watchesBehind()
	for i := 0; i < watchFinishSteps && behind != ""; i++ {
		s.advance(false)
		behind = s.watchesBehind()
	}
	if behind != "" {
		s.violation("watch: sessions did not catch up within %d steps after the cluster converged: %s", watchFinishSteps, behind)
		return
	}
	resolved := s.resolveWatched()
	if resolved == nil {
		return
	}
	stuck := ""
	for i := 0; i < watchResolveWait; i++ {
		stuck = ""
		for _, ss := range s.watch.sessions {
			for _, p := range ss.pieces {
				if !ss.closed && !ss.broken && p.progress < resolved[p.shard] && stuck == "" {
					stuck = fmt.Sprintf("watch %d piece [%q, %q) on n%d g%d at %d, resolved to %d", ss.id, p.start, p.end, p.n.id, p.shard, p.progress, resolved[p.shard])
				}
			}
		}
		if stuck == "" {
			break
		}
		s.advance(false)
	}
	if stuck != "" {
		s.violation("watch: progress did not pass a Resolve within %d steps: %s", watchResolveWait, stuck)
	}
	s.checkReadsAt(true)
}

// watchesBehind describes an open piece that has no watcher or whose
// progress is below its replica's resolved revision, or returns "".
func (s *simulation) watchesBehind() string {
	for _, ss := range s.watch.sessions {
		if ss.closed || ss.broken {
			continue
		}
		for _, p := range ss.pieces {
			switch {
			case p.w == nil:
				return fmt.Sprintf("watch %d: piece [%q, %q) has no watcher (at %d)", ss.id, p.start, p.end, p.progress)
			case p.progress < p.w.Resolved():
				return fmt.Sprintf("watch %d: piece [%q, %q) on n%d g%d at %d, resolved %d", ss.id, p.start, p.end, p.n.id, p.shard, p.progress, p.w.Resolved())
			}
		}
	}
	return ""
}

// resolveWatched proposes a Resolve to the leader of every shard an open
// piece watches and returns the revision each resolved to, or nil (after
// reporting why) if one did not apply.
func (s *simulation) resolveWatched() map[shard.ShardID]uint64 {
	var gs []shard.ShardID
	for _, ss := range s.watch.sessions {
		for _, p := range ss.pieces {
			if !ss.closed && !ss.broken {
				gs = append(gs, p.shard)
			}
		}
	}
	slices.Sort(gs)
	gs = slices.Compact(gs)
	out := make(map[shard.ShardID]uint64)
	b := s.sm.(*shardBackend)
	for _, g := range gs {
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			var rev uint64
			if rev, err = s.resolveOnce(b, g); err == nil {
				out[g] = rev
				s.tracef("watch: g%d resolved to %d", g, rev)
				break
			}
			s.tracef("watch: resolve g%d: %v", g, err)
			for range 2 * s.prof.electionTicks() * stepsPerTick {
				s.advance(false)
			}
		}
		if err != nil {
			s.violation("watch: resolving g%d failed 5 times; last: %v", g, err)
			return nil
		}
	}
	return out
}

func (s *simulation) resolveOnce(b *shardBackend, g shard.ShardID) (uint64, error) {
	li := leaderOf(s.groupStatuses(g))
	if li < 0 {
		return 0, errors.New("no leader")
	}
	lead := s.nodes[li]
	c := shard.Command{Kind: shard.KindResolve, Revision: b.nextRevision()}
	f := lead.e.ProposeFuture(g, c.AppendEncoded(nil))
	for i := 0; !isDone(f); i++ {
		if i == opTimeoutSteps {
			return 0, fmt.Errorf("resolve on n%d timed out", lead.id)
		}
		s.advance(false)
	}
	res, err := f.Result()
	if err != nil {
		return 0, err
	}
	switch r := res.(type) {
	case *shard.Result:
		if r.Revision < c.Revision {
			return 0, fmt.Errorf("resolve at %d answered %d", c.Revision, r.Revision)
		}
		return r.Revision, nil
	case error:
		return 0, r
	}
	return 0, fmt.Errorf("resolve: unexpected result %T %v", res, res)
}
