package tso

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors of Open and Next. Test for them with errors.Is.
var (
	// ErrBadCount: Next was asked for fewer than 1 or more than
	// LogicalRange timestamps. The Oracle is unaffected.
	ErrBadCount = errors.New("tso: count out of range")
	// ErrSaveFailed: a Save of the limit failed (the Store's error is
	// wrapped too). Every later Next fails with it: the Oracle is done;
	// a placement leader that still leads opens a new one, which loads
	// the limit again. Nothing at or above the last limit saved was
	// handed out.
	ErrSaveFailed = errors.New("tso: saving the limit failed")
	// ErrClosed: the Oracle was closed. Next calls waiting for a Save and
	// every later one fail with it.
	ErrClosed = errors.New("tso: oracle closed")
)

// Oracle hands out strictly increasing timestamps below a persisted limit
// (see the package doc). Open makes one; Next hands out; Close ends it.
// All its methods may be called from many goroutines at once.
type Oracle struct {
	store       Store
	clock       Clock
	windowMs    int64
	saveTimeout time.Duration

	// ctx ends at Close and bounds every Save. closed is closed at Close,
	// so that waiters leave even while a Save ignores ctx.
	ctx      context.Context
	cancel   context.CancelFunc
	closed   chan struct{}
	saveDone sync.WaitGroup // the Save goroutine, while one runs

	mu struct {
		sync.Mutex
		// last is the highest timestamp handed out, or, before the
		// first, the limit loaded at Open: every later timestamp is
		// above it.
		last Timestamp
		// limit is the highest limit saved: every timestamp handed out
		// is below it.
		limit Timestamp
		// lastWrite is the highest timestamp handed out for a write
		// (NextWrites), or, before the first, the limit loaded at Open
		// (1 if none was saved): at or above every timestamp any earlier
		// Oracle on the Store handed out (see LastWrite). Never 0.
		lastWrite Timestamp
		// saving is non-nil while a Save runs, and closed when it ends.
		saving chan struct{}
		// err, once set, fails every Next: wraps ErrSaveFailed, or is
		// ErrClosed.
		err error
	}

	// testHookWait, if set, is called whenever a Next call starts to
	// wait for a Save. Tests set it before the first Next.
	testHookWait func()
}

// Open starts an oracle on a new placement leader: it loads the limit the
// previous leaders saved, saves a new one a Window above the clock (or
// above the loaded limit, whichever is later) and returns an Oracle whose
// every timestamp is above the loaded limit, and so above every timestamp
// any earlier Oracle on store handed out. ctx bounds the Load and the
// Save. Open fails if cfg is invalid or the Store fails; it never returns
// a half-open Oracle.
func Open(ctx context.Context, store Store, cfg Config) (*Oracle, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("tso: no Store")
	}
	cfg = cfg.withDefaults()
	loaded, err := store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("tso: loading the limit: %w", err)
	}
	if Physical(loaded) > maxClockMs {
		return nil, fmt.Errorf("tso: loaded limit %v is too close to the largest timestamp", loaded)
	}
	o := &Oracle{
		store:       store,
		clock:       cfg.Clock,
		windowMs:    cfg.Window.Milliseconds(),
		saveTimeout: cfg.SaveTimeout,
		closed:      make(chan struct{}),
	}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	o.mu.last = loaded
	o.mu.limit = loaded
	o.mu.lastWrite = max(loaded, 1) // 0 reads as "latest" in the APIs above
	limit := o.windowAfter(o.nowMs(), loaded)
	saveCtx, cancel := context.WithTimeout(ctx, o.saveTimeout)
	defer cancel()
	if err := store.Save(saveCtx, limit); err != nil {
		o.cancel()
		return nil, fmt.Errorf("%w: limit %v: %w", ErrSaveFailed, limit, err)
	}
	o.mu.limit = limit
	return o, nil
}

// Next hands out count consecutive timestamps, [first, first+count),
// all in one millisecond and all strictly greater than every timestamp
// handed out before it by this Oracle, by any earlier Oracle on the same
// Store, and by any call that returned before this one began. It returns
// at once, allocating nothing, unless the window is spent: then it waits
// for the Save that extends it, or for ctx, or for Close. ctx bounds only
// that wait (the fast path does not look at it).
//
// Errors: ErrBadCount if count is below 1 or above LogicalRange; an
// error wrapping ErrSaveFailed once a Save has failed; ErrClosed after
// Close; ctx's error (wrapped) if ctx ends while it waits. On an error it
// hands out nothing.
func (o *Oracle) Next(ctx context.Context, count int) (first Timestamp, err error) {
	if count < 1 || count > LogicalRange {
		return 0, fmt.Errorf("%w: %d (want 1 to %d)", ErrBadCount, count, LogicalRange)
	}
	first, _, err = o.next(ctx, count, 0)
	return first, err
}

