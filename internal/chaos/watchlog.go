package chaos

import (
	"fmt"
	"strings"
	"sync"

	"github.com/flotilla-kv/flotilla/router"
)

// WatchEvent is one event a watcher received, as recorded.
type WatchEvent struct {
	Delete bool
	Key    string
	// Value is a put's value ("" for a delete).
	Value string
	// Revision is the event's (its write's) revision, KV.ModRevision.
	Revision uint64
	// CreateRevision and Version are KV's, for a put.
	CreateRevision uint64
	Version        uint64
	// Prev is set when the event carried PrevKV (asked for with
	// WithPrevKV, and the key existed): the key's value, mod revision,
	// create revision and version before the write.
	Prev         bool   `json:",omitempty"`
	PrevValue    string `json:",omitempty"`
	PrevRevision uint64 `json:",omitempty"`
	PrevCreate   uint64 `json:",omitempty"`
	PrevVersion  uint64 `json:",omitempty"`
}

func (e WatchEvent) String() string {
	var s string
	if e.Delete {
		s = fmt.Sprintf("DELETE %q @%d", e.Key, e.Revision)
	} else {
		s = fmt.Sprintf("PUT %q=%q @%d (create %d, version %d)", e.Key, e.Value, e.Revision, e.CreateRevision, e.Version)
	}
	if e.Prev {
		s += fmt.Sprintf(" prev %q @%d (create %d, version %d)", e.PrevValue, e.PrevRevision, e.PrevCreate, e.PrevVersion)
	}
	return s
}

// watchEvent records ev.
func watchEvent(ev router.Event) WatchEvent {
	e := WatchEvent{
		Delete:         ev.Type == router.EventDelete,
		Key:            string(ev.KV.Key),
		Value:          string(ev.KV.Value),
		Revision:       ev.Revision(),
		CreateRevision: ev.KV.CreateRevision,
		Version:        ev.KV.Version,
	}
	if p := ev.PrevKV; p != nil {
		e.Prev, e.PrevValue, e.PrevRevision, e.PrevCreate, e.PrevVersion = true, string(p.Value), p.ModRevision, p.CreateRevision, p.Version
	}
	return e
}

// WatchRecord is one thing a watcher saw: a session's start (Open), or a
// response of its Watch. A watcher is a sequence of sessions, each a
// Watch call (the later ones on a new router, resuming after the last
// progress); the records of one watcher are in the order it saw them.
type WatchRecord struct {
	// Watcher names the watcher; Session counts its Watch calls from 0.
	Watcher int
	Session int
	// At is when the record was made, on the history's clock.
	At int64
	// Open marks a session's start: its Watch was called from revision
	// From (0: from now), with WithPrevKV when PrevKV.
	Open   bool
	From   uint64
	PrevKV bool `json:",omitempty"`
	// A response: its events, ProgressRevision and Err.
	Events   []WatchEvent
	Progress uint64
	Err      string
	// Stopped: the harness had ended the session (closed its router or
	// cancelled it) before this response, so an Err is expected.
	Stopped bool
}

func (r WatchRecord) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "w%d.%d [%.3fs] ", r.Watcher, r.Session, float64(r.At)/1e9)
	if r.Open {
		fmt.Fprintf(&b, "open from %d", r.From)
		if r.PrevKV {
			b.WriteString(" with prev kv")
		}
		return b.String()
	}
	fmt.Fprintf(&b, "progress %d", r.Progress)
	for _, e := range r.Events {
		b.WriteString("; " + e.String())
	}
	if r.Err != "" {
		fmt.Fprintf(&b, "; err: %s", r.Err)
		if r.Stopped {
			b.WriteString(" (stopped)")
		}
	}
	return b.String()
}

// WatchLog collects the records of a cycle's watchers. Safe for
// concurrent use; Records returns a copy the caller owns.
type WatchLog struct {
	mu struct {
		sync.Mutex
		recs []WatchRecord
	}
}

// Add appends one record.
func (l *WatchLog) Add(r WatchRecord) {
	l.mu.Lock()
	l.mu.recs = append(l.mu.recs, r)
	l.mu.Unlock()
}

// Records returns the records in the order they were added.
func (l *WatchLog) Records() []WatchRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]WatchRecord(nil), l.mu.recs...)
}
