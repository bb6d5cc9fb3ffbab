package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The watch workload (Config.Workload "watch") is the write workload with
// Config.Watchers range watches beside it, opened through the driver's
// Watcher before the warm-up. Watcher i watches the keys whose first
// byte is in [i*256/N, (i+1)*256/N): keys start with a uniform hash, so
// the watchers share the events evenly and every write is seen by exactly
// one of them.
//
// Every write of the workload carries a stamp in the first
// watchStampBytes of its value: its send time (unix nanoseconds, taken
// just before the put) and its identity (the client's index + 1 in the
// high 32 bits, the client's write sequence number in the low 32). A
// watcher takes the delivery time of each event in the same process, so
// the lag, delivery time minus send time, needs no clock agreement.
//
// The accounting, with no lock on the hot path: each watcher owns its
// lag histogram, counters and the list of identities it saw; each client
// owns the list of its writes acknowledged in the window. After the
// window the writers stop, a marker write goes to each watcher's range
// (identity: client 0, sequence = the watcher's index), and the drain
// waits until every watcher has seen its marker or Config.WatchDrain has
// passed. Both systems deliver a range's events in revision order and
// give a write a revision above every write acknowledged before it began
// (Flotilla's oracle; etcd's one counter), so a watcher that saw its
// marker has seen every acknowledged write of its range. Then the lists
// are merged: an acknowledged write of the window whose identity no
// watcher saw is missing; an identity seen twice is a duplicate.

// watchStampBytes is the stamp at the start of every value of the watch
// workload: send time and identity, 8 bytes each, big-endian.
const watchStampBytes = 16

// WatchResult is what the watch workload measured of the watches, beside
// the writes of the Result that holds it.
type WatchResult struct {
	// Watchers is the number of watches.
	Watchers int
	// Delivered counts the events delivered during the window, whenever
	// their write was sent (Result.EventsPerSec).
	Delivered int64
	// Lag holds, in microseconds, the delivery time minus the send time
	// of every event of a write sent from the window's start on (the
	// writes in flight when it closed included, the drain's markers not).
	Lag *hdrhistogram.Histogram
	// Acknowledged counts the writes acknowledged in the window (the
	// Result's writes): each must be delivered.
	Acknowledged int64
	// Missing counts the acknowledged writes of the window whose event no
	// watcher delivered by the end of the drain.
	Missing int64
	// Duplicates counts the events of writes sent from the window's start
	// on that were delivered more than once (or a write applied twice).
	Duplicates int64
	// Unexpected counts events outside their watcher's range or with a
	// stamp no writer of the run made.
	Unexpected int64
	// Drain is the time from the writers' stop to the last watcher's
	// marker, or the drain's bound when DrainComplete is false.
	Drain time.Duration
	// DrainComplete reports that every watcher saw its marker.
	DrainComplete bool
	// Errors are the errors that ended watches before the run did.
	Errors []string
}

// EventsPerSec is the rate of events delivered during the window, 0
// without watches.
func (r *Result) EventsPerSec() float64 {
	if r.Watch == nil || r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Watch.Delivered) / r.Elapsed.Seconds()
}

// watchRange returns the keys of watcher i of n: [start, end), end nil
// for the last.
func watchRange(i, n int) (start, end []byte, lo, hi int) {
	lo, hi = i*256/n, (i+1)*256/n
	start = []byte{byte(lo)}
	if hi < 256 {
		end = []byte{byte(hi)}
	}
	return start, end, lo, hi
}

