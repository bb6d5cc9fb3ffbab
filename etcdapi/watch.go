package etcdapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/bits"
	"sort"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/flotilla-kv/flotilla/router"
)

// How the Watch service maps to etcd's.
//
// One Watch RPC is one stream carrying many watchers, as in etcd. Each
// watcher is one router.Client Watch of its key range across every shard
// it spans; the router delivers whole writes in revision order, each
// event exactly once, whatever the shards do meanwhile (leader changes,
// splits, node deaths), so a watcher here survives what would break an
// etcd member's stream. Requests map as follows:
//
//   - Create: key and range_end follow etcd's rules (empty key = "\x00";
//     empty range_end = the one key; range_end "\x00" = every key from
//     key on; a range_end at or before key is refused with etcd's "watcher
//     range is empty"). start_revision 0 watches from now: the created
//     response waits until every shard stream of the range is open, and
//     its header revision R is the watch's start minus one: every write at
//     a revision above R is delivered, and every write acknowledged before
//     the create request arrived is at or below R. With a start revision
//     S, the created response goes out at once with header revision S-1.
//     watch_id 0 asks for an ID (the next unused one counting up from 0,
//     as etcd); a client-chosen ID already in use on the stream is refused
//     with etcd's duplicate-ID error (created and canceled, watch_id -1).
//     prev_kv, filters (NOPUT, NODELETE) and fragment behave as in etcd.
//     Created responses go out in the order of the create requests, which
//     clientv3 relies on to match them.
//   - Cancel: the watcher stops and a canceled response is its last
//     response; a cancel of an unknown ID is ignored, as in etcd.
//   - Progress request: a response with watch_id -1, no events, and a
//     header revision R such that every watcher of the stream has sent
//     every event at or below R before it and will send none at or below
//     R after it (the least progress of the stream's watchers), and R is
//     at or above every header revision sent on the stream before, so
//     that no watcher's progress goes back (the Kubernetes watch cache
//     takes R as its resource version). To find such an R while writes go
//     on, a progress request raises a barrier at the highest header
//     revision sent so far: until the answer goes out, watchers hold back
//     their events above it (and cap their header revisions at it) while
//     the others catch up to it, which takes about the router's progress
//     interval (100ms). The answer also waits while a watcher from now
//     has not had its created response, and while a watcher replays
//     history below the barrier. If it cannot answer within a second
//     (watchProgressHold: a shard of a watcher is unavailable, or a
//     watcher replays a long history), it drops the request and lowers
//     the barrier, as etcd drops a progress request while a watcher is
//     not synced; clients ask again. Several requests meanwhile get one
//     answer. A stream without watchers gets no answer, as in etcd.
//   - progress_notify: a watcher that sent nothing for the stream's
//     progress interval (Config.WatchProgressInterval, default 10 minutes
//     as etcd's) gets a progress response: no events, header revision = its
//     progress.
//
// Header revisions. Every response of a watcher carries the watcher's
// progress (or less, while a progress request's barrier is up) as its
// header revision: every event of the watcher at or below it has been
// sent, on that response or before. For an events response that is at or
// above its last event's revision. etcd puts its store's
// current revision there, which for a synced watcher is the same promise.
//
// Differences from etcd:
//   - Revisions are Flotilla revisions, oracle timestamps: increasing but
//     sparse (a client must not expect rev+1 to exist, nor count writes by
//     subtracting revisions), and a watch from revision 1 replays whatever
//     history is not compacted.
//   - One write has one revision; etcd numbers the keys of one transaction
//     by sub-revision under one main revision, and so do we in effect:
//     events of one revision come together in one response (unless
//     fragmented) in key order, where etcd orders them as the transaction
//     wrote them. (Today the router delivers only the first event of a
//     write of several keys: see the skipped TestWatch/MultiKeyWrite.)
//   - A start revision below a shard's compaction point ends the watcher
//     with compact_revision = that shard's compaction point and canceled =
//     true (clientv3: ErrCompacted), after its created response, as etcd
//     does. Compaction is per shard, so the revision is that of the shard
//     that refused.
//   - Any other error that ends the router's watch (the router being
//     closed, a shard refusing the range) ends the watcher with canceled =
//     true and cancel_reason; etcd has no such case. A watcher from now
//     that fails before it started gets etcd's failed-create response
//     (created, canceled, watch_id -1, cancel_reason).
//   - A canceled watcher's ID stays in use until its canceled response has
//     been queued, so a client reusing the ID at once may be refused.
//
// Concurrency: the RPC's goroutine reads requests; each watcher has a
// goroutine reading its router channel; one writer goroutine makes every
// Send and owns the progress bookkeeping. Everything goes to the writer
// through one unbuffered channel, so the order in which goroutines hand
// over responses is the order they are sent in, and a slow client blocks
// the watchers, which stop reading their router channels: the router then
// holds the shard streams under gRPC flow control, so memory per watcher
// is bounded by the router's buffers. The end of the stream cancels every
// watcher and the RPC returns once every goroutine it started has ended.