// next is Next and NextWrites: it hands out count timestamps (count is
// valid) and, if writeSpan > 0, records first+writeSpan-1 as a write's,
// under the same hold of the mutex. lastWrite is the last write's
// timestamp after that.
func (o *Oracle) next(ctx context.Context, count, writeSpan int) (first, lastWrite Timestamp, err error) {
	for {
		nowMs := o.nowMs()
		o.mu.Lock()
		if err := o.mu.err; err != nil {
			o.mu.Unlock()
			return 0, 0, err
		}
		first = o.nextLocked(nowMs, count)
		end := first + Timestamp(count)
		if end <= o.mu.limit {
			o.mu.last = end - 1
			if writeSpan > 0 {
				o.mu.lastWrite = max(o.mu.lastWrite, first+Timestamp(writeSpan)-1)
			}
			lastWrite = o.mu.lastWrite
			o.maybeRenewLocked(nowMs)
			o.mu.Unlock()
			return first, lastWrite, nil
		}
		// The window is spent: extend it (if no Save is already running)
		// and wait. The next turn of the loop reads the clock again.
		if o.mu.saving == nil {
			o.saveLocked(o.windowAfter(nowMs, end-1))
		}
		saving := o.mu.saving
		o.mu.Unlock()
		if o.testHookWait != nil {
			o.testHookWait()
		}
		select {
		case <-saving:
		case <-o.closed:
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("tso: waiting for the limit to be saved: %w", context.Cause(ctx))
		}
	}
}

// Close fails every Next waiting for a Save and every later one with
// ErrClosed, cancels the Save in flight and waits for it to return. Call
// it when this replica stops leading the placement catalogue. It returns
// nil; calling it again does nothing.
func (o *Oracle) Close() error {
	o.mu.Lock()
	if o.mu.err == ErrClosed {
		o.mu.Unlock()
		return nil
	}
	o.mu.err = ErrClosed
	close(o.closed)
	o.mu.Unlock()
	o.cancel()
	o.saveDone.Wait()
	return nil
}

// nextLocked returns the first timestamp of a batch of count: the
// clock's millisecond if that is above everything handed out, else just
// above the last timestamp (the clock went backwards or has not moved);
// moved to the start of the next millisecond if the batch would overflow
// the logical counter.
func (o *Oracle) nextLocked(nowMs int64, count int) Timestamp {
	first := o.mu.last + 1
	if nowMs > Physical(o.mu.last) {
		first = Compose(nowMs, 0)
	}
	if int(Logical(first))+count > LogicalRange {
		first = Compose(Physical(first)+1, 0)
	}
	return first
}

// maybeRenewLocked starts a Save in the background once less than a
// third of the window is left, so that Next rarely waits.
func (o *Oracle) maybeRenewLocked(nowMs int64) {
	if o.mu.saving != nil {
		return
	}
	from := max(nowMs, Physical(o.mu.last))
	if 3*(Physical(o.mu.limit)-from) >= o.windowMs {
		return
	}
	o.saveLocked(o.windowAfter(nowMs, o.mu.last))
}

// windowAfter returns the limit a window above both the clock and ts:
// the start of the millisecond Window after the later of the two. It is
// above ts, since the window is at least a millisecond.
func (o *Oracle) windowAfter(nowMs int64, ts Timestamp) Timestamp {
	return Compose(max(nowMs, Physical(ts))+o.windowMs, 0)
}

// saveLocked starts a goroutine that saves limit. There is none running.
func (o *Oracle) saveLocked(limit Timestamp) {
	if o.mu.saving != nil {
		panic(fmt.Sprintf("tso: Save of %v started while another runs", limit))
	}
	if limit <= o.mu.limit {
		panic(fmt.Sprintf("tso: Save of %v is not above the limit %v", limit, o.mu.limit))
	}
	done := make(chan struct{})
	o.mu.saving = done
	o.saveDone.Add(1)
	go o.save(limit, done)
}

// save runs one Save, then raises the limit or fails the Oracle, and
// wakes the waiters.
func (o *Oracle) save(limit Timestamp, done chan struct{}) {
	defer o.saveDone.Done()
	ctx, cancel := context.WithTimeout(o.ctx, o.saveTimeout)
	err := o.store.Save(ctx, limit)
	cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.mu.saving = nil
	close(done)
	switch {
	case o.mu.err != nil:
		// Closed meanwhile: keep ErrClosed, hand out nothing more.
	case err != nil:
		o.mu.err = fmt.Errorf("%w: limit %v: %w", ErrSaveFailed, limit, err)
	default:
		o.mu.limit = max(o.mu.limit, limit)
	}
}

// maxClockMs is the latest clock reading the oracle believes, half of
// MaxPhysical (about the year 3085), so that a clock gone wild cannot push
// a limit out of the Timestamp's range.
const maxClockMs = MaxPhysical / 2

// nowMs reads the clock in milliseconds since the epoch, clamped to
// [0, maxClockMs].
func (o *Oracle) nowMs() int64 {
	return min(max(o.clock.Now().UnixMilli(), 0), maxClockMs)
}