// stampWrite writes c's next write's stamp into its value, sent now.
func (c *client) stampWrite() {
	c.seq++
	binary.BigEndian.PutUint64(c.value, uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint64(c.value[8:], writeID(c.index+1, c.seq))
}

func writeID(client int, seq uint32) uint64 { return uint64(client)<<32 | uint64(seq) }

// markerKey is the drain's marker key of a watcher whose range starts at
// first byte lo: a non-digit after the 8 hash bytes, where every bench
// key has digits, so it is no bench key.
func markerKey(lo int) []byte {
	return append([]byte{byte(lo), 0, 0, 0, 0, 0, 0, 0}, "~drain"...)
}

// watchState is one watcher's private state: only its deliver goroutine
// touches it until the watch has ended.
type watchState struct {
	r          *run
	index      int
	lo, hi     int // first bytes [lo, hi)
	start, end []byte
	done       <-chan error
	// marker is closed when the watcher sees its drain marker.
	marker     chan struct{}
	markerSeen bool

	lag        *hdrhistogram.Histogram
	delivered  int64
	unexpected int64
	seen       []uint64 // identities of writes sent from the window's start on
}

// deliver is the watcher's callback, on the driver's goroutine of this
// watch: no lock, no allocation but the amortised growth of seen.
func (w *watchState) deliver(key, value []byte) {
	now := time.Now().UnixNano()
	ws := w.r.winStart.Load()
	if ws != 0 && now >= ws {
		if we := w.r.endAt.Load(); we == 0 || now < we {
			w.delivered++
		}
	}
	if len(value) < watchStampBytes {
		w.unexpected++
		return
	}
	sent := int64(binary.BigEndian.Uint64(value))
	id := binary.BigEndian.Uint64(value[8:])
	if ws == 0 || sent < ws {
		return // a write of the warm-up
	}
	if id>>32 == 0 {
		if int(uint32(id)) == w.index && !w.markerSeen {
			w.markerSeen = true
			close(w.marker)
		}
		return
	}
	if len(key) == 0 || int(key[0]) < w.lo || int(key[0]) >= w.hi {
		w.unexpected++
	}
	RecordLatency(w.lag, time.Duration(now-sent))
	w.seen = append(w.seen, id)
}

// watchSet is the watch workload's watchers.
type watchSet struct {
	r        *run
	cancel   context.CancelFunc
	watchers []*watchState
	stopped  bool
}

// startWatches opens cfg.Watchers watches through wd, each established
// within cfg.Timeout, or returns an error with every watch stopped. The
// watches live until stop, or until ctx ends.
func startWatches(ctx context.Context, r *run, wd Watcher) (*watchSet, error) {
	n := r.cfg.Watchers
	wctx, cancel := context.WithCancel(ctx)
	ws := &watchSet{r: r, cancel: cancel}
	for i := range n {
		start, end, lo, hi := watchRange(i, n)
		ws.watchers = append(ws.watchers, &watchState{r: r, index: i, lo: lo, hi: hi, start: start, end: end,
			marker: make(chan struct{}), lag: NewHistogram()})
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(r.cfg.Timeout, func() { timedOut.Store(true); cancel() })
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, w := range ws.watchers {
		wg.Go(func() { w.done, errs[i] = wd.Watch(wctx, w.start, w.end, w.deliver) })
	}
	wg.Wait()
	if !timer.Stop() && timedOut.Load() && ctx.Err() == nil {
		ws.stop()
		return nil, fmt.Errorf("bench: %s: %d watches not established within %s (--timeout)", r.drv.System(), n, r.cfg.Timeout)
	}
	if err := errors.Join(errs...); err != nil {
		ws.stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("bench: %s: opening the watches: %w", r.drv.System(), err)
	}
	return ws, nil
}

// drain writes each watcher's marker through kv and waits until every
// watcher has seen its own, or d has passed. It returns how long that
// took and whether every marker arrived.
func (ws *watchSet) drain(ctx context.Context, kv KV, d time.Duration) (time.Duration, bool) {
	began := time.Now()
	dctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for _, w := range ws.watchers {
		wg.Go(func() {
			value := make([]byte, watchStampBytes)
			for dctx.Err() == nil {
				binary.BigEndian.PutUint64(value, uint64(time.Now().UnixNano()))
				binary.BigEndian.PutUint64(value[8:], writeID(0, uint32(w.index)))
				octx, ocancel := context.WithTimeout(dctx, ws.r.cfg.Timeout)
				err := kv.Put(octx, markerKey(w.lo), value)
				ocancel()
				if err == nil {
					return
				}
			}
		})
	}
	complete := true
	for _, w := range ws.watchers {
		select {
		case <-w.marker:
		case <-dctx.Done():
			complete = false
		}
		if !complete {
			break
		}
	}
	took := time.Since(began)
	cancel()
	wg.Wait()
	return took, complete
}

// stop ends every watch and waits for its last delivery, once.
func (ws *watchSet) stop() {
	if ws.stopped {
		return
	}
	ws.stopped = true
	ws.cancel()
	for _, w := range ws.watchers {
		if w.done != nil {
			for range w.done {
			}
		}
	}
}

// stopAndCollect ends the watches and merges their accounting with the
// writes the clients acknowledged in the window.
func (ws *watchSet) stopAndCollect(clients []*client) *WatchResult {
	ws.cancel()
	res := &WatchResult{Watchers: len(ws.watchers), Lag: NewHistogram()}
	for _, w := range ws.watchers {
		if w.done != nil {
			for err := range w.done {
				if err != nil {
					res.Errors = append(res.Errors, fmt.Sprintf("watch %d [%#02x, %#02x): %v", w.index, w.lo, w.hi, err))
				}
			}
		}
	}
	ws.stopped = true
	// One bit per write a client sent: set when a watcher saw it.
	seen := make([][]uint64, len(clients))
	for i, c := range clients {
		seen[i] = make([]uint64, c.seq/64+1)
	}
	for _, w := range ws.watchers {
		res.Lag.Merge(w.lag)
		res.Delivered += w.delivered
		res.Unexpected += w.unexpected
		for _, id := range w.seen {
			ci, seq := int(id>>32)-1, uint32(id)
			if ci < 0 || ci >= len(clients) || seq == 0 || seq > clients[ci].seq {
				res.Unexpected++
				continue
			}
			word, bit := seq/64, uint64(1)<<(seq%64)
			if seen[ci][word]&bit != 0 {
				res.Duplicates++
			}
			seen[ci][word] |= bit
		}
	}
	for i, c := range clients {
		res.Acknowledged += int64(len(c.acked))
		for _, seq := range c.acked {
			if seen[i][seq/64]&(uint64(1)<<(seq%64)) == 0 {
				res.Missing++
			}
		}
	}
	return res
}