// DefaultWatchProgressInterval is how long a watcher with progress_notify
// stays silent before it sends a progress response: etcd's default.
const DefaultWatchProgressInterval = 10 * time.Minute

// DefaultWatchFragmentBytes is the size above which a response of a
// watcher with fragment set is split: etcd's default request limit.
const DefaultWatchFragmentBytes = 3 << 19 // 1.5 MiB

// watchTrackInterval is how often the router reports the progress of a
// watch that has no events to deliver (router.WithProgressNotify). It
// bounds how stale the answer to a progress request is, and it equals the
// router's default merge interval, so it costs the shards nothing more.
const watchTrackInterval = router.DefaultWatchMergeInterval

// watchProgressHold bounds how long a progress request's barrier holds
// events back. A request not answerable by then (a watcher's shard is
// unavailable, or a watcher replays a long history) is dropped, as etcd
// drops one while a watcher is not synced; the client asks again.
const watchProgressHold = time.Second

// etcd's own texts for refused creates (clientv3 shows the reason as it
// is).
var (
	errWatcherDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	errEmptyWatcherRange  = errors.New("mvcc: watcher range is empty")
)

// watchServer serves etcd's Watch service. The zero values of its tuning
// fields mean the defaults.
type watchServer struct {
	pb.UnimplementedWatchServer
	s *Server
	// progressInterval is etcd's progress report interval (0:
	// DefaultWatchProgressInterval): how long a watcher with
	// progress_notify may send nothing before it sends a progress
	// response. Shorter: idle watchers' clients (the Kubernetes watch
	// cache) learn of progress sooner, for a response per watcher per
	// interval. Config.WatchProgressInterval.
	progressInterval time.Duration
	// fragmentBytes is the size above which fragment splits responses (0:
	// DefaultWatchFragmentBytes).
	fragmentBytes int
}

// Watch serves one stream of watchers until the client ends it.
func (ws *watchServer) Watch(srv pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancel(srv.Context())
	defer cancel()
	st := &watchStream{
		ws:       ws,
		srv:      srv,
		ctx:      ctx,
		out:      make(chan watchOut),
		lastTurn: closedTurn,
	}
	st.mu.ids = map[int64]*watch{}
	st.gate.moved = make(chan struct{})
	writeErr := make(chan error, 1)
	go func() {
		err := st.write()
		cancel() // a failed Send: the stream is broken
		writeErr <- err
	}()
	err := st.read()
	if errors.Is(err, io.EOF) {
		// The client closed its side; as etcd, keep its watchers going
		// until the stream ends.
		err = nil
		<-ctx.Done()
	}
	cancel()
	st.wg.Wait()
	if werr := <-writeErr; err == nil {
		err = werr
	}
	return err
}

// closedTurn is the turn before a stream's first create.
var closedTurn = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// watchStream is one Watch RPC.
type watchStream struct {
	ws  *watchServer
	srv pb.Watch_WatchServer
	// ctx ends with the stream (or a failed Send); every watcher's
	// context is its child.
	ctx context.Context
	// out carries everything the writer sends, in order.
	out chan watchOut
	wg  sync.WaitGroup // the watchers' goroutines

	// lastTurn is closed once the created response of the last create
	// request is queued (read loop only).
	lastTurn chan struct{}

	// gate is the barrier of a pending progress request: while it is
	// up, watchers hand over no event above rev, and cap their header
	// revisions at it, so that the stream's watchers all reach a
	// revision at or above every header already sent; the writer raises
	// it when a header above it was sent anyway (handed over before the
	// barrier went up), and lowers it once it answered. moved is closed
	// whenever it changes.
	gate struct {
		sync.Mutex
		rev    uint64
		active bool
		moved  chan struct{}
	}

	mu struct {
		sync.Mutex
		// ids holds the watchers whose IDs are in use.
		ids map[int64]*watch
		// nextID is where the search for an unused ID starts.
		nextID int64
	}
}

