package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/router"
)

// watchProgressInterval is how often an idle watch reports progress.
const watchProgressInterval = 200 * time.Millisecond

// watchRetryDelay is how long a watcher waits before it opens a new
// session after one ended on its own (which is itself reported), unless
// it ended with a *router.CompactedError: resuming from the same
// revision cannot help, and the watcher gives up.
const watchRetryDelay = 200 * time.Millisecond

// cycleWatcher watches the key range of a cycle and records every
// response in a WatchLog. It is a sequence of sessions, each one Watch
// call: the first from the given revision (0: from now), each later one
// from the highest progress (or event revision, if higher) received + 1.
// A watcher on the shared router keeps it; one with newRouter opens a
// router per session and closes it to end the session (a router
// restart). Its methods are for the test goroutine; one goroutine of its
// own runs the sessions.
type cycleWatcher struct {
	id         int
	clk        clock
	log        *WatchLog
	start, end []byte
	shared     *router.Client
	newRouter  func() (*router.Client, error)
	prevKV     bool

	progress  atomic.Uint64 // highest ProgressRevision or event revision received
	responded atomic.Bool   // a response arrived
	gaveUp    atomic.Bool   // a session ended with an error no resume can help
	done      chan struct{} // closed when the sessions' goroutine returns
	wake      chan struct{} // cuts a pause short when stopping

	mu struct {
		sync.Mutex
		stopping bool
		// The current session: how to end it.
		stopped *atomic.Bool
		cancel  context.CancelFunc
		r       *router.Client // its own router, or nil
	}
}

// startWatcher starts watching [start, end) from revision from (0: now)
// through shared, or through a router of its own per session when
// newRouter is set; with prevKV, asking for each event's previous
// version.
func startWatcher(id int, clk clock, log *WatchLog, start, end []byte, from uint64, prevKV bool, shared *router.Client, newRouter func() (*router.Client, error)) *cycleWatcher {
	w := &cycleWatcher{id: id, clk: clk, log: log, start: start, end: end, shared: shared, newRouter: newRouter, prevKV: prevKV,
		done: make(chan struct{}), wake: make(chan struct{}, 1)}
	go w.loop(from)
	return w
}

// loop runs sessions until stop.
func (w *cycleWatcher) loop(from uint64) {
	defer close(w.done)
	for session := 0; ; session++ {
		if session > 0 && w.responded.Load() {
			from = w.progress.Load() + 1
		}
		r := w.shared
		if w.newRouter != nil {
			var err error
			if r, err = w.newRouter(); err != nil {
				// Not the watch's failure: no record, and the next
				// session resumes where this one would have.
				fmt.Printf("chaos: watcher %d: no router for session %d: %v\n", w.id, session, err)
				if !w.pause() {
					return
				}
				continue
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopped := new(atomic.Bool)
		w.mu.Lock()
		if w.mu.stopping {
			w.mu.Unlock()
			cancel()
			if w.newRouter != nil {
				_ = r.Close()
			}
			return
		}
		w.mu.stopped, w.mu.cancel = stopped, cancel
		if w.newRouter != nil {
			w.mu.r = r
		}
		w.mu.Unlock()

		w.log.Add(WatchRecord{Watcher: w.id, Session: session, At: w.clk.now(), Open: true, From: from, PrevKV: w.prevKV})
		final := w.session(ctx, r, session, from, stopped)
		cancel()
		if w.newRouter != nil {
			_ = r.Close()
		}
		if !stopped.Load() && final {
			w.gaveUp.Store(true)
			return
		}
		if !stopped.Load() && !w.pause() { // it ended on its own
			return
		}
		w.mu.Lock()
		stopping := w.mu.stopping
		w.mu.Unlock()
		if stopping {
			return
		}
	}
}

// pause waits watchRetryDelay, or until stop; false when stopping.
func (w *cycleWatcher) pause() bool {
	t := time.NewTimer(watchRetryDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.wake:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.mu.stopping
}

// session runs one Watch until its channel closes, recording every
// response. It reports whether the watch ended with a
// *router.CompactedError.
func (w *cycleWatcher) session(ctx context.Context, r *router.Client, session int, from uint64, stopped *atomic.Bool) (compacted bool) {
	opts := []router.WatchOption{router.WithStartRevision(from), router.WithProgressNotify(watchProgressInterval)}
	if w.prevKV {
		opts = append(opts, router.WithPrevKV())
	}
	ch := r.Watch(ctx, w.start, w.end, opts...)
	ended := false
	for resp := range ch {
		rec := WatchRecord{Watcher: w.id, Session: session, At: w.clk.now(), Progress: resp.ProgressRevision, Stopped: stopped.Load()}
		reached := resp.ProgressRevision
		for _, ev := range resp.Events {
			rec.Events = append(rec.Events, watchEvent(ev))
			reached = max(reached, ev.Revision())
		}
		if resp.Err != nil {
			rec.Err = resp.Err.Error()
			ended = true
			var ce *router.CompactedError
			compacted = errors.As(resp.Err, &ce)
		}
		w.log.Add(rec)
		for {
			p := w.progress.Load()
			if reached <= p || w.progress.CompareAndSwap(p, reached) {
				break
			}
		}
		if resp.Err == nil {
			w.responded.Store(true)
		}
	}
	if !ended && !stopped.Load() {
		// The channel closed with no final error, and not because the
		// harness ended the session: Watch promises an Err first.
		w.log.Add(WatchRecord{Watcher: w.id, Session: session, At: w.clk.now(), Err: "chaos: the watch channel closed without a final response carrying Err"})
	}
	return compacted
}

// endSessionLocked ends the current session (closing its router, or
// cancelling its watch on the shared one); the loop then opens the next
// one unless stopping.
func (w *cycleWatcher) endSessionLocked() {
	if w.mu.stopped == nil {
		return
	}
	w.mu.stopped.Store(true)
	if w.mu.r != nil {
		_ = w.mu.r.Close()
	}
	w.mu.cancel()
}

// restart ends the current session; the next resumes from the progress.
func (w *cycleWatcher) restart() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.endSessionLocked()
}

// stop ends the watcher and waits for its goroutine.
func (w *cycleWatcher) stop() {
	w.mu.Lock()
	w.mu.stopping = true
	w.endSessionLocked()
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
}

// waitResponded polls until the watcher's first response, and returns
// its progress.
func (w *cycleWatcher) waitResponded(timeout time.Duration) (uint64, error) {
	err := poll.Until(context.Background(), timeout, 10*time.Millisecond, func(context.Context) error {
		if !w.responded.Load() {
			return fmt.Errorf("chaos: watcher %d has no response yet", w.id)
		}
		return nil
	})
	return w.progress.Load(), err
}

// waitWatchers polls until every watcher's progress is at least rev,
// but for those that gave up (the check reports them).
func waitWatchers(ws []*cycleWatcher, rev uint64, timeout time.Duration) error {
	return poll.Until(context.Background(), timeout, 20*time.Millisecond, func(context.Context) error {
		for _, w := range ws {
			if p := w.progress.Load(); p < rev && !w.gaveUp.Load() {
				return fmt.Errorf("chaos: watcher %d at progress %d, below %d", w.id, p, rev)
			}
		}
		return nil
	})
}
