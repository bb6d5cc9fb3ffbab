package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Watch defaults; see the WatchOptions.
const (
	// DefaultWatchProgressInterval is the progress interval of
	// WithProgressNotify(0).
	DefaultWatchProgressInterval = 500 * time.Millisecond
	// DefaultWatchBuffer is how many WatchResponses the channel of Watch
	// holds by default.
	DefaultWatchBuffer = 16
	// DefaultWatchMaxPending is how many events a watch holds by default
	// while it waits for a lagging shard's progress before it stops
	// reading from the shards that are ahead.
	DefaultWatchMaxPending = 4096
)

// DefaultWatchMergeInterval is the progress interval the Client asks
// every shard stream for, unless WithMergeInterval says otherwise.
const DefaultWatchMergeInterval = 100 * time.Millisecond

// watchMinInterval is the shortest progress interval a shardnode accepts.
const watchMinInterval = 10 * time.Millisecond

// A stream silent for watchStallIntervals merge intervals, and at least
// watchStallFloor, is given up and resubscribed elsewhere. A variable for
// tests.
const watchStallIntervals = 20

var watchStallFloor = 3 * time.Second

// watchMaxEvents is the most events one WatchResponse carries, unless
// one write has more (a write's events are never split).
const watchMaxEvents = 1000

// watchQuickRetries is how many retries without a wait a shard stream
// makes in a row (NotLeader hints, EpochNotMatch, the next replica) before
// it backs off anyway.
const watchQuickRetries = 8

// watchStableAfter is how long a stream must have lived for its shard's
// backoff to start over when it fails.
const watchStableAfter = time.Second

// EventType says what a write did to a key.
type EventType int