// watch is one watcher of a stream. Its fields are set before its
// goroutine starts and not changed after.
type watch struct {
	id         int64
	start, end []byte
	startRev   uint64 // 0: from now
	prevKV     bool
	fragment   bool
	noPut      bool
	noDelete   bool
	// progressNotify: send a progress response after a silent
	// progress interval.
	progressNotify bool
	ctx            context.Context // ends when canceled, or with the stream
	cancel         context.CancelFunc
	// prevTurn is closed once the previous create's response is queued;
	// w closes turn once its created response is (see lastTurn).
	prevTurn, turn chan struct{}
	turnDone       bool // turn is closed; w's goroutine only
}

type watchOutKind int

const (
	// outRegister: a watcher exists; progress, if known, is its
	// progress.
	outRegister watchOutKind = iota
	// outResponse: send resp (if set), then the watcher's progress is
	// progress.
	outResponse
	// outLast: send resp (if set); the watcher is gone.
	outLast
	// outProgressRequest: the client asked for the stream's progress.
	outProgressRequest
)

// watchOut is one thing for the writer.
type watchOut struct {
	kind     watchOutKind
	w        *watch
	resp     *pb.WatchResponse
	progress uint64
	known    bool // progress is set
}

// push hands o to the writer; false if ctx or the stream ended first.
func (st *watchStream) push(ctx context.Context, o watchOut) bool {
	select {
	case st.out <- o:
		return true
	case <-ctx.Done():
		return false
	case <-st.ctx.Done():
		return false
	}
}

// read is the read loop: it serves the client's requests until Recv
// fails.
func (st *watchStream) read() error {
	for {
		req, err := st.srv.Recv()
		if err != nil {
			return err
		}
		switch u := req.GetRequestUnion().(type) {
		case *pb.WatchRequest_CreateRequest:
			if u.CreateRequest != nil {
				st.create(u.CreateRequest)
			}
		case *pb.WatchRequest_CancelRequest:
			if u.CancelRequest != nil {
				st.mu.Lock()
				w := st.mu.ids[u.CancelRequest.GetWatchId()]
				st.mu.Unlock()
				if w != nil {
					w.cancel() // its goroutine sends the canceled response
				}
			}
		case *pb.WatchRequest_ProgressRequest:
			if u.ProgressRequest != nil {
				st.push(st.ctx, watchOut{kind: outProgressRequest})
			}
		default:
			// Unknown requests are ignored, as etcd does.
		}
		if st.ctx.Err() != nil {
			return st.ctx.Err()
		}
	}
}

// create starts the watcher a create request asks for, or queues its
// refusal, in the order of the create requests.
func (st *watchStream) create(req *pb.WatchCreateRequest) {
	prev := st.lastTurn
	turn := make(chan struct{})
	st.lastTurn = turn
	refuse := func(err error) {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			defer close(turn)
			st.refuseCreate(prev, 0, err)
		}()
	}
	key := req.GetKey()
	if len(key) == 0 {
		key = []byte{0} // the least key
	}
	var end []byte
	switch re := req.GetRangeEnd(); {
	case len(re) == 0:
		end = append(bytes.Clone(key), 0) // the one key
	case len(re) == 1 && re[0] == 0:
		end = nil // every key from key on
	case bytes.Compare(re, key) <= 0:
		refuse(errEmptyWatcherRange)
		return
	default:
		end = bytes.Clone(re)
	}
	if req.GetStartRevision() < 0 {
		refuse(rpctypes.ErrCompacted)
		return
	}
	w := &watch{
		start:          bytes.Clone(key),
		end:            end,
		startRev:       uint64(req.GetStartRevision()),
		prevKV:         req.GetPrevKv(),
		progressNotify: req.GetProgressNotify(),
		fragment:       req.GetFragment(),
		prevTurn:       prev,
		turn:           turn,
	}
	for _, f := range req.GetFilters() {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	st.mu.Lock()
	if id := req.GetWatchId(); id != 0 {
		if st.mu.ids[id] != nil {
			st.mu.Unlock()
			refuse(errWatcherDuplicateID)
			return
		}
		w.id = id
	} else {
		for st.mu.ids[st.mu.nextID] != nil {
			st.mu.nextID++
		}
		w.id = st.mu.nextID
		st.mu.nextID++
	}
	st.mu.ids[w.id] = w
	st.mu.Unlock()
	w.ctx, w.cancel = context.WithCancel(st.ctx)
	// Registered before any later request is read, so a progress
	// request after this create accounts for this watcher.
	reg := watchOut{kind: outRegister, w: w}
	if w.startRev > 0 {
		reg.progress, reg.known = w.startRev-1, true
	}
	if !st.push(st.ctx, reg) {
		w.cancel()
		close(turn)
		return
	}
	st.wg.Add(1)
	go st.follow(w)
}

