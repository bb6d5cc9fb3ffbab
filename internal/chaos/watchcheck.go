package chaos

import (
	"fmt"
	"sort"
)

// This file is the watch check: each watcher's records against the
// cycle's operations (see "What is checked" in doc.go).

// CheckRun checks a cycle's record: its operations as Check does, and
// its watchers' records against them (Report.Watch). Safe for concurrent
// use on distinct runs.
func CheckRun(run Run, vizDir, name string) Report {
	r := Check(run.Ops, vizDir, name)
	r.Watch, r.Events = CheckWatch(run.Ops, run.Watch)
	return r
}

// CheckWatch checks the watchers' records against the operations of the
// same history, and returns the violations and the number of events
// checked. The watched keys are the keys of ops (events of other keys are
// counted, not checked); each key must have had no write before the
// watchers started (a cycle's keys are its own). For each watcher, over
// its sessions taken together, from the revision its first session
// started at (the start) to the highest progress it reported (the
// coverage):
//
//   - event revisions strictly increase (events of one revision in key
//     order), and none is at or below a progress reported earlier;
//   - every event is of an issued write, matched by its value (unique) or,
//     for a delete, by its acknowledged revision or to a delete of unknown
//     outcome called before the event was received: not of a write the
//     router reported as surely not applied, nor of a CAS that reported no
//     swap; an acknowledged write's event carries its revision, and no
//     write's event is delivered twice;
//   - every acknowledged put, swapped CAS, and delete of a key present
//     (by the watch's own account) is delivered, and none has a revision
//     below the start; acknowledged operations above the coverage are
//     reported as unchecked;
//   - replaying the events from absent keys gives each put the create
//     revision and version the event carries, deletes only present keys,
//     gives each event of a session with WithPrevKV the previous version
//     it carries (none when the key was absent; none without it),
//     and agrees with every acknowledged CAS (the value it swapped from,
//     or found) and get (the value it read at its revision) whose
//     revision is in the coverage;
//   - no acknowledged write was called after the watcher had reported a
//     progress at or above its revision;
//   - a session ends with an error only when the harness stopped it, and
//     a later one resumes from the highest progress (or event revision)
//     before it + 1;
//
// and, across watchers, each event in both coverages is delivered by
// both.
func CheckWatch(ops []Op, recs []WatchRecord) ([]string, int) {
	if len(recs) == 0 {
		return nil, 0
	}
	ix := indexWrites(ops)
	byWatcher := map[int][]WatchRecord{}
	var ids []int
	for _, r := range recs {
		if _, ok := byWatcher[r.Watcher]; !ok {
			ids = append(ids, r.Watcher)
		}
		byWatcher[r.Watcher] = append(byWatcher[r.Watcher], r)
	}
	sort.Ints(ids)
	var (
		out    []string
		events int
		done   []*watchReplay
	)
	for _, id := range ids {
		w := &watchReplay{id: id, ix: ix, seen: map[*Op]int{}, keys: map[string][]WatchEvent{}}
		w.walk(byWatcher[id])
		w.matchUnknownDeletes()
		w.checkAcked(ops)
		out = append(out, w.violations...)
		events += w.events
		if w.startKnown {
			done = append(done, w)
		}
	}
	for i := range done {
		for j := i + 1; j < len(done); j++ {
			out = append(out, agree(done[i], done[j])...)
			out = append(out, agree(done[j], done[i])...)
		}
	}
	return out, events
}

// writeIndex finds the writes events are matched to.
type writeIndex struct {
	keys    map[string]bool
	byValue map[string]*Op   // puts and CAS, by their unique value
	deletes map[string][]*Op // per key
}

func indexWrites(ops []Op) *writeIndex {
	ix := &writeIndex{keys: map[string]bool{}, byValue: map[string]*Op{}, deletes: map[string][]*Op{}}
	for i := range ops {
		o := &ops[i]
		ix.keys[o.Key] = true
		switch o.Kind {
		case OpPut, OpCAS:
			ix.byValue[o.Value] = o
		case OpDelete:
			ix.deletes[o.Key] = append(ix.deletes[o.Key], o)
		}
	}
	return ix
}