const (
	// EventPut: the key was created or updated.
	EventPut EventType = iota
	// EventDelete: the key was deleted.
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one key changed by one write.
type Event struct {
	Type EventType
	// KV is the key after the write; for a delete, only Key and
	// ModRevision (the delete's revision) are set.
	KV KeyValue
	// PrevKV is the key before the write, when WithPrevKV was given and
	// the key existed; nil otherwise.
	PrevKV *KeyValue
}

// Revision is the revision of the write that made the event
// (KV.ModRevision).
func (e Event) Revision() uint64 { return e.KV.ModRevision }

// WatchResponse is what the channel of Watch delivers: events, progress,
// or the error that ended the watch. The receiver owns it.
type WatchResponse struct {
	// Events are the events of whole writes, in revision order (events of
	// one revision in key order); each event of the watched range is
	// delivered exactly once, and every event of one write is in one
	// response.
	Events []Event
	// ProgressRevision: every event at or below it has been delivered, on
	// this response or an earlier one, and none will follow. A response
	// without events and Err carries only this (see WithProgressNotify).
	ProgressRevision uint64
	// Err, when set, ended the watch: it is the last response before the
	// channel closes. A *CompactedError (the start revision, or a
	// resubscription's, is below a shard's compaction point), a gRPC
	// status a shard answered that no retry can help (Unimplemented,
	// InvalidArgument, ...), ErrClosed, or the context's error.
	Err error
}

// WatchOption adjusts a Watch.
type WatchOption func(*watchOptions)

type watchOptions struct {
	startRev   uint64
	prevKV     bool
	progress   time.Duration // 0: no progress-only responses
	buffer     int
	maxPending int
	merge      time.Duration
}

// WithStartRevision watches from revision rev: the first events
// delivered are those of writes at rev or later. 0, the default, means
// from now: the latest of the revisions the range's shards report as
// their "now" when their streams open; every write acknowledged before
// Watch was called is below it. With WithProgressNotify, the first
// response says which revision that was (ProgressRevision + 1).
func WithStartRevision(rev uint64) WatchOption {
	return func(o *watchOptions) { o.startRev = rev }
}

// WithPrevKV asks for each event's previous version of its key
// (Event.PrevKV).
func WithPrevKV() WatchOption {
	return func(o *watchOptions) { o.prevKV = true }
}

// WithProgressNotify asks for progress-only responses (no events, only
// ProgressRevision) whenever the watch's progress advanced and no
// response went out for interval; interval <= 0 means
// DefaultWatchProgressInterval. The first one, as soon as every shard
// stream is open, says what the start revision was (ProgressRevision +
// 1). Without it, ProgressRevision arrives only with events.
func WithProgressNotify(interval time.Duration) WatchOption {
	return func(o *watchOptions) {
		if interval <= 0 {
			interval = DefaultWatchProgressInterval
		}
		o.progress = interval
	}
}

// WithMergeInterval sets the progress interval the Client asks each
// shard stream for (default DefaultWatchMergeInterval; at least 10ms, the
// least a shardnode accepts; the interval of WithProgressNotify, if
// shorter, wins). An event of one shard is held until every other shard
// of the range has reported progress past it, so an idle shard delays
// the events of the others by up to about this much. The cost is on the
// nodes: each interval in which a watched shard saw no write, its leader
// resolves it (an oracle call and a log entry) for each stream. Raise it
// for many long-lived watches of idle ranges; a watch of one shard
// delivers its events at once whatever the interval.
func WithMergeInterval(d time.Duration) WatchOption {
	return func(o *watchOptions) { o.merge = d }
}

// WithWatchBuffer sets how many responses the channel of Watch holds (n
// <= 0: DefaultWatchBuffer). A consumer that falls further behind stops
// the watch from reading its shard streams; gRPC flow control then holds
// the shards' events on the nodes.
func WithWatchBuffer(n int) WatchOption {
	return func(o *watchOptions) { o.buffer = n }
}

// WithWatchMaxPending bounds the events held while waiting for the
// progress of a shard that lags behind the others (n <= 0:
// DefaultWatchMaxPending). Past it the watch reads only from the shards
// that lag, so its memory stays bounded.
func WithWatchMaxPending(n int) WatchOption {
	return func(o *watchOptions) { o.maxPending = n }
}

// Watch watches the keys of [start, end) (an empty end is +inf) for
// writes, across every shard of the range, and returns the channel its
// responses arrive on: events in revision order, each exactly once,
// whatever the shards do meanwhile (leaders move, shards split or merge,
// nodes die; see "Watch" in the package documentation). The channel is
// closed when the watch ends: ctx ends or the Client is closed (a last
// response with Err = the context's error or ErrClosed is sent if the
// channel has room), or an error no retry can help, which the last
// response carries in Err (a *CompactedError, for one). Unlike other
// calls, a Watch is not bounded by Config.Timeout, and it retries for as
// long as ctx lives. The caller must either read the channel until it is
// closed or cancel ctx; a consumer that stops reading holds the shard
// streams (flow control), not memory. An end that sorts before start
// gives a single response with an InvalidArgument Err.
//
// A range starting below the system span (see ScanSystem) ends where it
// begins: the fleet's own keys (lease records) are not watched.
//
// To resume after a restart, watch again with WithStartRevision(r + 1),
// r being the last ProgressRevision received, or the revision of the
// last event processed (whose write was delivered whole).
func (c *Client) Watch(ctx context.Context, start, end []byte, opts ...WatchOption) <-chan WatchResponse {
	o := watchOptions{}
	for _, f := range opts {
		f(&o)
	}
	if o.buffer <= 0 {
		o.buffer = DefaultWatchBuffer
	}
	if o.maxPending <= 0 {
		o.maxPending = DefaultWatchMaxPending
	}
	if o.merge <= 0 {
		o.merge = DefaultWatchMergeInterval
	}
	if o.progress > 0 {
		o.merge = min(o.merge, o.progress)
	}
	o.merge = max(o.merge, watchMinInterval)
	out := make(chan WatchResponse, o.buffer)
	fail := func(err error) <-chan WatchResponse {
		out <- WatchResponse{Err: err}
		close(out)
		return out
	}
	if len(end) != 0 && bytes.Compare(start, end) >= 0 {
		return fail(status.Errorf(codes.InvalidArgument, "router: watch: end %s does not sort after start %s", keyfmt.Quote(end), keyfmt.Quote(start)))
	}
	// Like Scan, a watch of user keys leaves out the system span.
	end = clipSystem(start, end)
	if c.closed.Load() {
		return fail(ErrClosed)
	}
	w := &watcher{c: c, caller: ctx, o: o, out: out, in: make(chan watchMsg)}
	w.ctx, w.cancel = context.WithCancel(ctx)
	stop := context.AfterFunc(c.base, w.cancel) // Close ends the watch
	go func() {
		defer stop()
		if _, ok := c.cache.lookup(start); !ok {
			pctx, cancel := c.callContext(w.ctx)
			c.prefetchSpan(pctx, start, end, scanPrefetchRoutes)
			cancel()
		}
		if o.startRev == 0 {
			// Every shard's stream opens from now; the watch starts
			// at the latest of their starts (see fixStart).
			w.spawnRange(start, end, 0, false /* known */)
		} else {
			w.started, w.floor = true, o.startRev-1
			w.spawnRange(start, end, o.startRev-1, true /* known */)
		}
		w.run()
	}()
	return out
}

// A watcher runs one Watch: a goroutine per piece of the range (a
// shard's part of it) streams from the piece's shard, and the merger
// (run) owns every piece's progress and the pending events, and delivers
// them in revision order.
//
// Flow control: a piece's goroutine hands the merger one message at a
// time and waits for its ack before reading its stream again. The merger
// delivers whatever is deliverable before it reads another message, so a
// full output channel stops every stream; and while more than maxPending
// events wait for a lagging piece, it acks only the pieces that lag.
type watcher struct {
	c      *Client
	caller context.Context
	o      watchOptions
	out    chan WatchResponse
	in     chan watchMsg
	ctx    context.Context // cancelled by the caller, Close, or the merger's exit
	cancel context.CancelFunc
	wg     sync.WaitGroup // the pieces' goroutines

	// The merger's own state, touched by no other goroutine.
	pieces  []*watchPiece
	pending []Event
	// started: the watch's start is fixed; floor is the start - 1.
	// Events at or below floor are not delivered, and the watch's
	// progress is never reported below it.
	started bool
	floor   uint64
	// emitted: a response went out; progressSent is the ProgressRevision
	// of the last one, progressAt when it went.
	emitted      bool
	progressSent uint64
	progressAt   time.Time
}

// watchPiece is one sub-range of a watch, streamed from the one shard
// that owns it. Its fields belong to the merger; the goroutine streaming
// it has its own copy of the range and reads only ack.
type watchPiece struct {
	start, end []byte
	// frontier: every event of the piece at or below it has been received
	// (and delivered or held in pending). Unset until known: a piece of a
	// watch from now learns it from its stream's created response.
	frontier uint64
	known    bool
	// parked: the merger holds back the ack of the piece's last message.
	parked bool
	ack    chan struct{}
}

// watchMsg is what a piece's goroutine tells the merger.
type watchMsg struct {
	p *watchPiece
	// opened: a stream is open, on a shard whose range ends at end (the
	// piece ends there from now on), from frontier+1 = progress+1.
	opened bool
	end    []byte
	// progress and events: the stream's progress and its new events.
	progress uint64
	events   []Event
	// err ends the watch.
	err error
}

// spawnRange starts pieces covering [start, end), one per cached route
// (a gap in the cache is one piece, which splits once its stream opens):
// from frontier+1 if known, else from now.
func (w *watcher) spawnRange(start, end []byte, frontier uint64, known bool) {
	cur := start
	for {
		p := &watchPiece{start: cur, end: end, frontier: frontier, known: known}
		if r, ok := w.c.cache.lookup(cur); ok && !r.endsAtOrAfter(end) {
			p.end = r.end()
		}
		from := uint64(0)
		if known {
			from = frontier + 1
		}
		w.spawn(p, from)
		if bytes.Equal(p.end, end) {
			return
		}
		cur = p.end
	}
}

// spawn registers p and starts streaming it from revision from (0: now).
func (w *watcher) spawn(p *watchPiece, from uint64) {
	p.ack = make(chan struct{}, 1)
	w.pieces = append(w.pieces, p)
	w.wg.Add(1)
	go w.follow(p, p.start, p.end, from)
}

// run is the merger's loop: deliver what every piece's progress allows,
// resume the pieces it held back, take the next message.
func (w *watcher) run() {
	defer func() {
		w.cancel()
		w.wg.Wait()
		close(w.out)
	}()
	for {
		if !w.deliver() {
			break
		}
		w.resume()
		var m watchMsg
		select {
		case m = <-w.in:
		case <-w.ctx.Done():
		}
		if w.ctx.Err() != nil {
			break
		}
		if m.err != nil {
			select {
			case w.out <- WatchResponse{Err: m.err}:
			case <-w.ctx.Done():
			}
			return
		}
		w.handle(m)
	}
	// The caller's context ended, or Close: say so if there is room.
	err := w.caller.Err()
	if w.c.closed.Load() || err == nil {
		err = ErrClosed
	}
	select {
	case w.out <- WatchResponse{Err: err}:
	default:
	}
}

// handle takes one message of a piece.
func (w *watcher) handle(m watchMsg) {
	p := m.p
	if m.opened {
		if !p.known {
			p.frontier, p.known = m.progress, true
		}
		if !bytes.Equal(m.end, p.end) {
			// The shard ends before the piece: the rest is another piece,
			// from the same point.
			// Before the start is fixed, the rest opens from now too.
			rest, end := m.end, p.end
			p.end = m.end
			w.spawnRange(rest, end, p.frontier, w.started)
		}
		p.ack <- struct{}{}
		return
	}
	// A message holds whole writes, so a write at or below the frontier
	// came whole before a resubscription. Compare with the frontier from
	// before the message: the events of one multi-key write share a
	// revision.
	from := p.frontier
	for _, ev := range m.events {
		if ev.Revision() > from {
			w.pending = append(w.pending, ev)
		}
		p.frontier = max(p.frontier, ev.Revision())
	}
	p.frontier = max(p.frontier, m.progress)
	p.parked = true // resume decides
}

// minFrontier is the watch's progress: the least frontier of its pieces;
// false while a piece's is unknown.
func (w *watcher) minFrontier() (uint64, bool) {
	var least uint64
	for i, p := range w.pieces {
		if !p.known {
			return 0, false
		}
		if i == 0 || p.frontier < least {
			least = p.frontier
		}
	}
	return least, true
}

// fixStart fixes the start of a watch from now, once every piece's
// stream opened: the latest of their starts. Every stream covers every
// write from its own start on, so every write at or after the watch's
// start is seen; the earlier ones some streams saw are dropped. Opening
// every stream from now, instead of the others at the first one's start,
// never asks a shard for a revision below its compaction point (an idle
// shard's "now" can be older than a busy shard's history).
func (w *watcher) fixStart() {
	if w.started {
		return
	}
	for _, p := range w.pieces {
		if !p.known {
			return
		}
		w.floor = max(w.floor, p.frontier)
	}
	w.started = true
}

// resume acks the parked pieces it may: all of them while fewer than
// maxPending events wait, else only those at the least frontier, which
// hold the others back.
func (w *watcher) resume() {
	least, _ := w.minFrontier()
	for _, p := range w.pieces {
		if p.parked && (len(w.pending) < w.o.maxPending || p.frontier <= least) {
			p.parked = false
			p.ack <- struct{}{}
		}
	}
}

// deliver sends the pending events at or below the watch's progress, in
// revision order, or a progress-only response when the caller asked for
// them and they are due. It returns false if the watch's context ended
// while it waited for room.
func (w *watcher) deliver() bool {
	w.fixStart()
	least, ok := w.minFrontier()
	if !ok {
		return true
	}
	least = max(least, w.floor)
	var ready []Event
	keep := w.pending[:0]
	for _, ev := range w.pending {
		if ev.Revision() <= least {
			if ev.Revision() > w.floor {
				ready = append(ready, ev)
			}
		} else {
			keep = append(keep, ev)
		}
	}
	clear(w.pending[len(keep):])
	w.pending = keep
	if len(ready) == 0 {
		due := !w.emitted || (least > w.progressSent && time.Since(w.progressAt) >= w.o.progress)
		if w.o.progress <= 0 || !due {
			return true
		}
		return w.emit(WatchResponse{ProgressRevision: least})
	}
	slices.SortStableFunc(ready, func(a, b Event) int {
		if a.Revision() != b.Revision() {
			if a.Revision() < b.Revision() {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.KV.Key, b.KV.Key)
	})
	for len(ready) > 0 {
		n := min(len(ready), watchMaxEvents)
		for n < len(ready) && ready[n].Revision() == ready[n-1].Revision() {
			n++ // one write's events stay together
		}
		resp := WatchResponse{Events: ready[:n:n], ProgressRevision: ready[n-1].Revision()}
		ready = ready[n:]
		if len(ready) == 0 {
			resp.ProgressRevision = least
		}
		if !w.emit(resp) {
			return false
		}
	}
	return true
}

// emit sends resp, waiting for room.
func (w *watcher) emit(resp WatchResponse) bool {
	select {
	case w.out <- resp:
		w.emitted, w.progressSent, w.progressAt = true, resp.ProgressRevision, time.Now()
		return true
	case <-w.ctx.Done():
		return false
	}
}

// send hands m to the merger and waits for its ack; false once the
// watch's context ended.
func (w *watcher) send(m watchMsg) bool {
	select {
	case w.in <- m:
	case <-w.ctx.Done():
		return false
	}
	if m.err != nil {
		return false
	}
	select {
	case <-m.p.ack:
		return true
	case <-w.ctx.Done():
		return false
	}
}

// follow streams piece p, [start, end), from revision from (0: now),
// resubscribing from its progress + 1 after every failure that is not
// final, until the watch's context ends. Each stream goes to the leader
// of the shard owning start, with the retry loop's routing and
// classification; a stream's shard ending before end narrows the piece
// (the merger starts the rest).
func (w *watcher) follow(p *watchPiece, start, end []byte, from uint64) {
	defer w.wg.Done()
	c := w.c
	cl := &call{op: "watch", key: start, consistency: Linearizable}
	var st attemptState
	quick := 0
	for w.ctx.Err() == nil {
		var v verdict
		r, err := c.locate(w.ctx, start, st.stale)
		st.stale = nil
		switch {
		case err != nil:
			v = verdict{reason: RetryNoRoute, wait: true}
		default:
			node, addr, ok := c.pickTarget(r, cl, &st)
			if !ok {
				c.cache.invalidate(r)
				st.stale = r
				clear(st.tried)
				v = verdict{reason: RetryUnavailable, wait: true}
				break
			}
			began := time.Now()
			var opened bool
			from, end, opened, err = w.stream(p, r, node, addr, start, end, from)
			if w.ctx.Err() != nil {
				return
			}
			if opened && time.Since(began) >= watchStableAfter {
				st, quick = attemptState{}, 0
			}
			v = c.classify(w.ctx, cl, r, node, err, false, &st)
		}
		if w.ctx.Err() != nil || c.closed.Load() {
			return // the merger ends the watch
		}
		if v.final {
			if v.err != nil {
				err = v.err
			}
			w.send(watchMsg{p: p, err: fmt.Errorf("router: watch %s: %w", keyfmt.Quote(start), err)})
			return
		}
		c.stats.retries[v.reason].Add(1)
		if !v.wait {
			if quick++; quick < watchQuickRetries {
				continue
			}
		}
		quick = 0
		maxDelay := c.cfg.BackoffMax
		if v.election {
			maxDelay = min(maxDelay, c.cfg.ElectionBackoffMax)
		}
		d := backoffDelay(st.waits, c.cfg.BackoffBase, maxDelay, v.floor)
		st.waits++
		if wait(w.ctx, c.closing, d) != nil {
			return
		}
	}
}

// stream opens one stream of [start, end) at node (addr) for route r from
// revision from, and forwards what it receives to the merger until it
// fails. It returns the revision to resume from, the piece's end (the
// shard's, if that comes first), whether the stream opened, and the
// error that ended it (nil once the watch's context ended).
func (w *watcher) stream(p *watchPiece, r *route, node nodeID, addr string, start, end []byte, from uint64) (uint64, []byte, bool, error) {
	kv, err := w.c.conns.kv(addr)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return from, end, false, err
		}
		return from, end, false, status.Error(codes.Unavailable, err.Error())
	}
	clamped := end
	if len(r.end()) != 0 && (len(end) == 0 || bytes.Compare(r.end(), end) < 0) {
		clamped = r.end()
	}
	if from != 0 && !bytes.Equal(clamped, end) {
		// The shard ends before the piece (it split): the merger starts
		// the rest now, not once this stream opens.
		if !w.send(watchMsg{p: p, opened: true, end: clamped, progress: from - 1}) {
			return from, end, false, nil
		}
		end = clamped
	}
	sctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	// A stream that sends nothing for stall (the node is paused, or cut
	// off without the connection breaking) is given up, as if broken:
	// the shard's leader sends progress every merge interval, so a
	// silent stream is no longer making any.
	stall := max(watchStallIntervals*w.o.merge, watchStallFloor)
	var stalled atomic.Bool
	watchdog := time.AfterFunc(stall, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()
	var s pb.KV_WatchClient
	recv := func() (*pb.WatchResponse, error) {
		watchdog.Reset(stall)
		resp, err := s.Recv()
		watchdog.Stop()
		if err != nil && stalled.Load() && w.ctx.Err() == nil {
			return nil, status.Errorf(codes.Unavailable, "router: watch: shard %d's stream at node %d sent nothing for %s", r.id(), node, stall)
		}
		return resp, streamErr(err)
	}
	s, err = kv.Watch(sctx, &pb.WatchRequest{
		Header:             &pb.RequestHeader{ShardId: uint64(r.id()), Epoch: r.desc.GetEpoch(), Consistency: Linearizable.proto()},
		Start:              start,
		End:                clamped,
		StartRevision:      from,
		PrevKv:             w.o.prevKV,
		ProgressIntervalMs: uint32(w.o.merge / time.Millisecond),
	})
	if err != nil {
		return from, end, false, err
	}
	resp, err := recv()
	if err != nil {
		return from, end, false, err
	}
	if !resp.GetCreated() {
		return from, end, false, status.Errorf(codes.Internal, "router: watch: shard %d's stream did not begin with its created response", r.id())
	}
	progress := resp.GetProgressRevision()
	if from != 0 {
		progress = from - 1
	}
	if !w.send(watchMsg{p: p, opened: true, end: clamped, progress: progress}) {
		return from, end, true, nil
	}
	from, end = progress+1, clamped
	for {
		resp, err := recv()
		if err != nil {
			return from, end, true, err
		}
		m := watchMsg{p: p, progress: resp.GetProgressRevision(), events: make([]Event, 0, len(resp.GetEvents()))}
		for _, e := range resp.GetEvents() {
			ev := Event{Type: EventPut, KV: kvFromProto(e.GetKv())}
			if e.GetType() == pb.Event_DELETE {
				ev.Type, ev.KV.Value = EventDelete, nil
			}
			if e.GetPrevKv() != nil {
				prev := kvFromProto(e.GetPrevKv())
				ev.PrevKV = &prev
			}
			m.events = append(m.events, ev)
			m.progress = max(m.progress, ev.Revision())
		}
		if !w.send(m) {
			return from, end, true, nil
		}
		from = max(from, m.progress+1)
	}
}

// streamErr turns the end of a stream the server closed without an error
// into one worth resubscribing after: a stream ends only with a status.
func streamErr(err error) error {
	if errors.Is(err, io.EOF) {
		return status.Error(codes.Unavailable, "router: watch stream ended without a status")
	}
	return err
}