// refuseCreate waits for the turn prev, then queues etcd's failed-create
// response for err at header revision rev.
func (st *watchStream) refuseCreate(prev chan struct{}, rev uint64, err error) {
	select {
	case <-prev:
	case <-st.ctx.Done():
		return
	}
	st.push(st.ctx, watchOut{kind: outResponse, resp: &pb.WatchResponse{
		Header:       st.ws.s.header(rev),
		WatchId:      -1,
		Created:      true,
		Canceled:     true,
		CancelReason: err.Error(),
	}})
}

// endTurn lets the next create's response go.
func (w *watch) endTurn() {
	if !w.turnDone {
		w.turnDone = true
		close(w.turn)
	}
}

// follow runs watcher w: it relays its router watch until the watch ends,
// w is canceled or the stream ends, then queues its last response and
// frees its ID.
func (st *watchStream) follow(w *watch) {
	defer st.wg.Done()
	defer w.endTurn()
	defer func() {
		st.mu.Lock()
		delete(st.mu.ids, w.id)
		st.mu.Unlock()
	}()
	opts := []router.WatchOption{router.WithProgressNotify(watchTrackInterval)}
	if w.startRev > 0 {
		opts = append(opts, router.WithStartRevision(w.startRev))
	}
	if w.prevKV {
		opts = append(opts, router.WithPrevKV())
	}
	ch := st.ws.s.r.Watch(w.ctx, w.start, w.end, opts...)
	defer func() {
		w.cancel()
		for range ch { // until the router's goroutines are gone
		}
	}()

	var progress uint64
	var first *router.WatchResponse
	if w.startRev > 0 {
		progress = w.startRev - 1
	} else {
		// From now: the first response says where the watch starts.
		var resp router.WatchResponse
		var ok bool
		select {
		case resp, ok = <-ch:
		case <-w.ctx.Done():
		}
		if !ok || resp.Err != nil {
			err := resp.Err
			if !ok {
				err = w.ctx.Err()
			}
			if st.ctx.Err() != nil {
				return
			}
			if err == nil {
				err = router.ErrClosed
			}
			st.refuseCreate(w.prevTurn, 0, err)
			st.push(st.ctx, watchOut{kind: outLast, w: w})
			return
		}
		progress = resp.ProgressRevision
		if len(resp.Events) > 0 {
			progress = min(progress, resp.Events[0].Revision()-1)
		}
		first = &resp
	}
	select {
	case <-w.prevTurn:
	case <-st.ctx.Done():
		return
	}
	created := watchOut{kind: outResponse, w: w, progress: progress, known: true,
		resp: &pb.WatchResponse{Header: st.ws.s.header(progress), WatchId: w.id, Created: true}}
	if !st.push(st.ctx, created) {
		return
	}
	w.endTurn()

	var tick <-chan time.Time
	if w.progressNotify {
		interval := st.ws.progressInterval
		if interval <= 0 {
			interval = DefaultWatchProgressInterval
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	quiet := true // nothing sent since the last tick
	// relay hands over events (in revision order) with the watcher's
	// progress after them; the header is capped at an active barrier
	// (see watchStream.gate).
	relay := func(evs []router.Event, barrier uint64, active bool) {
		o := watchOut{kind: outResponse, w: w, progress: progress, known: true}
		if out := w.convert(evs); len(out) > 0 {
			hdr := progress
			if active {
				hdr = min(hdr, barrier)
			}
			o.resp = &pb.WatchResponse{Header: st.ws.s.header(hdr), WatchId: w.id, Events: out}
			quiet = false
		}
		st.push(w.ctx, o)
	}
	// handle relays one router response; while a progress request's
	// barrier is up, it holds the events above it until it moves.
	handle := func(resp router.WatchResponse) {
		evs := resp.Events
		for {
			barrier, active, moved := st.barrier()
			cut := len(evs)
			if active {
				cut = sort.Search(len(evs), func(i int) bool { return evs[i].Revision() > barrier })
			}
			if cut == len(evs) {
				progress = max(progress, resp.ProgressRevision)
				relay(evs, barrier, active)
				return
			}
			// Every event below the first one held has been handed over
			// once the rest of those below the barrier are.
			progress = max(progress, evs[cut].Revision()-1)
			relay(evs[:cut], barrier, active)
			evs = evs[cut:]
			select {
			case <-moved:
			case <-w.ctx.Done():
				return
			}
		}
	}
	if first != nil {
		handle(*first)
	}
	for w.ctx.Err() == nil {
		select {
		case resp, ok := <-ch:
			if !ok {
				resp.Err = router.ErrClosed
			}
			if resp.Err != nil {
				st.finish(w, resp.Err, progress)
				return
			}
			handle(resp)
		case <-tick:
			if quiet {
				hdr := progress
				if barrier, active, _ := st.barrier(); active {
					hdr = min(hdr, barrier)
				}
				st.push(w.ctx, watchOut{kind: outResponse, w: w, progress: progress, known: true,
					resp: &pb.WatchResponse{Header: st.ws.s.header(hdr), WatchId: w.id}})
			}
			quiet = true
		case <-w.ctx.Done():
		}
	}
	st.finish(w, w.ctx.Err(), progress)
}

// finish queues the last response of w, ended by err, at its progress.
func (st *watchStream) finish(w *watch, err error, progress uint64) {
	if st.ctx.Err() != nil {
		return // the stream is gone
	}
	resp := &pb.WatchResponse{Header: st.ws.s.header(progress), WatchId: w.id, Canceled: true}
	var ce *router.CompactedError
	switch {
	case w.ctx.Err() != nil:
		// Canceled by the client.
	case errors.As(err, &ce):
		resp.CompactRevision = int64(ce.CompactRevision)
	default:
		resp.CancelReason = err.Error()
	}
	st.push(st.ctx, watchOut{kind: outLast, w: w, resp: resp})
}

// convert turns the router's events into etcd's, leaving out those w's
// filters drop.
func (w *watch) convert(evs []router.Event) []*mvccpb.Event {
	out := make([]*mvccpb.Event, 0, len(evs))
	for _, ev := range evs {
		e := &mvccpb.Event{}
		switch ev.Type {
		case router.EventPut:
			if w.noPut {
				continue
			}
			e.Type = mvccpb.PUT
			e.Kv = toKV(ev.KV)
		case router.EventDelete:
			if w.noDelete {
				continue
			}
			e.Type = mvccpb.DELETE
			e.Kv = &mvccpb.KeyValue{Key: ev.KV.Key, ModRevision: int64(ev.KV.ModRevision)}
		default:
			panic("etcdapi: watch: unknown event type " + ev.Type.String())
		}
		if ev.PrevKV != nil && w.prevKV {
			e.PrevKv = toKV(*ev.PrevKV)
		}
		out = append(out, e)
	}
	return out
}

// toKV converts a router KeyValue to etcd's.
func toKV(kv router.KeyValue) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key:            kv.Key,
		Value:          kv.Value,
		CreateRevision: int64(kv.CreateRevision),
		ModRevision:    int64(kv.ModRevision),
		Version:        int64(kv.Version),
		Lease:          int64(kv.Lease),
	}
}