// watchReplay is one watcher's records being checked.
type watchReplay struct {
	id         int
	ix         *writeIndex
	violations []string
	events     int
	foreign    int

	// start is the first revision the watcher covers; progress the
	// highest it reported so far (the coverage's end, once walked);
	// reached the highest progress or event revision (where a new
	// session resumes, + 1).
	start      uint64
	startKnown bool
	progress   uint64
	reached    uint64
	// prevKV: the current session asked for previous versions.
	prevKV bool
	// sessionErrs counts sessions that ended with an error the harness
	// did not cause; lastErr describes the last one.
	sessionErrs int
	lastErr     string
	// reported is the progress timeline: when each higher progress came.
	reported []progressAt
	// The last event, for the order check.
	lastRev uint64
	lastKey string
	anyEv   bool

	seen map[*Op]int
	// keys holds each watched key's events in order, for replay.
	keys map[string][]WatchEvent
	// loose are delete events no acknowledged delete's revision names.
	loose []looseDelete
}

type progressAt struct {
	at       int64
	progress uint64
}

type looseDelete struct {
	ev WatchEvent
	at int64
}

func (w *watchReplay) failf(format string, args ...any) {
	w.violations = append(w.violations, fmt.Sprintf("watcher %d: ", w.id)+fmt.Sprintf(format, args...))
}

// walk goes through the watcher's records in order.
func (w *watchReplay) walk(recs []WatchRecord) {
	for _, r := range recs {
		if r.Open {
			w.prevKV = r.PrevKV
			switch {
			case !w.startKnown && r.From != 0:
				w.start, w.startKnown = r.From, true
				w.reached = r.From - 1
			case w.startKnown && r.From != 0 && r.From != w.reached+1:
				w.failf("session %d resumes from %d, not from its progress %d + 1 (a harness fault)", r.Session, r.From, w.reached)
			}
			continue
		}
		if !w.startKnown {
			// The first response of a watch from now: it started at its
			// progress + 1, or at its first event.
			w.start, w.startKnown = r.Progress+1, true
			if len(r.Events) > 0 {
				w.start = min(w.start, r.Events[0].Revision)
			}
		}
		for _, ev := range r.Events {
			w.event(ev, r)
		}
		w.reached = max(w.reached, r.Progress)
		if r.Progress > w.progress {
			w.progress = r.Progress
			w.reported = append(w.reported, progressAt{at: r.At, progress: r.Progress})
		}
		if r.Err != "" && !r.Stopped {
			if w.sessionErrs++; w.sessionErrs <= maxSessionErrs {
				w.failf("session %d ended at %.3fs with an error while the harness still watched: %s", r.Session, float64(r.At)/1e9, r.Err)
			} else {
				w.lastErr = fmt.Sprintf("session %d at %.3fs: %s", r.Session, float64(r.At)/1e9, r.Err)
			}
		}
	}
	if w.sessionErrs > maxSessionErrs {
		w.failf("%d more sessions ended with an error while the harness still watched, the last %s", w.sessionErrs-maxSessionErrs, w.lastErr)
	}
	if !w.startKnown {
		w.failf("no response at all")
	}
}

// maxSessionErrs is how many sessions ending with an error a watcher's
// check reports one by one; the rest are counted.
const maxSessionErrs = 3

// event checks one event of response r.
func (w *watchReplay) event(ev WatchEvent, r WatchRecord) {
	w.events++
	if w.anyEv && (ev.Revision < w.lastRev || ev.Revision == w.lastRev && ev.Key <= w.lastKey) {
		w.failf("%v at %.3fs comes after an event at %d of %q: out of revision order, or delivered twice", ev, float64(r.At)/1e9, w.lastRev, w.lastKey)
	}
	if ev.Revision <= w.progress {
		w.failf("%v at %.3fs comes after progress %d was reported: the progress promised no event at or below it", ev, float64(r.At)/1e9, w.progress)
	}
	if ev.Revision < w.start {
		w.failf("%v is below the watch's start %d", ev, w.start)
	}
	w.lastRev, w.lastKey, w.anyEv = ev.Revision, ev.Key, true
	w.reached = max(w.reached, ev.Revision)
	if !w.ix.keys[ev.Key] {
		w.foreign++
		return
	}
	w.replay(ev)
	if ev.Delete {
		for _, d := range w.ix.deletes[ev.Key] {
			if d.Outcome == OK && d.Revision == ev.Revision {
				w.matched(ev, d, r)
				return
			}
		}
		w.loose = append(w.loose, looseDelete{ev: ev, at: r.At})
		return
	}
	o := w.ix.byValue[ev.Value]
	switch {
	case o == nil:
		w.failf("%v matches no issued write", ev)
	case o.Key != ev.Key:
		w.failf("%v carries the value of a write to another key: %v", ev, *o)
	case o.Outcome == Failed:
		w.failf("%v is of a write the router reported as surely not applied: %v", ev, *o)
	case o.Kind == OpCAS && o.Outcome == OK && !o.Swapped:
		w.failf("%v is of a CAS that reported it did not swap: %v", ev, *o)
	default:
		w.matched(ev, o, r)
	}
}