// barrier returns the gate: its revision, whether it is up, and a
// channel closed when it next changes.
func (st *watchStream) barrier() (uint64, bool, <-chan struct{}) {
	st.gate.Lock()
	defer st.gate.Unlock()
	return st.gate.rev, st.gate.active, st.gate.moved
}

// setBarrier changes the gate (the writer only).
func (st *watchStream) setBarrier(rev uint64, active bool) {
	st.gate.Lock()
	defer st.gate.Unlock()
	st.gate.rev, st.gate.active = rev, active
	close(st.gate.moved)
	st.gate.moved = make(chan struct{})
}

// watchProgress is the writer's record of one watcher.
type watchProgress struct {
	rev   uint64
	known bool
}

// write is the writer: it sends what it is handed, in order, and answers
// progress requests, until the stream ends or a Send fails.
func (st *watchStream) write() error {
	watchers := map[*watch]watchProgress{}
	// wanted: a progress request waits for its answer, and the gate is
	// up at bar.
	wanted := false
	var bar uint64
	// sent is the highest header revision sent on the stream: a progress
	// answer is never below it, so no watcher's progress goes back.
	var sent uint64
	send := func(resp *pb.WatchResponse, fragment bool) error {
		if err := st.send(resp, fragment); err != nil {
			return err
		}
		sent = max(sent, uint64(max(resp.GetHeader().GetRevision(), 0)))
		return nil
	}
	hold := time.NewTimer(watchProgressHold)
	hold.Stop()
	defer hold.Stop()
	for {
		var o watchOut
		select {
		case o = <-st.out:
		case <-hold.C:
			if wanted {
				wanted = false // dropped: see watchProgressHold
				st.setBarrier(0, false)
			}
			continue
		case <-st.ctx.Done():
			return nil
		}
		switch o.kind {
		case outRegister:
			watchers[o.w] = watchProgress{rev: o.progress, known: o.known}
		case outProgressRequest:
			if !wanted {
				wanted, bar = true, sent
				st.setBarrier(bar, true)
				hold.Reset(watchProgressHold)
			}
		case outResponse, outLast:
			if o.resp != nil {
				if err := send(o.resp, o.w != nil && o.w.fragment); err != nil {
					return err
				}
			}
			if o.w == nil {
				break
			}
			if o.kind == outLast {
				delete(watchers, o.w)
			} else if p, ok := watchers[o.w]; ok && o.known {
				watchers[o.w] = watchProgress{rev: max(p.rev, o.progress), known: true}
			}
		}
		if !wanted {
			continue
		}
		if sent > bar {
			// Handed over before the gate went up.
			bar = sent
			st.setBarrier(bar, true)
		}
		if len(watchers) == 0 {
			// etcd answers nothing without watchers.
			wanted = false
			st.setBarrier(0, false)
			hold.Stop()
			continue
		}
		least, ok := uint64(0), true
		first := true
		for _, p := range watchers {
			if !p.known {
				ok = false
				break
			}
			if first || p.rev < least {
				least, first = p.rev, false
			}
		}
		if !ok || least < bar {
			continue // a watcher has not reached the barrier yet
		}
		if err := send(&pb.WatchResponse{Header: st.ws.s.header(least), WatchId: -1}, false); err != nil {
			return err
		}
		wanted = false
		st.setBarrier(0, false)
		hold.Stop()
	}
}

// send sends resp, in fragments if fragment is set and it is large.
func (st *watchStream) send(resp *pb.WatchResponse, fragment bool) error {
	limit := st.ws.fragmentBytes
	if limit <= 0 {
		limit = DefaultWatchFragmentBytes
	}
	if !fragment || len(resp.Events) < 2 || resp.Size() <= limit {
		return st.srv.Send(resp)
	}
	events := resp.Events
	base := *resp
	base.Events = nil
	baseSize := base.Size()
	for len(events) > 0 {
		n, size := 0, baseSize
		for n < len(events) {
			s := events[n].Size()
			s += 1 + varintLen(uint64(s)) // the field's tag and length
			if n > 0 && size+s > limit {
				break
			}
			size += s
			n++
		}
		part := base
		part.Events = events[:n:n]
		events = events[n:]
		part.Fragment = len(events) > 0
		if err := st.srv.Send(&part); err != nil {
			return err
		}
	}
	return nil
}

// varintLen is the length of v as a protobuf varint.
func varintLen(v uint64) int {
	return (bits.Len64(v|1) + 6) / 7
}