// matched checks event ev against its write o.
func (w *watchReplay) matched(ev WatchEvent, o *Op, r WatchRecord) {
	w.seen[o]++
	if w.seen[o] == 2 {
		w.failf("%v delivered twice (the second at %.3fs): %v", ev, float64(r.At)/1e9, *o)
	}
	if o.Outcome == OK && o.Revision != ev.Revision {
		w.failf("%v: its write was acknowledged at revision %d: %v", ev, o.Revision, *o)
	}
	if o.Call > r.At {
		w.failf("%v received at %.3fs, before its write was called: %v", ev, float64(r.At)/1e9, *o)
	}
}

// replay applies ev to its key's state, checking the create revision
// and version a put carries and that a delete deletes a present key.
func (w *watchReplay) replay(ev WatchEvent) {
	evs := w.keys[ev.Key]
	var prev *WatchEvent
	if len(evs) > 0 && !evs[len(evs)-1].Delete {
		prev = &evs[len(evs)-1]
	}
	switch {
	case w.prevKV && prev == nil && ev.Prev:
		w.failf("%v carries a previous version of a key absent by the watch's account", ev)
	case w.prevKV && prev != nil && (!ev.Prev || ev.PrevValue != prev.Value || ev.PrevRevision != prev.Revision ||
		ev.PrevCreate != prev.CreateRevision || ev.PrevVersion != prev.Version):
		w.failf("%v: want previous version %v", ev, *prev)
	case !w.prevKV && ev.Prev:
		w.failf("%v carries a previous version, not asked for", ev)
	}
	switch {
	case ev.Delete && prev == nil:
		w.failf("%v deletes a key absent by the watch's account (a delete of an absent key writes nothing)", ev)
	case ev.Delete:
	case prev == nil && (ev.CreateRevision != ev.Revision || ev.Version != 1):
		w.failf("%v creates the key (absent by the watch's account): want create %d, version 1", ev, ev.Revision)
	case prev != nil && (ev.CreateRevision != prev.CreateRevision || ev.Version != prev.Version+1):
		w.failf("%v follows %v: want create %d, version %d", ev, *prev, prev.CreateRevision, prev.Version+1)
	}
	w.keys[ev.Key] = append(evs, ev)
}

// matchUnknownDeletes gives each delete event no acknowledged delete
// names a delete of unknown outcome of its key called before the event
// came, each at most once. (The events of a key come in receive order,
// and the deletes each may match are those called before it: a growing
// set, so taking the earliest unused one never strands a later event.)
func (w *watchReplay) matchUnknownDeletes() {
	used := map[*Op]bool{}
	for _, l := range w.loose {
		var found *Op
		for _, d := range w.ix.deletes[l.ev.Key] {
			if d.Outcome == Unknown && !used[d] && d.Call < l.at {
				found = d
				break
			}
		}
		if found != nil {
			used[found] = true
			continue
		}
		failedBefore := false
		for _, d := range w.ix.deletes[l.ev.Key] {
			failedBefore = failedBefore || (d.Outcome == Failed && d.Call < l.at)
		}
		if failedBefore {
			w.failf("%v matches no acknowledged or unknown delete; a delete the router reported as surely not applied was called before it", l.ev)
		} else {
			w.failf("%v matches no issued delete", l.ev)
		}
	}
}

// stateAt returns the key's value by the watch's account after every
// event at or below rev: its value and whether it was present.
func (w *watchReplay) stateAt(key string, rev uint64) (string, bool) {
	val, present := "", false
	for _, ev := range w.keys[key] {
		if ev.Revision > rev {
			break
		}
		val, present = ev.Value, !ev.Delete
	}
	return val, present
}

// covers reports whether rev is in the watcher's coverage.
func (w *watchReplay) covers(rev uint64) bool {
	return w.startKnown && rev >= w.start && rev <= w.progress
}

// checkAcked checks the acknowledged operations against the watch: the
// writes it must have delivered, the CAS and gets it must agree with,
// and the writes ordered below a progress reported before they began.
func (w *watchReplay) checkAcked(ops []Op) {
	if !w.startKnown {
		return
	}
	var unchecked int
	var highest uint64
	for i := range ops {
		o := &ops[i]
		if o.Outcome != OK || o.Revision == 0 {
			continue
		}
		if o.isWrite() {
			// The first progress at or above the write's revision.
			j := sort.Search(len(w.reported), func(j int) bool { return w.reported[j].progress >= o.Revision })
			if j < len(w.reported) && w.reported[j].at < o.Call {
				w.failf("%v was called at %.3fs, after progress %d was reported at %.3fs: a write that began after that progress must be ordered above it",
					*o, float64(o.Call)/1e9, w.reported[j].progress, float64(w.reported[j].at)/1e9)
			}
		}
		switch {
		case o.isWrite() && o.Revision < w.start && o.acked():
			w.failf("%v has a revision below the watch's start %d, yet the watch started before the write was called", *o, w.start)
			continue
		case o.Revision > w.progress:
			unchecked++
			highest = max(highest, o.Revision)
			continue
		case o.Revision < w.start:
			continue
		}
		before, beforePresent := w.stateAt(o.Key, o.Revision-1)
		at, atPresent := w.stateAt(o.Key, o.Revision)
		switch {
		case o.Kind == OpDelete && beforePresent && w.seen[o] == 0:
			w.failf("%v is missing: the watch has %q present before it and no delete at %d", *o, before, o.Revision)
		case o.Kind == OpDelete:
		case o.acked() && w.seen[o] == 0:
			w.failf("%v is missing from the watch", *o)
		case o.Kind == OpCAS && o.Swapped && (before != o.Expect || beforePresent != (o.Expect != "")):
			w.failf("%v swapped from %q, but the watch has the key at %s before it", *o, o.Expect, describeState(before, beforePresent))
		case o.Kind == OpCAS && !o.Swapped && (at != o.Current || atPresent != (o.Current != "")):
			w.failf("%v found %q at its revision, but the watch has the key at %s", *o, o.Current, describeState(at, atPresent))
		case o.Kind == OpGet && (at != o.Out || atPresent != (o.Out != "")):
			w.failf("%v read at revision %d, but the watch has the key at %s there", *o, o.Revision, describeState(at, atPresent))
		}
	}
	if unchecked > 0 {
		w.failf("progress %d never reached the highest acknowledged revision %d: %d acknowledged operations unchecked", w.progress, highest, unchecked)
	}
}

func describeState(val string, present bool) string {
	if !present {
		return "absent"
	}
	return fmt.Sprintf("%q", val)
}

// agree reports the events of a that b should have delivered (in both
// coverages, of watched keys) and did not. Previous versions are not
// compared (one watcher may ask for them, the other not).
func agree(a, b *watchReplay) []string {
	bare := func(ev WatchEvent) WatchEvent {
		ev.Prev, ev.PrevValue, ev.PrevRevision, ev.PrevCreate, ev.PrevVersion = false, "", 0, 0, 0
		return ev
	}
	have := map[WatchEvent]bool{}
	for _, evs := range b.keys {
		for _, ev := range evs {
			have[bare(ev)] = true
		}
	}
	var out []string
	for _, evs := range a.keys {
		for _, ev := range evs {
			if b.covers(ev.Revision) && a.covers(ev.Revision) && !have[bare(ev)] {
				out = append(out, fmt.Sprintf("watchers %d and %d disagree: %d delivered %v, %d did not (its coverage [%d, %d])",
					a.id, b.id, a.id, ev, b.id, b.start, b.progress))
			}
		}
	}
	sort.Strings(out)
	return out
}
